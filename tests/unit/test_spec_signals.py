"""What drift and health signals promise a user: confirmation counts exactly, the cooldown ends
when it says, one model's signals never touch another's cycle, and races start one cycle."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert
from shared.errors import Conflict, NotFound, TransientError
from shared.messagebus import MessageBus
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    ManualRollback,
    Reconcile,
    RetrainRequested,
)
from shared.model import Cycle, CycleState, JobStatus
from shared.policy import Policy, parse_policy
from shared.rollout_state import Phase, RolloutState
from tests import payloads
from tests.fakes import POLICY, FakeStore, World, make_policy, make_world


def two_models(**credit: Any) -> Policy:
    """The test policy plus a second model, 'fraud', with its own rules and endpoint."""
    data = copy.deepcopy(POLICY)
    data["models"]["credit"].update(credit)
    fraud = copy.deepcopy(data["models"]["credit"])
    fraud["signals"] = {
        "drift_alerts": ["fraud-drift"],
        "health_alerts": ["fraud-endpoint-errors"],
    }
    fraud["training"]["experiment"] = "fraud-retrain"
    if "rollout" in fraud:
        fraud["rollout"]["endpoint"] = "fraud-ep"
    data["models"]["fraud"] = fraud
    return parse_policy(data, "two-models")


def bus_of(world: World) -> MessageBus:
    return bootstrap(world.services)


def alert(world: World, rule: str = "credit-drift", **kw: Any) -> str:
    return deliver_alert(bus_of(world), payloads.alert(rule=rule, **kw))


def decisions(world: World) -> list[str]:
    return world.audit.summaries("decision")


def found(world: World, summary: str) -> Any:
    [record] = [r for r in world.audit.records if r.summary == summary]
    return record


def close_by_failure(world: World, model: str = "credit") -> Cycle:
    [cycle] = world.store.list_cycles(model, active_only=True)
    assert cycle.job_name
    world.platform.finish(cycle.job_name, JobStatus.FAILED, "out of memory")
    from composition.delivery import deliver_azureml
    from shared.envelope import envelope_from_dict

    deliver_azureml(bus_of(world), envelope_from_dict(payloads.run_event(cycle.job_name, "Failed")))
    closed = world.store.must(cycle.id)
    assert not closed.is_active
    return closed


# --- confirmation -------------------------------------------------------------------------------


@pytest.mark.parametrize("needed", [1, 2, 3])
def test_a_cycle_starts_on_exactly_the_signal_that_confirms(needed: int) -> None:
    world = make_world(make_policy(confirm={"signals": needed, "within": "10m"}))
    for seen in range(1, needed):
        alert(world)
        assert world.store.list_cycles() == []
        assert decisions(world)[-1] == f"drift signal awaiting confirmation ({seen}/{needed})"
        assert world.audit.records[-1].reason == f"policy requires {needed} signals within 600s"
    alert(world)
    [cycle] = world.store.list_cycles()
    assert cycle.state is CycleState.RETRAINING
    assert decisions(world).count("retraining cycle started") == 1


@pytest.mark.parametrize(("gap_s", "confirmed"), [(600, True), (600.001, False), (30, True)])
def test_confirming_signals_must_fall_within_the_window(gap_s: float, confirmed: bool) -> None:
    world = make_world(make_policy(confirm={"signals": 2, "within": "10m"}))
    alert(world)
    world.clock.advance(gap_s)
    alert(world)
    assert len(world.store.list_cycles()) == (1 if confirmed else 0)


def test_a_started_cycle_consumes_the_pending_signals() -> None:
    world = make_world(make_policy(confirm={"signals": 2, "within": "10h"}))
    alert(world)
    alert(world)
    close_by_failure(world)
    world.clock.advance(3601)
    alert(world)  # counts from zero again, not from the two that started the first cycle
    assert len(world.store.list_cycles()) == 1
    assert decisions(world)[-1] == "drift signal awaiting confirmation (1/2)"


# --- cooldown -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("after_s", "new_cycle"), [(3600, True), (3599.999, False), (0, False)])
def test_the_cooldown_ends_exactly_when_it_says(after_s: float, new_cycle: bool) -> None:
    world = make_world()
    alert(world)
    closed = close_by_failure(world)
    world.clock.advance(after_s)
    alert(world)
    assert len(world.store.list_cycles()) == (2 if new_cycle else 1)
    if not new_cycle:
        record = world.audit.records[-1]
        assert record.summary == "drift signal suppressed by cooldown"
        until = closed.updated_at + timedelta(hours=1)
        assert record.reason == (
            f"last cycle closed {closed.updated_at.isoformat()}; cooldown until {until.isoformat()}"
        )


def test_one_models_cooldown_does_not_hold_back_another() -> None:
    world = make_world(two_models())
    alert(world, "credit-drift")
    close_by_failure(world, "credit")
    alert(world, "fraud-drift")
    alert(world, "credit-drift")
    assert [c.model for c in world.store.list_cycles(active_only=True)] == ["fraud"]


# --- manual retrain -----------------------------------------------------------------------------


def test_a_manual_retrain_skips_cooldown_and_confirmation_and_names_its_operator() -> None:
    world = make_world(make_policy(confirm={"signals": 3, "within": "10m"}))
    bus_of(world).handle(RetrainRequested("credit", "alice", "new data landed", "manual-1"))
    [cycle] = world.store.list_cycles()
    assert cycle.state is CycleState.RETRAINING
    started = found(world, "retraining cycle started")
    assert started.actor == "alice"
    assert started.reason == "manual signal 'requested by alice'"
    assert cycle.trigger["actor"] == "alice" and cycle.trigger["reason"] == "new data landed"
    close_by_failure(world)
    bus_of(world).handle(RetrainRequested("credit", "bob", "again", "manual-2"))  # in cooldown
    assert len(world.store.list_cycles()) == 2


def test_an_automatic_cycle_is_started_by_the_system() -> None:
    world = make_world()
    alert(world)
    started = found(world, "retraining cycle started")
    assert started.actor == "system"
    assert started.reason == "alert signal 'credit-drift'"


def test_retraining_an_unknown_model_is_not_found() -> None:
    world = make_world()
    with pytest.raises(NotFound, match="model 'nope' is not in the policy"):
        bus_of(world).handle(RetrainRequested("nope", "alice", "", "manual-1"))


def test_a_signal_for_a_model_no_longer_in_the_policy_is_ignored() -> None:
    world = make_world()
    bus_of(world).handle(DriftSignalled("gone", "alert", "old-rule", "k-1"))
    assert world.store.list_cycles() == []
    ignored = world.audit.records[-1]
    assert ignored.summary == "drift signal for a model no longer in the policy"
    assert (ignored.kind, ignored.model, ignored.caused_by) == ("ignored", "gone", "k-1")


# --- coalescing, redelivery and races -----------------------------------------------------------


def test_a_second_signal_coalesces_into_the_active_cycle_and_says_how_many() -> None:
    world = make_world(two_models())
    alert(world, "credit-drift")
    alert(world, "credit-drift")
    alert(world, "fraud-drift")
    credit = world.store.list_cycles("credit")[0]
    fraud = world.store.list_cycles("fraud")[0]
    assert (credit.coalesced, fraud.coalesced) == (1, 0)
    coalesced = [r for r in world.audit.records if "coalesced" in r.summary]
    assert [r.summary for r in coalesced] == ["drift signal coalesced into active cycle (1 so far)"]
    assert coalesced[0].reason == "credit already has an active cycle in RETRAINING"


def test_the_redelivered_trigger_of_an_active_cycle_resumes_it_without_a_second_job() -> None:
    world = make_world()
    body = payloads.alert(alert_id="a-1")
    bus = bus_of(world)
    deliver_alert(bus, body)
    message = world.audit.records[-1].caused_by
    assert message
    bus.handle(DriftSignalled("credit", "alert", "credit-drift", message))
    [cycle] = world.store.list_cycles()
    assert cycle.coalesced == 0
    assert len(world.platform.submitted) == 1


def test_the_redelivered_trigger_of_a_closed_cycle_is_not_run_again() -> None:
    world = make_world()
    alert(world)
    closed = close_by_failure(world)
    world.clock.advance(7200)
    assert closed.caused_by
    bus_of(world).handle(DriftSignalled("credit", "alert", "credit-drift", closed.caused_by))
    assert len(world.store.list_cycles()) == 1
    record = world.audit.records[-1]
    assert record.summary == "drift signal already handled: the cycle it started has closed"
    assert record.reason == (f"cycle {closed.id} ended FAILED; this is a redelivery of its trigger")


class ClosingRace(FakeStore):
    """Between the handler's read and its write, another worker ran the cycle and closed it."""

    def create_cycle(self, cycle: Cycle) -> str | None:
        closed = copy.deepcopy(cycle)
        closed.state = CycleState.FAILED
        self.cycles[cycle.id] = closed.to_json()
        return super().create_cycle(cycle)


