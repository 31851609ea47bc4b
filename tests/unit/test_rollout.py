"""Rollout over time with a fake clock: shadow, canary, watch period, alerts, manual rollback."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.intake import deliver_alert
from shared.errors import BadEvent
from shared.messages import ManualRollback, Reconcile
from shared.model import CycleState, HealthSample
from tests import payloads
from tests.fakes import POLICY, World, make_policy, make_world
from tests.unit.test_lifecycle import (
    HEALTHY,
    bus_of,
    complete_job,
    event,
    registered_and_rolling,
)

SICK = HealthSample(500, 100, 40.0)


def tick(world: World, seconds: float = 301) -> None:
    world.clock.advance(seconds)
    bus_of(world).handle(Reconcile())


def promoted(world: World) -> Any:
    cycle = registered_and_rolling(world)
    world.metrics.samples = {cycle.rollout["deployment"]: HEALTHY, "blue": HEALTHY}
    for _ in range(3):
        tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED
    return cycle


def test_shadow_phase_mirrors_traffic_then_starts_the_canary() -> None:
    world = make_world(make_policy(rollout__shadow={"percent": 50, "bake": "2m"}))
    cycle = registered_and_rolling(world)
    new = cycle.rollout["deployment"]
    assert cycle.rollout["phase"] == "shadow"
    assert world.platform.mirrors["credit-ep"] == {new: 50}
    assert world.platform.traffic["credit-ep"] == {"blue": 100, new: 0}  # no user traffic yet
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    tick(world, 121)
    cycle = world.store.must(cycle.id)
    assert world.platform.mirrors["credit-ep"] == {}
    assert cycle.rollout and cycle.rollout["phase"] == "canary"
    assert cycle.rollout["percent"] == 10


def test_shadow_breach_rolls_back_before_any_user_traffic_moves() -> None:
    world = make_world(make_policy(rollout__shadow={"bake": "2m"}))
    cycle = registered_and_rolling(world)
    world.metrics.samples = {cycle.rollout["deployment"]: SICK, "blue": HEALTHY}
    tick(world, 121)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "shadow breach" in cycle.reason
    assert world.platform.mirrors["credit-ep"] == {}
    assert all(t.get("blue") == 100 for _, t in world.platform.traffic_changes)


def test_promotion_keeps_the_previous_deployment_warm_then_removes_it() -> None:
    world = make_world()
    cycle = promoted(world)
    assert cycle.rollout["phase"] == "watch"
    assert "blue" in world.platform.deployments["credit-ep"]
    tick(world, 601)
    cycle = world.store.must(cycle.id)
    assert cycle.rollout and cycle.rollout["phase"] == "done"
    assert "blue" not in world.platform.deployments["credit-ep"]


def test_alert_after_promotion_rolls_back_and_restores_the_champion() -> None:
    world = make_world()
    cycle = promoted(world)
    assert world.platform.champions["credit"] == cycle.candidate_version
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "watch period" in cycle.reason
    assert world.platform.traffic["credit-ep"]["blue"] == 100
    assert world.platform.champions["credit"] == "1"


def test_health_breach_during_the_watch_rolls_back() -> None:
    world = make_world()
    cycle = promoted(world)
    world.metrics.samples[cycle.rollout["deployment"]] = SICK
    tick(world, 60)
    assert world.store.must(cycle.id).state is CycleState.ROLLED_BACK


def test_manual_rollback_is_instant_and_audited_with_the_actor() -> None:
    world = make_world()
    cycle = promoted(world)
    bus_of(world).handle(ManualRollback("credit", "carol", "customers complain"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.audit.records[-1].actor == "carol"
    with pytest.raises(BadEvent, match="nothing to roll back"):
        bus_of(world).handle(ManualRollback("credit", "carol", "again"))


def test_a_second_candidate_for_a_busy_endpoint_waits_its_turn() -> None:
    policy_data = {**POLICY, "models": {**POLICY["models"]}}
    other = {**POLICY["models"]["credit"], "signals": {"drift_alerts": ["fraud-drift"]}}
    policy_data["models"]["fraud"] = other
    from shared.policy import parse_policy

    world = make_world(parse_policy(policy_data, "two-models"))
    first = registered_and_rolling(world)
    deliver_alert(bus_of(world), payloads.alert(rule="fraud-drift"))
    fraud = world.store.active_cycle("fraud")
    assert fraud is not None and fraud.job_name
    world.platform.evaluations[fraud.job_name] = payloads.evaluation(
        {"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.8}
    )
    world.platform.finish(fraud.job_name)
    event(bus_of(world), payloads.run_event(fraud.job_name, "Completed"))
    fraud = world.store.must(fraud.id)
    event(
        bus_of(world),
        payloads.model_registered(
            "fraud", str(fraud.candidate_version), {"autopilot_cycle": fraud.id}
        ),
    )
    assert world.store.must(fraud.id).state is CycleState.REGISTERED  # waits
    assert any("endpoint credit-ep is busy" in s for s in world.audit.summaries("decision"))
    world.metrics.samples = {first.rollout["deployment"]: HEALTHY, "blue": HEALTHY}
    for _ in range(4):
        tick(world)
    assert world.store.must(first.id).state is CycleState.PROMOTED
    assert world.store.must(fraud.id).state is CycleState.ROLLING_OUT


def test_no_watch_when_there_is_nothing_to_fall_back_to() -> None:
    world = make_world()
    cycle = complete_job(world, champion=None)
    event(
        bus_of(world),
        payloads.model_registered("credit", cycle.candidate_version, {"autopilot_cycle": cycle.id}),
    )
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED
    assert cycle.rollout and cycle.rollout["phase"] == "done"
