"""Sequential canary judge: anytime-valid confidence sequences for new-minus-live differences.

Both signals are differences of two Bernoulli proportions, new minus live:

- errors: the share of requests that failed (HTTP 5xx);
- latency: the share of requests slower than live's p95 over the same window (live sits near
  5%; a slower deployment above it).

Each bound is the one-sided normal-mixture boundary of Howard, Ramdas, McAuliffe and Sekhon
(2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Stat. 49(2),
eq. (14) and Prop. 6) applied in information time, as in Johari, Koomen, Pekelis and Walsh
(2017, "Peeking at A/B tests", KDD; the mSPRT for two proportions): with the estimate
``d = p_new - p_live`` and its variance ``s2 = p_new(1-p_new)/n_new + p_live(1-p_live)/n_live``
(proportions smoothed as (x+1)/(n+2) so zero errors do not give zero variance), the
information is ``v = 1/s2`` and the half-normal mixture martingale
``2 sqrt(rho/(v+rho)) exp(S^2/(2(v+rho))) Phi(S/sqrt(v+rho))`` with ``S = v (d - D)`` stays
below ``1/alpha`` at every look with probability at least ``1 - alpha`` (Ville's inequality).
The variance is a plug-in, so the guarantee is asymptotic (Waudby-Smith et al. 2024,
"Time-uniform central limit theory"); the simulation tests check it at small counts.

Decisions, with tolerance ``eps`` and the lower bound at level alpha, the upper at beta:

- roll back when the lower bound of either difference is above zero (new shown worse than
  live): P(roll back | new as good as live) <= alpha at every look;
- pass when the upper bounds of both are below their tolerances (non-inferiority):
  P(pass | new worse by delta >= eps) <= beta at every look;
- otherwise continue; at ``max_bake`` the policy says hold or fail safe.

Pure and standard library only: the handlers call it with per-request data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Decision = Literal["pass", "rollback", "continue"]


@dataclass(frozen=True, slots=True)
class RequestSample:
    """Per-request data of one deployment over one window: errors and every latency."""

    requests: int
    errors: int  # HTTP 5xx
    latencies_ms: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Settings:
    """What the judge needs from the policy (``rollout.sequential``)."""

    alpha: float = 0.05
    beta: float = 0.05
    tolerance: float = 0.01  # error-rate difference allowed (0.01 = 1 pp)
    delta: float = 0.03  # harm the judge must not pass (tunes the mixture)
    latency_tolerance: float = 0.05  # share above live's p95 allowed over live's own share


@dataclass(frozen=True, slots=True)
class Bound:
    """A difference new - live with its anytime-valid lower and upper bounds."""

    estimate: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    errors: Bound
    latency: Bound | None  # None without latencies on both sides
    new_requests: int
    live_requests: int
    live_p95_ms: float | None
    why: str


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _log_mixture(s: float, v: float, rho: float) -> float:
    """Log of the one-sided (half-normal) mixture martingale at sum ``s``, information ``v``."""
    w = v + rho
    return (
        math.log(2.0)
        + 0.5 * math.log(rho / w)
        + s * s / (2.0 * w)
        + math.log(_phi(s / math.sqrt(w)))
    )


def boundary(v: float, alpha: float, rho: float) -> float:
    """The smallest sum ``s`` at which the one-sided mixture reaches ``1/alpha`` (bisection).

    The bracket's top is above it: there the mixture is ``2 Phi(.)/alpha``, ``Phi(.) > 1/2``."""
    target = math.log(1.0 / alpha)
    low, high = 0.0, math.sqrt((v + rho) * (2.0 * target + math.log((v + rho) / rho))) + 1.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if _log_mixture(mid, v, rho) < target:
            low = mid
        else:
            high = mid
        if high - low < 1e-9 * max(1.0, high):
            break
    return high


def rho_for(delta: float, alpha: float) -> float:
    """Mixture precision tuned to the information at which a ``delta`` difference is first
    detectable (Howard et al. 2021, eq. (15)): ``v* = (z / delta)^2`` with ``z`` = 3."""
    target = (3.0 / max(delta, 1e-6)) ** 2
    log_term = 2.0 * math.log(1.0 / alpha)
    return target / (log_term + math.log(1.0 + log_term))


