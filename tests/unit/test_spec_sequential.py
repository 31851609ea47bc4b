"""What the sequential judge promises: its bounds are the documented mixture boundary, and each
look passes, rolls back or continues for the reason it states."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from shared.sequential import (
    RequestSample,
    Settings,
    boundary,
    difference_bound,
    judge,
    percentile,
    rho_for,
)


def log_mixture(s: float, v: float, rho: float) -> float:
    """The module docstring's half-normal mixture, written out independently."""
    w = v + rho
    phi = 0.5 * math.erfc(-(s / math.sqrt(w)) / math.sqrt(2.0))
    return math.log(2 * math.sqrt(rho / w) * math.exp(s * s / (2 * w)) * phi)


@pytest.mark.parametrize("v", [5.0, 400.0, 2.5e4, 1e6])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("rho", [10.0, 3000.0])
def test_the_boundary_is_where_the_mixture_reaches_one_over_alpha(
    v: float, alpha: float, rho: float
) -> None:
    b = boundary(v, alpha, rho)
    assert log_mixture(b, v, rho) == pytest.approx(math.log(1 / alpha), abs=1e-6)
    assert log_mixture(b * (1 - 1e-6), v, rho) < math.log(1 / alpha)


@pytest.mark.parametrize(("delta", "alpha"), [(0.03, 0.05), (0.1, 0.01), (0.001, 0.2)])
def test_rho_is_tuned_to_the_information_where_delta_is_detectable(
    delta: float, alpha: float
) -> None:
    log_term = 2 * math.log(1 / alpha)
    expected = (3 / delta) ** 2 / (log_term + math.log(1 + log_term))
    assert rho_for(delta, alpha) == pytest.approx(expected, rel=1e-12)


def test_rho_of_a_zero_delta_is_finite() -> None:
    assert math.isfinite(rho_for(0.0, 0.05)) and rho_for(0.0, 0.05) == rho_for(1e-6, 0.05)


@pytest.mark.parametrize(
    ("x_new", "n_new", "x_live", "n_live"),
    [(5, 1000, 2, 1000), (0, 50, 0, 80), (30, 200, 10, 900), (1, 3, 2, 4)],
)
def test_difference_bounds_follow_the_smoothed_plug_in_variance(
    x_new: int, n_new: int, x_live: int, n_live: int
) -> None:
    alpha, beta, rho = 0.05, 0.1, 500.0
    bound = difference_bound(x_new, n_new, x_live, n_live, alpha, beta, rho)
    s_new, s_live = (x_new + 1) / (n_new + 2), (x_live + 1) / (n_live + 2)
    v = 1 / (s_new * (1 - s_new) / n_new + s_live * (1 - s_live) / n_live)
    estimate = x_new / n_new - x_live / n_live
    assert bound.estimate == pytest.approx(estimate)
    assert bound.lower == pytest.approx(estimate - boundary(v, alpha, rho) / v)
    assert bound.upper == pytest.approx(estimate + boundary(v, beta, rho) / v)
    assert bound.lower < bound.estimate < bound.upper


@pytest.mark.parametrize("q", [0, 5, 50, 95, 99, 100])
@pytest.mark.parametrize("values", [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(range(37))])
def test_percentile_matches_numpys_default(q: float, values: list[float]) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def sample(requests: int, errors: int, ms: list[float] | None = None) -> RequestSample:
    return RequestSample(requests, errors, tuple(ms or []))


def test_default_settings() -> None:
    assert Settings() == Settings(0.05, 0.05, 0.01, 0.03, 0.05)


@pytest.mark.parametrize(
    ("new", "live", "why"),
    [
        (sample(0, 0), sample(10, 0), "no requests yet on the new deployment"),
        (sample(10, 0), sample(0, 0), "no requests yet on live"),
    ],
)
def test_no_requests_on_a_side_continues(new: RequestSample, live: RequestSample, why: str) -> None:
    verdict = judge(new, live, Settings())
    assert verdict.decision == "continue" and verdict.why == why
    assert (verdict.errors.lower, verdict.errors.upper) == (-1.0, 1.0)
    assert verdict.latency is None and verdict.live_p95_ms is None


