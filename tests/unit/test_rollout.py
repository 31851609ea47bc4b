"""Rollout over time with a fake clock: shadow, canary, watch period, alerts, manual rollback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from autopilot.host_schedule import parse_schedule
from composition.delivery import deliver_alert
from handlers import cleanup
from handlers.rollout import traffic_text
from shared.errors import Conflict
from shared.lifecycle import move
from shared.messages import ManualRollback, Reconcile
from shared.model import Cycle, CycleState, HealthSample
from shared.rollout_state import RolloutState
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
    world.metrics.samples = {cycle.rollout.deployment: HEALTHY, "blue": HEALTHY}
    for _ in range(3):
        tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED
    return cycle


def test_shadow_phase_mirrors_traffic_then_starts_the_canary() -> None:
    world = make_world(make_policy(rollout__shadow={"percent": 50, "bake": "2m"}))
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    assert cycle.rollout.phase == "shadow"
    assert world.platform.mirrors["credit-ep"] == {new: 50}
    assert world.platform.traffic["credit-ep"] == {"blue": 100, new: 0}  # no user traffic yet
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    tick(world, 121)
    cycle = world.store.must(cycle.id)
    assert world.platform.mirrors["credit-ep"] == {}
    assert cycle.rollout and cycle.rollout.phase == "canary"
    assert cycle.rollout.percent == 10


def test_shadow_breach_rolls_back_before_any_user_traffic_moves() -> None:
    world = make_world(make_policy(rollout__shadow={"bake": "2m"}))
    cycle = registered_and_rolling(world)
    world.metrics.samples = {cycle.rollout.deployment: SICK, "blue": HEALTHY}
    tick(world, 121)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "shadow breach" in cycle.reason
    assert world.platform.mirrors["credit-ep"] == {}
    assert all(t.get("blue") == 100 for _, t in world.platform.traffic_changes)


def test_promotion_keeps_the_previous_deployment_warm_then_removes_it() -> None:
    world = make_world()
    cycle = promoted(world)
    assert cycle.rollout.phase == "watch"
    assert "blue" in world.platform.deployments["credit-ep"]
    tick(world, 601)
    cycle = world.store.must(cycle.id)
    assert cycle.rollout and cycle.rollout.phase == "done"
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
    world.metrics.samples[cycle.rollout.deployment] = SICK
    tick(world, 60)
    assert world.store.must(cycle.id).state is CycleState.ROLLED_BACK


def test_manual_rollback_is_instant_and_audited_with_the_actor() -> None:
    world = make_world()
    cycle = promoted(world)
    bus_of(world).handle(ManualRollback("credit", "carol", "customers complain"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.audit.records[-1].actor == "carol"
    with pytest.raises(Conflict, match="nothing to roll back"):
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
    world.metrics.samples = {first.rollout.deployment: HEALTHY, "blue": HEALTHY}
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
    assert cycle.rollout and cycle.rollout.phase == "done"


# --- clean-up: a closed cycle leaves only the deployments that serve traffic ----------------


def rollout_of(cycle: Cycle) -> dict[str, Any]:
    """The rollout state as it is stored (JSON)."""
    assert cycle.rollout is not None
    return cycle.rollout.to_json()


def on_endpoint(world: World) -> set[str]:
    return set(world.platform.deployments["credit-ep"])


def deletions(world: World, cycle_id: str) -> list[str]:
    """The deployments the audit log says this cycle deleted."""
    return [
        r.evidence["deployment"]
        for r in world.audit.records
        if r.cycle == cycle_id and r.kind == "action" and " deleted from " in r.summary
    ]


def test_rollback_during_the_canary_deletes_the_candidate() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    tick(world)  # 50%
    world.metrics.samples[new] = SICK
    tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert on_endpoint(world) == {"blue"}
    assert world.platform.traffic["credit-ep"] == {"blue": 100}
    assert deletions(world, cycle.id) == [new]
    assert rollout_of(cycle)["cleanup"] == [] and rollout_of(cycle)["removed"] == [new]


def test_failing_safe_deletes_the_candidate() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    world.platform.ignore_traffic_changes = True  # the 50% step never takes effect
    for seconds in (301, 10, 10):
        tick(world, seconds)
    cycle = world.store.must(cycle.id)
    assert rollout_of(cycle)["phase"] == "restoring"  # not closed yet: nothing is deleted
    assert on_endpoint(world) == {"blue", new}
    world.platform.ignore_traffic_changes = False
    tick(world, 60)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.FAILED and "failed safe" in cycle.reason
    assert on_endpoint(world) == {"blue"}
    assert world.platform.traffic["credit-ep"] == {"blue": 100}
    assert deletions(world, cycle.id) == [new]


def test_a_deployment_that_failed_to_provision_is_deleted() -> None:
    world = make_world()
    world.platform.fail_creates = True
    cycle = registered_and_rolling(world)
    assert cycle.state is CycleState.FAILED and "deployment failed" in cycle.reason
    assert on_endpoint(world) == {"blue"}
    assert deletions(world, cycle.id) == [cycle.rollout.deployment]


def test_health_alert_in_the_watch_rolls_back_and_deletes_the_candidate() -> None:
    world = make_world()
    cycle = promoted(world)
    new = cycle.rollout.deployment
    assert on_endpoint(world) == {"blue", new}  # the previous one is kept warm
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert on_endpoint(world) == {"blue"}
    assert world.platform.traffic["credit-ep"] == {"blue": 100}
    assert world.platform.champions["credit"] == "1"
    assert deletions(world, cycle.id) == [new]


def test_promotion_without_a_watch_period_deletes_the_previous_at_once() -> None:
    world = make_world(make_policy(rollout__watch="0s"))
    cycle = promoted(world)
    new = cycle.rollout.deployment
    assert cycle.rollout.phase == "done"
    assert on_endpoint(world) == {new}
    assert world.platform.traffic["credit-ep"] == {new: 100}
    assert deletions(world, cycle.id) == ["blue"]


def test_the_end_of_the_watch_period_deletes_the_previous_and_audits_it() -> None:
    world = make_world()
    cycle = promoted(world)
    new = cycle.rollout.deployment
    assert deletions(world, cycle.id) == []
    tick(world, 601)
    assert on_endpoint(world) == {new}
    assert deletions(world, cycle.id) == ["blue"]


def test_a_failed_deletion_is_retried_by_the_next_reconcile_tick() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    world.platform.delete_failures = 1
    deliver_alert(bus_of(world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK  # closing does not wait for the deletion
    assert on_endpoint(world) == {"blue", new}
    assert rollout_of(cycle)["cleanup"] == [new]
    errors = [r for r in world.audit.records if r.kind == "error" and r.cycle == cycle.id]
    assert [r.evidence["deployment"] for r in errors] == [new]
    assert "service unavailable" in errors[0].reason
    tick(world, 60)
    cycle = world.store.must(cycle.id)
    assert on_endpoint(world) == {"blue"}
    assert rollout_of(cycle)["cleanup"] == []
    assert deletions(world, cycle.id) == [new]
    tick(world, 60)  # nothing left to do: nothing more is audited
    assert deletions(world, cycle.id) == [new]


def test_a_model_removed_from_the_policy_mid_rollout_fails_safe() -> None:
    """Its candidate's traffic goes back to the previous deployment, which stays; the
    candidate's deployment, now idle, is cleaned up."""
    world = make_world()
    cycle = registered_and_rolling(world)  # the candidate takes 10%
    new = cycle.rollout.deployment
    other = {**POLICY["models"]["credit"], "signals": {"drift_alerts": ["fraud-drift"]}}
    from shared.policy import parse_policy

    world.services.policy = parse_policy({"models": {"fraud": other}}, "credit-removed")
    tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.FAILED and "removed from the policy" in cycle.reason
    traffic = world.platform.traffic["credit-ep"]
    assert traffic["blue"] == 100 and traffic.get(new, 0) == 0
    tick(world, 60)
    assert on_endpoint(world) == {"blue"}
    assert deletions(world, cycle.id) == [new]