class OpeningRace(FakeStore):
    """Another worker opens a cycle for the same model just before this one."""

    def create_cycle(self, cycle: Cycle) -> str | None:
        if cycle.model not in self.locks:
            other = copy.deepcopy(cycle)
            other.id = "other-worker"
            super().create_cycle(other)
        return super().create_cycle(cycle)


def test_losing_the_race_to_a_cycle_that_closed_meanwhile_starts_nothing() -> None:
    world = make_world()
    world.services.store = world.store = ClosingRace()
    alert(world)
    assert len(world.platform.submitted) == 0
    assert world.audit.records[-1].summary == (
        "drift signal already handled: the cycle it started has closed"
    )


def test_losing_the_race_to_another_workers_cycle_coalesces_into_it() -> None:
    world = make_world()
    world.services.store = world.store = OpeningRace()
    alert(world)
    assert len(world.platform.submitted) == 0
    [other] = world.store.list_cycles()
    assert other.id == "other-worker" and other.coalesced == 1
    record = world.audit.records[-1]
    assert record.summary == "drift signal coalesced into a concurrently opened cycle"
    assert record.reason == "cycle other-worker was opened at the same moment"


# --- observe mode, resolution, ignored events ---------------------------------------------------


def test_observe_mode_starts_nothing_and_forgets_the_pending_signals() -> None:
    world = make_world(make_policy(mode="observe", confirm={"signals": 2, "within": "1h"}))
    alert(world)
    alert(world)
    assert world.store.list_cycles() == [] and world.platform.submitted == []
    dry = world.audit.records[-1]
    assert dry.summary == "dry run: would start a retraining cycle"
    assert dry.evidence["dry_run"] is True and dry.evidence["would_create_cycle"]
    alert(world)
    assert decisions(world)[-1] == "drift signal awaiting confirmation (1/2)"


