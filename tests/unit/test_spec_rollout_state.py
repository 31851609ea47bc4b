"""What the stored rollout state promises: the JSON shape earlier versions wrote (and read) is
kept field by field, a missing or null key reads as its default, each transition changes what
it says and nothing else, and a phase moves only as the rollout allows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import InvalidTransition
from shared.rollout_state import Check, Phase, RollingBack, RolloutState, Step, traffic_text

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)


def full() -> RolloutState:
    """A state with every field set to something other than its default."""
    return RolloutState(
        endpoint="fraud-ep",
        deployment="fraud-v4",
        previous="fraud-v3",
        previous_traffic={"fraud-v3": 100},
        previous_champion="3",
        phase=Phase.WATCH,
        step=2,
        step_started_at=T0,
        steps=(
            Step(0, T0, {"fraud-v3": 100}, mirror=20),
            Step(100, T1, {"fraud-v4": 100, "fraud-v3": 0}),
        ),
        percent=100,
        next_check_at=T2,
        in_progress="traffic change",
        pending_step=2,
        traffic_failures=2,
        mirror_off_pending=True,
        restore_attempts=3,
        failed_because="x",
        failed_evidence={"wanted": {"fraud-v4": 50}},
        rolling_back=RollingBack("alert", {"value": 1}, "alice"),
        checks=(Check(T1, "pass", "500 requests", {"percent": 100, "step": 2}),),
        held=1,
        sequential_tolerance=0.02,
        promoted_at=T1,
        watch_until=T2,
        cleanup=("fraud-v2",),
        removed=("fraud-v1",),
        kept=("fraud-v0",),
        cleanup_failures={"fraud-v2": 1},
        cleanup_started=("fraud-v2",),
        extra={"future_key": [1]},
    )


FULL_JSON: dict[str, Any] = {
    "future_key": [1],
    "endpoint": "fraud-ep",
    "deployment": "fraud-v4",
    "previous": "fraud-v3",
    "previous_traffic": {"fraud-v3": 100},
    "previous_champion": "3",
    "phase": "watch",
    "step": 2,
    "step_started_at": T0.isoformat(),
    "steps": [
        {"percent": 0, "mirror": 20, "at": T0.isoformat(), "traffic": {"fraud-v3": 100}},
        {"percent": 100, "at": T1.isoformat(), "traffic": {"fraud-v4": 100, "fraud-v3": 0}},
    ],
    "percent": 100,
    "next_check_at": T2.isoformat(),
    "in_progress": "traffic change",
    "pending_step": 2,
    "traffic_failures": 2,
    "mirror_off_pending": True,
    "restore_attempts": 3,
    "failed_because": "x",
    "failed_evidence": {"wanted": {"fraud-v4": 50}},
    "rolling_back": {"reason": "alert", "evidence": {"value": 1}, "actor": "alice"},
    "checks": [
        {"at": T1.isoformat(), "percent": 100, "step": 2, "verdict": "pass", "why": "500 requests"}
    ],
    "held": 1,
    "sequential_tolerance": 0.02,
    "promoted_at": T1.isoformat(),
    "watch_until": T2.isoformat(),
    "cleanup": ["fraud-v2"],
    "removed": ["fraud-v1"],
    "kept": ["fraud-v0"],
    "cleanup_failures": {"fraud-v2": 1},
    "cleanup_started": ["fraud-v2"],
}


def test_every_field_is_stored_in_the_shape_earlier_versions_wrote_and_read_back() -> None:
    state = full()
    stored = state.to_json()
    assert stored == FULL_JSON
    assert list(stored["steps"][0]) == ["percent", "mirror", "at", "traffic"]
    assert json.loads(json.dumps(stored)) == stored  # plain JSON, nothing else
    assert RolloutState.from_json(json.loads(json.dumps(stored))) == state
    stored["previous_traffic"]["fraud-v3"] = 0  # the JSON is a copy: the state stays as it was
    stored["cleanup_failures"]["fraud-v2"] = 9
    assert state.previous_traffic == {"fraud-v3": 100}
    assert state.cleanup_failures == {"fraud-v2": 1}


def test_a_new_rollout_is_stored_with_the_keys_readers_expect_even_when_empty() -> None:
    state = RolloutState.begin("credit-ep", "credit-v8", None, {}, None)
    assert state.to_json() == {
        "endpoint": "credit-ep",
        "deployment": "credit-v8",
        "previous": None,
        "previous_traffic": {},
        "previous_champion": None,
        "phase": "creating",
        "step": -1,
        "step_started_at": None,
        "steps": [],
        "traffic_failures": 0,
        "mirror_off_pending": False,
        "restore_attempts": 0,
        "failed_because": "",
        "checks": [],
        "cleanup": [],
        "removed": [],
        "kept": [],
        "cleanup_failures": {},
        "cleanup_started": [],
    }
    assert RolloutState.from_json(state.to_json()) == state


def test_null_or_missing_keys_read_as_their_defaults() -> None:
    nulls = {
        "endpoint": None,
        "deployment": None,
        "failed_because": None,
        "phase": None,
        "steps": None,
        "checks": None,
        "cleanup": None,
        "removed": None,
        "kept": None,
        "cleanup_started": None,
        "previous_traffic": None,
        "cleanup_failures": None,
        "traffic_failures": None,
        "restore_attempts": None,
        "mirror_off_pending": None,
        "rolling_back": None,
        "step_started_at": None,
        "watch_until": None,
    }
    assert RolloutState.from_json(nulls) == RolloutState()
    assert RolloutState.from_json({}) == RolloutState()
    counts = RolloutState.from_json({"traffic_failures": "2", "mirror_off_pending": 1})
    assert (counts.traffic_failures, counts.mirror_off_pending) == (2, True)
    # a stored key this version does not know is kept, even one named like its own bag of them
    assert RolloutState.from_json({"extra": 1}).to_json()["extra"] == 1


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda: Step.from_json({"percent": 10}), "a rollout step records when it began"),
        (lambda: Check.from_json({"verdict": "pass"}), "a health check records when it ran"),
    ],
)
def test_a_stored_step_or_check_without_its_time_is_refused_saying_so(
    read: Any, message: str
) -> None:
    with pytest.raises(AssertionError, match=f"^{message}$"):
        read()


def test_a_stored_rollback_without_evidence_or_actor_is_the_systems() -> None:
    state = RolloutState.from_json({"rolling_back": {"reason": "alert", "evidence": None}})
    assert state.rolling_back == RollingBack("alert", {}, "system")


def test_a_stored_step_or_check_reads_back_what_was_written() -> None:
    step = Step.from_json({"at": T0.isoformat(), "traffic": None})
    assert step == Step(0, T0, {}, None)
    check = Check.from_json({"at": T1.isoformat(), "errors": {"upper": 0.1}})
    assert (check.at, check.verdict, check.why, check.evidence) == (
        T1,
        "",
        "",
        {"errors": {"upper": 0.1}},
    )


# --- a look's evidence ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("evidence", "sequential", "step", "new_requests"),
    [
        ({"analysis": "sequential", "step": 1, "new_requests": 300}, True, 1, 300),
        ({"analysis": "threshold", "step": 0, "new_requests": 0}, False, 0, 0),
        ({"step": "1", "new_requests": 3.5}, False, None, None),
        ({}, False, None, None),
    ],
)
def test_a_check_reads_its_evidence_only_when_it_has_the_right_type(
    evidence: dict[str, Any], sequential: bool, step: int | None, new_requests: int | None
) -> None:
    check = Check(T1, "pass", "ok", evidence)
    assert (check.sequential, check.step, check.new_requests) == (sequential, step, new_requests)


def test_a_sequential_looks_bounds_are_its_time_and_its_four_figures() -> None:
    evidence = {
        "analysis": "sequential",
        "errors": {"upper": 0.01},
        "latency": {"upper": 0.05},
        "new_requests": 300,
        "live_requests": 2700,
        "percent": 10,
    }
    assert Check(T1, "continue", "", evidence).bounds() == {
        "at": T1.isoformat(),
        "errors": {"upper": 0.01},
        "latency": {"upper": 0.05},
        "new_requests": 300,
        "live_requests": 2700,
    }


# --- transitions ---------------------------------------------------------------------------


def test_traffic_for_a_share_gives_the_rest_to_the_previous_deployment() -> None:
    ro = RolloutState.begin("credit-ep", "credit-v8", "credit-live", {"credit-live": 100}, "7")
    assert ro.traffic_for(0) == {"credit-v8": 0, "credit-live": 100}
    assert ro.traffic_for(10) == {"credit-v8": 10, "credit-live": 90}
    assert ro.traffic_for(99) == {"credit-v8": 99, "credit-live": 1}
    assert ro.traffic_for(100) == {"credit-v8": 100, "credit-live": 0}
    first = RolloutState.begin("credit-ep", "credit-v8", None, {}, None)
    assert first.traffic_for(100) == {"credit-v8": 100}
    assert first.traffic_for(0) == {"credit-v8": 0}


def test_traffic_text_lists_the_largest_share_first_then_by_name() -> None:
    assert traffic_text({}) == "no traffic"
    assert traffic_text({"b": 50, "a": 50, "c": 0, "z": 100}) == "z 100%, a 50%, b 50%, c 0%"


def test_shadow_then_steps_record_each_traffic_change_in_order() -> None:
    ro = RolloutState.begin("credit-ep", "credit-v8", "credit-live", {"credit-live": 100}, "7")
    assert (ro.phase, ro.judging) == (Phase.CREATING, False)
    ro = ro.waiting_for("deployment credit-v8")
    assert ro.in_progress == "deployment credit-v8"
    ro = ro.platform_done().in_shadow(T0, 20)
    assert (ro.phase, ro.percent, ro.step_started_at, ro.in_progress) == (Phase.SHADOW, 0, T0, None)
    assert ro.steps == (Step(0, T0, {"credit-live": 100}, 20),)
    assert (ro.stage(), ro.judging) == ("shadow", True)
    ro = ro.applying_step(0)
    assert ro.pending_step == 0
    ro = ro.in_step(0, 10, T1, {"credit-v8": 10, "credit-live": 90})
    assert (ro.phase, ro.step, ro.percent, ro.step_started_at, ro.pending_step) == (
        Phase.CANARY,
        0,
        10,
        T1,
        None,
    )
    assert ro.steps[-1] == Step(10, T1, {"credit-v8": 10, "credit-live": 90})
    assert len(ro.steps) == 2
    assert (ro.stage(), ro.judging) == ("canary at 10%", True)


def test_traffic_failures_count_up_and_a_confirmed_change_clears_them() -> None:
    ro = RolloutState(phase=Phase.CANARY).traffic_unconfirmed().traffic_unconfirmed()
    assert ro.traffic_failures == 2
    ro = ro.waiting_for("traffic change").traffic_confirmed()
    assert (ro.traffic_failures, ro.in_progress) == (0, None)


def test_each_failed_restore_is_counted_and_keeps_why_it_failed() -> None:
    ro = RolloutState(phase=Phase.CANARY).restoring("breach", None)
    assert (ro.phase, ro.restore_attempts, ro.failed_because, ro.failed_evidence) == (
        Phase.RESTORING,
        1,
        "breach",
        {},
    )
    ro = ro.restoring("breach", {"wanted": 1})
    assert (ro.restore_attempts, ro.failed_evidence) == (2, {"wanted": 1})
    assert ro.failed().phase is Phase.FAILED


@pytest.mark.parametrize(("watch_until", "phase"), [(T2, Phase.WATCH), (None, Phase.DONE)])
def test_a_promotion_is_watched_until_its_end_or_done(
    watch_until: datetime | None, phase: Phase
) -> None:
    ro = RolloutState(phase=Phase.CANARY, next_check_at=T1).promoted(T1, watch_until)
    assert (ro.phase, ro.promoted_at, ro.watch_until, ro.next_check_at) == (
        phase,
        T1,
        watch_until,
        None,
    )
    if phase is Phase.WATCH:
        over = ro.due(T2).watch_over()
        assert (over.phase, over.next_check_at) == (Phase.DONE, None)


def test_switching_the_mirror_off_is_marked_pending_until_it_took_effect() -> None:
    ro = RolloutState(phase=Phase.SHADOW).mirror_off(pending=True)
    assert ro.mirror_off_pending is True and ro.phase is Phase.SHADOW
    assert ro.mirror_off(pending=False).mirror_off_pending is False


def test_a_rollback_ends_what_was_pending() -> None:
    pending = RollingBack("alert", {"value": 1}, "alice")
    ro = RolloutState(phase=Phase.CANARY).rollback_pending(pending).waiting_for("rollback")
    assert ro.rolling_back == pending
    done = ro.rolled_back()
    assert (done.phase, done.rolling_back, done.in_progress) == (Phase.ROLLED_BACK, None, None)


def test_clean_up_records_each_deployment_once() -> None:
    ro = RolloutState(phase=Phase.DONE).cleanup_pending(("a", "b"))
    ro = ro.deployment_done("removed", "a").deployment_done("removed", "a")
    ro = ro.deployment_done("kept", "b").deployment_done("kept", "b")
    ro = ro.deletion_failed("c").deletion_failed("c").deletion_failed("d")
    ro = ro.deletion_started("a")
    assert (ro.cleanup, ro.removed, ro.kept) == (("a", "b"), ("a",), ("b",))
    assert ro.cleanup_failures == {"c": 2, "d": 1}
    assert ro.cleanup_started == ("a",)
    with pytest.raises(AssertionError):
        ro.deployment_done("lost", "a")


def test_checks_holds_and_tolerance_are_kept_as_given() -> None:
    first, second = Check(T0, "wait", "thin"), Check(T1, "pass", "ok")
    ro = RolloutState(phase=Phase.CANARY).checked(first).checked(second)
    assert ro.checks == (first, second)
    assert ro.with_checks((second,)).checks == (second,)
    assert ro.holding(1).held == 1 and ro.judged_with(0.02).sequential_tolerance == 0.02


END = {Phase.FAILED, Phase.DONE, Phase.ROLLED_BACK}
ALLOWED = {
    Phase.CREATING: {Phase.SHADOW, Phase.CANARY, Phase.RESTORING, Phase.FAILED, Phase.ROLLED_BACK},
    Phase.SHADOW: {Phase.CANARY, Phase.RESTORING, Phase.FAILED, Phase.ROLLED_BACK},
    Phase.CANARY: {
        Phase.CANARY,
        Phase.WATCH,
        Phase.DONE,
        Phase.RESTORING,
        Phase.FAILED,
        Phase.ROLLED_BACK,
    },
    Phase.RESTORING: {Phase.RESTORING, Phase.FAILED, Phase.ROLLED_BACK},
    Phase.WATCH: {Phase.DONE, Phase.ROLLED_BACK},
    **{phase: set() for phase in END},
}
MOVES: dict[Phase, Any] = {
    Phase.SHADOW: lambda ro: ro.in_shadow(T0, 20),
    Phase.CANARY: lambda ro: ro.in_step(0, 10, T0, {}),
    Phase.RESTORING: lambda ro: ro.restoring("x", None),
    Phase.FAILED: lambda ro: ro.failed(),
    Phase.WATCH: lambda ro: ro.promoted(T0, T1),
    Phase.DONE: lambda ro: ro.promoted(T0, None),
    Phase.ROLLED_BACK: lambda ro: ro.rolled_back(),
}


@pytest.mark.parametrize("source", list(Phase))
@pytest.mark.parametrize("target", list(MOVES))
def test_a_phase_moves_only_as_the_rollout_allows(source: Phase, target: Phase) -> None:
    ro = RolloutState("e", "d", previous="live", phase=source)
    if target in ALLOWED[source] or target is source:  # staying put is always allowed
        assert MOVES[target](ro).phase is target
    else:
        with pytest.raises(
            InvalidTransition, match=f"^rollout: {source.value} -> {target.value} is not allowed$"
        ):
            MOVES[target](ro)
