"""What a rollout's traffic changes promise: a change counts only once it is read back, failing
safe puts the previous deployment back (mirror off) and keeps trying until it has, a rollback
puts every request back on the previous deployment, and each of these says so in the audit log
with its cause, its reason and its evidence."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.errors import PermanentError
from shared.messages import FailRollout, HealthAlertFired, ManualRollback
from shared.model import CycleState, HealthSample
from shared.rollout_state import Phase
from shared.traffic import clock
from tests.fakes import make_world
from tests.unit.test_spec_rollout import HEALTHY, LIVE, bus_of, policy, registered
from tests.unit.test_spec_rollout_audit import NEW, healthy, keys, register, since, start, tick

SHADOW = {"percent": 20, "bake": "2m"}


def test_an_unconfirmed_change_says_what_the_endpoint_serves_instead() -> None:
    world = make_world()
    cycle, _ = start(world)
    healthy(world)
    world.platform.ignore_traffic_changes = True
    written = tick(world, "tick-1")
    errors = [r for r in written if r.kind == "error"]
    assert [(r.summary, r.cycle, r.reason, r.caused_by) for r in errors] == [
        (
            "traffic change not confirmed (attempt 1/3); will retry",
            cycle.id,
            f"endpoint credit-ep: traffic is credit-live 90%, {NEW} 10%, "
            f"expected credit-live 50%, {NEW} 50%",
            "tick-1",
        )
    ]
    held = world.store.must(cycle.id)
    assert held.reason == (
        f"traffic change to credit-live 50%, {NEW} 50% on credit-ep not confirmed "
        "(attempt 1/3); retrying at the next reconcile"
    )


def test_a_change_that_never_takes_effect_fails_safe_with_what_was_wanted() -> None:
    world = make_world()
    cycle, _ = start(world, traffic_attempts=2)
    healthy(world)
    world.platform.ignore_traffic_changes = True
    tick(world, "tick-1")
    world.platform.traffic["credit-ep"] = {"credit-live": 100, NEW: 0}  # an operator restored it
    written = tick(world, "tick-2", 10)
    failed = [r for r in written if r.summary == "cycle ROLLING_OUT -> FAILED"]
    assert [(r.kind, r.reason, r.caused_by) for r in failed] == [
        (
            "error",
            "traffic change did not take effect after 2 attempts; "
            "failed safe (credit-live at 100%)",
            "tick-2",
        )
    ]
    assert failed[0].evidence == {
        "wanted": {NEW: 50, "credit-live": 50},
        "error": f"endpoint credit-ep: traffic is credit-live 100%, expected credit-live 50%, "
        f"{NEW} 50%",
    }
    assert keys(written) == {"tick-2"}
    assert NEW not in world.platform.deployments["credit-ep"]  # cleaned up at once
    assert world.store.must(cycle.id).rollout.phase is Phase.FAILED  # type: ignore[union-attr]


def test_a_change_still_being_applied_is_audited_once_and_not_counted_as_a_failure() -> None:
    world = make_world()
    cycle, _ = start(world)
    healthy(world)
    world.platform.in_progress["set_traffic"] = 2
    written = tick(world, "tick-1")
    wanted = f"traffic change to {{'{NEW}': 50, 'credit-live': 50}}"
    assert [(r.kind, r.summary, r.cycle, r.reason, r.caused_by) for r in written] == [
        ("decision", "canary at 10% healthy", cycle.id, "500 requests, error rate 0.20%", "tick-1"),
        (
            "action",
            f"{wanted} in progress; the reconciler checks it on its next tick",
            cycle.id,
            "set_traffic credit-ep: operation still running",
            "tick-1",
        ),
    ]
    assert not tick(world, "tick-2", 10)  # still running: not audited again
    held = world.store.must(cycle.id).rollout
    assert held is not None and held.in_progress == wanted and held.traffic_failures == 0
    assert held.percent == 10
    tick(world, "tick-3", 10)
    assert world.store.must(cycle.id).rollout.percent == 50  # type: ignore[union-attr]


def test_a_wakeup_is_asked_for_the_rollout_of_its_cycle() -> None:
    world = make_world()
    cycle, _ = start(world)
    assert world.wakeups.asked[-1] == (
        world.clock.now() + timedelta(minutes=5),
        f"rollout of cycle {cycle.id}",
    )


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York"])
def test_times_in_reasons_are_utc_whatever_the_hosts_time_zone(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        plus_two = timezone(timedelta(hours=2))
        assert clock(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)) == "12:00:05 UTC"
        assert clock(datetime(2026, 1, 1, 14, 0, 5, tzinfo=plus_two)) == "12:00:05 UTC"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# --- failing safe ---------------------------------------------------------------------------


def test_failing_safe_keeps_trying_the_restore_and_says_so_each_time() -> None:
    world = make_world()
    cycle, _ = start(world)
    world.metrics.failure = PermanentError("metrics workspace deleted")
    world.platform.ignore_traffic_changes = True  # the restore does not take effect yet
    world.platform.traffic["credit-ep"] = {"credit-live": 50, NEW: 50}
    written = tick(world, "tick-1")
    restoring = world.store.must(cycle.id)
    assert restoring.state is CycleState.ROLLING_OUT
    assert restoring.rollout is not None and restoring.rollout.phase is Phase.RESTORING
    assert restoring.reason == (
        "failing safe: restoring credit-live to 100% not confirmed yet (attempt 1); "
        "metrics workspace deleted"
    )
    errors = [r for r in written if r.kind == "error"]
    assert [(r.summary, r.cycle, r.reason, r.caused_by) for r in errors] == [
        (
            "failing safe: restoring credit-live did not take effect (attempt 1); "
            "retrying every reconcile tick",
            cycle.id,
            "metrics workspace deleted; endpoint credit-ep: traffic is credit-live 50%, "
            f"{NEW} 50%, expected credit-live 100%",
            "tick-1",
        )
    ]
    tick(world, "tick-2", 10)
    assert world.store.must(cycle.id).reason.startswith(
        "failing safe: restoring credit-live to 100% not confirmed yet (attempt 2); "
    )
    world.platform.ignore_traffic_changes = False
    written = tick(world, "tick-3", 10)
    failed = world.store.must(cycle.id)
    assert failed.state is CycleState.FAILED
    assert failed.reason == "metrics workspace deleted; failed safe (credit-live at 100%)"
    assert keys([r for r in written if r.cycle == cycle.id]) == {"tick-3"}
    assert world.platform.traffic["credit-ep"] == {"credit-live": 100}


def test_failing_safe_in_shadow_switches_the_mirror_off_even_if_that_took_a_retry() -> None:
    world = make_world()
    cycle, _ = start(world, shadow=SHADOW)
    assert world.platform.mirrors["credit-ep"] == {NEW: 20}
    world.metrics.failure = PermanentError("metrics workspace deleted")
    world.platform.in_progress["set_mirror"] = 1
    tick(world, "tick-1")
    restoring = world.store.must(cycle.id)
    assert restoring.rollout is not None and restoring.rollout.phase is Phase.RESTORING
    assert world.platform.mirrors["credit-ep"] == {NEW: 20}
    tick(world, "tick-2", 10)
    failed = world.store.must(cycle.id)
    assert failed.state is CycleState.FAILED and failed.rollout is not None
    assert world.platform.mirrors["credit-ep"] == {}
    assert failed.rollout.mirror_off_pending is False
    assert failed.reason == "metrics workspace deleted; failed safe (credit-live at 100%)"


def test_failing_safe_outside_shadow_leaves_the_mirror_setting_alone() -> None:
    world = make_world()
    cycle, _ = start(world)
    world.metrics.failure = PermanentError("metrics workspace deleted")
    tick(world, "tick-1")
    assert world.store.must(cycle.id).state is CycleState.FAILED
    assert "credit-ep" not in world.platform.mirrors


def test_a_restore_the_platform_refuses_closes_the_cycle_and_says_so() -> None:
    world = make_world()
    cycle, _ = start(world)
    world.metrics.failure = PermanentError("metrics workspace deleted")
    del world.platform.deployments["credit-ep"]["credit-live"]  # removed by hand meanwhile
    tick(world, "tick-1")
    failed = world.store.must(cycle.id)
    assert failed.state is CycleState.FAILED
    assert failed.reason == (
        "metrics workspace deleted; failed safe (restoring credit-live failed permanently: "
        "unknown deployments ['credit-live'])"
    )


def test_a_first_deployment_that_fails_safe_has_no_previous_to_restore() -> None:
    world = make_world()
    world.services.policy = policy(traffic_attempts=1)
    cycle = registered(world, "credit", "7")
    world.platform.deployments["credit-ep"] = {}
    world.platform.traffic["credit-ep"] = {}
    world.platform.ignore_traffic_changes = True
    register(world, cycle)
    failed = world.store.must(cycle.id)
    assert failed.state is CycleState.FAILED
    assert failed.reason == (
        "traffic change did not take effect after 1 attempts; failed safe (no previous deployment)"
    )
    assert world.platform.deployments["credit-ep"] == {}  # the candidate goes as the cycle fails


def test_failing_a_rollout_that_never_began_closes_the_cycle_as_an_error() -> None:
    world = make_world()
    world.services.policy = policy()
    cycle = registered(world, "credit", "7")
    before = len(world.audit.records)
    bus_of(world).handle(FailRollout(cycle.id, "endpoint credit-ep was deleted", "fail-1"))
    written = since(world, before, cycle)
    assert [(r.kind, r.summary, r.reason, r.caused_by) for r in written] == [
        ("error", "cycle REGISTERED -> FAILED", "endpoint credit-ep was deleted", "fail-1")
    ]


# --- rolling back ---------------------------------------------------------------------------


def test_a_rollback_is_a_decision_by_the_system_unless_an_operator_asked() -> None:
    world = make_world()
    cycle, _ = start(world)
    before = len(world.audit.records)
    bus_of(world).handle(HealthAlertFired("credit", "credit-endpoint-errors", "alert-1"))
    rolled = [r for r in since(world, before, cycle) if r.summary.endswith("-> ROLLED_BACK")]
    assert [(r.kind, r.actor, r.caused_by) for r in rolled] == [("decision", "system", "alert-1")]


def test_a_manual_rollback_still_running_is_finished_in_the_operators_name() -> None:
    world = make_world()
    cycle, _ = start(world)
    world.platform.in_progress["set_traffic"] = 1
    bus_of(world).handle(ManualRollback("credit", "alice", "looks off", "manual-1"))
    pending = world.store.must(cycle.id).rollout
    assert pending is not None and pending.rolling_back is not None
    assert pending.in_progress == "rollback to credit-live"
    written = tick(world, "tick-1", 10)
    rolled = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
    assert [(r.actor, r.reason, r.caused_by) for r in rolled] == [
        ("alice", "rolled back: manual rollback by alice: looks off", "tick-1")
    ]
    assert [r.actor for r in written if r.summary.startswith(f"deployment {NEW} deleted")] == [
        "alice"
    ]


def test_rolling_back_a_rollout_with_nothing_before_it_restores_nothing() -> None:
    world = make_world()
    world.services.policy = policy()
    cycle = registered(world, "credit", "7")
    world.platform.deployments["credit-ep"] = {}
    world.platform.traffic["credit-ep"] = {}
    world.platform.in_progress["create_deployment"] = 1  # still being created
    register(world, cycle)
    before = len(world.audit.records)
    bus_of(world).handle(HealthAlertFired("credit", "credit-endpoint-errors", "alert-1"))
    rolled = [r for r in since(world, before, cycle) if r.summary.endswith("-> ROLLED_BACK")]
    assert [r.evidence for r in rolled] == [{"restored": None}]
    assert world.platform.traffic["credit-ep"] == {}


def test_a_rollback_in_shadow_switches_the_mirror_off_and_keeps_live_at_100() -> None:
    world = make_world()
    cycle, _ = start(world, shadow=SHADOW)
    world.metrics.samples = {NEW: HealthSample(500, 100, 40.0), LIVE["credit"]: HEALTHY}
    tick(world, "tick-1", 120)
    assert world.store.must(cycle.id).state is CycleState.ROLLED_BACK
    assert world.platform.mirrors["credit-ep"] == {}
    assert world.platform.traffic["credit-ep"] == {"credit-live": 100}
