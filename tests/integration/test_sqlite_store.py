"""State store contract, run against SQLite; any StateStore backend can run the same suite.

A new backend adds its name to ``store_factory``'s params and a branch to ``open_store``. The
factory is a picklable value, so the multi-process races below run against the backend too.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import AlreadyExists, ConcurrencyError
from shared.model import Cycle, CycleState
from shared.ports import Claim, StateStore
from shared.rollout_state import RolloutState

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
LEASE_S = 60.0
PROCS = 4
KEYS = 200


def open_store(kind: str, location: str) -> StateStore:
    if kind == "sqlite":
        return SqliteStateStore(location)
    raise ValueError(f"unknown store backend {kind!r}")


@dataclass(frozen=True)
class StoreFactory:
    """Opens a new handle on one shared store; picklable, for spawned processes."""

    kind: str
    location: str

    def __call__(self) -> StateStore:
        return open_store(self.kind, self.location)


@pytest.fixture(params=["sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return StoreFactory(request.param, str(tmp_path / "state.db"))


def new_cycle(cycle_id: str = "c1", model: str = "m", at: datetime = T0) -> Cycle:
    return Cycle(
        id=cycle_id,
        model=model,
        state=CycleState.TRIGGERED,
        created_at=at,
        updated_at=at,
        trigger={"signal": "x"},
        caused_by=f"event-{cycle_id}",
    )


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- delivery dedup -----------------------------------------------------------------------


def test_claim_is_new_then_in_progress_then_retry_after_the_lease(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    assert store.claim_delivery("k", T0, LEASE_S) is Claim.NEW
    assert store.claim_delivery("k", later(30), LEASE_S) is Claim.IN_PROGRESS
    assert store.claim_delivery("k", later(59.999999), LEASE_S) is Claim.IN_PROGRESS
    assert store.claim_delivery("k", later(60), LEASE_S) is Claim.RETRY  # lease over: take it
    assert store.claim_delivery("k", later(61), LEASE_S) is Claim.IN_PROGRESS  # lease was reset
    assert store.claim_delivery("k", later(121), LEASE_S) is Claim.RETRY


def test_release_lets_a_redelivery_process_it_again(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.claim_delivery("k", T0, LEASE_S) is Claim.NEW
    store.release_delivery("k")
    assert store.claim_delivery("k", later(1), LEASE_S) is Claim.NEW
    store.release_delivery("never-claimed")  # no-op


def test_finished_deliveries_stay_duplicates(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.claim_delivery("k", T0, LEASE_S) is Claim.NEW
    store.finish_delivery("k", later(1))
    assert store.claim_delivery("k", later(2), LEASE_S) is Claim.DUPLICATE
    assert store.claim_delivery("k", later(2 * 86400), LEASE_S) is Claim.DUPLICATE
    store.release_delivery("k")  # a late release of a finished delivery does not reopen it
    assert store.claim_delivery("k", later(3), LEASE_S) is Claim.DUPLICATE
    store.finish_delivery("unclaimed", T0)  # finishing records it even without a claim
    assert store.claim_delivery("unclaimed", later(1), LEASE_S) is Claim.DUPLICATE


def test_delivery_keys_are_compared_exactly(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.claim_delivery("src|type|subj|1", T0, LEASE_S) is Claim.NEW
    assert store.claim_delivery("src|type|subj|1|", T0, LEASE_S) is Claim.NEW
    assert store.claim_delivery("SRC|type|subj|1", T0, LEASE_S) is Claim.NEW


# -- cycles -------------------------------------------------------------------------------


def test_create_cycle_takes_the_model_lock(store_factory: StoreFactory) -> None:
    store = store_factory()
    first = new_cycle("c1")
    assert store.create_cycle(first) is None
    assert first.version == 1
    second = new_cycle("c2", at=later(1))
    assert store.create_cycle(second) == "c1"
    assert second.version == 0  # nothing written, nothing bumped
    assert store.get_cycle("c2") is None
    assert [c.id for c in store.list_cycles("m")] == ["c1"]
    active = store.active_cycle("m")
    assert active is not None and active.id == "c1" and active.version == 1
    assert store.create_cycle(new_cycle("o1", model="other")) is None  # locks are per model
    assert store.active_cycle("nobody") is None


def test_a_cycle_id_is_created_once(store_factory: StoreFactory) -> None:
    store = store_factory()
    cycle = new_cycle("c1")
    store.create_cycle(cycle)
    cycle.transition(CycleState.FAILED, later(1), "boom")
    store.save_cycle(cycle)
    with pytest.raises(AlreadyExists):
        store.create_cycle(new_cycle("c1", at=later(2)))
    stored = store.get_cycle("c1")
    assert stored is not None and stored.state is CycleState.FAILED
    assert store.active_cycle("m") is None


def test_save_cycle_is_optimistic(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.create_cycle(new_cycle("c1"))
    a, b = store.get_cycle("c1"), store.get_cycle("c1")
    assert a is not None and b is not None and a.version == b.version == 1
    a.job_name = "job-1"
    store.save_cycle(a)
    assert a.version == 2
    b.coalesced = 5
    with pytest.raises(ConcurrencyError):
        store.save_cycle(b)
    assert b.version == 1  # a refused save leaves the caller's version alone
    stored = store.get_cycle("c1")
    assert stored is not None and stored == a and stored.coalesced == 0
    store.save_cycle(a)  # the winner can keep saving
    assert a.version == 3
    with pytest.raises(ConcurrencyError):
        store.save_cycle(new_cycle("missing"))


def test_closing_a_cycle_releases_the_lock_and_starts_the_cooldown(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    assert store.last_closed_at("m") is None
    first = new_cycle("c1")
    store.create_cycle(first)
    first.transition(CycleState.RETRAINING, later(10), "job submitted")
    store.save_cycle(first)
    assert store.last_closed_at("m") is None
    closed_at = later(300.000001)
    first.transition(CycleState.FAILED, closed_at, "job failed")
    store.save_cycle(first)
    assert store.active_cycle("m") is None
    assert store.last_closed_at("m") == closed_at
    assert store.list_cycles("m", active_only=True) == []

    second = new_cycle("c2", at=later(400))
    assert store.create_cycle(second) is None
    active = store.active_cycle("m")
    assert active is not None and active.id == "c2"
    assert [c.id for c in store.list_cycles("m", active_only=True)] == ["c2"]
    assert [c.id for c in store.list_cycles("m")] == ["c2", "c1"]  # newest first


def test_closing_an_old_cycle_again_keeps_the_new_cycles_lock(store_factory: StoreFactory) -> None:
    store = store_factory()
    old = new_cycle("c1")
    store.create_cycle(old)
    for state in (
        CycleState.RETRAINING,
        CycleState.EVALUATING,
        CycleState.REGISTERED,
        CycleState.PROMOTED,
    ):
        old.transition(state, later(10), state.value)
        store.save_cycle(old)
    assert store.create_cycle(new_cycle("c2", at=later(20))) is None
    old.transition(CycleState.ROLLED_BACK, later(30), "health alert after promotion")
    store.save_cycle(old)
    active = store.active_cycle("m")
    assert active is not None and active.id == "c2"
    assert store.create_cycle(new_cycle("c3", at=later(40))) == "c2"


def test_find_and_list_cycles(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.find_cycle_by_job("job-1") is None
    for i, model in enumerate(["a", "b", "c"]):
        store.create_cycle(new_cycle(f"c-{model}", model=model, at=later(i)))
    cycle = store.get_cycle("c-b")
    assert cycle is not None
    cycle.job_name = "job-1"
    cycle.transition(CycleState.RETRAINING, later(5), "submitted")
    store.save_cycle(cycle)
    found = store.find_cycle_by_job("job-1")
    assert found is not None and found.id == "c-b" and found.version == cycle.version == 2
    cycle.transition(CycleState.FAILED, later(6), "failed")
    store.save_cycle(cycle)
    assert [c.id for c in store.list_cycles()] == ["c-c", "c-b", "c-a"]
    assert [c.id for c in store.list_cycles(active_only=True)] == ["c-c", "c-a"]
    assert [c.id for c in store.list_cycles("b")] == ["c-b"]
    assert store.list_cycles("b", active_only=True) == []
    assert store.list_cycles("nobody") == []


def test_a_cycle_round_trips_every_field(store_factory: StoreFactory) -> None:
    store = store_factory()
    cest = timezone(timedelta(hours=2))
    cycle = new_cycle("c1", at=T0.astimezone(cest))
    cycle.dry_run = True
    cycle.trigger = {"source": "alert", "values": [1, 2.5, None, "x"], "nested": {"k": True}}
    cycle.transition(CycleState.RETRAINING, later(1.000001), "submitted")
    cycle.job_name = "job-c1"
    cycle.job_submitted_at = later(1.000002)
    cycle.candidate_version = "7"
    cycle.champion_version = "6"
    cycle.decision = {"passed": True, "rules": [{"rule": "floor", "observed": 0.8123456789}]}
    cycle.rollout = RolloutState.from_json(
        {"endpoint": "e", "steps": [{"percent": 10, "at": T0.isoformat(), "traffic": {"e1": 10}}]}
    )
    cycle.coalesced = 3
    store.create_cycle(cycle)
    assert store.get_cycle("c1") == cycle
    reopened = store_factory().get_cycle("c1")  # another handle on the same store
    assert reopened == cycle
    assert reopened is not None and reopened.history[0].at == later(1.000001)


def test_times_must_be_timezone_aware(store_factory: StoreFactory) -> None:
    store = store_factory()
    naive = datetime(2026, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        store.claim_delivery("k", naive, LEASE_S)
    with pytest.raises(ValueError, match="naive"):
        store.add_signal("m", "k", naive)


# -- pending signals ----------------------------------------------------------------------


def test_pending_signals(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.count_signals("m", T0) == 0
    assert store.add_signal("m", "alert|a", T0) == 1
    assert store.add_signal("m", "alert|a", later(1)) == 1  # idempotent per key
    assert store.add_signal("m", "grid|b", later(300)) == 2
    assert store.add_signal("m", "alert|c", later(600)) == 3
    assert store.add_signal("other", "alert|a", T0) == 1  # per model
    assert store.count_signals("m", T0) == 3
    assert store.count_signals("m", later(300)) == 2  # since is inclusive, to the microsecond
    assert store.count_signals("m", later(300.000001)) == 1
    assert store.clear_signals("m", "alert") == 2
    assert store.count_signals("m", T0) == 1
    assert store.clear_signals("m", "alert") == 0
    assert store.clear_signals("m") == 1
    assert store.clear_signals("m") == 0
    assert store.count_signals("other", T0) == 1


# -- concurrency --------------------------------------------------------------------------


def test_threads_sharing_one_store_claim_each_key_once(store_factory: StoreFactory) -> None:
    store = store_factory()
    results: list[Claim] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claim_all() -> None:
        start.wait()
        mine = [store.claim_delivery(f"k{i}", T0, LEASE_S) for i in range(50)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=claim_all) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    counts = Counter(results)
    print(f"8 threads x 50 keys: {counts[Claim.NEW]} NEW, {counts[Claim.IN_PROGRESS]} IN_PROGRESS")
    assert counts == {Claim.NEW: 50, Claim.IN_PROGRESS: 350}


def _in_process(scenario: str, factory: StoreFactory, index: int, start: Any, out: Any) -> None:
    """One racing process: get ready, wait for the others, then all act at once."""
    try:
        store = factory()
        keys = [f"k{i}" for i in range(KEYS)]
        random.Random(index).shuffle(keys)  # each process walks the keys in its own order
        result: Any
        if scenario == "claim":
            start.wait()
            claims = {}
            for key in keys:
                claims[key] = store.claim_delivery(key, T0, LEASE_S)
                time.sleep(0.0005)  # a worker does other work between claims: interleave
            start.wait()  # everyone has claimed: finish what this process won
            for key, claim in claims.items():
                if claim is Claim.NEW:
                    store.finish_delivery(key, later(1))
            start.wait()  # everyone has finished: now every key is a duplicate
            again = [store.claim_delivery(k, later(2), LEASE_S) for k in keys]
            result = ({k: c.value for k, c in claims.items()}, [c.value for c in again])
        elif scenario == "retry":
            start.wait()
            result = []
            for key in keys:
                result.append(store.claim_delivery(key, later(LEASE_S + 1), LEASE_S).value)
                time.sleep(0.0005)
        elif scenario == "create":
            cycle = new_cycle(f"c{index}")
            start.wait()
            result = store.create_cycle(cycle)
        elif scenario == "save":
            stored = store.get_cycle("c1")
            assert stored is not None
            stored.coalesced = index + 1
            start.wait()
            try:
                store.save_cycle(stored)
                result = "saved"
            except ConcurrencyError:
                result = "conflict"
        else:
            raise ValueError(scenario)
        out.put((index, result))
    except BaseException:
        out.put((index, RuntimeError(traceback.format_exc())))
        raise


def race(factory: StoreFactory, scenario: str) -> list[Any]:
    """Run ``scenario`` in PROCS spawned processes released together; their results."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(PROCS, timeout=60), ctx.Queue()
    procs = [
        ctx.Process(target=_in_process, args=(scenario, factory, i, start, out))
        for i in range(PROCS)
    ]
    for p in procs:
        p.start()
    try:
        results = dict(out.get(timeout=90) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
    for value in results.values():
        if isinstance(value, Exception):
            raise value
    assert [p.exitcode for p in procs] == [0] * PROCS
    return [results[i] for i in range(PROCS)]


def test_processes_claiming_the_same_keys_process_each_once(store_factory: StoreFactory) -> None:
    store_factory()  # the store exists before the race (as when the host starts)
    results = race(store_factory, "claim")
    first = Counter(c for claims, _ in results for c in claims.values())
    second = Counter(c for _, again in results for c in again)
    new_per_key = Counter(k for claims, _ in results for k, c in claims.items() if c == "new")
    won = [sum(c == "new" for c in claims.values()) for claims, _ in results]
    print(
        f"{PROCS} procs x {KEYS} keys: {first['new']} NEW (per process {won}), "
        f"{first['in_progress']} IN_PROGRESS; after finishing: {second['duplicate']} DUPLICATE"
    )
    assert first == {"new": KEYS, "in_progress": (PROCS - 1) * KEYS}
    assert len(new_per_key) == KEYS and set(new_per_key.values()) == {1}
    assert second == {"duplicate": PROCS * KEYS}


def test_processes_taking_over_expired_leases_retry_each_once(store_factory: StoreFactory) -> None:
    store = store_factory()
    for i in range(KEYS):
        assert store.claim_delivery(f"k{i}", T0, LEASE_S) is Claim.NEW  # a worker that died
    results = race(store_factory, "retry")
    claims = Counter(c for result in results for c in result)
    took = [result.count("retry") for result in results]
    print(
        f"{PROCS} procs x {KEYS} expired leases: {claims['retry']} RETRY (per process {took}), "
        f"{claims['in_progress']} IN_PROGRESS"
    )
    assert claims == {"retry": KEYS, "in_progress": (PROCS - 1) * KEYS}


def test_processes_creating_a_cycle_for_one_model_open_one(store_factory: StoreFactory) -> None:
    results = race(store_factory, "create")  # on a brand-new store: they also create it at once
    store = store_factory()
    winners = [f"c{i}" for i, r in enumerate(results) if r is None]
    print(f"{PROCS} procs create_cycle for one model: {len(winners)} created, others got {results}")
    assert len(winners) == 1
    assert sorted(results, key=str) == sorted([None, *winners * (PROCS - 1)], key=str)
    assert [c.id for c in store.list_cycles("m")] == winners
    active = store.active_cycle("m")
    assert active is not None and active.id == winners[0]


def test_processes_saving_the_same_version_let_one_win(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.create_cycle(new_cycle("c1"))
    results = race(store_factory, "save")
    print(
        f"{PROCS} procs save_cycle at one version: {results.count('saved')} saved, "
        f"{results.count('conflict')} ConcurrencyError"
    )
    assert sorted(results) == ["conflict"] * (PROCS - 1) + ["saved"]
    stored = store.get_cycle("c1")
    assert stored is not None and stored.version == 2
    assert stored.coalesced == results.index("saved") + 1  # the winner's write, whole


# -- SQLite specifics ---------------------------------------------------------------------


def _claim_in_child(store: SqliteStateStore, out: Any) -> None:
    out.put(store.claim_delivery("forked", T0, LEASE_S).value)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    assert store.claim_delivery("before", T0, LEASE_S) is Claim.NEW  # the parent's connection
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_claim_in_child, args=(store, out))
    child.start()
    assert out.get(timeout=30) == "new"
    child.join(30)
    assert child.exitcode == 0
    assert store.claim_delivery("forked", later(1), LEASE_S) is Claim.IN_PROGRESS
    assert store.claim_delivery("before", later(1), LEASE_S) is Claim.IN_PROGRESS


def test_the_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """Committed pages reach the database file without any later write paying for it, and
    the WAL does not grow past its limit."""
    import sqlite3

    from shared.adapters import sqlite_db

    store = SqliteStateStore(tmp_path / "state.db")
    for n in range(300):
        assert store.claim_delivery(f"key-{n}-" + "x" * 200, T0, 30.0) is Claim.NEW

    def wal_frames() -> tuple[int, int]:
        with sqlite3.connect(tmp_path / "state.db") as probe:  # a passive checkpoint reports
            _, frames, done = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(done)

    deadline = time.monotonic() + 10 * sqlite_db.CHECKPOINT_EVERY_S
    size = (tmp_path / "state.db").stat().st_size
    while size < 300 * 200 and time.monotonic() < deadline:  # no write from us meanwhile
        time.sleep(0.05)
        size = (tmp_path / "state.db").stat().st_size
    print(f"database file {size} bytes after the background checkpoint")
    assert size >= 300 * 200
    frames, done = wal_frames()
    assert frames == done
    wal = tmp_path / "state.db-wal"
    assert not wal.exists() or wal.stat().st_size <= sqlite_db.WAL_SIZE_LIMIT_BYTES


def test_old_finished_delivery_keys_are_purged_and_live_ones_kept(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    for n in range(5):
        store.claim_delivery(f"old-{n}", T0, 30.0)
        store.finish_delivery(f"old-{n}", T0)
    store.claim_delivery("old-but-unfinished", T0, 30.0)  # its worker died: lease long expired
    later = T0 + timedelta(days=8)
    store.claim_delivery("recent", later, 30.0)
    store.finish_delivery("recent", later)
    store.claim_delivery("in-flight", later, 30.0)

    cutoff = later - timedelta(days=7)
    assert store.purge_deliveries(cutoff, limit=3) == 3  # bounded per call
    assert store.purge_deliveries(cutoff, limit=100) == 2
    assert store.purge_deliveries(cutoff, limit=100) == 0
    assert store.claim_delivery("old-0", later, 30.0) is Claim.NEW  # forgotten
    assert store.claim_delivery("recent", later, 30.0) is Claim.DUPLICATE
    assert store.claim_delivery("in-flight", later, 30.0) is Claim.IN_PROGRESS
    assert store.claim_delivery("old-but-unfinished", later, 30.0) is Claim.RETRY


def test_only_the_lease_holder_releases_a_claim(store_factory: StoreFactory) -> None:
    """Worker A's lease expires and B takes the key over; A then fails and releases: B's claim
    must stand, or a third delivery would be processed while B still works on it."""
    store = store_factory()
    assert store.claim_delivery("k", T0, 30.0, "worker-a") is Claim.NEW
    later = T0 + timedelta(seconds=31)
    assert store.claim_delivery("k", later, 30.0, "worker-b") is Claim.RETRY
    store.release_delivery("k", "worker-a")  # too late: not A's any more
    assert store.claim_delivery("k", later, 30.0, "worker-c") is Claim.IN_PROGRESS
    store.release_delivery("k", "worker-b")  # B failed: the key is free again
    assert store.claim_delivery("k", later, 30.0, "worker-c") is Claim.NEW


def test_a_state_file_from_before_lease_owners_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.db"
    with sqlite3.connect(path) as old:  # the deliveries table as earlier versions wrote it
        old.execute("CREATE TABLE deliveries (key TEXT PRIMARY KEY, status TEXT, until REAL)")
        old.execute("INSERT INTO deliveries VALUES ('seen', 'done', 0)")
    old.close()
    store = SqliteStateStore(path)
    assert store.claim_delivery("seen", T0, 30.0, "w") is Claim.DUPLICATE
    assert store.claim_delivery("new", T0, 30.0, "w") is Claim.NEW
