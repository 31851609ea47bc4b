"""One look of the sequential canary judge (``rollout.analysis: sequential``) during a step.

Called on every reconcile tick or wakeup while a shadow or canary step runs. It reads every
request of the new and the live deployment since the step started, asks
``shared.sequential.judge`` and acts: pass the step, roll back, or keep looking (a wakeup
``check_every`` later). At ``max_bake`` without a decision it holds or fails safe, as the
policy says. Each look's bounds are kept in the rollout's ``checks`` (the console plots them).

At the 100% step live serves nothing; its requests from the step before stand in for it
(its last window with traffic), and the evidence says so. Such a window from another time is
compared on errors only: its latencies measure that moment's load on the machine as much as
the deployment (a healthy model was seen rolled back for the slow requests of a loaded
machine), so latency is judged only against live traffic of the same moments.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from handlers import rollout
from handlers.cycles import note
from shared.messagebus import Services
from shared.model import AuditKind, Cycle
from shared.policy import Rollout
from shared.rollout_state import Check, Phase, RolloutState
from shared.sequential import Bound, RequestSample, Settings, judge

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


def _live_requests(
    svc: Services, ro: RolloutState, started: datetime, now: datetime
) -> tuple[RequestSample, str | None]:
    """Live's requests over the step; at 100% its window of the step before (and a note)."""
    assert ro.previous is not None
    live = svc.metrics.deployment_requests(ro.endpoint, ro.previous, started, now)
    steps = ro.steps
    if live.requests or len(steps) < 2:
        return live, None
    before = steps[-2].at
    baseline = svc.metrics.deployment_requests(ro.endpoint, ro.previous, before, started)
    return errors_only(baseline), (
        f"{ro.previous} serves no traffic at this step: compared with its last window "
        f"with traffic ({before.isoformat()} to {started.isoformat()}), on errors only"
    )


def _ro(cycle: Cycle) -> RolloutState:
    assert cycle.rollout is not None, f"cycle {cycle.id} has no rollout"
    return cycle.rollout


def errors_only(sample: RequestSample) -> RequestSample:
    """A window from another time, without its latencies (they were another moment's load)."""
    return RequestSample(sample.requests, sample.errors, ())


def look(cycle: Cycle, svc: Services, started: datetime, now: datetime, caused_by: str) -> None:
    """Judge the running step once and act on the decision."""
    spec = svc.policy.models[cycle.model].rollout
    ro = _ro(cycle)
    assert spec is not None
    seq = spec.sequential
    due = ro.next_check_at
    if due and now < due:
        return  # a reconcile between looks (another event): the next look is already asked for
    settings = settings_of(spec)
    new = svc.metrics.deployment_requests(ro.endpoint, ro.deployment, started, now)
    live, baseline_note = _live_requests(svc, ro, started, now)
    verdict = judge(new, live, settings)
    phase = ro.stage()
    step = ro.step
    entry = {
        "window": [started.isoformat(), now.isoformat()],
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
    checks = ro.checks
    looks = [c for c in checks if c.sequential and c.step == step]
    if len(looks) > MAX_LOOKS_PER_STEP:  # a long hold: keep the first, the last, every other
        dropped = looks[1:-1:2]
        checks = tuple(c for c in checks if not any(c is d for d in dropped))
        looks = [c for c in looks if not any(c is d for d in dropped)]
    cycle.rollout = ro = ro.with_checks(checks)
    evidence: dict[str, Any] = {
        "analysis": "sequential",
        "window": [started.isoformat(), now.isoformat()],
        "percent": ro.percent,
        "alpha": seq.alpha,
        "beta": seq.beta,
        "tolerance": seq.tolerance,
        "latency_tolerance": seq.latency_tolerance,
        "new_requests": verdict.new_requests,
        "live_requests": verdict.live_requests,
        "bounds": [c.bounds() for c in looks],
        "verdict": verdict.decision,
        "sentence": verdict.why,
    }
    if baseline_note:
        evidence["baseline"] = baseline_note
    if verdict.decision == "rollback":
        rollout.roll_back(cycle, svc, f"{phase}: {verdict.why}", caused_by, evidence=evidence)
        return
    if verdict.decision == "pass":
        svc.store.save_cycle(cycle)
        note(
            svc,
            AuditKind.DECISION,
            f"{phase} healthy",
            cycle,
            reason=verdict.why,
            evidence=evidence,
            caused_by=caused_by,
        )
        if ro.phase is Phase.SHADOW:
            svc.platform.set_mirror(ro.endpoint, {})
            rollout._enter_step(cycle, svc, 0, caused_by)
        elif ro.percent == 100:
            rollout._promote(cycle, svc, caused_by, verdict.why)
        else:
            rollout._enter_step(cycle, svc, ro.step + 1, caused_by)
        return
    deadline = started + timedelta(seconds=seq.max_bake)
    if now >= deadline and seq.on_max_bake == "fail":
        rollout.roll_back(
            cycle,
            svc,
            f"{phase}: no decision within max_bake ({seq.max_bake:g}s), failing safe: "
            f"{verdict.why}",
            caused_by,
            evidence=evidence,
        )
        return
    if now >= deadline and ro.held != step:
        cycle.rollout = ro.holding(step)
        note(
            svc,
            AuditKind.DECISION,
            f"{phase} held at max_bake: no decision yet; still looking",
            cycle,
            reason=verdict.why,
            evidence=evidence,
            caused_by=caused_by,
        )
    if len(looks) > 1 and looks[-2].new_requests == verdict.new_requests:
        # a look without new traffic adds nothing to the band
        kept = list(_ro(cycle).checks)
        kept.remove(looks[-2])
        cycle.rollout = _ro(cycle).with_checks(tuple(kept))
    next_look = rollout._check_due(cycle, now + timedelta(seconds=seq.check_every))
    held = " (held past max_bake)" if now >= deadline else ""
    cycle.reason = f"{phase}{held}: {verdict.why}; next look {rollout._clock(next_look)}" + (
        "" if now >= deadline else f", decision by {rollout._clock(deadline)} at the latest"
    )
    svc.store.save_cycle(cycle)
    rollout._wake(cycle, svc)


def watch_look(
    cycle: Cycle, svc: Services, promoted: datetime, now: datetime, caused_by: str
) -> bool:
    """During the watch period: the new deployment since promotion against the previous one's
    last window with traffic (kept warm, it serves none now). True if it rolled back."""
    spec = svc.policy.models[cycle.model].rollout
    ro = _ro(cycle)
    assert spec is not None
    steps = ro.steps
    if not ro.previous or len(steps) < 2:
        return False
    start, end = steps[-2].at, steps[-1].at
    new = svc.metrics.deployment_requests(ro.endpoint, ro.deployment, promoted, now)
    live = errors_only(svc.metrics.deployment_requests(ro.endpoint, ro.previous, start, end))
    verdict = judge(new, live, settings_of(spec))
    if verdict.decision != "rollback":
        return False
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
        "latency": _bound(verdict.latency),
        "sentence": verdict.why,
    }
    rollout.roll_back(
        cycle, svc, f"during the watch period: {verdict.why}", caused_by, evidence=evidence
    )
    return True
