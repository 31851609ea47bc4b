"""Lifecycle events published by a batch's deferred work (``composition.batch_commit``), on
SQLite: they are intents written with the work that published them and sent after it, so a
publisher outage delays them instead of losing them, and a batch that starts many cycles does
not commit once per publication."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import TransientError
from shared.policy import Policy, parse_policy
from tests import payloads
from tests.fakes import POLICY, FakePublisher, World
from tests.reliability.test_group_commit import LEASE_S, deliver, reconcile, sqlite_world


class FlakyPublisher(FakePublisher):
    """Event Grid that is down until ``up`` is set."""

    up: bool = False

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        if not self.up:
            raise TransientError("Event Grid topic unavailable")
        super().publish(event_type, subject, data)


def models_policy(count: int) -> Policy:
    """The test policy's model ``count`` times, each bound to its own monitor."""
    data = copy.deepcopy(POLICY)
    base = data["models"].pop("credit")
    for i in range(count):
        spec = copy.deepcopy(base)
        spec["signals"] = {"monitors": [{"name": f"m{i}-monitor"}]}
        spec["rollout"]["endpoint"] = f"m{i}-ep"
        data["models"][f"m{i}"] = spec
    return parse_policy(data, "test-policy")


def breaches(count: int) -> list[dict[str, Any]]:
    return [payloads.monitor_breach(f"m{i}-monitor") for i in range(count)]


def test_events_published_during_a_publisher_outage_are_sent_later_in_order_once(
    tmp_path: Path,
) -> None:
    healthy = sqlite_world(tmp_path / "healthy")
    deliver(healthy, [payloads.monitor_breach()])
    expected = healthy.publisher.types()
    assert expected[0] == "Autopilot.cycle.started" and "Autopilot.job.submitted" in expected

    world = sqlite_world(tmp_path / "outage")
    publisher = FlakyPublisher()
    world.services.publisher = publisher
    deliver(world, [payloads.monitor_breach()])
    assert len(world.platform.submitted) == 1  # the work went on without its publications
    assert publisher.types() == []
    publisher.up = True
    reconcile(world)  # within the lease the batch's writer may still be sending them
    assert publisher.types() == []
    world.clock.advance(LEASE_S)
    reconcile(world)
    assert publisher.types() == expected
    world.clock.advance(LEASE_S)
    reconcile(world)
    assert publisher.types() == expected  # each sent once


def commits_of(world: World, work: Any) -> int:
    store, audit = world.services.store, world.services.audit
    assert isinstance(store, SqliteStateStore) and isinstance(audit, SqliteAuditLog)
    statements: list[str] = []
    connections: list[sqlite3.Connection] = [store.db.connection(), audit.db.connection()]
    for conn in connections:
        conn.set_trace_callback(statements.append)
    try:
        work()
    finally:
        for conn in connections:
            conn.set_trace_callback(None)
    return sum(s.startswith("COMMIT") for s in statements)


def test_a_batch_starting_many_cycles_does_not_commit_once_per_publication(
    tmp_path: Path,
) -> None:
    """Each job submission still commits what was written before it (no write lock is held
    across a call to the platform); the lifecycle events do not add commits of their own."""
    cycles = 6
    world = sqlite_world(tmp_path)
    world.services.policy = models_policy(cycles)
    commits = commits_of(world, lambda: deliver(world, breaches(cycles)))
    assert len(world.platform.submitted) == cycles
    published = world.publisher.types()
    assert published.count("Autopilot.job.submitted") == cycles
    # per cycle: the writes before its platform calls, in both databases; then the batch's
    # own transaction, the last writes and the sent publications forgotten
    assert commits <= 2 * cycles + 5 < len(published)
