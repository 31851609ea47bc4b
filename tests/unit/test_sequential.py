"""The sequential judge: reference values of the boundary and small seeded simulations."""

from __future__ import annotations

import math
import random

import pytest

from shared.sequential import (
    RequestSample,
    Settings,
    boundary,
    difference_bound,
    judge,
    rho_for,
)


@pytest.mark.parametrize(
    ("v", "alpha", "rho"), [(10.0, 0.05, 1.0), (1000.0, 0.05, 50.0), (1e6, 0.01, 1e4)]
)
def test_boundary_is_where_the_one_sided_mixture_reaches_one_over_alpha(
    v: float, alpha: float, rho: float
) -> None:
    """Howard et al. (2021) one-sided normal mixture, written out independently here."""
    s = boundary(v, alpha, rho)
    w = v + rho
    phi = 0.5 * math.erfc(-s / math.sqrt(w) / math.sqrt(2))
    mixture = 2 * math.sqrt(rho / w) * math.exp(s * s / (2 * w)) * phi
    assert mixture == pytest.approx(1 / alpha, rel=1e-6)


def test_boundary_lies_inside_the_two_sided_one_at_the_same_level() -> None:
    """The two-sided normal mixture (Howard et al. eq. 14) at level alpha is
    sqrt((v+rho) log((v+rho)/(rho alpha^2))); the one-sided boundary is tighter and larger
    than the fixed-sample z quantile sqrt(v)*1.645 (it pays for looking at every time)."""
    for v in (100.0, 1e4, 1e6):
        rho = 100.0
        two_sided = math.sqrt((v + rho) * math.log((v + rho) / (rho * 0.05**2)))
        one_sided = boundary(v, 0.05, rho)
        assert 1.645 * math.sqrt(v) < one_sided < two_sided


def test_bound_contains_the_estimate_and_narrows_with_traffic() -> None:
    rho = rho_for(0.03, 0.05)
    small = difference_bound(4, 200, 4, 200, 0.05, 0.05, rho)
    large = difference_bound(40, 2000, 40, 2000, 0.05, 0.05, rho)
    assert small.lower < 0 < small.upper
    assert large.upper - large.lower < (small.upper - small.lower) / 2


def _stream(rng: random.Random, p_new: float, p_live: float, looks: int, per_look: int) -> str:
    """Decisions at every look of one simulated step (errors only; no latencies)."""
    x_new = x_live = 0
    settings = Settings(tolerance=0.01, delta=0.03)
    for look in range(1, looks + 1):
        x_new += sum(rng.random() < p_new for _ in range(per_look))
        x_live += sum(rng.random() < p_live for _ in range(per_look))
        n = look * per_look
        verdict = judge(RequestSample(n, x_new, ()), RequestSample(n, x_live, ()), settings)
        if verdict.decision != "continue":
            return verdict.decision
    return "continue"


def test_equal_deployments_are_rarely_rolled_back_however_often_it_looks() -> None:
    rng = random.Random(20261130)
    outcomes = [_stream(rng, 0.02, 0.02, looks=20, per_look=50) for _ in range(100)]
    assert outcomes.count("rollback") / len(outcomes) <= 0.05
    assert outcomes.count("pass") > 0  # and healthy steps do pass


def test_harm_by_delta_is_rarely_passed_and_mostly_rolled_back() -> None:
    rng = random.Random(7)
    outcomes = [_stream(rng, 0.05, 0.02, looks=20, per_look=50) for _ in range(100)]
    assert outcomes.count("pass") / len(outcomes) <= 0.05
    assert outcomes.count("rollback") / len(outcomes) >= 0.8


def test_slower_new_deployment_is_rolled_back_on_latency() -> None:
    rng = random.Random(3)
    live = [rng.lognormvariate(4.0, 0.5) for _ in range(3000)]
    new = [1.6 * rng.lognormvariate(4.0, 0.5) for _ in range(3000)]
    verdict = judge(
        RequestSample(3000, 0, tuple(new)), RequestSample(3000, 0, tuple(live)), Settings()
    )
    assert verdict.decision == "rollback"
    assert verdict.latency is not None and verdict.latency.lower > 0
    assert "slower than live's p95" in verdict.why


def test_pass_sentence_names_the_requests_and_the_bound() -> None:
    rng = random.Random(5)
    live = tuple(rng.lognormvariate(4.0, 0.5) for _ in range(4000))
    new = tuple(rng.lognormvariate(4.0, 0.5) for _ in range(4000))
    verdict = judge(RequestSample(4000, 8, new), RequestSample(4000, 8, live), Settings())
    assert verdict.decision == "pass"
    assert verdict.why.startswith(
        f"passed after 4000 requests: the error-rate difference is below "
        f"{verdict.errors.upper * 100:+.1f} pp with 95% confidence at every look"
    )


def test_no_traffic_on_a_side_continues() -> None:
    verdict = judge(RequestSample(0, 0, ()), RequestSample(100, 0, ()), Settings())
    assert verdict.decision == "continue"
