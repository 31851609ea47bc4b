"""What a rollout promises a user: each health check can decide a step, a traffic change counts
only once it took effect, a rollback after promotion restores the previous champion's version,
and one model's alerts never touch another model's rollout."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert, deliver_azureml
from shared.envelope import envelope_from_dict
from shared.errors import Conflict
from shared.messagebus import MessageBus
from shared.messages import ManualRollback, Reconcile
from shared.model import Cycle, CycleState, HealthSample
from shared.policy import Policy, parse_policy
from tests import payloads
from tests.fakes import POLICY, World, make_world

BETTER = {"auc": 0.86, "accuracy": 0.80}
CHAMPION = {"auc": 0.80, "accuracy": 0.79}
HEALTHY = HealthSample(requests=500, errors=1, latency_p95_ms=40.0)
ENDPOINT = {"credit": "credit-ep", "fraud": "fraud-ep"}
LIVE = {"credit": "credit-live", "fraud": "fraud-live"}


def policy(**rollout: Any) -> Policy:
    """Two models, 'credit' and 'fraud', each with its own rules and endpoint."""
    data = copy.deepcopy(POLICY)
    credit = data["models"]["credit"]
    credit["rollout"].update(rollout)
    fraud = copy.deepcopy(credit)
    fraud["signals"] = {"drift_alerts": ["fraud-drift"], "health_alerts": ["fraud-endpoint-errors"]}
    fraud["training"]["experiment"] = "fraud-retrain"
    fraud["rollout"]["endpoint"] = "fraud-ep"
    data["models"]["fraud"] = fraud
    return parse_policy(data, "two-models")


def bus_of(world: World) -> MessageBus:
    return bootstrap(world.services)


def tick(world: World, seconds: float = 301) -> None:
    world.clock.advance(seconds)
    bus_of(world).handle(Reconcile())


def cycle_of(world: World, model: str) -> Cycle:
    return world.store.list_cycles(model)[0]


def registered(world: World, model: str, champion: str) -> Cycle:
    """``model`` live at version ``champion``; a retrained candidate registered (version
    ``champion + 1``), its registration event not delivered yet."""
    endpoint, live = ENDPOINT[model], LIVE[model]
    world.platform.deployments.setdefault(endpoint, {})[live] = champion
    world.platform.traffic.setdefault(endpoint, {})[live] = 100
    world.platform.champions[model] = champion
    deliver_alert(bus_of(world), payloads.alert(rule=f"{model}-drift"))
    cycle = world.store.list_cycles(model, active_only=True)[0]
    assert cycle.job_name
    doc = payloads.evaluation(BETTER, CHAMPION, champion_version=champion)
    doc["model"] = model
    world.platform.evaluations[cycle.job_name] = doc
    world.platform.finish(cycle.job_name)
    run = payloads.run_event(cycle.job_name, "Completed", tags={"autopilot_cycle": cycle.id})
    deliver_azureml(bus_of(world), envelope_from_dict(run))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.REGISTERED, cycle.reason
    return cycle


def rolling(world: World, model: str, champion: str) -> Cycle:
    """``model`` live at version ``champion``; a retrained candidate at its first step."""
    cycle = registered(world, model, champion)
    registered_event = payloads.model_registered(
        model, cycle.candidate_version or "", {"autopilot_cycle": cycle.id}
    )
    deliver_azureml(bus_of(world), envelope_from_dict(registered_event))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout is not None
    assert cycle.rollout.percent == 10
    return cycle


def promote(world: World, model: str, champion: str) -> Cycle:
    cycle = rolling(world, model, champion)
    assert cycle.rollout is not None
    world.metrics.samples[cycle.rollout.deployment] = HEALTHY
    world.metrics.samples[LIVE[model]] = HEALTHY
    for _ in range(3):
        tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED and cycle.rollout is not None
    assert cycle.rollout.phase == "watch"
    return cycle


# --- champion restore -------------------------------------------------------------------------


@pytest.mark.parametrize("champion", ["7", "41"])
def test_a_rollback_after_promotion_restores_the_previous_champions_version(
    champion: str,
) -> None:
    world = make_world(policy())
    cycle = promote(world, "credit", champion)
    candidate = str(int(champion) + 1)
    assert cycle.candidate_version == candidate
    assert world.platform.champions["credit"] == candidate
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.champions["credit"] == champion
    assert world.platform.traffic["credit-ep"][LIVE["credit"]] == 100
    assert cycle.reason == (
        "rolled back: health alert 'credit-endpoint-errors' fired during the watch period "
        "after promotion"
    )


def test_a_rollback_before_promotion_never_touches_the_champion() -> None:
    world = make_world(policy())
    cycle = rolling(world, "credit", "7")
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.champions["credit"] == "7"
    assert cycle.reason == "rolled back: health alert 'credit-endpoint-errors' fired during rollout"


# --- one model's alerts leave another model alone ---


def test_a_health_alert_for_one_model_leaves_another_models_promotion_alone() -> None:
    world = make_world(policy())
    fraud = promote(world, "fraud", "3")
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    assert world.store.must(fraud.id).state is CycleState.PROMOTED
    assert world.platform.champions["fraud"] == "4"
    assert world.audit.summaries("decision")[-1] == (
        "health alert recorded; no rollout or watch period in progress"
    )
    deliver_alert(bus_of(world), payloads.alert(rule="fraud-endpoint-errors"))
    assert world.store.must(fraud.id).state is CycleState.ROLLED_BACK
    assert world.platform.champions["fraud"] == "3"


def test_a_health_alert_for_one_model_leaves_another_models_rollout_alone() -> None:
    world = make_world(policy())
    credit = rolling(world, "credit", "7")
    fraud = rolling(world, "fraud", "3")
    deliver_alert(bus_of(world), payloads.alert(rule="fraud-endpoint-errors"))
    assert world.store.must(credit.id).state is CycleState.ROLLING_OUT
    assert world.store.must(fraud.id).state is CycleState.ROLLED_BACK


def test_a_manual_rollback_of_one_model_never_picks_another_models_promotion() -> None:
    world = make_world(policy())
    fraud = promote(world, "fraud", "3")
    with pytest.raises(Conflict, match="nothing to roll back for credit"):
        bus_of(world).handle(ManualRollback("credit", "alice", "looks off"))
    assert world.store.must(fraud.id).state is CycleState.PROMOTED
    bus_of(world).handle(ManualRollback("fraud", "alice", "looks off"))
    rolled = world.store.must(fraud.id)
    assert rolled.state is CycleState.ROLLED_BACK
    assert rolled.reason == "rolled back: manual rollback by alice: looks off"
    assert any(r.actor == "alice" for r in world.audit.records)


# --- every health check can decide a step -------------------------------------------------------


def step(health: dict[str, Any], new: HealthSample, old: HealthSample) -> tuple[Cycle, World]:
    """The first canary step judged once, with ``new`` and live's ``old`` health."""
    world = make_world(policy(health=health))
    cycle = rolling(world, "credit", "7")
    assert cycle.rollout is not None
    world.metrics.samples = {cycle.rollout.deployment: new, LIVE["credit"]: old}
    tick(world)
    return world.store.must(cycle.id), world


