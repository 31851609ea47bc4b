"""The cycle state machine end to end, through the real bus, with fakes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert, deliver_azureml
from shared.envelope import envelope_from_dict
from shared.errors import BadEvent, Conflict, TransientError
from shared.messagebus import MessageBus
from shared.messages import Approve, Deny, Reconcile
from shared.model import CycleState, HealthSample, JobInfo, JobStatus
from tests import payloads
from tests.fakes import World, make_policy, make_world

BETTER = {"auc": 0.86, "accuracy": 0.80}
CHAMPION = {"auc": 0.80, "accuracy": 0.79}
WORSE = {"auc": 0.78, "accuracy": 0.79}
HEALTHY = HealthSample(requests=500, errors=1, latency_p95_ms=40.0)


def bus_of(world: World) -> MessageBus:
    return bootstrap(world.services)


def event(bus: MessageBus, payload: dict[str, Any]) -> str:
    return deliver_azureml(bus, envelope_from_dict(payload))


def only_cycle(world: World) -> Any:
    cycles = world.store.list_cycles()
    assert len(cycles) == 1, [c.id for c in cycles]
    return cycles[0]


def start_cycle(world: World) -> Any:
    deliver_alert(bus_of(world), payloads.alert())
    return only_cycle(world)


def complete_job(
    world: World, metrics: dict[str, float] = BETTER, champion: dict[str, float] | None = CHAMPION
) -> Any:
    cycle = start_cycle(world)
    world.platform.evaluations[cycle.job_name] = payloads.evaluation(metrics, champion)
    world.platform.finish(cycle.job_name)
    event(
        bus_of(world),
        payloads.run_event(cycle.job_name, "Completed", tags={"autopilot_cycle": cycle.id}),
    )
    return world.store.must(cycle.id)


def with_live_deployment(world: World) -> None:
    world.platform.deployments["credit-ep"] = {"blue": "1"}
    world.platform.traffic["credit-ep"] = {"blue": 100}
    world.platform.champions["credit"] = "1"


def registered_and_rolling(world: World) -> Any:
    with_live_deployment(world)
    cycle = complete_job(world)
    assert cycle.state is CycleState.REGISTERED
    event(
        bus_of(world),
        payloads.model_registered("credit", cycle.candidate_version, {"autopilot_cycle": cycle.id}),
    )
    return world.store.must(cycle.id)


def tick(world: World, seconds: float = 301) -> Any:
    world.clock.advance(seconds)
    bus_of(world).handle(Reconcile())
    return only_cycle(world)


# --- drift signals -> cycles ------------------------------------------------------------------


def test_drift_alert_starts_one_cycle_and_submits_a_deterministically_named_job() -> None:
    world = make_world()
    cycle = start_cycle(world)
    assert cycle.state is CycleState.RETRAINING
    assert [j.name for j in world.platform.submitted] == [f"autopilot-{cycle.id}"]
    job = world.platform.submitted[0]
    assert job.tags["autopilot_cycle"] == cycle.id
    assert job.command == ("{python}", "train.py", "--outputs", "{outputs}")  # from the policy
    assert "cycle.started" in " ".join(world.publisher.types())


def test_the_same_delivery_twice_acts_once() -> None:
    world = make_world()
    body = payloads.alert(alert_id="alert-1")
    assert deliver_alert(bus_of(world), body) == "processed"
    assert deliver_alert(bus_of(world), body) == "duplicate"
    assert len(world.platform.submitted) == 1
    assert len(world.store.list_cycles()) == 1
    assert any("duplicate delivery" in s for s in world.audit.summaries("ignored"))


def test_a_storm_of_distinct_alerts_coalesces_into_the_active_cycle() -> None:
    world = make_world()
    for _ in range(50):
        deliver_alert(bus_of(world), payloads.alert())
    cycle = only_cycle(world)
    assert cycle.coalesced == 49
    assert len(world.platform.submitted) == 1


@pytest.mark.parametrize(
    ("after_close_s", "expect_new_cycle"), [(60, False), (3599, False), (3601, True)]
)
def test_cooldown_after_a_closed_cycle(after_close_s: float, expect_new_cycle: bool) -> None:
    world = make_world()
    cycle = start_cycle(world)
    world.platform.finish(cycle.job_name, JobStatus.FAILED, "out of memory")
    event(bus_of(world), payloads.run_event(cycle.job_name, "Failed"))
    world.clock.advance(after_close_s)
    deliver_alert(bus_of(world), payloads.alert())
    assert len(world.store.list_cycles()) == (2 if expect_new_cycle else 1)
    if not expect_new_cycle:
        assert "drift signal suppressed by cooldown" in world.audit.summaries("decision")


def test_confirmation_waits_for_enough_signals_and_resolved_clears_them() -> None:
    world = make_world(make_policy(confirm={"signals": 3, "within": "10m"}))
    bus = bus_of(world)
    deliver_alert(bus, payloads.alert())
    deliver_alert(bus, payloads.alert())
    assert world.store.list_cycles() == []
    deliver_alert(bus, payloads.alert(condition="Resolved"))  # clears the two pending
    deliver_alert(bus, payloads.alert())
    deliver_alert(bus, payloads.alert())
    assert world.store.list_cycles() == []
    deliver_alert(bus, payloads.alert())
    assert only_cycle(world).state is CycleState.RETRAINING


def test_a_resolved_alert_clears_only_its_own_source_pending_signals() -> None:
    """A Resolved alert says its rule is quiet again; other sources' signals still count."""
    world = make_world(make_policy(confirm={"signals": 3, "within": "10m"}))
    bus = bus_of(world)
    event(bus, payloads.monitor_breach(event_id="breach-1"))
    event(bus, payloads.monitor_breach(event_id="breach-2"))
    deliver_alert(bus, payloads.alert(condition="Resolved"))  # the alert rule never fired
    assert world.store.list_cycles() == []
    assert "signal resolved; 0 pending signal(s) cleared" in world.audit.summaries("decision")
    deliver_alert(bus, payloads.alert())  # the third signal confirms: the monitor's two stayed
    assert only_cycle(world).state is CycleState.RETRAINING