def test_a_resolved_alert_clears_its_own_pending_signals_and_counts_them() -> None:
    world = make_world(make_policy(confirm={"signals": 3, "within": "1h"}))
    alert(world)
    alert(world)
    alert(world, condition="Resolved")
    record = world.audit.records[-1]
    assert record.summary == "signal resolved; 2 pending signal(s) cleared"
    assert record.reason == "alert 'credit-drift' resolved"


def test_an_ignored_event_is_audited_with_its_type_and_reason() -> None:
    world = make_world()
    bus_of(world).handle(EventIgnored("Some.Event", "not for us", "k-9", model="credit"))
    record = world.audit.records[-1]
    assert (record.kind, record.summary, record.reason) == (
        "ignored",
        "Some.Event ignored",
        "not for us",
    )
    assert record.model == "credit" and record.caused_by == "k-9"


# --- health alerts and manual rollback without a rollout ----------------------------------------


def test_a_health_alert_with_nothing_rolling_out_is_recorded_only() -> None:
    world = make_world()
    alert(world, "credit-endpoint-errors")
    record = world.audit.records[-1]
    assert record.summary == "health alert recorded; no rollout or watch period in progress"
    assert record.reason == "alert 'credit-endpoint-errors'"
    assert world.platform.traffic_changes == []