LOOSE = {"max_error_rate": 0.5, "max_error_rate_increase": 0.5, "max_latency_ratio": None}


@pytest.mark.parametrize(
    ("health", "new", "old", "breach"),
    [
        # error rate against its maximum
        ({"max_error_rate_increase": 0.5}, HealthSample(1000, 50, 40.0), HEALTHY, None),
        (
            {"max_error_rate_increase": 0.5},
            HealthSample(1000, 51, 40.0),
            HEALTHY,
            "error rate 5.10% > 5.00%",
        ),
        # error-rate increase over live
        (
            {**LOOSE, "max_error_rate_increase": 0.125},
            HealthSample(1000, 250, 40.0),
            HealthSample(1000, 125, 40.0),
            None,
        ),
        (
            {**LOOSE, "max_error_rate_increase": 0.125},
            HealthSample(1000, 251, 40.0),
            HealthSample(1000, 125, 40.0),
            "error rate 25.10% exceeds live 12.50% by more than 12.50%",
        ),
        (  # live served nothing: no increase to judge
            {**LOOSE, "max_error_rate_increase": 0.0},
            HealthSample(1000, 251, 40.0),
            HealthSample(0, 0, None),
            None,
        ),
        # p95 latency against its maximum
        ({**LOOSE, "max_latency_p95_ms": 100}, HealthSample(500, 0, 100.0), HEALTHY, None),
        (
            {**LOOSE, "max_latency_p95_ms": 100},
            HealthSample(500, 0, 101.0),
            HEALTHY,
            "p95 latency 101 ms > 100 ms",
        ),
        ({**LOOSE, "max_latency_p95_ms": 100}, HealthSample(500, 0, None), HEALTHY, None),
        # p95 latency against live's
        ({"max_latency_ratio": 2.0}, HealthSample(500, 0, 80.0), HEALTHY, None),
        (
            {"max_latency_ratio": 2.0},
            HealthSample(500, 0, 81.0),
            HEALTHY,
            "p95 latency 81 ms > 2x live 40 ms",
        ),
        ({"max_latency_ratio": 2.0}, HealthSample(500, 0, 81.0), HealthSample(500, 0, None), None),
        ({"max_latency_ratio": 2.0}, HealthSample(500, 0, None), HEALTHY, None),
        ({**LOOSE, "max_latency_ratio": None}, HealthSample(500, 0, 900.0), HEALTHY, None),
    ],
)
def test_each_health_check_decides_the_step(
    health: dict[str, Any], new: HealthSample, old: HealthSample, breach: str | None
) -> None:
    cycle, world = step(health, new, old)
    assert cycle.rollout is not None
    if breach is None:
        assert cycle.state is CycleState.ROLLING_OUT
        assert cycle.rollout.percent == 50
    else:
        assert cycle.state is CycleState.ROLLED_BACK
        assert breach in (cycle.reason or "")
        assert world.platform.traffic["credit-ep"][LIVE["credit"]] == 100