def difference_bound(
    x_new: int, n_new: int, x_live: int, n_live: int, alpha: float, beta: float, rho: float
) -> Bound:
    """Lower (level ``alpha``) and upper (level ``beta``) bounds on ``p_new - p_live``."""
    p_new, p_live = x_new / n_new, x_live / n_live
    s_new, s_live = (x_new + 1) / (n_new + 2), (x_live + 1) / (n_live + 2)
    variance = s_new * (1 - s_new) / n_new + s_live * (1 - s_live) / n_live
    v = 1.0 / variance
    estimate = p_new - p_live
    return Bound(
        estimate=estimate,
        lower=estimate - boundary(v, alpha, rho) / v,
        upper=estimate + boundary(v, beta, rho) / v,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation as numpy's default."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _pp(value: float) -> str:
    return f"{value * 100:+.1f} pp"


def judge(new: RequestSample, live: RequestSample, settings: Settings) -> Verdict:
    """One look: pass, roll back or continue, from every request of both sides so far."""
    if new.requests == 0 or live.requests == 0:
        empty = Bound(0.0, -1.0, 1.0)
        return Verdict(
            "continue",
            empty,
            None,
            new.requests,
            live.requests,
            None,
            f"no requests yet on {'the new deployment' if not new.requests else 'live'}",
        )
    rho = rho_for(settings.delta, settings.alpha)
    a, b = settings.alpha, settings.beta
    errors = difference_bound(new.errors, new.requests, live.errors, live.requests, a, b, rho)
    latency, live_p95 = _latency_bound(new, live, settings)
    decision, why = _decision(new.requests, live, errors, latency, live_p95, settings)
    return Verdict(decision, errors, latency, new.requests, live.requests, live_p95, why)


def _latency_bound(
    new: RequestSample, live: RequestSample, settings: Settings
) -> tuple[Bound | None, float | None]:
    """The bound on the difference in the share slower than live's p95 (and that p95), when
    both sides have latencies."""
    if not (new.latencies_ms and live.latencies_ms):
        return None, None
    live_p95 = percentile(live.latencies_ms, 95)
    slow_new = sum(1 for ms in new.latencies_ms if ms > live_p95)
    slow_live = sum(1 for ms in live.latencies_ms if ms > live_p95)
    # the mixture is tuned to a harm of twice the tolerance, as delta is for errors
    lat_rho = rho_for(settings.latency_tolerance * 2.0, settings.alpha)
    a, b = settings.alpha, settings.beta
    bound = difference_bound(
        slow_new, len(new.latencies_ms), slow_live, len(live.latencies_ms), a, b, lat_rho
    )
    return bound, live_p95


def _decision(
    n: int,
    live: RequestSample,
    errors: Bound,
    latency: Bound | None,
    live_p95: float | None,
    settings: Settings,
) -> tuple[Decision, str]:
    """Roll back on errors, then on latency; pass when both are within tolerance; else go on."""
    sure = f"{1 - settings.alpha:.0%} confidence at every look"
    if errors.lower > 0:
        return "rollback", (
            f"rolled back after {n} requests: the error-rate difference is above "
            f"{_pp(errors.lower)} (live's {live.errors / live.requests:.2%}) with {sure}"
        )
    if latency is not None and latency.lower > 0:
        return "rollback", (
            f"rolled back after {n} requests: the share slower than live's p95 "
            f"({live_p95:.0f} ms) exceeds live's by more than {_pp(latency.lower)} with {sure}"
        )
    latency_ok = latency is None or latency.upper < settings.latency_tolerance
    if errors.upper < settings.tolerance and latency_ok:
        slower = (
            f"; the share slower than live's p95 is below {_pp(latency.upper)}"
            if latency is not None
            else ""
        )
        return "pass", (
            f"passed after {n} requests: the error-rate difference is below "
            f"{_pp(errors.upper)} with {1 - settings.beta:.0%} confidence at every look{slower}"
        )
    return "continue", (
        f"{n} requests: error-rate difference between {_pp(errors.lower)} and "
        f"{_pp(errors.upper)}, tolerance {_pp(settings.tolerance)}; not decided yet"
    )
