"""The sequential canary judge in the rollout, over time with a fake clock and per-request data."""

from __future__ import annotations

from typing import Any

import pytest

from shared.messages import Reconcile
from shared.model import CycleState
from tests.fakes import World, make_policy, make_world
from tests.unit.test_lifecycle import bus_of, registered_and_rolling

LOOK = 30.0  # check_every


def sequential_world(**sequential: Any) -> World:
    spec = {"check_every": "30s", "max_bake": "10m", **sequential}
    return make_world(make_policy(rollout__analysis="sequential", rollout__sequential=spec))


def serve_and_look(
    world: World,
    cycle: Any,
    *,
    new: tuple[int, int, float],
    live: tuple[int, int, float],
    seconds: float = LOOK,
) -> Any:
    """Both deployments serve (requests, errors, ms) for ``seconds``; then a reconcile."""
    start = world.clock.now()
    for deployment, (count, errors, ms) in ((cycle.rollout.deployment, new), ("blue", live)):
        world.metrics.serve(deployment, start, seconds, count, errors, ms)
    world.clock.advance(seconds)
    bus_of(world).handle(Reconcile())
    return world.store.must(cycle.id)


def decisions(world: World, cycle_id: str) -> list[Any]:
    return [r for r in world.audit.records if r.cycle == cycle_id and r.kind == "decision"]


def test_a_healthy_step_passes_early_with_the_sentence_and_the_band() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    assert cycle.rollout.percent == 10
    assert world.wakeups.asked[-1][0] == world.clock.now() + _seconds(LOOK)
    looks = 0
    while cycle.rollout.percent == 10 and looks < 10:
        cycle = serve_and_look(world, cycle, new=(300, 0, 50.0), live=(300, 0, 50.0))
        looks += 1
    assert cycle.rollout.percent == 50
    assert looks * LOOK < 300  # well before the 5m fixed bake
    passed = decisions(world, cycle.id)[-1]
    evidence = passed.evidence
    assert evidence["analysis"] == "sequential" and evidence["tolerance"] == 0.01
    assert passed.reason.startswith(f"passed after {evidence['new_requests']} requests: ")
    assert "with 95% confidence at every look" in passed.reason
    band = evidence["bounds"]
    assert len(band) == looks
    assert band[-1]["errors"]["upper"] < 0.01 < band[0]["errors"]["upper"]
    assert [b["new_requests"] for b in band] == [300 * (i + 1) for i in range(looks)]


