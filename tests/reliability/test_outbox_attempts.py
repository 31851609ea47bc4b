"""Outbox intents have a bounded number of tries (``handlers.outbox``, on SQLite).

A batch's deferred work that fails with an error a retry can fix is counted with the intent
and tried again by later reconcile ticks (each once the intent's lease has expired); after
``Settings.intent_attempts`` failed tries it is given up: audited as an error naming the
work, model, cycle and last error (scrubbed of secrets), dropped, and its cycle closed.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import BatchOutcome, deliver_batch, validate_batch
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import ConcurrencyError, TransientError
from shared.messagebus import Settings
from shared.messages import Reconcile
from shared.model import AuditKind, CycleState, JobInfo, JobRequest
from shared.redact import Redactor
from tests import payloads
from tests.fakes import FakePlatform, World, make_policy, make_world

LEASE_S = 301.0  # past the intent's lease (300 s)
SECRET = "AccountKey=c2VjcmV0LXN0b3JhZ2Uta2V5"
ATTEMPTS = Settings().intent_attempts


class OutagePlatform(FakePlatform):
    """``submit_job`` fails transiently ``failures`` times (always, if None), then works;
    its error text quotes a secret, as an SDK's can."""

    def __init__(self, failures: int | None, error: type[Exception] = TransientError) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.tries = 0

    def submit_job(self, request: JobRequest) -> JobInfo:
        self.tries += 1
        if self.failures is None or self.tries <= self.failures:
            raise self.error(f"503 from the workspace ({SECRET}), retry later")
        return super().submit_job(request)


def world_on(folder: Path, platform: FakePlatform, **settings: Any) -> World:
    world = make_world(make_policy(cooldown="0s"))
    world.services.store = SqliteStateStore(folder / "state.db")
    world.services.audit = SqliteAuditLog(folder / "audit.db")
    world.services.platform = platform
    world.services.redactor = Redactor([SECRET])
    world.services.settings = dataclasses.replace(world.services.settings, **settings)
    return world


def deliver(world: World, events: list[dict[str, Any]]) -> BatchOutcome:
    return deliver_batch(bootstrap(world.services), validate_batch(events, world.services.policy))


def tick(world: World) -> None:
    """The next reconcile tick once the intents' leases have expired."""
    world.clock.advance(LEASE_S)
    bootstrap(world.services).handle(Reconcile())


def outbox(folder: Path) -> list[tuple[str, int]]:
    """What the outbox holds: (body, failed tries) per intent."""
    with sqlite3.connect(folder / "state.db") as db:
        return [(b, a) for b, a in db.execute("SELECT body, attempts FROM outbox ORDER BY id")]


def errors(world: World) -> list[Any]:
    return world.services.audit.query(kind=AuditKind.ERROR.value, limit=100)


def test_an_intent_that_fails_one_try_short_of_the_limit_is_performed_once(
    tmp_path: Path,
) -> None:
    platform = OutagePlatform(failures=ATTEMPTS - 1)
    # The cycle is never stale here, so only the intent (not the reconciler's own level
    # check of a TRIGGERED cycle) submits the job: each try below is the intent's.
    world = world_on(tmp_path, platform, stale_after_s=1e9)
    assert deliver(world, [payloads.monitor_breach()]) == BatchOutcome(processed=1)
    assert platform.tries == 1 and [tries for _, tries in outbox(tmp_path)] == [1]
    for failed in range(2, ATTEMPTS):
        tick(world)
        assert [tries for _, tries in outbox(tmp_path)] == [failed]
    tick(world)  # the platform is back
    assert platform.tries == ATTEMPTS and len(platform.submitted) == 1
    assert outbox(tmp_path) == [] and errors(world) == []
    (cycle,) = world.services.store.list_cycles("credit")
    assert cycle.state is CycleState.RETRAINING
    assert cycle.job_name == platform.submitted[0].name
    tick(world)
    assert len(platform.submitted) == 1