def test_a_manual_rollback_with_nothing_to_roll_back_is_a_conflict() -> None:
    world = make_world()
    with pytest.raises(Conflict, match="nothing to roll back for credit"):
        bus_of(world).handle(ManualRollback("credit", "alice", "bad"))
    with pytest.raises(NotFound, match="model 'nope' is not in the policy"):
        bus_of(world).handle(ManualRollback("nope", "alice", "bad"))


# --- what every signal decision records -----------------------------------------------------


def _confirming(world: World) -> None:
    """Nothing before the signal: the policy asks for two."""


def _active(world: World) -> None:
    alert(world)  # a cycle is already running


def _cooling_down(world: World) -> None:
    alert(world)
    close_by_failure(world)


SIGNAL_OUTCOMES = [
    (
        {"confirm": {"signals": 2, "within": "10m"}},
        _confirming,
        "drift signal awaiting confirmation (1/2)",
    ),
    ({}, _confirming, "retraining cycle started"),
    ({}, _active, "drift signal coalesced into active cycle (1 so far)"),
    ({}, _cooling_down, "drift signal suppressed by cooldown"),
    ({"mode": "observe"}, _confirming, "dry run: would start a retraining cycle"),
]


@pytest.mark.parametrize(("policy", "before", "summary"), SIGNAL_OUTCOMES)
def test_every_signal_decision_names_the_model_the_event_and_the_signal(
    policy: dict[str, Any], before: Any, summary: str
) -> None:
    """An auditor follows each decision back to the event that caused it and sees the signal:
    the decision names the model, is caused by the delivered alert, and carries its evidence."""
    world = make_world(make_policy(**policy))
    before(world)
    seen = len(world.audit.records)
    alert(world)
    new = world.audit.records[seen:]
    received = next(r for r in new if r.kind == "event_received")
    (decision,) = [r for r in new if r.summary == summary]
    assert decision.kind == "decision" and decision.model == "credit"
    assert decision.actor == "system"
    assert decision.caused_by == received.caused_by and received.caused_by
    assert decision.evidence["source"] == "alert"
    assert decision.evidence["rule"] == "credit-drift"
    if policy.get("mode") == "observe":
        assert decision.evidence["dry_run"] is True
        assert decision.reason == (
            "model is in observe mode; no job, registration or traffic change happens"
        )
    else:
        assert decision.evidence["signal"] == "credit-drift"


def test_a_started_cycle_is_published_with_the_signal_that_triggered_it() -> None:
    """Subscribers to our lifecycle events learn why a cycle started (the same evidence as the
    audit log's decision)."""
    world = make_world(make_policy())
    alert(world)
    [cycle] = world.store.list_cycles("credit")
    started = [p for p in world.publisher.published if p[0] == "Autopilot.cycle.started"]
    assert len(started) == 1
    _, subject, data = started[0]
    assert subject == "models/credit"
    assert (data["cycle"], data["model"], data["state"]) == (cycle.id, "credit", "TRIGGERED")
    decision = found(world, "retraining cycle started")
    assert data["trigger"] == decision.evidence
    assert data["trigger"]["signal"] == "credit-drift"


# --- health alerts and manual rollback pick the right cycle -------------------------------------


