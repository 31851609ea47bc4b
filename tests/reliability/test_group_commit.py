"""A delivered batch with group commit (``composition.delivery.deliver_batch``), on SQLite.

Crashes are real ones for the code under test (``autopilot.faults.Crash`` is a BaseException:
nothing releases a claim); Event Grid is played as it behaves: a batch that got no answer is
delivered again, whole, once the leases have expired or at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopilot.faults import Crash, FaultPlan, FaultyPlatform, FaultyStore
from composition.bootstrap import bootstrap
from composition.delivery import BatchOutcome, deliver_batch, validate_batch
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import BadEvent
from shared.model import AuditKind
from tests import payloads
from tests.fakes import World, make_world

LEASE_S = 301.0  # past the delivery lease (300 s)


def sqlite_world(folder: Path) -> World:
    world = make_world()
    world.services.store = SqliteStateStore(folder / "state.db")
    world.services.audit = SqliteAuditLog(folder / "audit.db")
    return world


def batch_events() -> list[dict[str, Any]]:
    """A model monitor breach (starts a cycle: one job) among runs of other teams."""
    foreign = [payloads.run_event(f"foreign-{i}", "Running") for i in range(8)]
    return [*foreign[:4], payloads.monitor_breach(), *foreign[4:]]


def deliver(world: World, events: list[dict[str, Any]]) -> BatchOutcome:
    return deliver_batch(bootstrap(world.services), validate_batch(events, world.services.policy))


def receipts(world: World) -> list[Any]:
    audit = world.services.audit
    return [r for r in audit.query(limit=1000) if r.kind is AuditKind.EVENT_RECEIVED]


@pytest.mark.parametrize(
    ("point", "wait_s"),
    [
        ("store.finish_deliveries.before", LEASE_S),  # crash before the batch's commit
        ("platform.submit_job.after", LEASE_S),  # crash in a handler, mid-batch
        ("store.finish_deliveries.after", 0.0),  # committed, but the answer never left
    ],
)
def test_a_crash_then_redelivery_of_the_batch_gives_one_effect_per_event(
    tmp_path: Path, point: str, wait_s: float
) -> None:
    world = sqlite_world(tmp_path)
    platform, store = world.platform, world.services.store
    plan = FaultPlan(crash_at={point})
    world.services.platform = FaultyPlatform(platform, plan)
    world.services.store = FaultyStore(store, plan)
    events = batch_events()
    with pytest.raises(Crash):
        deliver(world, events)
    plan.crash_at.clear()  # the process restarts without the fault
    world.clock.advance(wait_s)
    outcome = deliver(world, events)
    assert len(platform.submitted) == 1  # one job, whichever attempt submitted it
    assert len(store.list_cycles("credit", True)) == 1
    if point.endswith(".after") and point.startswith("store.finish"):
        assert outcome == BatchOutcome(processed=0, duplicate=9, failed=0)
    else:
        assert outcome == BatchOutcome(processed=9, duplicate=0, failed=0)
    assert deliver(world, events) == BatchOutcome(processed=0, duplicate=9, failed=0)
    assert len(platform.submitted) == 1


def test_a_batch_mixing_valid_and_invalid_events_is_refused_before_any_is_applied(
    tmp_path: Path,
) -> None:
    world = sqlite_world(tmp_path)
    events = batch_events()
    bad = payloads.model_registered("m", "1", {})
    bad["data"]["modelTags"] = ["wrong", "type"]
    with pytest.raises(BadEvent, match=r"event \[9\]"):
        validate_batch([*events, bad], world.services.policy)
    assert world.platform.submitted == [] and receipts(world) == []


def test_the_same_event_twice_in_one_batch_is_applied_once(tmp_path: Path) -> None:
    world = sqlite_world(tmp_path)
    breach = payloads.monitor_breach()
    outcome = deliver(world, [breach, payloads.run_event("x", "Running"), breach])
    assert outcome == BatchOutcome(processed=2, duplicate=1, failed=0)
    assert len(world.platform.submitted) == 1
    assert len(receipts(world)) == 1  # the foreign run is ignored, not received


def test_a_batch_is_claimed_and_finished_in_one_transaction_each(tmp_path: Path) -> None:
    """What group commit means on SQLite: the batch's keys appear together, done together."""
    world = sqlite_world(tmp_path)
    store = world.services.store
    assert isinstance(store, SqliteStateStore)
    statements: list[str] = []
    store.db.connection().set_trace_callback(statements.append)
    deliver(world, [payloads.run_event(f"r{i}", "Running") for i in range(50)])
    store.db.connection().set_trace_callback(None)
    in_transaction, outside = False, []
    for statement in statements:
        if statement.startswith("BEGIN"):
            in_transaction = True
        elif statement.startswith(("COMMIT", "ROLLBACK")):
            in_transaction = False
        elif "deliveries" in statement and not in_transaction:
            outside.append(statement)
    assert sum(s.startswith("BEGIN") for s in statements) == 2  # claims, then finishes
    assert outside == []