def test_a_deployment_that_takes_traffic_is_kept_and_the_reason_audited() -> None:
    """The previous deployment was deleted by hand mid-rollout: the restore cannot be made,
    the candidate still takes its 10%, so it is kept."""
    world = make_world()
    cycle = registered_and_rolling(world)  # the candidate takes 10%
    new = cycle.rollout.deployment
    del world.platform.deployments["credit-ep"]["blue"]
    other = {**POLICY["models"]["credit"], "signals": {"drift_alerts": ["fraud-drift"]}}
    from shared.policy import parse_policy

    world.services.policy = parse_policy({"models": {"fraud": other}}, "credit-removed")
    tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.FAILED
    assert world.platform.traffic["credit-ep"][new] == 10
    assert on_endpoint(world) == {new}
    assert rollout_of(cycle)["cleanup"] == [] and rollout_of(cycle)["kept"] == [new]
    (kept,) = [r for r in world.audit.records if r.summary.startswith(f"deployment {new} kept")]
    assert kept.reason == "it takes 10% of the traffic"


def test_the_champions_deployment_is_never_deleted() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    world.platform.champions["credit"] = cycle.candidate_version  # promoted by hand meanwhile
    world.metrics.samples = {new: SICK, "blue": HEALTHY}
    tick(world)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert on_endpoint(world) == {"blue", new}
    assert rollout_of(cycle)["kept"] == [new]
    assert deletions(world, cycle.id) == []


