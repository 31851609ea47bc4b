"""A delivered batch with group commit (``composition.delivery.deliver_batch``), on SQLite.

Crashes are real ones for the code under test (``autopilot.faults.Crash`` is a BaseException:
nothing releases a claim); Event Grid is played as it behaves: a batch that got no answer is
delivered again, whole, once the leases have expired or at once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from autopilot.faults import Crash, FaultPlan, FaultyPlatform, FaultyStore
from composition.bootstrap import bootstrap
from composition.delivery import BatchOutcome, deliver_batch, validate_batch
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import BadEvent
from shared.message_codec import encode
from shared.messages import Reconcile, RegisterCandidate
from shared.model import AuditKind, JobInfo, JobRequest
from tests import payloads
from tests.fakes import FakePlatform, World, make_policy, make_world

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


def received(world: World) -> list[Any]:
    audit = world.services.audit
    return [r for r in audit.query(limit=1000) if r.kind is AuditKind.EVENT_RECEIVED]


def reconcile(world: World) -> None:
    bootstrap(world.services).handle(Reconcile())


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("store.finish_deliveries.before", False),  # crash inside the batch's transaction
        ("store.take_intents.before", True),  # committed, the outbox not yet performed
        ("platform.submit_job.after", True),  # committed, the job submitted, no answer
        ("store.finish_intent.after", True),  # all done but the answer never left
    ],
)
def test_a_crash_then_redelivery_of_the_batch_gives_one_effect_per_event(
    tmp_path: Path, point: str, committed: bool
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
    outcome = deliver(world, events)  # Event Grid redelivers the unanswered batch at once
    if committed:
        assert outcome == BatchOutcome(processed=0, duplicate=9, failed=0)
    else:  # nothing of the first attempt was left behind: no lease to wait for
        assert outcome == BatchOutcome(processed=9, duplicate=0, failed=0)
    assert len(store.list_cycles("credit", True)) == 1
    world.clock.advance(LEASE_S)  # the dead attempt's intents are the reconciler's now
    reconcile(world)
    reconcile(world)
    assert len(platform.submitted) == 1  # one job, whichever attempt submitted it
    assert len(received(world)) == 1  # the breach is received once (foreign runs: ignored)
    assert deliver(world, events) == BatchOutcome(processed=0, duplicate=9, failed=0)
    assert len(platform.submitted) == 1
    assert isinstance(store, SqliteStateStore)
    assert store.take_intents(world.clock.now(), 0, "x", expired=True, limit=10) == []


def test_work_deferred_past_a_crash_after_the_commit_is_done_once_by_the_reconciler(
    tmp_path: Path,
) -> None:
    world = sqlite_world(tmp_path)
    platform = world.platform
    plan = FaultPlan(crash_at={"store.take_intents.before"})
    world.services.store = FaultyStore(world.services.store, plan)
    with pytest.raises(Crash):
        deliver(world, [payloads.monitor_breach()])
    plan.crash_at.clear()
    assert platform.submitted == [] and world.publisher.types() == []
    reconcile(world)  # the lease has not expired: the writer may still be performing it
    assert platform.submitted == []
    world.clock.advance(LEASE_S)
    reconcile(world)
    assert len(platform.submitted) == 1
    published = world.publisher.types()
    assert published[0] == "Autopilot.cycle.started"  # recorded in the batch, published now
    assert published.count("Autopilot.job.submitted") == 1
    world.clock.advance(LEASE_S)
    reconcile(world)
    assert len(platform.submitted) == 1 and world.publisher.types() == published


class WatchingPlatform(FakePlatform):
    """Notes, at each job submission, whether either database was inside a transaction."""

    def __init__(self, *connections: sqlite3.Connection) -> None:
        super().__init__()
        self.connections = connections
        self.locked_at_submit: list[bool] = []

    def submit_job(self, request: JobRequest) -> JobInfo:
        self.locked_at_submit.append(any(c.in_transaction for c in self.connections))
        return super().submit_job(request)


def test_a_batch_commits_once_and_submits_its_job_after_the_commit(tmp_path: Path) -> None:
    """Claims, receipts, the cycle the breach opens and the finishes: one transaction per
    database; the job is submitted and the lifecycle events published after it commits."""
    world = sqlite_world(tmp_path)
    store, audit = world.services.store, world.services.audit
    assert isinstance(store, SqliteStateStore) and isinstance(audit, SqliteAuditLog)
    platform = WatchingPlatform(store.db.connection(), audit.db.connection())
    world.services.platform = platform
    statements: list[str] = []
    store.db.connection().set_trace_callback(statements.append)
    outcome = deliver(world, batch_events())
    store.db.connection().set_trace_callback(None)
    assert outcome == BatchOutcome(processed=9, duplicate=0, failed=0)
    assert platform.locked_at_submit == [False]
    published = world.publisher.types()
    assert published[0] == "Autopilot.cycle.started" and "Autopilot.job.submitted" in published
    submitted = next(i for i, s in enumerate(statements) if "INSERT INTO outbox" in s)
    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    commits = [i for i, s in enumerate(statements) if s.startswith("COMMIT")]
    assert begins[0] < submitted < commits[0]  # the intent is written inside the batch's
    assert sum(b < commits[0] for b in begins) == 1  # ... one transaction
    cycle = store.list_cycles("credit")[0]
    assert cycle.state.value == "RETRAINING" and cycle.job_name == platform.submitted[0].name


def test_a_batch_mixing_valid_and_invalid_events_is_refused_before_any_is_applied(
    tmp_path: Path,
) -> None:
    world = sqlite_world(tmp_path)
    events = batch_events()
    bad = payloads.model_registered("m", "1", {})
    bad["data"]["modelTags"] = ["wrong", "type"]
    with pytest.raises(BadEvent, match=r"event \[9\]"):
        validate_batch([*events, bad], world.services.policy)
    assert world.platform.submitted == [] and received(world) == []


def test_the_same_event_twice_in_one_batch_is_applied_once(tmp_path: Path) -> None:
    world = sqlite_world(tmp_path)
    breach = payloads.monitor_breach()
    outcome = deliver(world, [breach, payloads.run_event("x", "Running"), breach])
    assert outcome == BatchOutcome(processed=2, duplicate=1, failed=0)
    assert len(world.platform.submitted) == 1
    assert len(received(world)) == 1  # the foreign run is ignored, not received


def test_a_batch_is_claimed_and_finished_in_one_transaction(tmp_path: Path) -> None:
    """What group commit means on SQLite: one transaction per database for the whole batch."""
    world = sqlite_world(tmp_path)
    store, audit = world.services.store, world.services.audit
    assert isinstance(store, SqliteStateStore) and isinstance(audit, SqliteAuditLog)
    traced: dict[str, list[str]] = {"store": [], "audit": []}
    store.db.connection().set_trace_callback(traced["store"].append)
    audit.db.connection().set_trace_callback(traced["audit"].append)
    deliver(world, [payloads.run_event(f"r{i}", "Running") for i in range(50)])
    store.db.connection().set_trace_callback(None)
    audit.db.connection().set_trace_callback(None)
    for statements in traced.values():
        in_transaction, outside = False, []
        for statement in statements:
            if statement.startswith("BEGIN"):
                in_transaction = True
            elif statement.startswith(("COMMIT", "ROLLBACK")):
                in_transaction = False
            elif statement.startswith(("INSERT", "UPDATE", "DELETE")) and not in_transaction:
                outside.append(statement)
        assert sum(s.startswith("BEGIN") for s in statements) == 1
        assert outside == []
    assert len(audit.query(kind="ignored", limit=100)) == 50


def test_events_after_deferred_work_of_their_model_still_see_its_effect(tmp_path: Path) -> None:
    """A job's failure then a new breach, in one batch: the failure closes the cycle (after
    the commit: it reads the job) and the breach, kept behind it, opens the next cycle -- as
    delivered one by one, not coalesced into the closed one."""
    world = sqlite_world(tmp_path)
    world.services.policy = make_policy(cooldown="0s")
    deliver(world, [payloads.monitor_breach(event_id="first")])
    job = world.platform.submitted[0]
    failed = payloads.run_event(job.name, "Failed", tags=job.tags, experiment=job.experiment)
    deliver(world, [failed, payloads.monitor_breach(event_id="second")])
    cycles = world.services.store.list_cycles("credit")
    assert sorted(c.state.value for c in cycles) == ["FAILED", "RETRAINING"]
    assert len(world.platform.submitted) == 2


def test_a_platform_outage_after_the_commit_leaves_the_job_to_the_reconciler(
    tmp_path: Path,
) -> None:
    """The batch is answered (its events are done); the job it could not submit is not lost."""
    world = sqlite_world(tmp_path)
    platform = world.platform
    plan = FaultPlan(transient_rate=1.0, only={"platform.submit_job"})
    world.services.platform = FaultyPlatform(platform, plan)
    assert deliver(world, [payloads.monitor_breach()]) == BatchOutcome(processed=1)
    assert platform.submitted == []
    plan.transient_rate = 0.0  # the platform is back
    world.clock.advance(LEASE_S)
    reconcile(world)
    assert len(platform.submitted) == 1
    world.clock.advance(LEASE_S)
    reconcile(world)
    assert len(platform.submitted) == 1


def test_an_intent_that_cannot_succeed_is_audited_and_dropped_not_retried_forever(
    tmp_path: Path,
) -> None:
    world = sqlite_world(tmp_path)
    store = world.services.store
    assert isinstance(store, SqliteStateStore)
    work = encode(RegisterCandidate("no-such-cycle", "k"))
    store.add_intent("message", work, world.clock.now(), 0, "a-dead-process")
    world.clock.advance(1)
    reconcile(world)
    errors = world.services.audit.query(kind="error")
    assert [e.summary for e in errors] == ["deferred work RegisterCandidate failed"]
    assert store.take_intents(world.clock.now(), 0, "x", expired=True, limit=10) == []


def audit_view(world: World) -> list[tuple[Any, ...]]:
    """Every record as a user reads it, sorted (the batch writes them in another order)."""
    return sorted(
        (r.kind.value, r.summary, r.model, r.reason, repr(r.evidence), r.caused_by, r.actor)
        for r in world.services.audit.query(limit=10_000)
    )


def test_a_batch_audits_ignored_events_as_one_by_one_delivery_does(tmp_path: Path) -> None:
    """Ignored events (other teams' runs, a status that is not terminal) are written with the
    batch's receipts, not handled one by one: the same records either way, nothing lost."""
    from composition.delivery import deliver_azureml
    from shared.envelope import envelope_from_dict

    events = [*batch_events(), payloads.run_event("foreign-9", "Completed")]
    one_by_one = sqlite_world(tmp_path / "a")
    bus = bootstrap(one_by_one.services)
    for index, event in enumerate(events):
        deliver_azureml(bus, envelope_from_dict(event, index))
    batched = sqlite_world(tmp_path / "b")
    outcome = deliver(batched, events)
    assert outcome == BatchOutcome(processed=len(events), duplicate=0, failed=0)
    ignored = [r for r in batched.services.audit.query(limit=1000) if r.kind is AuditKind.IGNORED]
    assert len(ignored) == 9  # 8 runs still running, 1 foreign job done
    assert audit_view(batched) == audit_view(one_by_one)
    assert deliver(batched, events) == BatchOutcome(processed=0, duplicate=10, failed=0)


def test_work_that_calls_the_platform_first_is_deferred_without_being_tried(
    tmp_path: Path,
) -> None:
    """A breach opens a cycle in the batch's transaction; starting its job calls the platform
    first, so that work goes to the outbox at once: nothing is written and then undone."""
    world = sqlite_world(tmp_path)
    store, audit = world.services.store, world.services.audit
    assert isinstance(store, SqliteStateStore) and isinstance(audit, SqliteAuditLog)
    statements: list[str] = []
    for conn in (store.db.connection(), audit.db.connection()):
        conn.set_trace_callback(statements.append)
    deliver(world, [payloads.monitor_breach()])
    for conn in (store.db.connection(), audit.db.connection()):
        conn.set_trace_callback(None)
    assert not [s for s in statements if s.startswith("ROLLBACK")]
    assert len(world.platform.submitted) == 1
    cycle = store.list_cycles("credit")[0]
    assert cycle.state.value == "RETRAINING"
    summaries = [r.summary for r in audit.query(cycle=cycle.id, limit=50)]
    assert sorted(summaries) == sorted(
        [
            "retraining cycle started",
            "cycle TRIGGERED -> RETRAINING",
            f"training job {cycle.job_name} submitted",
        ]
    )


def test_other_teams_finished_jobs_do_not_wait_behind_deferred_work(tmp_path: Path) -> None:
    """A breach's job start is deferred, so later events of its model wait behind it; other
    teams' finished jobs concern no model and are handled in the batch's transaction, with
    the same audit records as delivered one by one."""
    foreign = [
        payloads.run_event(f"team-job-{i}", status, experiment="team-experiment")
        for i, status in enumerate(["Completed", "Failed", "Completed"])
    ]
    events = [payloads.monitor_breach(), *foreign]
    one_by_one = sqlite_world(tmp_path / "one")
    for event in events:
        deliver(one_by_one, [event])
    world = sqlite_world(tmp_path / "batch")
    store = world.services.store
    assert isinstance(store, SqliteStateStore)
    statements: list[str] = []
    store.db.connection().set_trace_callback(statements.append)
    deliver(world, events)
    store.db.connection().set_trace_callback(None)
    deferred = [s for s in statements if s.startswith("INSERT INTO outbox") and "JobStatus" in s]
    assert deferred == []

    def records(w: World) -> list[tuple[str, str, str | None]]:
        return sorted((r.kind.value, r.summary, r.model) for r in w.services.audit.query(limit=99))

    assert records(world) == records(one_by_one)
    assert len(world.platform.submitted) == 1