def test_a_clearly_worse_error_rate_rolls_back_and_says_by_how_much() -> None:
    verdict = judge(sample(2000, 200), sample(2000, 20), Settings())
    assert verdict.decision == "rollback"
    assert verdict.errors.lower > 0
    assert verdict.why == (
        f"rolled back after 2000 requests: the error-rate difference is above "
        f"{verdict.errors.lower * 100:+.1f} pp (live's 1.00%) with 95% confidence at every look"
    )
    assert (verdict.new_requests, verdict.live_requests) == (2000, 2000)


def test_clearly_slower_requests_roll_back_and_say_against_which_p95() -> None:
    live_ms = [float(10 + i % 100) for i in range(3000)]
    new_ms = [ms + 80 for ms in live_ms]
    verdict = judge(sample(3000, 3, new_ms), sample(3000, 3, live_ms), Settings())
    assert verdict.decision == "rollback"
    assert verdict.latency is not None and verdict.latency.lower > 0
    assert verdict.live_p95_ms == pytest.approx(float(np.percentile(live_ms, 95)))
    assert verdict.why == (
        f"rolled back after 3000 requests: the share slower than live's p95 "
        f"({verdict.live_p95_ms:.0f} ms) exceeds live's by more than "
        f"{verdict.latency.lower * 100:+.1f} pp with 95% confidence at every look"
    )


def test_an_equal_deployment_passes_once_the_bounds_are_tight() -> None:
    ms = [float(10 + i % 100) for i in range(20000)]
    verdict = judge(sample(20000, 20, ms), sample(20000, 20, ms), Settings())
    assert verdict.decision == "pass"
    assert verdict.latency is not None and verdict.latency.upper < 0.05
    assert verdict.errors.upper < 0.01
    assert verdict.why == (
        f"passed after 20000 requests: the error-rate difference is below "
        f"{verdict.errors.upper * 100:+.1f} pp with 95% confidence at every look; the share "
        f"slower than live's p95 is below {verdict.latency.upper * 100:+.1f} pp"
    )


def test_without_latencies_errors_alone_decide_a_pass() -> None:
    verdict = judge(sample(20000, 20), sample(20000, 20), Settings())
    assert verdict.decision == "pass" and verdict.latency is None
    assert verdict.why.endswith("with 95% confidence at every look")


def test_a_slow_pass_on_errors_waits_for_latency() -> None:
    live_ms = [float(10 + i % 100) for i in range(20000)]
    new_ms = [ms + (3 if i % 25 == 0 else 0) for i, ms in enumerate(live_ms)]
    verdict = judge(sample(20000, 20, new_ms), sample(20000, 20, live_ms), Settings())
    assert verdict.errors.upper < 0.01
    assert verdict.latency is not None
    assert verdict.decision == ("pass" if verdict.latency.upper < 0.05 else "continue")


def test_an_undecided_look_continues_and_states_the_interval() -> None:
    verdict = judge(sample(100, 2), sample(100, 1), Settings(tolerance=0.02))
    assert verdict.decision == "continue"
    assert verdict.why == (
        f"100 requests: error-rate difference between {verdict.errors.lower * 100:+.1f} pp and "
        f"{verdict.errors.upper * 100:+.1f} pp, tolerance +2.0 pp; not decided yet"
    )


@pytest.mark.parametrize(("alpha", "beta"), [(0.01, 0.2), (0.2, 0.01)])
def test_the_stated_confidences_are_the_policys(alpha: float, beta: float) -> None:
    worse = judge(sample(4000, 400), sample(4000, 40), Settings(alpha=alpha, beta=beta))
    assert f"with {1 - alpha:.0%} confidence" in worse.why
    same = judge(sample(40000, 40), sample(40000, 40), Settings(alpha=alpha, beta=beta))
    assert same.decision == "pass" and f"with {1 - beta:.0%} confidence" in same.why