@pytest.mark.parametrize(
    "payload",
    [
        payloads.monitor_breach(),
        payloads.sample("eventgrid/eventgrid_schema_DatasetDriftDetected.json")[0],
    ],
    ids=["v2-model-monitor-breach", "v1-dataset-drift"],
)
def test_azure_ml_drift_events_start_a_cycle_for_the_bound_model(payload: dict[str, Any]) -> None:
    world = make_world()
    event(bus_of(world), payload)
    assert only_cycle(world).model == "credit"


def test_unbound_signals_and_unknown_events_are_audited_as_ignored() -> None:
    world = make_world()
    deliver_alert(bus_of(world), payloads.alert(rule="someone-elses-rule"))
    event(bus_of(world), payloads.monitor_breach("other-monitor"))
    event(bus_of(world), {**payloads.run_event("r1"), "eventType": "Contoso.Unknown"})
    assert world.store.list_cycles() == []
    ignored = [r.reason for r in world.audit.records if r.kind == "ignored"]
    assert len(ignored) == 3
    assert "bound to no model" in ignored[0]


def test_malformed_event_data_is_rejected_and_audited_nothing_applied() -> None:
    world = make_world()
    bad = payloads.model_registered("credit", "2", {})
    bad["data"]["modelTags"] = "not-an-object"
    with pytest.raises(BadEvent, match="modelTags"):
        event(bus_of(world), bad)
    assert [r.kind for r in world.audit.records] == ["rejected"]
    assert world.store.deliveries == {}


def test_observe_mode_decides_but_changes_nothing() -> None:
    world = make_world(make_policy(mode="observe"))
    deliver_alert(bus_of(world), payloads.alert())
    assert world.store.list_cycles() == []
    assert world.platform.submitted == []
    assert any(r.evidence.get("dry_run") for r in world.audit.records)