def test_a_deployment_another_open_rollout_uses_is_kept() -> None:
    """The rolled-back candidate of one cycle is the previous deployment another cycle's
    rollout would fall back to: it stays, whatever its traffic now."""
    world = make_world()
    world.platform.deployments["credit-ep"] = {"blue": "1", "credit-v2": "2", "credit-v3": "3"}
    world.platform.traffic["credit-ep"] = {"blue": 0, "credit-v2": 0, "credit-v3": 100}
    t0 = world.clock.now()
    closed = Cycle("credit-a", "credit", CycleState.ROLLING_OUT, t0, t0, candidate_version="2")
    closed.rollout = RolloutState.begin("credit-ep", "credit-v2", "blue", {}, None)
    open_ = Cycle("credit-b", "credit", CycleState.ROLLING_OUT, t0, t0, candidate_version="3")
    open_.rollout = RolloutState.begin("credit-ep", "credit-v3", "credit-v2", {}, None)
    assert world.store.create_cycle(closed) is None
    world.store.locks.clear()  # two cycles at once: as after a watch period overlapped
    assert world.store.create_cycle(open_) is None
    move(world.services, closed, CycleState.FAILED, "test")  # schedules credit-v2 for deletion
    cleanup.run(closed, world.services, "test")
    cycle = world.store.must("credit-a")
    assert rollout_of(cycle)["kept"] == ["credit-v2"]
    assert on_endpoint(world) == {"blue", "credit-v2", "credit-v3"}
    (kept,) = [r for r in world.audit.records if r.summary.startswith("deployment credit-v2 kept")]
    assert kept.reason == "cycle credit-b still uses it"


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
    world.metrics.samples = {cycle.rollout.deployment: HEALTHY, "blue": HEALTHY}
    return world, cycle


def test_a_step_with_a_10s_bake_is_checked_10s_after_it_started_not_at_the_next_tick() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    started = world.clock.now()
    run_reconcile_timer(world, until=started + timedelta(seconds=35))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED  # 3 steps x 10 s, well before the 1-minute tick
    assert cycle.rollout is not None
    steps, checks = cycle.rollout.steps, cycle.rollout.checks
    assert [s.percent for s in steps] == [10, 50, 100]
    waited = [(c.at - s.at).total_seconds() for s, c in zip(steps, checks, strict=True)]
    assert waited == [10.0, 10.0, 10.0]
    assert [when for when, _ in world.wakeups.asked] == [
        s.at + timedelta(seconds=10) for s in steps
    ]