@pytest.mark.parametrize(("requests", "percent"), [(19, 10), (20, 50)])
def test_a_step_waits_for_enough_requests(requests: int, percent: int) -> None:
    cycle, _ = step({}, HealthSample(requests, 0, 40.0), HEALTHY)
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout is not None
    assert cycle.rollout.percent == percent


# --- a traffic change counts only once it took effect -------------------------------------------


def test_an_unconfirmed_traffic_change_is_not_recorded_as_applied() -> None:
    world = make_world(policy())
    cycle = rolling(world, "credit", "7")
    assert cycle.rollout is not None
    new = cycle.rollout.deployment
    world.metrics.samples = {new: HEALTHY, LIVE["credit"]: HEALTHY}
    world.platform.ignore_traffic_changes = True
    tick(world)
    held = world.store.must(cycle.id)
    assert held.state is CycleState.ROLLING_OUT and held.rollout is not None
    assert held.rollout.percent == 10
    assert world.platform.traffic["credit-ep"] == {LIVE["credit"]: 90, new: 10}
    assert held.reason == (
        f"traffic change to {LIVE['credit']} 50%, {new} 50% on credit-ep not confirmed "
        "(attempt 1/3); retrying at the next reconcile"
    )
    assert any(
        s == "traffic change not confirmed (attempt 1/3); will retry"
        for s in world.audit.summaries()
    )
    world.platform.ignore_traffic_changes = False
    tick(world, 10)
    moved = world.store.must(cycle.id)
    assert moved.rollout is not None and moved.rollout.percent == 50
    assert world.platform.traffic["credit-ep"] == {LIVE["credit"]: 50, new: 50}