def test_a_harmful_step_is_rolled_back_at_the_first_looks() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    new = cycle.rollout.deployment
    cycle = serve_and_look(world, cycle, new=(300, 30, 50.0), live=(300, 3, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.traffic["credit-ep"]["blue"] == 100
    assert world.platform.traffic["credit-ep"].get(new, 0) == 0
    assert "rolled back after 300 requests: the error-rate difference is above" in cycle.reason
    assert cycle.rollout.checks[-1].evidence["errors"]["lower"] > 0


def test_a_slower_step_is_rolled_back_on_latency() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    for _ in range(4):
        cycle = serve_and_look(world, cycle, new=(300, 0, 90.0), live=(300, 0, 50.0))
        if cycle.state is not CycleState.ROLLING_OUT:
            break
    assert cycle.state is CycleState.ROLLED_BACK
    assert "slower than live's p95" in cycle.reason


def test_too_little_traffic_keeps_looking_and_says_so() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    cycle = serve_and_look(world, cycle, new=(0, 0, 50.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.percent == 10
    assert "no requests yet" in cycle.reason and "next look" in cycle.reason
    assert world.wakeups.asked[-1][0] == world.clock.now() + _seconds(LOOK)
    cycle = serve_and_look(world, cycle, new=(5, 0, 50.0), live=(45, 0, 50.0))
    assert cycle.state is CycleState.ROLLING_OUT and "not decided yet" in cycle.reason


def test_no_decision_by_max_bake_fails_safe_by_default() -> None:
    world = sequential_world(max_bake="2m")
    cycle = registered_and_rolling(world)
    for _ in range(4):
        cycle = serve_and_look(world, cycle, new=(3, 0, 50.0), live=(27, 0, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    assert "no decision within max_bake (120s), failing safe" in cycle.reason
    assert world.platform.traffic["credit-ep"]["blue"] == 100


def test_hold_at_max_bake_keeps_the_traffic_and_keeps_looking() -> None:
    world = sequential_world(max_bake="2m", on_max_bake="hold")
    cycle = registered_and_rolling(world)
    traffic = dict(world.platform.traffic["credit-ep"])
    for _ in range(6):
        cycle = serve_and_look(world, cycle, new=(3, 0, 50.0), live=(27, 0, 50.0))
    assert cycle.state is CycleState.ROLLING_OUT
    assert world.platform.traffic["credit-ep"] == traffic
    assert "held past max_bake" in cycle.reason
    held = [d for d in decisions(world, cycle.id) if "held at max_bake" in d.summary]
    assert len(held) == 1  # audited once, not at every look
    for _ in range(70):  # a long hold keeps the cycle's record of looks bounded
        cycle = serve_and_look(world, cycle, new=(1, 0, 50.0), live=(9, 0, 50.0))
    looks = [c for c in cycle.rollout.checks if c.step == 0]
    assert len(looks) <= 60 and looks[0].new_requests == 3
    assert cycle.state is CycleState.ROLLING_OUT
    # enough traffic later still decides (the sequence is valid however long it looks)
    cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=(400, 0, 50.0))
    cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=(400, 0, 50.0))
    assert cycle.rollout.percent == 50


def full_step_decision(world: World, live_at_full: tuple[int, int, float]) -> Any:
    """Healthy steps up to 100%, where live serves ``live_at_full``; the 100% decision."""
    cycle = registered_and_rolling(world)
    for _ in range(20):
        if cycle.state is not CycleState.ROLLING_OUT or cycle.rollout.percent == 100:
            break
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=(400, 0, 50.0))
    assert cycle.rollout.percent == 100
    for _ in range(10):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=live_at_full)
    assert cycle.state is CycleState.PROMOTED
    return [d for d in decisions(world, cycle.id) if d.summary == "canary at 100% healthy"][-1]


def test_the_full_step_compares_with_lives_last_window_and_promotes() -> None:
    full = full_step_decision(sequential_world(), live_at_full=(0, 0, 50.0))
    assert "serves no traffic at this step" in full.evidence["baseline"]
    assert full.evidence["live_requests"] > 0


@pytest.mark.parametrize("steps", [[10, 50, 100], [50, 100]])
def test_requests_still_in_flight_to_live_at_the_full_step_are_no_sample_of_it(
    steps: list[int],
) -> None:
    """A request or two reaches live just after the traffic moved to 100%: judged as live's
    sample (n = 1) the bounds never narrowed, and a healthy model waited for max_bake (found
    by the README tour on a loaded machine)."""
    world = make_world(
        make_policy(
            rollout__analysis="sequential",
            rollout__steps=steps,
            rollout__sequential={"check_every": "30s", "max_bake": "10m"},
        )
    )
    full = full_step_decision(world, live_at_full=(1, 0, 50.0))
    assert "serves no traffic at this step" in full.evidence["baseline"]
    assert full.evidence["live_requests"] > 1


def test_a_step_where_live_serves_is_judged_on_lives_own_window() -> None:
    """At 50% live's sample is what it served during that step, not its window before."""
    world = sequential_world()
    cycle = registered_and_rolling(world)
    while cycle.state is CycleState.ROLLING_OUT and cycle.rollout.percent == 10:
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=(4000, 0, 50.0))
    assert cycle.rollout.percent == 50
    for _ in range(10):
        if cycle.state is not CycleState.ROLLING_OUT or cycle.rollout.percent != 50:
            break
        cycle = serve_and_look(world, cycle, new=(300, 0, 50.0), live=(300, 0, 50.0))
    half = [d for d in decisions(world, cycle.id) if d.summary == "canary at 50% healthy"][-1]
    assert "baseline" not in half.evidence
    assert 0 < half.evidence["live_requests"] < 4000  # this step's requests only


def test_threshold_stays_the_default() -> None:
    assert make_policy().models["credit"].rollout.analysis == "threshold"  # type: ignore[union-attr]


def _seconds(s: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=s)


def test_the_watch_rolls_back_on_harm_against_the_previous_deployments_last_window() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    for _ in range(30):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        live = (0, 0, 50.0) if cycle.rollout.percent == 100 else (400, 0, 50.0)
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=live)
    assert cycle.state is CycleState.PROMOTED and cycle.rollout.phase == "watch"
    # after promotion the new deployment fails 10% of requests; the previous one, kept warm,
    # serves nothing, so its last window with traffic is the baseline
    for _ in range(5):
        if cycle.state is not CycleState.PROMOTED:
            break
        cycle = serve_and_look(world, cycle, new=(300, 30, 50.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.traffic["credit-ep"]["blue"] == 100
    assert "during the watch period: rolled back after" in cycle.reason
    rolled = [r for r in world.audit.records if r.cycle == cycle.id and "ROLLED_BACK" in r.summary]
    assert "kept warm and serves no traffic" in rolled[-1].evidence["baseline"]


def test_a_healthy_watch_runs_its_course() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    for _ in range(30):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        live = (0, 0, 50.0) if cycle.rollout.percent == 100 else (400, 0, 50.0)
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=live)
    for _ in range(25):  # 12.5 minutes past the 10-minute watch
        cycle = serve_and_look(world, cycle, new=(300, 0, 50.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.PROMOTED and cycle.rollout.phase == "done"


def test_a_reconcile_between_looks_does_not_look_again() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    cycle = serve_and_look(world, cycle, new=(100, 0, 50.0), live=(100, 0, 50.0))
    looks = len(cycle.rollout.checks)
    cycle = serve_and_look(world, cycle, new=(100, 0, 50.0), live=(100, 0, 50.0), seconds=5)
    assert len(cycle.rollout.checks) == looks  # 5 s after a look: the next is due at 30 s
    cycle = serve_and_look(world, cycle, new=(100, 0, 50.0), live=(100, 0, 50.0), seconds=25)
    assert len(cycle.rollout.checks) == looks + 1


def full_step(world: World) -> Any:
    cycle = registered_and_rolling(world)
    for _ in range(20):
        if cycle.state is not CycleState.ROLLING_OUT or cycle.rollout.percent == 100:
            break
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=(400, 0, 50.0))
    assert cycle.rollout.percent == 100
    return cycle


def test_at_the_full_step_latency_is_not_judged_against_another_moment() -> None:
    """Live's last window is from another time: its latencies were that moment's load on the
    machine, so a slower full step (a loaded machine, say) passes on errors alone."""
    world = sequential_world()
    cycle = full_step(world)
    for _ in range(10):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        cycle = serve_and_look(world, cycle, new=(400, 0, 200.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.PROMOTED
    full = [d for d in decisions(world, cycle.id) if d.summary == "canary at 100% healthy"][-1]
    assert "on errors only" in full.evidence["baseline"]


def test_at_the_full_step_errors_are_still_judged_against_lives_last_window() -> None:
    world = sequential_world()
    cycle = full_step(world)
    for _ in range(10):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        cycle = serve_and_look(world, cycle, new=(400, 80, 50.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK


def _six_places(band: dict[str, float]) -> bool:
    return all(v == round(v, 6) for v in band.values())


def test_a_passed_step_records_its_window_and_every_looks_band_in_six_places() -> None:
    """What the console's evidence band and an auditor read off a passed step."""
    world = sequential_world()
    cycle = registered_and_rolling(world)
    started = world.clock.now()
    looks = 0
    while cycle.rollout.percent == 10:
        cycle = serve_and_look(world, cycle, new=(300, 0, 50.0), live=(300, 0, 50.0))
        looks += 1
    evidence = decisions(world, cycle.id)[-1].evidence
    assert evidence["window"] == [started.isoformat(), world.clock.now().isoformat()]
    assert (evidence["percent"], evidence["verdict"]) == (10, "pass")
    assert (evidence["new_requests"], evidence["live_requests"]) == (300 * looks, 300 * looks)
    assert evidence["latency_from"] == (started + _seconds(30)).isoformat()  # default warm-up
    last = evidence["bounds"][-1]
    assert last["at"] == world.clock.now().isoformat()
    for name in ("errors", "latency"):
        band = last[name]
        assert set(band) == {"estimate", "lower", "upper"} and _six_places(band)
        assert band["lower"] < band["estimate"] == 0.0 < band["upper"]


def test_a_watch_rollback_records_the_window_the_baseline_and_the_band() -> None:
    """The rollback record of the watch period names the window judged, the previous
    deployment's last window with traffic (errors only: its latencies were another moment's),
    the request counts and the error band that showed harm."""
    world = sequential_world()
    cycle = registered_and_rolling(world)
    for _ in range(30):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        live = (0, 0, 50.0) if cycle.rollout.percent == 100 else (400, 0, 50.0)
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=live)
    promoted, steps = world.clock.now(), cycle.rollout.steps
    cycle = serve_and_look(world, cycle, new=(300, 30, 50.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    rolled = [r for r in world.audit.records if r.cycle == cycle.id and "ROLLED_BACK" in r.summary]
    evidence = dict(rolled[-1].evidence)
    errors = evidence.pop("errors")
    assert evidence == {
        "analysis": "sequential",
        "window": [promoted.isoformat(), world.clock.now().isoformat()],
        "baseline": (
            "blue is kept warm and serves no traffic: compared with its last window with "
            f"traffic ({steps[-2].at.isoformat()} to {steps[-1].at.isoformat()}), on errors only"
        ),
        "tolerance": 0.01,
        "new_requests": 300,
        "live_requests": 800,  # the 50% step's window: two looks of 400
        "latency": None,
        "sentence": cycle.reason.removeprefix("rolled back: during the watch period: "),
        "restored": {"blue": 100},
    }
    assert errors["estimate"] == 0.1 and _six_places(errors)
    assert 0.01 < errors["lower"] < 0.1 < errors["upper"]


def test_a_hold_starts_at_the_look_that_reaches_max_bake_and_is_audited_with_that_look() -> None:
    world = sequential_world(max_bake="2m", on_max_bake="hold")
    cycle = registered_and_rolling(world)
    started = world.clock.now()
    reasons = []
    for _ in range(4):  # the 4th look is exactly max_bake (2m) after the step began
        cycle = serve_and_look(world, cycle, new=(3, 0, 50.0), live=(27, 0, 50.0))
        reasons.append(cycle.reason)
    deadline = (started + _seconds(120)).strftime("%H:%M:%S")
    assert all(f"decision by {deadline} UTC at the latest" in r for r in reasons[:3])
    assert "held past max_bake" not in " ".join(reasons[:3])
    assert "canary at 10% (held past max_bake): 12 requests" in reasons[3]
    assert "decision by" not in reasons[3]
    (held,) = [d for d in decisions(world, cycle.id) if "held at max_bake" in d.summary]
    assert held.caused_by == "timer:reconcile"
    assert held.reason == held.evidence["sentence"] and held.reason.startswith("12 requests: ")
    assert held.evidence["window"] == [started.isoformat(), world.clock.now().isoformat()]
    assert (held.evidence["verdict"], held.evidence["new_requests"]) == ("continue", 12)


def test_a_cold_start_is_not_judged_on_latency() -> None:
    """The new deployment's first seconds after a traffic change are slow (a cold process):
    that is the warm-up, judged on errors only (a deployment slower after it is still rolled
    back: test_a_slower_step_is_rolled_back_on_latency, under the same default warm-up)."""
    world = sequential_world(latency_warmup="30s")
    cycle = registered_and_rolling(world)
    cycle = serve_and_look(world, cycle, new=(300, 0, 400.0), live=(300, 0, 50.0))
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.percent == 10
    first = cycle.rollout.checks[-1]
    assert first.evidence["latency"] is None  # not judged yet
    while cycle.rollout.percent == 10 and cycle.state is CycleState.ROLLING_OUT:
        cycle = serve_and_look(world, cycle, new=(300, 0, 50.0), live=(300, 0, 50.0))
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.percent == 50


def test_no_step_passes_before_its_warm_up_ends_and_the_look_says_when_latency_counts() -> None:
    world = sequential_world(latency_warmup="90s")
    cycle = registered_and_rolling(world)
    started = world.clock.now()
    for _ in range(3):  # 90 s of healthy traffic: errors alone would pass it
        cycle = serve_and_look(world, cycle, new=(1000, 0, 50.0), live=(1000, 0, 50.0))
        assert cycle.rollout.percent == 10
    look = cycle.rollout.checks[-1]
    assert look.verdict == "continue"
    warm = (started + _seconds(90)).isoformat()
    assert f"latency is judged from {warm} (the step's warm-up); not decided yet" in look.why
    while cycle.rollout.percent == 10 and cycle.state is CycleState.ROLLING_OUT:
        cycle = serve_and_look(world, cycle, new=(1000, 0, 50.0), live=(1000, 0, 50.0))
    assert cycle.rollout.percent == 50


def test_errors_during_the_warm_up_still_roll_back() -> None:
    world = sequential_world(latency_warmup="10m")
    cycle = registered_and_rolling(world)
    cycle = serve_and_look(world, cycle, new=(300, 30, 50.0), live=(300, 3, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    assert "error-rate difference is above" in cycle.reason
