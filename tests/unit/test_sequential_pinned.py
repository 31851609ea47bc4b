"""The sequential judge pinned where a user would look: the boundary over the whole range of
information (an independent root of the mixture), the exact edges of each decision rule, the
counts behind the latency share and the verdict of a side without requests."""

from __future__ import annotations

import math

import pytest

from shared.sequential import (
    Bound,
    RequestSample,
    Settings,
    _decision,
    boundary,
    difference_bound,
    judge,
    rho_for,
)


def log_mixture(s: float, v: float, rho: float) -> float:
    """Howard et al. (2021) one-sided normal mixture, in logs, written out independently."""
    w = v + rho
    tail = 0.5 * math.erfc(-s / math.sqrt(2.0 * w))
    return math.log(2.0 * math.sqrt(rho / w) * tail) + s * s / (2.0 * w)


def reference_root(v: float, alpha: float, rho: float) -> float:
    """The smallest ``s`` with mixture >= 1/alpha: doubling, then bisection to float resolution."""
    target, high = math.log(1.0 / alpha), 1e-3
    while log_mixture(high, v, rho) < target:
        high *= 2.0
    low = 0.0
    while True:
        mid = 0.5 * (low + high)
        if mid in (low, high):
            return high
        if log_mixture(mid, v, rho) < target:
            low = mid
        else:
            high = mid


@pytest.mark.parametrize(
    ("v", "alpha", "rho"),
    [
        (0.01, 0.05, 0.01),  # little information: the boundary is far below 1
        (0.3, 0.2, 0.05),
        (5.0, 0.05, 0.2),  # a mixture precision below 1
        (1e4, 0.05, 0.5),
        (1e6, 0.01, 1e4),
        (1e9, 0.05, 10.0),  # far more information than precision
    ],
)
def test_the_boundary_is_the_mixtures_root_over_the_whole_range(
    v: float, alpha: float, rho: float
) -> None:
    assert boundary(v, alpha, rho) == pytest.approx(reference_root(v, alpha, rho), rel=1e-8)


def test_a_boundary_below_one_is_found_where_it_is() -> None:
    """With information 0.01 and precision 0.01 the boundary at alpha 0.05 is near 0.37."""
    s = boundary(0.01, 0.05, 0.01)
    assert 0.3 < s < 0.45
    assert log_mixture(s, 0.01, 0.01) == pytest.approx(math.log(20.0), rel=1e-7)


LIVE = RequestSample(1000, 10, ())


@pytest.mark.parametrize(
    ("errors", "latency", "decision"),
    [
        (Bound(0.0, 0.0, 0.5), None, "continue"),  # a lower bound at zero is not "worse"
        (Bound(0.0, 1e-12, 0.5), None, "rollback"),
        (Bound(0.0, -0.5, 0.005), Bound(0.0, 0.0, 0.5), "continue"),
        (Bound(0.0, -0.5, 0.005), Bound(0.0, 1e-12, 0.5), "rollback"),
        (Bound(0.0, -0.5, 0.01), None, "continue"),  # an upper bound at the tolerance
        (Bound(0.0, -0.5, 0.0099), None, "pass"),
        (Bound(0.0, -0.5, 0.005), Bound(0.0, -0.5, 0.05), "continue"),
        (Bound(0.0, -0.5, 0.005), Bound(0.0, -0.5, 0.0499), "pass"),
    ],
)
def test_each_rule_is_strict_at_its_edge(
    errors: Bound, latency: Bound | None, decision: str
) -> None:
    """Worse means a lower bound above zero; a pass needs upper bounds below the tolerances
    (0.01 for errors, 0.05 for the latency share: the defaults)."""
    p95 = None if latency is None else 120.0
    assert _decision(1000, LIVE, errors, latency, p95, Settings())[0] == decision


def test_an_upper_bound_equal_to_the_tolerance_does_not_pass() -> None:
    new, live = RequestSample(3000, 3, ()), RequestSample(3000, 3, ())
    rho = rho_for(Settings().delta, Settings().alpha)
    upper = difference_bound(3, 3000, 3, 3000, 0.05, 0.05, rho).upper
    assert 0.0 < upper < 0.05
    assert judge(new, live, Settings(tolerance=upper)).decision == "continue"
    just_above = math.nextafter(upper, 1.0)
    assert judge(new, live, Settings(tolerance=just_above)).decision == "pass"


def live_0_to_20() -> RequestSample:
    """21 latencies 0..20 ms: live's p95 is 19 ms exactly, and one request (20 ms) is slower."""
    return RequestSample(21, 0, tuple(float(ms) for ms in range(21)))


@pytest.mark.parametrize(("at_p95", "slower"), [(0, 3), (7, 0), (7, 3), (20, 20)])
def test_the_latency_share_counts_requests_strictly_slower_than_lives_p95(
    at_p95: int, slower: int
) -> None:
    """A request exactly at live's p95 is not slower; live's own slower share is 1 of 21."""
    faster = 40 - at_p95 - slower
    ms = (5.0,) * faster + (19.0,) * at_p95 + (19.5,) * slower
    verdict = judge(RequestSample(40, 0, ms), live_0_to_20(), Settings())
    assert verdict.live_p95_ms == 19.0
    assert verdict.latency is not None
    assert verdict.latency.estimate == pytest.approx(slower / 40 - 1 / 21, abs=1e-15)


def test_a_deployment_as_fast_as_live_has_no_latency_difference() -> None:
    """Every request of both at 100 ms: none is slower than live's p95 (100 ms) on either."""
    same = RequestSample(200, 0, (100.0,) * 200)
    latency = judge(same, same, Settings()).latency
    assert latency is not None and latency.estimate == 0.0
    assert latency.lower < 0.0 < latency.upper


def test_the_latency_share_is_bounded_as_an_error_rate_with_twice_its_tolerance() -> None:
    """Tuned to a harm of twice the latency tolerance: with the same counts, slow requests and
    errors get the same bounds when delta is 2 x latency_tolerance, and other ones otherwise."""
    new_ms = (5.0,) * 30 + (19.5,) * 10
    new = RequestSample(40, 10, new_ms)
    live = RequestSample(21, 1, live_0_to_20().latencies_ms)
    verdict = judge(new, live, Settings(delta=0.1, latency_tolerance=0.05))
    assert verdict.latency == verdict.errors
    other = judge(new, live, Settings(delta=0.1, latency_tolerance=0.04))
    assert other.latency is not None and other.latency.upper != verdict.errors.upper


@pytest.mark.parametrize("side", ["new", "live"])
def test_latencies_on_one_side_only_leave_errors_to_decide(side: str) -> None:
    with_ms = RequestSample(4000, 0, (50.0,) * 4000)
    without = RequestSample(4000, 0, ())
    new, live = (with_ms, without) if side == "new" else (without, with_ms)
    verdict = judge(new, live, Settings())
    assert verdict.latency is None and verdict.live_p95_ms is None
    assert verdict.decision == "pass"


@pytest.mark.parametrize(("new_requests", "live_requests"), [(0, 40), (25, 0), (0, 0)])
def test_a_side_without_requests_reports_the_counts_and_no_estimate(
    new_requests: int, live_requests: int
) -> None:
    new = RequestSample(new_requests, 0, ())
    live = RequestSample(live_requests, 0, ())
    verdict = judge(new, live, Settings())
    assert verdict.errors == Bound(0.0, -1.0, 1.0)
    assert (verdict.new_requests, verdict.live_requests) == (new_requests, live_requests)
