"""What drift and health signals promise a user: confirmation counts exactly, the cooldown ends
when it says, one model's signals never touch another's cycle, and races start one cycle."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert
from shared.errors import Conflict, NotFound
from shared.messagebus import MessageBus
from shared.messages import DriftSignalled, EventIgnored, ManualRollback, RetrainRequested
from shared.model import Cycle, CycleState, JobStatus
from shared.policy import Policy, parse_policy
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
    assert ignored.model == "gone"


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