def test_without_wakeups_a_step_waits_for_the_timers_next_tick() -> None:
    world, cycle = bake_10s_rollout(wakeups=False)
    started = world.clock.now()
    run_reconcile_timer(world, until=started + timedelta(seconds=35))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT
    assert cycle.rollout is not None and cycle.rollout.percent == 10
    run_reconcile_timer(world, until=started + timedelta(minutes=3))
    assert world.store.must(cycle.id).state is CycleState.PROMOTED


def test_the_reason_matches_the_traffic_at_every_step() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    seen = []
    while cycle.state is CycleState.ROLLING_OUT:
        live = traffic_text(world.platform.traffic["credit-ep"])
        assert live in cycle.reason, (live, cycle.reason)
        assert "0% traffic" not in cycle.reason and "creating" not in cycle.reason
        due = cycle.rollout.next_check_at
        assert due is not None
        assert f"health check due {due:%H:%M:%S} UTC" in cycle.reason
        seen.append(cycle.reason)
        run_reconcile_timer(world, until=due)
        cycle = world.store.must(cycle.id)
    assert len(seen) == 3 and "(step 3/3)" in seen[-1]
    assert cycle.state is CycleState.PROMOTED and cycle.reason.startswith("promoted")


def test_while_traffic_is_too_thin_the_reason_says_so_and_the_check_is_repeated() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    world.metrics.samples = {cycle.rollout.deployment: HealthSample(3, 0, 20.0)}
    run_reconcile_timer(world, until=world.clock.now() + timedelta(seconds=10))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT
    assert cycle.reason.startswith("canary at 10%: waiting for traffic (3 requests < 20")
    assert cycle.rollout is not None
    due = cycle.rollout.next_check_at
    assert due is not None and world.wakeups.asked[-1][0] == due > world.clock.now()


def test_audit_summaries_and_reasons_name_traffic_as_text_not_as_a_dict() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    world.platform.ignore_traffic_changes = True  # step 2 is not confirmed: that names traffic
    run_reconcile_timer(world, until=world.clock.now() + timedelta(seconds=10))
    assert "not confirmed (attempt 1/" in world.store.must(cycle.id).reason
    world.platform.ignore_traffic_changes = False
    run_reconcile_timer(world, until=world.clock.now() + timedelta(minutes=2))
    assert world.store.must(cycle.id).state is CycleState.PROMOTED
    texts = [t for r in world.audit.records for t in (r.summary, r.reason)]
    first = f"traffic blue 90%, {cycle.rollout.deployment} 10% on credit-ep (step 1/3)"
    assert first in texts
    assert not [t for t in texts if "{" in t or "}" in t]


def test_traffic_text_lists_the_largest_share_first() -> None:
    assert traffic_text({"m-v1": 10, "m-v2": 90}) == "m-v2 90%, m-v1 10%"
    assert traffic_text({"m-v2": 100, "m-v1": 0}) == "m-v2 100%, m-v1 0%"
    assert traffic_text({}) == "no traffic"


def test_a_run_of_waits_keeps_only_its_latest_check() -> None:
    world, cycle = bake_10s_rollout(wakeups=True)
    world.metrics.samples = {cycle.rollout.deployment: HealthSample(3, 0, 20.0)}
    run_reconcile_timer(world, until=world.clock.now() + timedelta(minutes=5))
    cycle = world.store.must(cycle.id)
    assert cycle.rollout is not None
    assert [c.verdict for c in cycle.rollout.checks] == ["wait"]
    world.metrics.samples = {cycle.rollout.deployment: HEALTHY, "blue": HEALTHY}
    assert cycle.rollout.next_check_at is not None
    run_reconcile_timer(world, until=cycle.rollout.next_check_at)
    cycle = world.store.must(cycle.id)
    assert cycle.rollout is not None and cycle.rollout.percent == 50
    assert [c.verdict for c in cycle.rollout.checks] == ["wait", "pass"]