# --- the judge inside a rollout (handlers.canary_sequential) ------------------------------------


@pytest.mark.parametrize(
    ("rollout", "stages"),
    [
        ({"steps": [10, 50, 100], "watch": "10m"}, 4),
        ({"steps": [10, 50, 100], "watch": 0}, 3),
        ({"steps": [100], "watch": "10m", "shadow": {"percent": 50}}, 3),
        ({"steps": [5, 25, 50, 100], "watch": "1m", "shadow": {"percent": 100}}, 6),
    ],
)
def test_alpha_is_split_over_every_judged_stage(rollout: dict[str, object], stages: int) -> None:
    from shared.canary_judges import settings_of
    from shared.policy import Rollout

    seq = {"alpha": 0.06, "beta": 0.1, "tolerance": 0.02, "delta": 0.04, "latency_tolerance": 0.07}
    spec = Rollout.model_validate({"endpoint": "ep", "sequential": seq, **rollout})
    assert settings_of(spec) == Settings(0.06 / stages, 0.1, 0.02, 0.04, 0.07)


def test_an_undecided_look_says_when_the_next_look_and_the_decision_are_due() -> None:
    from tests.unit.test_lifecycle import registered_and_rolling
    from tests.unit.test_rollout_sequential import sequential_world, serve_and_look

    world = sequential_world(max_bake="10m")
    cycle = registered_and_rolling(world)
    started = world.clock.now()
    cycle = serve_and_look(world, cycle, new=(5, 0, 50.0), live=(45, 0, 50.0))
    nxt = (world.clock.now() + timedelta(seconds=30)).strftime("%H:%M:%S UTC")
    due = (started + timedelta(minutes=10)).strftime("%H:%M:%S UTC")
    check = cycle.rollout.checks[-1]
    assert cycle.reason == (
        f"canary at 10%: {check.why}; next look {nxt}, decision by {due} at the latest"
    )
    assert check.verdict == "continue" and check.evidence["percent"] == 10 and check.step == 0
    assert check.evidence["window"] == [started.isoformat(), world.clock.now().isoformat()]
    assert (check.new_requests, check.evidence["live_requests"]) == (5, 45)
    assert cycle.rollout.sequential_tolerance == 0.01


def test_a_look_without_new_traffic_adds_nothing_to_the_band() -> None:
    from tests.unit.test_lifecycle import registered_and_rolling
    from tests.unit.test_rollout_sequential import sequential_world, serve_and_look

    world = sequential_world()
    cycle = registered_and_rolling(world)
    cycle = serve_and_look(world, cycle, new=(5, 0, 50.0), live=(45, 0, 50.0))
    cycle = serve_and_look(world, cycle, new=(0, 0, 50.0), live=(0, 0, 50.0))
    cycle = serve_and_look(world, cycle, new=(0, 0, 50.0), live=(0, 0, 50.0))
    looks = [c for c in cycle.rollout.checks if c.sequential]
    assert [c.new_requests for c in looks] == [5]


def test_a_passed_step_is_audited_with_the_policys_settings() -> None:
    from tests.unit.test_lifecycle import registered_and_rolling
    from tests.unit.test_rollout_sequential import sequential_world, serve_and_look

    world = sequential_world(alpha=0.04, beta=0.1, tolerance=0.02, latency_tolerance=0.06)
    cycle = registered_and_rolling(world)
    for _ in range(10):
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=(400, 0, 50.0))
        if cycle.rollout.percent != 10:
            break
    assert cycle.rollout.percent == 50
    [passed] = [r for r in world.audit.records if r.summary == "canary at 10% healthy"]
    ev = passed.evidence
    assert (ev["alpha"], ev["beta"], ev["tolerance"], ev["latency_tolerance"]) == (
        0.04,
        0.1,
        0.02,
        0.06,
    )
    assert ev["percent"] == 10 and ev["verdict"] == "pass" and ev["sentence"] == passed.reason
    assert ev["new_requests"] == ev["bounds"][-1]["new_requests"]
    assert "baseline" not in ev