def _stored(world: World, model: str, state: CycleState, phase: Phase, version: str) -> Cycle:
    """A cycle of ``model`` whose candidate ``version`` serves on the model's endpoint beside the
    deployment serving now (rolling out) or in its place (promoted, kept warm by the watch)."""
    endpoint = f"{model}-ep"
    new = f"{model}-v{version}"
    deployments = world.platform.deployments.setdefault(endpoint, {"blue": "1"})
    traffic = world.platform.traffic.setdefault(endpoint, {"blue": 100})
    previous = max(traffic, key=lambda name: traffic[name])
    live = 90 if state is CycleState.ROLLING_OUT else 0
    deployments[new] = version
    traffic.update({name: 0 for name in traffic} | {previous: live, new: 100 - live})
    now = world.clock.now()
    rollout = RolloutState(
        endpoint=endpoint,
        deployment=new,
        previous=previous,
        previous_champion=deployments[previous],
        phase=phase,
        percent=100 - live,
    )
    cycle = Cycle(
        id=f"{model}-{version}",
        model=model,
        state=state,
        created_at=now,
        updated_at=now,
        candidate_version=version,
        rollout=rollout,
    )
    if state.is_active:
        assert world.store.create_cycle(cycle) is None
    else:
        cycle.version = 1
        world.store.cycles[cycle.id] = cycle.to_json()
    world.clock.advance(60)
    return cycle


def rolling_out(world: World, model: str, version: str = "2") -> Cycle:
    return _stored(world, model, CycleState.ROLLING_OUT, Phase.CANARY, version)


def watched(world: World, model: str, version: str = "3") -> Cycle:
    return _stored(world, model, CycleState.PROMOTED, Phase.WATCH, version)


def states(world: World) -> dict[str, str]:
    return {c.id: c.state.value for c in world.store.list_cycles()}


def rollback_record(world: World, cycle: Cycle) -> Any:
    [record] = [
        r
        for r in world.audit.records
        if r.cycle == cycle.id and r.summary.endswith("-> ROLLED_BACK")
    ]
    return record


@pytest.mark.parametrize("phase", ["rollout", "watch"])
def test_a_health_alert_rolls_back_its_own_models_cycle_and_leaves_the_other_alone(
    phase: str,
) -> None:
    """Both models are mid-rollout (or both in their watch period): fraud's alert rolls back
    fraud only, says why, and is the rollback's cause, with the alert's evidence."""
    world = make_world(two_models())
    put = rolling_out if phase == "rollout" else watched
    credit, fraud = put(world, "credit"), put(world, "fraud")
    credit_traffic = dict(world.platform.traffic["credit-ep"])
    alert(world, "fraud-endpoint-errors")
    assert states(world)[fraud.id] == "ROLLED_BACK"
    assert states(world)[credit.id] == credit.state.value
    assert world.platform.traffic["fraud-ep"]["blue"] == 100
    assert world.platform.traffic["credit-ep"] == credit_traffic
    record = rollback_record(world, fraud)
    when = "during rollout" if phase == "rollout" else "during the watch period after promotion"
    assert record.reason == f"rolled back: health alert 'fraud-endpoint-errors' fired {when}"
    received = next(r for r in world.audit.records if r.kind == "event_received")
    assert record.caused_by == received.caused_by and record.caused_by
    assert record.evidence["rule"] == "fraud-endpoint-errors"
    assert record.actor == "system"


def test_a_rollout_in_progress_is_rolled_back_before_an_earlier_promotion_in_its_watch() -> None:
    """A promoted version still in its watch period and a newer one rolling out: the alert
    concerns what is being rolled out now; the earlier promotion stays."""
    world = make_world()
    earlier = watched(world, "credit", "2")
    now = rolling_out(world, "credit", "3")
    alert(world, "credit-endpoint-errors")
    assert states(world) == {earlier.id: "PROMOTED", now.id: "ROLLED_BACK"}


def test_a_health_alert_for_a_model_with_nothing_in_progress_leaves_other_watches_alone() -> None:
    world = make_world(two_models())
    fraud = watched(world, "fraud")
    alert(world, "credit-endpoint-errors")
    assert states(world) == {fraud.id: "PROMOTED"}
    record = world.audit.records[-1]
    assert record.summary == "health alert recorded; no rollout or watch period in progress"
    assert (record.kind, record.model) == ("decision", "credit")
    assert record.caused_by and record.evidence["rule"] == "credit-endpoint-errors"