# --- jobs, gate, registration ----------------------------------------------------------------


def test_completed_job_with_a_better_challenger_is_registered_with_lineage() -> None:
    world = make_world()
    with_live_deployment(world)
    cycle = complete_job(world)
    assert cycle.state is CycleState.REGISTERED
    assert world.platform.registered == [("credit", "2", cycle.job_name)]  # v1 is live
    assert cycle.decision["passed"] is True
    rules = {r["rule"]: r for r in cycle.decision["rules"]}
    assert rules["improvement"]["observed"] == pytest.approx(0.06)


def test_worse_challenger_is_rejected_and_nothing_is_registered() -> None:
    world = make_world()
    cycle = complete_job(world, WORSE)
    assert cycle.state is CycleState.REJECTED
    assert world.platform.registered == []
    assert "improvement(auc)" in cycle.reason


def test_failed_job_closes_the_cycle_with_its_reason() -> None:
    world = make_world()
    cycle = start_cycle(world)
    world.platform.finish(cycle.job_name, JobStatus.FAILED, "ValueError: bad column")
    event(bus_of(world), payloads.run_event(cycle.job_name, "Failed"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.FAILED
    assert "ValueError: bad column" in cycle.reason


def test_completion_reported_twice_by_two_event_types_is_handled_once() -> None:
    world = make_world()
    cycle = complete_job(world)
    event(bus_of(world), payloads.run_event(cycle.job_name, None, event_type="RunCompleted"))
    assert len(world.platform.registered) == 1
    assert any("already handled" in s for s in world.audit.summaries("ignored"))


def test_foreign_jobs_and_running_statuses_are_ignored() -> None:
    world = make_world()
    event(bus_of(world), payloads.run_event("someone-elses-run", "Completed"))
    event(bus_of(world), payloads.run_event("x", "Running"))
    assert world.store.list_cycles() == []
    assert len(world.audit.summaries("ignored")) == 2


def test_approval_required_waits_then_records_who_approved() -> None:
    world = make_world(make_policy(gate__approval_required=True))
    with_live_deployment(world)
    cycle = complete_job(world)
    assert cycle.state is CycleState.AWAITING_APPROVAL
    assert world.platform.registered == []
    bus_of(world).handle(Approve(cycle.id, "alice", "looks right"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.REGISTERED
    approvals = [r for r in world.audit.records if r.summary == "candidate approved"]
    assert approvals[0].actor == "alice"
    assert approvals[0].reason == "looks right"


def test_deny_rejects_and_approval_expires() -> None:
    world = make_world(make_policy(gate__approval_required=True, gate__approval_timeout="1h"))
    cycle = complete_job(world)
    bus_of(world).handle(Deny(cycle.id, "bob", "not this week"))
    assert world.store.must(cycle.id).state is CycleState.REJECTED

    world = make_world(make_policy(gate__approval_required=True, gate__approval_timeout="1h"))
    cycle = complete_job(world)
    cycle = tick(world, 3601)
    assert cycle.state is CycleState.REJECTED
    assert "approval expired" in cycle.reason


def test_approving_a_cycle_that_is_not_waiting_is_refused() -> None:
    world = make_world()
    cycle = start_cycle(world)
    with pytest.raises(Conflict, match="not AWAITING_APPROVAL"):
        bus_of(world).handle(Approve(cycle.id, "alice", ""))


# --- rollout --------------------------------------------------------------------------------


def test_canary_steps_hold_their_bake_time_then_promote() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    assert cycle.state is CycleState.ROLLING_OUT
    assert world.platform.traffic["credit-ep"] == {"blue": 90, new: 10}
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    assert tick(world, 60).rollout.percent == 10  # bake time not over
    assert tick(world, 250).rollout.percent == 50
    assert tick(world).rollout.percent == 100
    cycle = tick(world)
    assert cycle.state is CycleState.PROMOTED
    assert world.platform.champions["credit"] == cycle.candidate_version
    assert [t for _, t in world.platform.traffic_changes] == [
        {new: 10, "blue": 90},
        {new: 50, "blue": 50},
        {new: 100, "blue": 0},
    ]


def test_too_little_traffic_waits_instead_of_passing() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    world.metrics.samples = {cycle.rollout.deployment: HealthSample(3, 0, 10.0)}
    assert tick(world).rollout.percent == 10
    assert tick(world).state is CycleState.ROLLING_OUT


@pytest.mark.parametrize("breach_at_step", [0, 1, 2])
def test_canary_breach_at_any_step_rolls_back_in_one_step(breach_at_step: int) -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    for _ in range(breach_at_step):
        tick(world)
    world.metrics.samples[new] = HealthSample(500, 100, 40.0)
    cycle = tick(world)
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.traffic["credit-ep"] == {"blue": 100}  # the candidate is deleted
    assert world.platform.deployments["credit-ep"] == {"blue": "1"}
    assert "error rate" in cycle.reason


def test_health_alert_during_rollout_rolls_back() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.traffic["credit-ep"]["blue"] == 100


def test_traffic_change_that_never_takes_effect_fails_safe_after_the_attempts() -> None:
    world = make_world()
    with_live_deployment(world)
    cycle = complete_job(world)
    world.platform.ignore_traffic_changes = True
    event(
        bus_of(world),
        payloads.model_registered("credit", cycle.candidate_version, {"autopilot_cycle": cycle.id}),
    )
    assert world.store.must(cycle.id).state is CycleState.ROLLING_OUT  # attempt 1 of 3
    tick(world, 10)
    cycle = tick(world, 10)
    assert cycle.state is CycleState.FAILED
    assert "did not take effect after 3 attempts" in cycle.reason
    assert world.platform.traffic["credit-ep"]["blue"] == 100
    assert len(world.audit.summaries("error")) == 3


def test_traffic_change_that_takes_effect_on_retry_continues() -> None:
    world = make_world()
    with_live_deployment(world)
    cycle = complete_job(world)
    world.platform.ignore_traffic_changes = True
    event(
        bus_of(world),
        payloads.model_registered("credit", cycle.candidate_version, {"autopilot_cycle": cycle.id}),
    )
    world.platform.ignore_traffic_changes = False
    cycle = tick(world, 10)
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.percent == 10


def test_first_deployment_goes_straight_to_full_traffic() -> None:
    world = make_world()
    cycle = complete_job(world, champion=None)
    assert cycle.decision["has_champion"] is False
    event(
        bus_of(world),
        payloads.model_registered("credit", cycle.candidate_version, {"autopilot_cycle": cycle.id}),
    )
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED and cycle.rollout
    assert world.platform.traffic["credit-ep"] == {cycle.rollout.deployment: 100}


# --- reconciler ----------------------------------------------------------------------------


def test_lost_completion_event_is_recovered_by_the_reconciler() -> None:
    world = make_world()
    with_live_deployment(world)
    cycle = start_cycle(world)
    world.platform.evaluations[cycle.job_name] = payloads.evaluation(BETTER, CHAMPION)
    world.platform.finish(cycle.job_name)  # ... and its RunCompleted event is lost
    assert tick(world, 10).state is CycleState.REGISTERED
    cycle = tick(world, 10)  # its ModelRegistered event was lost too
    assert cycle.state is CycleState.ROLLING_OUT
    assert any(r.kind == "reconciled" for r in world.audit.records)


def test_job_stuck_past_its_timeout_fails_the_cycle() -> None:
    world = make_world(make_policy(training__timeout="30m"))
    start_cycle(world)
    cycle = tick(world, 1801)
    assert cycle.state is CycleState.FAILED
    assert "past its timeout" in cycle.reason


def test_foreign_completed_jobs_are_gated_when_the_policy_opts_in() -> None:
    world = make_world(make_policy(training__accept_foreign_jobs=True))
    with_live_deployment(world)
    world.platform.jobs["team-pipeline-42"] = JobInfo("team-pipeline-42", JobStatus.COMPLETED)
    world.platform.evaluations["team-pipeline-42"] = payloads.evaluation(BETTER, CHAMPION)
    event(bus_of(world), payloads.run_event("team-pipeline-42", "Completed"))
    cycle = only_cycle(world)
    assert cycle.trigger["source"] == "foreign_job"
    assert cycle.state is CycleState.REGISTERED
    assert world.platform.submitted == []  # nothing was run by us


def test_a_delivery_in_progress_elsewhere_is_retried_not_acknowledged() -> None:
    world = make_world()
    body = payloads.alert(alert_id="alert-1")
    key = "|".join(
        ("azure-monitor", "Fired", "alert-1", body["data"]["essentials"]["firedDateTime"])
    )
    world.store.claim_delivery(key, world.clock.now(), 300)  # a worker took it, then died
    with pytest.raises(TransientError, match="retry later"):
        deliver_alert(bus_of(world), body)
    world.clock.advance(301)  # its lease expired: Event Grid's next retry processes it
    assert deliver_alert(bus_of(world), body) == "processed"
    assert len(world.platform.submitted) == 1


def test_a_signal_redelivered_after_its_cycle_closed_does_not_retrain_again() -> None:
    """The worker that started the cycle died before acknowledging; by the time the lease
    expired and Event Grid redelivered, the cycle had run and closed (cooldown long past)."""
    world = make_world()
    body = payloads.alert(alert_id="alert-1")
    key = "|".join(
        ("azure-monitor", "Fired", "alert-1", body["data"]["essentials"]["firedDateTime"])
    )
    cycle = start_cycle_from(world, body)
    world.platform.finish(cycle.job_name, JobStatus.FAILED, "out of memory")
    event(bus_of(world), payloads.run_event(cycle.job_name, "Failed"))
    world.store.deliveries[key] = ("claimed", world.clock.now())  # never acknowledged
    world.clock.advance(7200)
    assert deliver_alert(bus_of(world), body) == "processed"
    assert len(world.platform.submitted) == 1
    assert [c.state for c in world.store.list_cycles()] == [CycleState.FAILED]
    assert "drift signal already handled: the cycle it started has closed" in (
        world.audit.summaries("ignored")
    )


def start_cycle_from(world: World, body: dict[str, Any]) -> Any:
    deliver_alert(bus_of(world), body)
    return only_cycle(world)


def test_the_reconciler_forgets_delivery_keys_after_the_retention() -> None:
    world = make_world()
    deliver_alert(bus_of(world), payloads.alert(alert_id="alert-1"))
    assert len(world.store.deliveries) == 1
    world.clock.advance(world.services.settings.delivery_retention_s - 60)
    bus_of(world).handle(Reconcile())
    assert len(world.store.deliveries) == 1  # still within the retention
    world.clock.advance(120)
    bus_of(world).handle(Reconcile())
    assert world.store.deliveries == {}


def test_each_reconcile_tick_anchors_the_audit_log_when_it_moved() -> None:
    world = make_world()
    bus_of(world).handle(Reconcile())
    assert [a.evidence["heads"] for a in world.audit.anchors] == [[[0, 0, "0" * 64]]]
    deliver_alert(bus_of(world), payloads.alert(alert_id="alert-1"))
    bus_of(world).handle(Reconcile())
    bus_of(world).handle(Reconcile())  # nothing moved since: no new anchor
    newest = world.audit.records[-1]
    assert len(world.audit.anchors) == 2
    assert world.audit.anchors[-1].evidence["heads"] == [[0, newest.seq, newest.hash]]


BREACH_WINDOWS = "AmlOnlineEndpointConsoleLog | where Message has 'drift breach' | count"


class CountingLogs:
    """Log Analytics answering with the counts given, one per query, recording each query."""

    def __init__(self, *counts: int) -> None:
        self.counts = list(counts)
        self.asked: list[tuple[str, timedelta]] = []

    def count(self, query: str, timespan: timedelta) -> int:
        self.asked.append((query, timespan))
        return self.counts.pop(0)


def test_confirmation_by_a_log_analytics_query_retrains_once_it_counts_enough() -> None:
    policy = make_policy(confirm={"signals": 3, "within": "2h", "query": BREACH_WINDOWS})
    world = make_world(policy)
    world.services.logs = CountingLogs(1, 3)
    deliver_alert(bus_of(world), payloads.alert())
    assert world.store.list_cycles() == []
    waiting = world.audit.records[-1]
    assert waiting.summary == "drift signal awaiting confirmation (1/3)"
    assert "Log Analytics query" in waiting.reason
    deliver_alert(bus_of(world), payloads.alert())
    cycle = only_cycle(world)
    assert cycle.state is CycleState.RETRAINING
    assert cycle.trigger["confirmation_query_count"] == 3
    assert world.services.logs.asked == [(BREACH_WINDOWS, timedelta(hours=2))] * 2


def test_a_confirmation_query_without_log_analytics_is_a_permanent_audited_failure() -> None:
    world = make_world(make_policy(confirm={"signals": 2, "query": BREACH_WINDOWS}))
    assert deliver_alert(bus_of(world), payloads.alert()) == "failed"
    assert world.store.list_cycles() == []
    assert any("AUTOPILOT_LOG_WORKSPACE_ID" in r.reason for r in world.audit.records)


def test_failing_safe_keeps_retrying_the_restore_until_the_endpoint_is_back() -> None:
    """The 50% step never takes effect, and neither does the restore of blue at first: the
    cycle holds its lock in phase 'restoring' and each tick retries, closing only once blue
    has all traffic again."""
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    world.platform.ignore_traffic_changes = True  # from the 50% step on, nothing takes effect
    tick(world)  # attempt 1 of 3
    tick(world, 10)  # attempt 2
    cycle = tick(world, 10)  # attempt 3: fail safe, but the restore does not take effect
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.phase == "restoring"
    assert world.platform.traffic["credit-ep"] == {"blue": 90, new: 10}
    assert world.store.active_cycle("credit") is not None  # no new cycle while unsafe
    cycle = tick(world, 60)
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.restore_attempts == 2
    world.platform.ignore_traffic_changes = False  # the outage ends
    cycle = tick(world, 60)
    assert cycle.state is CycleState.FAILED
    assert world.platform.traffic["credit-ep"] == {"blue": 100}  # the candidate is deleted
    assert cycle.reason == (
        "traffic change did not take effect after 3 attempts; failed safe (blue at 100%)"
    )
    assert (
        sum(s.startswith("failing safe: restoring blue") for s in world.audit.summaries("error"))
        == 2
    )


# --- the candidate in words (console, API, `cycles show` and the demo print it) -----------------


def test_a_candidate_without_a_version_is_named_by_its_job_and_why() -> None:
    from autopilot.cli import describe_cycle

    waiting = complete_job(make_world(make_policy(gate__approval_required=True)))
    assert waiting.state is CycleState.AWAITING_APPROVAL
    assert waiting.candidate == f"model of job {waiting.job_name} (gets its version when approved)"
    assert waiting.to_view()["candidate"] == waiting.candidate
    assert "candidate" not in waiting.to_json()  # derived: shown, never stored

    world = make_world()
    rejected = complete_job(world, WORSE)
    assert rejected.state is CycleState.REJECTED
    shown = describe_cycle(rejected, world.audit.query(cycle=rejected.id))
    assert f"candidate: model of job {rejected.job_name} (not registered: rejected)" in shown
    assert "v-" not in shown and "v?" not in shown

    registered = complete_job(make_world())
    assert registered.candidate == f"v{registered.candidate_version}"
    assert type(registered).from_json(registered.to_json()) == registered


def test_the_demo_prints_request_counts_as_text() -> None:
    from autopilot.demo import _counts

    assert _counts({"m-v2": 118, "m-v1": 732}) == "m-v1 732, m-v2 118"
    assert _counts({}) == "none"
