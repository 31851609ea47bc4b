"""Canary judges on simulated request streams with known truth (``python -m benchmarks rollout``).

Each simulated rollout is one canary step: new and live each get their own Poisson request
stream (a rate per side drawn from 20-200 requests/min), a live error rate drawn from
0.5-5% and log-normal latencies (median 100 ms, sigma 0.5). Scenarios set the truth for the
new deployment: healthy, +1 pp and +3 pp errors, +20% latency (p95 +20%), and a brief error
spike (+10 pp for one minute, 30-90 s into the step) that recovers.

Three judges see the same streams:

- ``threshold``: today's rule (``rollout.health`` defaults) once at the 5-minute bake: error
  rate above 5%, more than +2 pp over live, or p95 above 2x live's rolls back;
- ``fixed_mw``: a Kayenta-style fixed-horizon test at the bake: one-sided Mann-Whitney U on
  latencies and a one-sided two-proportion z-test on errors, each at 5%;
- ``sequential``: ``shared.sequential`` looking every 10 s (alpha 0.05 split over the four
  stages of a rollout: three steps and the watch period; beta 0.05, tolerance 2 pp = today's
  allowed increase, delta 3 pp, latency tolerance 5 pp), failing safe at a 30-minute
  ``max_bake``.

For speed the sequential judge's latency side sees, per request, whether it is slower than
live's true p95 (live's sample p95 over thousands of requests is close to it); its bound
code is a numpy copy of ``shared.sequential`` checked against it at start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from shared import sequential

LOOK_S = 10.0
BAKE_S = 300.0
MAX_BAKE_S = 1800.0
SIGMA = 0.5
STEPS = 4  # alpha is split over the stages of a rollout: three canary steps and the watch
ALPHA, BETA, TOLERANCE, DELTA, LATENCY_TOLERANCE = 0.05, 0.05, 0.02, 0.03, 0.05
STEP_ALPHA = ALPHA / STEPS


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    error_increase: float = 0.0
    latency_factor: float = 1.0
    spike: float = 0.0  # extra error rate 30-90 s into the step
    harmful: bool | None = False  # None: no right answer (the spike)


SCENARIOS = (
    Scenario("healthy"),
    Scenario("errors +1 pp", error_increase=0.01, harmful=True),
    Scenario("errors +3 pp", error_increase=0.03, harmful=True),
    Scenario("p95 +20%", latency_factor=1.2, harmful=True),
    Scenario("brief spike", spike=0.10, harmful=None),
)


def _log_mixture(s: Any, v: Any, rho: float) -> Any:
    w = v + rho
    return (
        math.log(2.0) + 0.5 * np.log(rho / w) + s * s / (2 * w) + special.log_ndtr(s / np.sqrt(w))
    )


def boundary(v: Any, alpha: float, rho: float) -> Any:
    """``shared.sequential.boundary`` over arrays (bisection on every element at once)."""
    target = math.log(1.0 / alpha)
    low = np.zeros_like(v)
    high = np.sqrt((v + rho) * (2 * target + np.log((v + rho) / rho))) + 1.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        below = _log_mixture(mid, v, rho) < target
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return high


def bounds(x_new: Any, n_new: Any, x_live: Any, n_live: Any, rho: float) -> tuple[Any, Any]:
    """Lower (STEP_ALPHA) and upper (BETA) bounds on p_new - p_live, as shared.sequential."""
    n1, n0 = np.maximum(n_new, 1), np.maximum(n_live, 1)
    s1, s0 = (x_new + 1) / (n1 + 2), (x_live + 1) / (n0 + 2)
    v = 1.0 / (s1 * (1 - s1) / n1 + s0 * (1 - s0) / n0)
    estimate = x_new / n1 - x_live / n0
    return estimate - boundary(v, STEP_ALPHA, rho) / v, estimate + boundary(v, BETA, rho) / v


def _check_against_reference() -> None:
    rho = sequential.rho_for(DELTA, STEP_ALPHA)
    for x1, n1, x0, n0 in ((3, 200, 5, 400), (40, 1000, 20, 1000), (0, 50, 1, 60)):
        ref = sequential.difference_bound(x1, n1, x0, n0, STEP_ALPHA, BETA, rho)
        low, high = bounds(np.array([x1]), np.array([n1]), np.array([x0]), np.array([n0]), rho)
        assert abs(low[0] - ref.lower) < 1e-6 and abs(high[0] - ref.upper) < 1e-6


@dataclass(frozen=True, slots=True)
class _Counts:
    """Cumulative counts per rollout (rows) and look (columns), for new and live."""

    cn: Any  # requests
    cl: Any
    ce_n: Any  # errors
    ce_l: Any
    cs_n: Any  # slower than live's p95
    cs_l: Any


def simulate(scenario: Scenario, rollouts: int, seed: int) -> dict[str, Any]:
    """Decisions and times of the three judges on ``rollouts`` simulated steps."""
    rng = np.random.default_rng(seed)
    looks = int(MAX_BAKE_S / LOOK_S)
    counts = _simulated_counts(scenario, rollouts, looks, rng)
    seq_decision, seq_time, seq_exposed = _sequential_judge(counts, rollouts, looks)
    threshold_roll, mw_roll, n1 = _bake_judges(scenario, counts, rollouts, rng)
    cn = counts.cn
    fixed_exposed = np.where(threshold_roll, n1, cn[:, -1])
    mw_exposed = np.where(mw_roll, n1, cn[:, -1])
    bake_time = np.full(rollouts, BAKE_S)
    return {
        "threshold": _judge(threshold_roll, bake_time, fixed_exposed, None),
        "fixed_mw": _judge(mw_roll, bake_time, mw_exposed, None),
        "sequential": _judge(seq_decision == "rollback", seq_time, seq_exposed, seq_decision),
    }


def _simulated_counts(
    scenario: Scenario, rollouts: int, looks: int, rng: np.random.Generator
) -> _Counts:
    """Requests, errors and slow requests of each look, drawn for the scenario."""
    rate = rng.uniform(20, 200, size=(rollouts, 2)) / 60.0 * LOOK_S  # per look, new/live
    p_live = rng.uniform(0.005, 0.05, size=rollouts)
    t = (np.arange(looks) + 1) * LOOK_S  # end of each look
    in_spike = ((t > 30) & (t <= 90)).astype(float)
    p_new = np.clip(
        p_live[:, None] + scenario.error_increase + scenario.spike * in_spike[None, :], 0, 1
    )
    n_new = rng.poisson(rate[:, :1], size=(rollouts, looks))
    n_live = rng.poisson(rate[:, 1:], size=(rollouts, looks))
    e_new = rng.binomial(n_new, p_new)
    e_live = rng.binomial(n_live, p_live[:, None])
    # slower than live's p95: 5% for live; for new, P(factor * X > p95(X))
    q_new = 1 - stats.norm.cdf(1.6448536 - math.log(scenario.latency_factor) / SIGMA)
    s_new = rng.binomial(n_new, q_new)
    s_live = rng.binomial(n_live, 0.05)
    return _Counts(
        n_new.cumsum(1),
        n_live.cumsum(1),
        e_new.cumsum(1),
        e_live.cumsum(1),
        s_new.cumsum(1),
        s_live.cumsum(1),
    )


def _sequential_judge(counts: _Counts, rollouts: int, looks: int) -> tuple[Any, Any, Any]:
    """The sequential judge at every look: (decision, time, requests exposed) per rollout."""
    cn, cl = counts.cn, counts.cl
    err_lo, err_hi = bounds(counts.ce_n, cn, counts.ce_l, cl, sequential.rho_for(DELTA, STEP_ALPHA))
    lat_lo, lat_hi = bounds(
        counts.cs_n, cn, counts.cs_l, cl, sequential.rho_for(2 * LATENCY_TOLERANCE, STEP_ALPHA)
    )
    seen = (cn > 0) & (cl > 0)
    roll = seen & ((err_lo > 0) | (lat_lo > 0))
    ok = seen & ~roll & (err_hi < TOLERANCE) & (lat_hi < LATENCY_TOLERANCE)
    first_roll = np.where(roll.any(1), roll.argmax(1), looks)
    first_pass = np.where(ok.any(1), ok.argmax(1), looks)
    seq_decision = np.where(
        first_roll <= first_pass, np.where(first_roll < looks, "rollback", "max_bake"), "pass"
    )
    seq_index = np.minimum(np.minimum(first_roll, first_pass), looks - 1)
    seq_time = (seq_index + 1) * LOOK_S
    seq_exposed = cn[np.arange(rollouts), seq_index]
    # a pass or a step never decided keeps the candidate serving to the end of max_bake
    seq_exposed = np.where(seq_decision == "rollback", seq_exposed, cn[:, -1])
    return seq_decision, seq_time, seq_exposed


def _bake_judges(
    scenario: Scenario, counts: _Counts, rollouts: int, rng: np.random.Generator
) -> tuple[Any, Any, Any]:
    """The bake-time judges see the first 5 minutes: (threshold rolls back, fixed-horizon
    tests roll back, requests the candidate served by then) per rollout."""
    cn, cl, ce_n, ce_l = counts.cn, counts.cl, counts.ce_n, counts.ce_l
    b = int(BAKE_S / LOOK_S) - 1
    n1, n0 = cn[:, b], cl[:, b]
    rate1, rate0 = ce_n[:, b] / np.maximum(n1, 1), ce_l[:, b] / np.maximum(n0, 1)
    threshold_roll = np.zeros(rollouts, bool)
    mw_roll = np.zeros(rollouts, bool)
    for i in range(rollouts):  # latency samples, one rollout at a time (sizes differ)
        live_ms = 100.0 * rng.lognormal(0.0, SIGMA, size=n0[i])
        new_ms = 100.0 * scenario.latency_factor * rng.lognormal(0.0, SIGMA, size=n1[i])
        p95_ratio = np.percentile(new_ms, 95) / np.percentile(live_ms, 95) if n0[i] else 1.0
        threshold_roll[i] = n1[i] >= 20 and (
            rate1[i] > 0.05 or rate1[i] - rate0[i] > 0.02 or p95_ratio > 2.0
        )
        if n1[i] and n0[i]:
            mw = stats.mannwhitneyu(new_ms, live_ms, alternative="greater").pvalue
            pooled = (ce_n[i, b] + ce_l[i, b]) / (n1[i] + n0[i])
            se = math.sqrt(max(pooled * (1 - pooled) * (1 / n1[i] + 1 / n0[i]), 1e-12))
            z = (rate1[i] - rate0[i]) / se
            mw_roll[i] = mw < 0.05 or z > 1.6448536
    return threshold_roll, mw_roll, n1


def _judge(rolled: Any, times: Any, exposed: Any, decisions: Any) -> dict[str, Any]:
    out = {
        "rollback_rate": float(rolled.mean()),
        "median_decision_s": float(np.median(times)),
        "p90_decision_s": float(np.percentile(times, 90)),
        "pass_median_s": float(np.median(times[~rolled])) if (~rolled).any() else math.nan,
        "requests_to_new_median": float(np.median(exposed)),
        "requests_to_new_mean": float(np.mean(exposed)),
    }
    if decisions is not None:
        out["no_decision_by_max_bake"] = float((decisions == "max_bake").mean())
        out["pass_rate"] = float((decisions == "pass").mean())
    else:
        out["pass_rate"] = float(1 - rolled.mean())
    return out


def run(rollouts: int = 2000, seed: int = 20261130) -> dict[str, Any]:
    _check_against_reference()
    per: dict[str, Any] = {}
    for index, scenario in enumerate(SCENARIOS):
        per[scenario.name] = simulate(scenario, rollouts, seed + index)
    judges = ("threshold", "fixed_mw", "sequential")
    healthy = per["healthy"]
    harms = [s.name for s in SCENARIOS if s.harmful]
    return {
        "rollouts_per_scenario": rollouts,
        "settings": {
            "alpha": ALPHA,
            "alpha_per_step": STEP_ALPHA,
            "beta": BETA,
            "tolerance": TOLERANCE,
            "delta": DELTA,
            "latency_tolerance": LATENCY_TOLERANCE,
            "look_s": LOOK_S,
            "bake_s": BAKE_S,
            "max_bake_s": MAX_BAKE_S,
        },
        "scenarios": per,
        "false_rollback_rate": {j: healthy[j]["rollback_rate"] for j in judges},
        "missed_harm_rate": {
            h: {j: round(per[h][j]["pass_rate"], 4) for j in judges} for h in harms
        },
        "median_decision_ratio": healthy["sequential"]["median_decision_s"]
        / healthy["threshold"]["median_decision_s"],
    }