def test_a_cycle_still_retraining_is_not_rolled_back_but_a_watched_promotion_is() -> None:
    world = make_world()
    promoted = watched(world, "credit", "2")
    alert(world)  # a new drift cycle starts retraining: nothing of it serves yet
    [retraining] = world.store.list_cycles("credit", active_only=True)
    alert(world, "credit-endpoint-errors")
    assert states(world) == {promoted.id: "ROLLED_BACK", retraining.id: "RETRAINING"}


@pytest.mark.parametrize(
    ("reason", "why"),
    [("canary looks wrong", "canary looks wrong"), ("", "no reason given")],
)
@pytest.mark.parametrize("phase", ["rollout", "watch"])
def test_a_manual_rollback_rolls_back_that_models_cycle_in_the_operators_name(
    phase: str, reason: str, why: str
) -> None:
    world = make_world(two_models())
    put = rolling_out if phase == "rollout" else watched
    credit, fraud = put(world, "credit"), put(world, "fraud")
    bus_of(world).handle(ManualRollback("fraud", "alice", reason, "op-1"))
    assert states(world) == {credit.id: credit.state.value, fraud.id: "ROLLED_BACK"}
    record = rollback_record(world, fraud)
    assert record.reason == f"rolled back: manual rollback by alice: {why}"
    assert (record.actor, record.caused_by) == ("alice", "op-1")


def test_a_manual_rollback_prefers_the_rollout_in_progress_over_an_earlier_promotion() -> None:
    world = make_world()
    earlier = watched(world, "credit", "2")
    now = rolling_out(world, "credit", "3")
    bus_of(world).handle(ManualRollback("credit", "bob", "errors", "op-2"))
    assert states(world) == {earlier.id: "PROMOTED", now.id: "ROLLED_BACK"}


def test_a_manual_rollback_does_not_touch_a_cycle_that_is_still_retraining() -> None:
    world = make_world(two_models())
    watched(world, "fraud")
    alert(world)
    with pytest.raises(Conflict) as raised:
        bus_of(world).handle(ManualRollback("credit", "bob", "errors", "op-3"))
    assert str(raised.value) == (
        "nothing to roll back for credit: no rollout in progress and no promotion within its "
        "watch period (the previous deployment is removed after the watch)"
    )
    assert "ROLLED_BACK" not in states(world).values()


# --- what a redelivery and a lost race leave in the audit log ------------------------------------


def test_a_redelivered_trigger_resumes_its_cycle_as_that_event() -> None:
    """The job of the active cycle was lost: the redelivered trigger resubmits it, and the
    duplicate is audited against the cycle, caused by the redelivered event."""
    world = make_world()
    bus = bus_of(world)
    deliver_alert(bus, payloads.alert(alert_id="a-1"))
    [cycle] = world.store.list_cycles()
    key = cycle.caused_by
    seen = len(world.audit.records)
    bus.handle(DriftSignalled("credit", "alert", "credit-drift", key))
    [duplicate] = world.audit.records[seen:]  # the cycle is open: not "already handled"
    assert duplicate.summary == "duplicate of the signal that started this cycle"
    assert (duplicate.cycle, duplicate.caused_by) == (cycle.id, key)
    assert cycle.job_name
    del world.platform.jobs[cycle.job_name]  # lost by the platform
    bus.handle(DriftSignalled("credit", "alert", "credit-drift", key))
    assert len(world.platform.submitted) == 2
    assert "coalesced" not in " ".join(world.audit.summaries())


def test_a_redelivered_trigger_of_a_closed_cycle_is_audited_once_and_not_counted() -> None:
    """With confirmation on, the redelivery must still be recognised as the closed cycle's
    trigger (not counted as a fresh pending signal), and audited once against that cycle."""
    world = make_world(make_policy(confirm={"signals": 2, "within": "10h"}))
    alert(world)
    alert(world)
    closed = close_by_failure(world)
    world.clock.advance(7200)
    seen = len(world.audit.records)
    bus_of(world).handle(DriftSignalled("credit", "alert", "credit-drift", closed.caused_by))
    [record] = world.audit.records[seen:]
    assert record.summary == "drift signal already handled: the cycle it started has closed"
    assert (record.kind, record.cycle, record.model) == ("ignored", closed.id, "credit")
    assert record.caused_by == closed.caused_by
    assert world.store.count_signals("credit", world.clock.now() - timedelta(hours=10)) == 0


