"""Rollout over time with a fake clock: shadow, canary, watch period, alerts, manual rollback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from autopilot.host_schedule import parse_schedule
from handlers.intake import deliver_alert
from handlers.rollout import traffic_text
from shared.errors import BadEvent
from shared.messages import ManualRollback, Reconcile
from shared.model import CycleState, HealthSample
from shared.settings import DEFAULT_RECONCILE_SCHEDULE
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


# --- timing: a step is checked when its bake ends; the reason says where the rollout is ---------


def run_reconcile_timer(world: World, until: datetime) -> list[datetime]:
    """The local host's reconcile timer on the fake clock: the default schedule (every
    minute) plus one run at each time a handler asked ``wakeups`` for. Returns the runs."""
    schedule = parse_schedule(DEFAULT_RECONCILE_SCHEDULE)
    seen, runs = len(world.wakeups.asked), list[datetime]()
    pending = [when for when, _ in world.wakeups.asked if when > world.clock.now()]
    while True:
        pending += [when for when, _ in world.wakeups.asked[seen:]]
        seen = len(world.wakeups.asked)
        now = world.clock.now()
        scheduled = schedule.next_after(now)
        assert scheduled is not None
        due = max(now, min([scheduled, *pending]))
        if due > until:
            return runs
        pending = [p for p in pending if p > due]
        world.clock.advance((due - now).total_seconds())
        bus_of(world).handle(Reconcile())
        runs.append(due)


def bake_10s_rollout(wakeups: bool) -> tuple[World, Any]:
    world = make_world(make_policy(rollout__bake="10s", rollout__watch="0s"))
    if not wakeups:  # as on Azure: only the timer's schedule runs reconciles
        world.services.wakeups = None
    cycle = registered_and_rolling(world)
    world.metrics.samples = {cycle.rollout["deployment"]: HEALTHY, "blue": HEALTHY}
    return world, cycle


def test_a_step_with_a_10s_bake_is_checked_10s_after_it_started_not_at_the_next_tick() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    started = world.clock.now()
    run_reconcile_timer(world, until=started + timedelta(seconds=35))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED  # 3 steps x 10 s, well before the 1-minute tick
    assert cycle.rollout is not None
    steps, checks = cycle.rollout["steps"], cycle.rollout["checks"]
    assert [s["percent"] for s in steps] == [10, 50, 100]
    waited = [
        (datetime.fromisoformat(c["at"]) - datetime.fromisoformat(s["at"])).total_seconds()
        for s, c in zip(steps, checks, strict=True)
    ]
    assert waited == [10.0, 10.0, 10.0]
    assert [when for when, _ in world.wakeups.asked] == [
        datetime.fromisoformat(s["at"]) + timedelta(seconds=10) for s in steps
    ]


def test_without_wakeups_a_step_waits_for_the_timers_next_tick() -> None:
    world, cycle = bake_10s_rollout(wakeups=False)
    started = world.clock.now()
    run_reconcile_timer(world, until=started + timedelta(seconds=35))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT
    assert cycle.rollout is not None and cycle.rollout["percent"] == 10
    run_reconcile_timer(world, until=started + timedelta(minutes=3))
    assert world.store.must(cycle.id).state is CycleState.PROMOTED


def test_the_reason_matches_the_traffic_at_every_step() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    seen = []
    while cycle.state is CycleState.ROLLING_OUT:
        live = traffic_text(world.platform.traffic["credit-ep"])
        assert live in cycle.reason, (live, cycle.reason)
        assert "0% traffic" not in cycle.reason and "creating" not in cycle.reason
        due = datetime.fromisoformat(cycle.rollout["next_check_at"])
        assert f"health check due {due:%H:%M:%S} UTC" in cycle.reason
        seen.append(cycle.reason)
        run_reconcile_timer(world, until=due)
        cycle = world.store.must(cycle.id)
    assert len(seen) == 3 and "(step 3/3)" in seen[-1]
    assert cycle.state is CycleState.PROMOTED and cycle.reason.startswith("promoted")


def test_while_traffic_is_too_thin_the_reason_says_so_and_the_check_is_repeated() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    world.metrics.samples = {cycle.rollout["deployment"]: HealthSample(3, 0, 20.0)}
    run_reconcile_timer(world, until=world.clock.now() + timedelta(seconds=10))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT
    assert cycle.reason.startswith("canary at 10%: waiting for traffic (3 requests < 20")
    assert cycle.rollout is not None
    due = datetime.fromisoformat(cycle.rollout["next_check_at"])
    assert world.wakeups.asked[-1][0] == due > world.clock.now()


def test_audit_summaries_and_reasons_name_traffic_as_text_not_as_a_dict() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    world.platform.ignore_traffic_changes = True  # step 2 is not confirmed: that names traffic
    run_reconcile_timer(world, until=world.clock.now() + timedelta(seconds=10))
    assert "not confirmed (attempt 1/" in world.store.must(cycle.id).reason
    world.platform.ignore_traffic_changes = False
    run_reconcile_timer(world, until=world.clock.now() + timedelta(minutes=2))
    assert world.store.must(cycle.id).state is CycleState.PROMOTED
    texts = [t for r in world.audit.records for t in (r.summary, r.reason)]
    first = f"traffic blue 90%, {cycle.rollout['deployment']} 10% on credit-ep (step 1/3)"
    assert first in texts
    assert not [t for t in texts if "{" in t or "}" in t]


def test_traffic_text_lists_the_largest_share_first() -> None:
    assert traffic_text({"m-v1": 10, "m-v2": 90}) == "m-v2 90%, m-v1 10%"
    assert traffic_text({"m-v2": 100, "m-v1": 0}) == "m-v2 100%, m-v1 0%"
    assert traffic_text({}) == "no traffic"


def test_a_run_of_waits_keeps_only_its_latest_check() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    world.metrics.samples = {cycle.rollout["deployment"]: HealthSample(3, 0, 20.0)}
    run_reconcile_timer(world, until=world.clock.now() + timedelta(minutes=5))
    cycle = world.store.must(cycle.id)
    assert cycle.rollout is not None
    assert [c["verdict"] for c in cycle.rollout["checks"]] == ["wait"]
    world.metrics.samples = {cycle.rollout["deployment"]: HEALTHY, "blue": HEALTHY}
    run_reconcile_timer(world, until=datetime.fromisoformat(cycle.rollout["next_check_at"]))
    cycle = world.store.must(cycle.id)
    assert cycle.rollout is not None and cycle.rollout["percent"] == 50
    assert [c["verdict"] for c in cycle.rollout["checks"]] == ["wait", "pass"]