def test_an_intent_that_keeps_failing_is_given_up_audited_and_its_cycle_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    platform = OutagePlatform(failures=None)
    world = world_on(tmp_path, platform)
    deliver(world, [payloads.monitor_breach(event_id="first")])
    for _ in range(ATTEMPTS - 1):
        assert errors(world) == []
        tick(world)
    assert outbox(tmp_path) == []  # dropped after the last try
    (cycle,) = world.services.store.list_cycles("credit")
    assert cycle.state is CycleState.FAILED  # not left open, holding the model's lock
    (gave_up, *closed) = errors(world)
    assert gave_up.summary == (
        f"deferred work StartRetraining given up after {ATTEMPTS} failed tries"
    )
    assert (gave_up.model, gave_up.cycle) == ("credit", cycle.id)
    assert "503 from the workspace" in gave_up.reason and "***" in gave_up.reason
    assert [r.cycle for r in closed] == [cycle.id]  # the cycle's FAILED transition, for it
    assert f"given up after {ATTEMPTS} failed tries" in closed[0].reason
    trail = world.services.audit.query(limit=1000)
    assert not [r for r in trail if SECRET in f"{r.summary}{r.reason}{r.evidence}"]
    logged = [r.getMessage() for r in caplog.records if r.name == "handlers.outbox"]
    assert len(logged) == ATTEMPTS - 1  # each try kept for later, then none
    assert not [line for line in logged if SECRET in line]
    tries = platform.tries
    tick(world)
    tick(world)
    assert platform.tries == tries  # given up: no further tries
    platform.failures = 0  # the platform is back: the next signal retrains
    deliver(world, [payloads.monitor_breach(event_id="second")])
    assert len(platform.submitted) == 1
    assert [c.state for c in world.services.store.list_cycles("credit")] == [
        CycleState.RETRAINING,
        CycleState.FAILED,
    ]


def test_work_that_keeps_losing_races_is_given_up_but_its_cycle_left_open(
    tmp_path: Path,
) -> None:
    """A lost race means other work is moving the cycle: giving up the intent does not close
    it; the reconciler's level check of the cycle carries on."""
    platform = OutagePlatform(failures=None, error=ConcurrencyError)
    world = world_on(tmp_path, platform, stale_after_s=1e9)
    deliver(world, [payloads.monitor_breach()])
    for _ in range(ATTEMPTS - 1):
        tick(world)
    assert outbox(tmp_path) == []
    (gave_up,) = errors(world)
    assert gave_up.summary.startswith("deferred work StartRetraining given up after")
    (cycle,) = world.services.store.list_cycles("credit")
    assert cycle.is_active  # still the reconciler's to level-check


def test_a_publication_that_keeps_failing_is_given_up_naming_its_model_and_cycle(
    tmp_path: Path,
) -> None:
    world = world_on(tmp_path, FakePlatform())
    store = world.services.store
    assert isinstance(store, SqliteStateStore)
    body = '{"type":"Autopilot.cycle.started","subject":"models/credit",'
    body += '"data":{"cycle":"credit-0123456789","model":"credit","state":"TRIGGERED"}}'
    store.add_intent("publish", body, world.clock.now(), 0, "a-dead-process")

    class Down:
        def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
            raise TransientError("Event Grid topic unavailable")

    world.services.publisher = Down()
    for _ in range(ATTEMPTS):
        assert outbox(tmp_path) != []
        tick(world)
    assert outbox(tmp_path) == []
    (gave_up,) = errors(world)
    assert gave_up.summary == f"deferred work publish given up after {ATTEMPTS} failed tries"
    assert (gave_up.model, gave_up.cycle) == ("credit", "credit-0123456789")
    assert gave_up.reason == "Event Grid topic unavailable"


def test_an_outbox_written_before_intents_counted_tries_still_loads(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
            "body TEXT NOT NULL, owner TEXT NOT NULL, until REAL NOT NULL)"
        )
        db.execute("INSERT INTO outbox (kind, body, owner, until) VALUES ('publish', '{}', 'w', 0)")
    db.close()
    store = SqliteStateStore(tmp_path / "state.db")
    world = make_world()
    (intent,) = store.take_intents(world.clock.now(), 300, "me", expired=True, limit=10)
    assert (intent.kind, intent.body, intent.attempts) == ("publish", "{}", 0)
    assert store.fail_intent(intent.id) == 1
    store.finish_intent(intent.id)
    assert store.fail_intent(intent.id) == 0  # gone