class BusyRace(FakeStore):
    """Another worker opens a cycle for the same model first; two signals had joined it."""

    def create_cycle(self, cycle: Cycle) -> str | None:
        if cycle.model not in self.locks:
            other = copy.deepcopy(cycle)
            other.id, other.coalesced = "other-worker", 2
            super().create_cycle(other)
        return super().create_cycle(cycle)


def test_a_signal_that_loses_the_race_counts_itself_into_the_winner_and_says_so() -> None:
    world = make_world()
    world.services.store = world.store = BusyRace()
    alert(world)
    [other] = world.store.list_cycles()
    assert other.coalesced == 3
    record = world.audit.records[-1]
    assert record.summary == "drift signal coalesced into a concurrently opened cycle"
    assert (record.kind, record.model, record.actor) == ("decision", "credit", "system")
    received = next(r for r in world.audit.records if r.kind == "event_received")
    assert record.caused_by == received.caused_by and record.caused_by
    assert record.evidence["rule"] == "credit-drift"


def test_a_resolved_alert_is_audited_for_its_model_as_caused_by_the_resolution() -> None:
    world = make_world(two_models(confirm={"signals": 3, "within": "1h"}))
    alert(world)
    alert(world, condition="Resolved")
    record = world.audit.records[-1]
    assert record.summary == "signal resolved; 1 pending signal(s) cleared"
    assert (record.kind, record.model) == ("decision", "credit")
    received = [r for r in world.audit.records if r.kind == "event_received"][-1]
    assert record.caused_by == received.caused_by and record.caused_by
    assert record.evidence["rule"] == "credit-drift"


def test_an_ignored_event_keeps_its_evidence() -> None:
    world = make_world()
    event = EventIgnored("Some.Event", "not for us", "k-9", model="credit", evidence={"id": "e-1"})
    bus_of(world).handle(event)
    assert world.audit.records[-1].evidence == {"id": "e-1"}


def test_a_confirmation_query_without_log_analytics_says_which_model_and_what_to_set() -> None:
    world = make_world(make_policy(confirm={"signals": 2, "query": "AppRequests | count"}))
    assert alert(world) == "failed"
    [error] = [r for r in world.audit.records if "AUTOPILOT_LOG_WORKSPACE_ID" in r.reason]
    assert error.reason.endswith(
        "model 'credit': confirm.query needs Log Analytics, but AUTOPILOT_LOG_WORKSPACE_ID "
        "is not set"
    )


def test_an_events_payload_never_names_the_actor_of_an_automatic_cycle() -> None:
    """Only an operator's request carries a person's name; an alert that says "actor" in its
    payload still starts a cycle as the system."""
    world = make_world()
    signal = DriftSignalled("credit", "alert", "credit-drift", "k-1", evidence={"actor": "eve"})
    bus_of(world).handle(signal)
    assert found(world, "retraining cycle started").actor == "system"


class SaveOutage(FakeStore):
    """The state store fails once right after the cycle is opened (before its job starts)."""

    outages = 1

    def save_cycle(self, cycle: Cycle) -> None:
        if self.outages:
            self.outages -= 1
            raise TransientError("table storage unavailable")
        super().save_cycle(cycle)


def test_a_cycle_opened_but_not_started_is_started_by_the_reconciler_once_stale() -> None:
    world = make_world()
    world.services.store = world.store = SaveOutage()
    opened_at = world.clock.now()
    with pytest.raises(TransientError):  # the delivery is retried later; the cycle is open
        alert(world)
    [cycle] = world.store.list_cycles()
    assert cycle.state is CycleState.TRIGGERED and cycle.updated_at == opened_at
    world.clock.advance(601)
    bus_of(world).handle(Reconcile())
    assert world.store.must(cycle.id).state is CycleState.RETRAINING
    assert len(world.platform.submitted) == 1
