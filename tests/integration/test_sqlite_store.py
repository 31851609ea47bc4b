"""State store contract, on SQLite; the same suite runs against any StateStore backend."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import ConcurrencyError
from shared.model import Cycle, CycleState
from shared.ports import Claim, StateStore
from tests.fakes import T0

StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    path = tmp_path / "state.db"
    return lambda: SqliteStateStore(path)


def new_cycle(cycle_id: str = "c1", model: str = "m") -> Cycle:
    return Cycle(
        id=cycle_id,
        model=model,
        state=CycleState.TRIGGERED,
        created_at=T0,
        updated_at=T0,
        trigger={"signal": "x"},
    )


def test_claims_new_duplicate_retry_and_release(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.claim_delivery("k", T0, 60) is Claim.NEW
    assert store.claim_delivery("k", T0 + timedelta(seconds=30), 60) is Claim.IN_PROGRESS
    assert store.claim_delivery("k", T0 + timedelta(seconds=61), 60) is Claim.RETRY
    store.release_delivery("k")
    assert store.claim_delivery("k", T0, 60) is Claim.NEW
    store.finish_delivery("k", T0)
    assert store.claim_delivery("k", T0 + timedelta(days=2), 60) is Claim.DUPLICATE


def test_one_active_cycle_per_model_and_closing_releases_it(store_factory: StoreFactory) -> None:
    store = store_factory()
    first = new_cycle("c1")
    assert store.create_cycle(first) is None
    assert store.create_cycle(new_cycle("c2")) == "c1"
    assert store.get_cycle("c2") is None
    active = store.active_cycle("m")
    assert active is not None and active.id == "c1"
    first.transition(CycleState.FAILED, T0 + timedelta(minutes=5), "boom")
    store.save_cycle(first)
    assert store.active_cycle("m") is None
    assert store.last_closed_at("m") == T0 + timedelta(minutes=5)
    assert store.create_cycle(new_cycle("c3")) is None
    assert [c.id for c in store.list_cycles("m", active_only=True)] == ["c3"]


def test_stale_versions_are_refused(store_factory: StoreFactory) -> None:
    store = store_factory()
    cycle = new_cycle()
    store.create_cycle(cycle)
    a, b = store.get_cycle("c1"), store.get_cycle("c1")
    assert a is not None and b is not None
    a.job_name = "job-1"
    store.save_cycle(a)
    b.coalesced = 5
    with pytest.raises(ConcurrencyError):
        store.save_cycle(b)
    found = store.find_cycle_by_job("job-1")
    assert found is not None and found.version == a.version


def test_round_trip_keeps_every_field(store_factory: StoreFactory) -> None:
    store = store_factory()
    cycle = new_cycle()
    cycle.decision = {"passed": True, "rules": [{"rule": "floor", "observed": 0.8}]}
    cycle.rollout = {"endpoint": "e", "steps": [{"percent": 10}]}
    store.create_cycle(cycle)
    assert store.get_cycle("c1") == cycle


def test_pending_signals(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.add_signal("m", "alert|a", T0) == 1
    assert store.add_signal("m", "alert|a", T0) == 1  # idempotent per key
    assert store.add_signal("m", "grid|b", T0 + timedelta(minutes=5)) == 2
    assert store.count_signals("m", T0 + timedelta(minutes=1)) == 1
    assert store.clear_signals("m", "alert") == 1
    assert store.clear_signals("m") == 1


def _race(path: str, barrier: Any, keys: int, out: Any) -> None:
    store = SqliteStateStore(path)
    barrier.wait()
    claims = [store.claim_delivery(f"k{i}", T0, 60).value for i in range(keys)]
    winner = store.create_cycle(new_cycle(f"c-{mp.current_process().pid}"))
    out.put((claims, winner))


def test_four_processes_racing_act_once(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    SqliteStateStore(path)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, barrier, 200, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    claims = [c for claim_list, _ in results for c in claim_list]
    winners = [w for _, w in results]
    print(
        f"4 procs x 200 keys: {claims.count('new')} NEW, {claims.count('in_progress')} IN_PROGRESS;"
        f" create_cycle: {winners.count(None)} winner"
    )
    assert claims.count("new") == 200
    assert claims.count("in_progress") == 600  # nobody finished: the others must retry later
    assert winners.count(None) == 1
