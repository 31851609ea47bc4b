"""The canary judges: is the new deployment as healthy as live? ``handlers.rollout`` acts
on a verdict; a sequential look without a decision yet is kept here (:func:`keep_looking`).

The threshold judge (``rollout.analysis: threshold``) compares one window's health samples
after the step's bake time. The sequential judge (``rollout.analysis: sequential``) looks on
every reconcile tick or wakeup while a shadow or canary step runs: it reads every request of
the new and the live deployment since the step started and asks ``shared.sequential.judge``:
pass the step, roll back, or keep looking. Each look's bounds are kept in the rollout's
``checks`` (the console plots them).

At the 100% step live serves nothing; its requests from the step before stand in for it
(its last window with traffic: with ``steps: [100]``, as long a window before the step as the
step has lasted), and the evidence says so. Such a window from another time is
compared on errors only: its latencies measure that moment's load on the machine as much as
the deployment (a healthy model was seen rolled back for the slow requests of a loaded
machine), so latency is judged only against live traffic of the same moments. A step's first
``latency_warmup`` seconds are judged on errors only (a cold deployment just given traffic is
slow for a moment), and no step passes before they are over.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.lifecycle import note, rollout_of
from shared.messagebus import Services
from shared.model import AuditKind, Cycle, HealthSample
from shared.rollout_state import JSON, Check, RolloutState
from shared.sequential import Bound, Decision, RequestSample, Settings, Verdict, judge
from shared.traffic import check_due, clock, roll_back, wake

if TYPE_CHECKING:
    from shared.policy import Health, Rollout

MAX_LOOKS_PER_STEP = 60  # kept in the cycle (and the decision's evidence): thinned beyond


def settings_of(spec: Rollout) -> Settings:
    """The judge's settings for one step: alpha is split over the judged stages (shadow, each
    canary step, the watch period), so P(roll back | as good as live) <= alpha for the whole
    rollout; beta is not (passing a harmful candidate needs every step to pass it)."""
    seq = spec.sequential
    steps = len(spec.steps) + (spec.shadow is not None) + (spec.watch > 0)
    return Settings(
        alpha=seq.alpha / steps,
        beta=seq.beta,
        tolerance=seq.tolerance,
        delta=seq.delta,
        latency_tolerance=seq.latency_tolerance,
    )


def _bound(bound: Bound | None) -> dict[str, float] | None:
    if bound is None:
        return None
    return {
        "estimate": round(bound.estimate, 6),
        "lower": round(bound.lower, 6),
        "upper": round(bound.upper, 6),
    }


def _requests(
    svc: Services,
    ro: RolloutState,
    deployment: str,
    started: datetime,
    warm: datetime,
    now: datetime,
) -> RequestSample:
    """Every request of ``deployment`` since the step started, with the latencies of those
    after the warm-up only (none while it lasts)."""
    sample = svc.metrics.deployment_requests(ro.endpoint, deployment, started, now)
    if warm <= started:
        return sample
    if now <= warm:
        return errors_only(sample)
    warmed = svc.metrics.deployment_requests(ro.endpoint, deployment, warm, now)
    return RequestSample(sample.requests, sample.errors, warmed.latencies_ms)


def _live_requests(
    svc: Services, ro: RolloutState, started: datetime, warm: datetime, now: datetime
) -> tuple[RequestSample, str | None]:
    """Live's requests over the step; at a step that gives live no traffic (100%), its window
    of the step before (and a note): the few requests still in flight when the traffic moved
    are no sample of it, and judged as one they kept the step from ever passing."""
    assert ro.previous is not None
    live = _requests(svc, ro, ro.previous, started, warm, now)
    if ro.steps[-1].traffic.get(ro.previous) and live.requests:
        return live, None
    before = _window_before(ro, started, now)
    baseline = svc.metrics.deployment_requests(ro.endpoint, ro.previous, before, started)
    return errors_only(baseline), (
        f"{ro.previous} serves no traffic at this step: compared with its last window "
        f"with traffic ({before.isoformat()} to {started.isoformat()}), on errors only"
    )


def _window_before(ro: RolloutState, end: datetime, now: datetime) -> datetime:
    """Where live's last window with traffic before the step that began at ``end`` starts:
    at the step before; with none (``steps: [100]``), as long before ``end`` as the step has
    lasted until ``now`` (live served all traffic then)."""
    steps = ro.steps
    return steps[-2].at if len(steps) > 1 else end - (now - end)


def _ro(cycle: Cycle) -> RolloutState:
    assert cycle.rollout is not None, f"cycle {cycle.id} has no rollout"
    return cycle.rollout


def errors_only(sample: RequestSample) -> RequestSample:
    """A window from another time, without its latencies (they were another moment's load)."""
    return RequestSample(sample.requests, sample.errors, ())


def health_json(sample: HealthSample) -> dict[str, Any]:
    """One health sample as the evidence shows it."""
    return {
        "requests": sample.requests,
        "errors": sample.errors,
        "error_rate": round(sample.error_rate, 6),
        "latency_p95_ms": sample.latency_p95_ms,
    }


def threshold_verdict(
    new: HealthSample, old: HealthSample | None, health: Health
) -> tuple[str, str]:
    """('pass' | 'wait' | 'breach', why)."""
    if new.requests < health.min_requests:
        return "wait", f"{new.requests} requests < {health.min_requests} needed for a verdict"
    if new.error_rate > health.max_error_rate:
        return "breach", f"error rate {new.error_rate:.2%} > {health.max_error_rate:.2%}"
    if old is not None and old.requests:
        increase = new.error_rate - old.error_rate
        if increase > health.max_error_rate_increase:
            return "breach", (
                f"error rate {new.error_rate:.2%} exceeds live "
                f"{old.error_rate:.2%} by more than "
                f"{health.max_error_rate_increase:.2%}"
            )
    p95 = new.latency_p95_ms
    if (
        p95 is not None
        and health.max_latency_p95_ms is not None
        and p95 > health.max_latency_p95_ms
    ):
        return "breach", f"p95 latency {p95:.0f} ms > {health.max_latency_p95_ms:.0f} ms"
    if (
        p95 is not None
        and old is not None
        and old.latency_p95_ms
        and health.max_latency_ratio
        and p95 > old.latency_p95_ms * health.max_latency_ratio
    ):
        return "breach", (
            f"p95 latency {p95:.0f} ms > {health.max_latency_ratio:g}x live "
            f"{old.latency_p95_ms:.0f} ms"
        )
    return "pass", f"{new.requests} requests, error rate {new.error_rate:.2%}"


@dataclass(frozen=True, slots=True)
class StepLook:
    """One sequential look at a running step, already kept in the rollout's checks."""

    decision: Decision
    why: str
    evidence: JSON
    stage: str  # "shadow" or "canary at N%"
    deadline: datetime  # the step's max_bake
    stale: Check | None  # the look before, with no new traffic since (dropped if it goes on)


def look_at_step(cycle: Cycle, svc: Services, started: datetime, now: datetime) -> StepLook | None:
    """Judge the running step once (None: its next look is not due yet)."""
    spec = svc.policy.models[cycle.model].rollout
    ro = _ro(cycle)
    assert spec is not None
    seq = spec.sequential
    due = ro.next_check_at
    if due and now < due:
        return None  # a reconcile between looks (another event): the next look is already asked for
    warm = started + timedelta(seconds=seq.latency_warmup)
    new = _requests(svc, ro, ro.deployment, started, warm, now)
    live, baseline_note = _live_requests(svc, ro, started, warm, now)
    verdict = _after_warmup(judge(new, live, settings_of(spec)), warm, now)
    step = ro.step
    entry = {
        "window": [started.isoformat(), now.isoformat()],
        "latency_from": warm.isoformat(),
        "analysis": "sequential",
        "step": step,
        "percent": ro.percent,
        "errors": _bound(verdict.errors),
        "latency": _bound(verdict.latency),
        "new_requests": verdict.new_requests,
        "live_requests": verdict.live_requests,
        "live_p95_ms": verdict.live_p95_ms,
    }
    # the console draws the tolerance against the band
    ro = ro.judged_with(seq.tolerance).checked(Check(now, verdict.decision, verdict.why, entry))
    looks = _thinned_looks(cycle, ro, step)
    evidence: dict[str, Any] = {
        "analysis": "sequential",
        "window": [started.isoformat(), now.isoformat()],
        "percent": ro.percent,
        "alpha": seq.alpha,
        "beta": seq.beta,
        "tolerance": seq.tolerance,
        "latency_tolerance": seq.latency_tolerance,
        "latency_from": warm.isoformat(),
        "new_requests": verdict.new_requests,
        "live_requests": verdict.live_requests,
        "bounds": [c.bounds() for c in looks],
        "verdict": verdict.decision,
        "sentence": verdict.why,
    }
    if baseline_note:
        evidence["baseline"] = baseline_note
    no_news = len(looks) > 1 and looks[-2].new_requests == verdict.new_requests
    return StepLook(
        verdict.decision,
        verdict.why,
        evidence,
        ro.stage(),
        started + timedelta(seconds=seq.max_bake),
        looks[-2] if no_news else None,
    )


def _after_warmup(verdict: Verdict, warm: datetime, now: datetime) -> Verdict:
    """No step passes before its latency has been judged: during the warm-up a pass on errors
    alone is "continue" (a rollback on errors stands)."""
    if verdict.decision != "pass" or now > warm:
        return verdict
    why = (
        f"{verdict.new_requests} requests: errors within tolerance; latency is judged from "
        f"{warm.isoformat()} (the step's warm-up); not decided yet"
    )
    return replace(verdict, decision="continue", why=why)


def _thinned_looks(cycle: Cycle, ro: RolloutState, step: int) -> list[Check]:
    """Keep ``ro`` in the cycle; a long hold keeps the first, the last and every other look
    of the step. The step's looks after that."""
    checks = ro.checks
    looks = [c for c in checks if c.sequential and c.step == step]
    if len(looks) > MAX_LOOKS_PER_STEP:
        dropped = looks[1:-1:2]
        checks = tuple(c for c in checks if not any(c is d for d in dropped))
        looks = [c for c in looks if not any(c is d for d in dropped)]
    cycle.rollout = ro.with_checks(checks)
    return looks


def without_look(ro: RolloutState, look: Check) -> RolloutState:
    """The rollout without a look that added nothing to the band."""
    kept = list(ro.checks)
    kept.remove(look)
    return ro.with_checks(tuple(kept))


def look_at_watch(
    cycle: Cycle, svc: Services, promoted: datetime, now: datetime
) -> tuple[str, JSON] | None:
    """During the watch period: the new deployment since promotion against the previous one's
    last window with traffic (kept warm, it serves none now). (why, evidence) to roll back."""
    spec = svc.policy.models[cycle.model].rollout
    ro = _ro(cycle)
    assert spec is not None
    if not ro.previous:
        return None
    end = ro.steps[-1].at
    start = _window_before(ro, end, promoted)
    new = svc.metrics.deployment_requests(ro.endpoint, ro.deployment, promoted, now)
    live = errors_only(svc.metrics.deployment_requests(ro.endpoint, ro.previous, start, end))
    verdict = judge(new, live, settings_of(spec))
    if verdict.decision != "rollback":
        return None
    evidence = {
        "analysis": "sequential",
        "window": [promoted.isoformat(), now.isoformat()],
        "baseline": (
            f"{ro.previous} is kept warm and serves no traffic: compared with its last "
            f"window with traffic ({start.isoformat()} to {end.isoformat()}), on errors only"
        ),
        "tolerance": spec.sequential.tolerance,
        "new_requests": verdict.new_requests,
        "live_requests": verdict.live_requests,
        "errors": _bound(verdict.errors),
        "latency": None,  # live's window is judged on errors only: no latency bound
        "sentence": verdict.why,
    }
    return verdict.why, evidence


def keep_looking(
    cycle: Cycle, svc: Services, look: StepLook, now: datetime, caused_by: str
) -> None:
    """No decision yet: look again ``check_every`` later. At ``max_bake``: fail safe, or hold
    (audited once) and keep looking, as the policy says."""
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    seq = spec.sequential
    phase, evidence, deadline = look.stage, look.evidence, look.deadline
    if now >= deadline and seq.on_max_bake == "fail":
        roll_back(
            cycle,
            svc,
            f"{phase}: no decision within max_bake ({seq.max_bake:g}s), failing safe: {look.why}",
            caused_by,
            evidence=evidence,
        )
        return
    ro = rollout_of(cycle)
    if now >= deadline and ro.held != ro.step:
        cycle.rollout = ro.holding(ro.step)
        note(
            svc,
            AuditKind.DECISION,
            f"{phase} held at max_bake: no decision yet; still looking",
            cycle,
            reason=look.why,
            evidence=evidence,
            caused_by=caused_by,
        )
    if look.stale is not None:  # a look without new traffic adds nothing to the band
        cycle.rollout = without_look(rollout_of(cycle), look.stale)
    next_look = check_due(cycle, now + timedelta(seconds=seq.check_every))
    held = " (held past max_bake)" if now >= deadline else ""
    cycle.reason = f"{phase}{held}: {look.why}; next look {clock(next_look)}" + (
        "" if now >= deadline else f", decision by {clock(deadline)} at the latest"
    )
    svc.store.save_cycle(cycle)
    wake(cycle, svc)
