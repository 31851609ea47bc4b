"""Blue/green rollout: new deployment at 0%, canary steps with health checks, promote or roll back.

Steps advance on the reconcile tick once their bake time has passed (``next_check_at``; a
wake-up is asked for then). The new deployment's health is compared with live's over the same
window; too little traffic means wait. The cycle's reason says where the rollout stands. Judges:
``shared.canary_judges``; traffic changes, failing safe, rollback: ``shared.traffic``; the watch
after promotion: ``handlers.watch``; a closed cycle's deployments: ``handlers.cleanup``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shared import estimated_performance as performance
from shared.canary_judges import (
    StepLook,
    health_json,
    keep_looking,
    look_at_step,
    threshold_verdict,
)
from shared.errors import AlreadyExists, InProgress, PermanentError
from shared.lifecycle import (
    CYCLE_TAG,
    deployment_name_for,
    is_stale,
    load,
    move,
    note,
    publish,
    rollout_of,
)
from shared.messagebus import Services
from shared.messages import (
    AdvanceRollout,
    CleanUpDeployments,
    FailRollout,
    ModelRegistered,
    RollBack,
    StartRollout,
)
from shared.model import AuditKind, Cycle, CycleState, HealthSample
from shared.rollout_state import Check, Phase, RolloutState, traffic_text
from shared.traffic import (
    NO_ROLLOUT_SECTION,
    change_traffic,
    check_due,
    clock,
    fail_rollout,
    finish_roll_back,
    roll_back,
    wait_for_platform,
    wake,
)

WAIT_RECHECK_MIN_S = 5.0  # "not enough traffic yet" is looked at again no sooner than this

__all__ = ["traffic_text"]  # re-exported from shared.rollout_state (older imports)


def on_model_registered(msg: ModelRegistered, svc: Services) -> None:
    cycle_id = msg.tags.get(CYCLE_TAG)
    cycle = svc.store.get_cycle(cycle_id) if cycle_id else None
    if cycle is None or cycle.model != msg.model:
        note(
            svc,
            AuditKind.IGNORED,
            f"model {msg.model} v{msg.version} registered elsewhere",
            model=msg.model,
            reason="not registered by one of our cycles",
            caused_by=msg.event_key,
        )
        return
    if cycle.state is not CycleState.REGISTERED or cycle.candidate_version != msg.version:
        note(
            svc,
            AuditKind.IGNORED,
            f"registration of v{msg.version} already handled",
            cycle,
            reason=f"cycle is {cycle.state.value}",
            caused_by=msg.event_key,
        )
        return
    start_rollout(cycle, svc, msg.event_key)


def start_rollout(cycle: Cycle, svc: Services, caused_by: str) -> None:
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None and cycle.candidate_version
    busy = [
        other.id
        for other in svc.store.list_cycles(active_only=True)
        if other.id != cycle.id
        and other.state is CycleState.ROLLING_OUT
        and other.rollout is not None
        and other.rollout.endpoint == spec.endpoint
    ]
    if busy:
        note(
            svc,
            AuditKind.DECISION,
            f"rollout waits: endpoint {spec.endpoint} is busy",
            cycle,
            reason=f"cycle {busy[0]} is rolling out there; one rollout per endpoint",
            caused_by=caused_by,
        )
        return
    deployment = deployment_name_for(cycle.model, cycle.candidate_version)
    current = svc.platform.get_traffic(spec.endpoint)
    live = max(current, key=lambda d: current[d]) if any(current.values()) else None
    if live == deployment:
        live = None
    cycle.rollout = RolloutState.begin(
        spec.endpoint,
        deployment,
        live,
        current,
        svc.platform.champion_version(cycle.model, spec.endpoint),
    )
    move(
        svc,
        cycle,
        CycleState.ROLLING_OUT,
        f"creating deployment {deployment} on {spec.endpoint} at 0% traffic",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
    )
    resume(cycle, svc, caused_by)


def resume(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """Create the (deterministically named) deployment if needed and enter the first step."""
    ro = rollout_of(cycle)
    assert cycle.candidate_version
    try:
        svc.platform.create_deployment(
            ro.endpoint, ro.deployment, cycle.model, cycle.candidate_version
        )
    except AlreadyExists:
        pass  # created before a crash or by a concurrent worker: the name is deterministic
    except InProgress as exc:  # still provisioning (or a same-named one still being deleted)
        wait_for_platform(cycle, svc, f"deployment {ro.deployment}", exc, caused_by)
        return
    except PermanentError as exc:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"deployment failed: {exc}",
            caused_by=caused_by,
            kind=AuditKind.ERROR,
        )
        svc.emit(CleanUpDeployments(cycle.id, caused_by))  # a half-made deployment is billed too
        return
    publish(
        svc,
        cycle,
        "rollout.started",
        {"deployment": ro.deployment, "previous": ro.previous},
    )
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    if spec.shadow is not None and ro.previous:
        _enter_shadow(cycle, svc, caused_by)
        return
    _enter_step(cycle, svc, 0, caused_by)


def _enter_shadow(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """Mirror a share of live traffic to the new deployment (its responses discarded)."""
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None and spec.shadow is not None
    shadow = spec.shadow
    ro = rollout_of(cycle)
    try:
        svc.platform.set_mirror(ro.endpoint, {ro.deployment: shadow.percent})
    except InProgress as exc:
        wait_for_platform(cycle, svc, f"mirroring to {ro.deployment}", exc, caused_by)
        return
    now = svc.now()
    cycle.rollout = ro = ro.platform_done().in_shadow(now, shadow.percent)
    first = spec.sequential.check_every if spec.analysis == "sequential" else shadow.bake
    due = check_due(cycle, now + timedelta(seconds=first))
    cycle.reason = (
        f"shadow: {ro.previous} serves 100% on {ro.endpoint}, {shadow.percent}% "
        f"mirrored to {ro.deployment}; health check due {clock(due)}"
    )
    svc.store.save_cycle(cycle)
    wake(cycle, svc)
    note(
        svc,
        AuditKind.ACTION,
        f"shadow: {shadow.percent}% of live traffic mirrored to "
        f"{ro.deployment} (responses discarded)",
        cycle,
        caused_by=caused_by,
    )


def _enter_step(
    cycle: Cycle, svc: Services, index: int, caused_by: str, kind: AuditKind = AuditKind.ACTION
) -> None:
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    ro = rollout_of(cycle)
    steps = spec.steps if ro.previous else (100,)
    percent = steps[index]
    traffic = ro.traffic_for(percent)
    cycle.rollout = ro.applying_step(index)  # what a retry must apply if this does not take
    if not change_traffic(cycle, svc, traffic, caused_by):
        return
    now = svc.now()
    cycle.rollout = ro = rollout_of(cycle).in_step(index, percent, now, traffic)
    where = f"{traffic_text(traffic)} on {spec.endpoint} (step {index + 1}/{len(steps)})"
    if ro.previous:
        first = spec.sequential.check_every if spec.analysis == "sequential" else spec.bake
        due = check_due(cycle, now + timedelta(seconds=first))
        cycle.reason = f"canary: {where}; health check due {clock(due)}"
    else:
        cycle.rollout = ro.due(None)
        cycle.reason = f"first deployment: {where}"
    svc.store.save_cycle(cycle)
    wake(cycle, svc)
    note(
        svc,
        kind,
        f"traffic {where}",
        cycle,
        evidence={"traffic": traffic},
        caused_by=caused_by,
    )
    publish(svc, cycle, "rollout.step", {"traffic": traffic})
    if not ro.previous:
        _promote(cycle, svc, caused_by, "first deployment of this model on the endpoint")


def _health(
    svc: Services, endpoint: str, deployment: str | None, start: datetime, end: datetime
) -> HealthSample | None:
    if not deployment:
        return None
    return svc.metrics.deployment_health(endpoint, deployment, start, end)


def advance(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """One reconcile tick of a rollout: finish what was cut short, else judge the running
    step (hold, wait for traffic, step on, promote or roll back)."""
    spec = svc.policy.models[cycle.model].rollout
    ro = cycle.rollout
    if ro is None:
        return
    if spec is None:  # nothing left to judge the candidate by: its traffic goes back
        if not any(done(cycle, svc, ro, caused_by) for done in (_restoring, _rolling_back)):
            fail_rollout(cycle, svc, NO_ROLLOUT_SECTION, caused_by)
        return
    for finished_something in _UNFINISHED:
        if finished_something(cycle, svc, ro, caused_by):
            return
    bake = spec.shadow.bake if ro.phase is Phase.SHADOW and spec.shadow else spec.bake
    now = svc.now()
    started = ro.step_started_at
    assert started is not None
    if spec.analysis == "sequential" and ro.previous:
        look = look_at_step(cycle, svc, started, now)
        if look is not None:
            _act_on_look(cycle, svc, look, now, caused_by)
        return
    if now - started >= timedelta(seconds=bake):
        _threshold_check(cycle, svc, (started, now), bake, caused_by)


def _restoring(cycle: Cycle, svc: Services, ro: RolloutState, caused_by: str) -> bool:
    """Failing safe, the restore has not taken effect yet: try it again."""
    if ro.phase is not Phase.RESTORING:
        return False
    fail_rollout(cycle, svc, ro.failed_because, caused_by, evidence=ro.failed_evidence)
    return True


def _rolling_back(cycle: Cycle, svc: Services, ro: RolloutState, caused_by: str) -> bool:
    """A rollback whose traffic change was still running: finish it."""
    if not ro.rolling_back:
        return False
    finish_roll_back(cycle, svc, ro.rolling_back, caused_by)
    return True


def _not_started(cycle: Cycle, svc: Services, ro: RolloutState, caused_by: str) -> bool:
    """No step runs yet: retry the one that did not take effect, or resume after a crash."""
    if ro.judging:
        return False
    if ro.traffic_failures or ro.in_progress or is_stale(cycle, svc):
        resume(cycle, svc, caused_by)
    return True


def _change_unconfirmed(cycle: Cycle, svc: Services, ro: RolloutState, caused_by: str) -> bool:
    """Retry the traffic change that was not confirmed (not the step before it, which would
    reset the attempt count and step back and forth for ever). From shadow too: judging the
    shadow again would audit it again, with its mirror already off."""
    pending_change = ro.pending_step is not None and bool(ro.in_progress or ro.traffic_failures)
    if not ((ro.phase is Phase.CANARY and ro.traffic_failures) or pending_change):
        return False
    pending = ro.pending_step
    _enter_step(cycle, svc, pending if pending is not None else ro.step, caused_by)
    return True


# In order: the first that finds something cut short finishes it, and the tick ends there.
_UNFINISHED: tuple[Callable[[Cycle, Services, RolloutState, str], bool], ...] = (
    _restoring,
    _rolling_back,
    _not_started,
    _change_unconfirmed,
)


def _threshold_check(
    cycle: Cycle,
    svc: Services,
    window: tuple[datetime, datetime],
    bake: float,
    caused_by: str,
) -> None:
    """The threshold judge once the bake time is over: breach, wait for traffic, or pass."""
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    ro = rollout_of(cycle)
    started, now = window
    new = _health(svc, spec.endpoint, ro.deployment, started, now)
    old = _health(svc, spec.endpoint, ro.previous, started, now)
    assert new is not None
    verdict, why = threshold_verdict(new, old, spec.health)
    perf = performance.guard(svc, cycle, (ro.deployment, started, now), (ro.previous, started, now))
    if verdict != "breach" and perf.verdict == "breach":  # with the health judge, not instead
        verdict, why = "breach", perf.why
    evidence: dict[str, Any] = {
        "window": [started.isoformat(), now.isoformat()],
        "percent": ro.percent,
        "new": health_json(new),
        "live": health_json(old) if old else None,
        "verdict": verdict,
        "estimated_performance": perf.evidence or None,
    }
    kept = {k: v for k, v in evidence.items() if k != "verdict"}
    cycle.rollout = ro = ro.checked(Check(now, verdict, why, kept))
    phase = ro.stage()
    if verdict == "breach":
        roll_back(
            cycle,
            svc,
            f"{phase} breach: {why}",
            caused_by,
            evidence=evidence,
        )
        return
    if verdict == "wait":
        _wait_for_traffic(cycle, svc, window, bake, why, evidence, caused_by)
        return
    svc.store.save_cycle(cycle)
    note(
        svc,
        AuditKind.DECISION,
        f"{phase} healthy",
        cycle,
        reason=why,
        evidence=evidence,
        caused_by=caused_by,
    )
    _next_stage(cycle, svc, why, caused_by)


def _wait_for_traffic(
    cycle: Cycle,
    svc: Services,
    window: tuple[datetime, datetime],
    bake: float,
    why: str,
    evidence: dict[str, Any],
    caused_by: str,
) -> None:
    """Too little traffic for a verdict: look again soon; roll back after the wait."""
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    ro = rollout_of(cycle)
    started, now = window
    deadline = started + timedelta(seconds=bake + spec.max_wait)
    if now > deadline:
        roll_back(
            cycle,
            svc,
            f"not enough traffic for a verdict within the wait: {why}",
            caused_by,
            evidence=evidence,
        )
        return
    checks = ro.checks
    if len(checks) > 1 and checks[-2].verdict == "wait":
        # keep the latest of a run of waits: they are rechecked often
        cycle.rollout = ro.with_checks((*checks[:-2], checks[-1]))
    recheck = now + timedelta(seconds=max(bake, WAIT_RECHECK_MIN_S))
    due = check_due(cycle, min(recheck, deadline + timedelta(seconds=1)))
    cycle.reason = (
        f"{ro.stage()}: waiting for traffic ({why}); next health check {clock(due)}, "
        f"rolled back if still too little after {clock(deadline)}"
    )
    svc.store.save_cycle(cycle)
    wake(cycle, svc)


def _promote(cycle: Cycle, svc: Services, caused_by: str, why: str) -> None:
    """Make the candidate champion; keep the previous deployment warm for the watch period."""
    spec = svc.policy.models[cycle.model].rollout
    ro = rollout_of(cycle)
    assert cycle.candidate_version and spec is not None
    svc.platform.set_champion(cycle.model, cycle.candidate_version)
    now = svc.now()
    watching = bool(ro.previous) and spec.watch > 0
    until = now + timedelta(seconds=spec.watch) if watching else None
    cycle.rollout = ro = ro.promoted(now, until)
    if until is not None:
        check_due(cycle, until)
    move(
        svc,
        cycle,
        CycleState.PROMOTED,
        f"promoted {cycle.model} v{cycle.candidate_version}: {why}",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
        evidence={"watch_until": until.isoformat() if until else None, "kept_warm": ro.previous},
    )
    wake(cycle, svc)  # the watch period ends then
    svc.emit(CleanUpDeployments(cycle.id, caused_by))  # no watch period: the previous goes now


def _act_on_look(
    cycle: Cycle, svc: Services, look: StepLook, now: datetime, caused_by: str
) -> None:
    """Act on one sequential look: pass the step, roll back, or keep looking."""
    phase, evidence = look.stage, look.evidence
    if look.decision == "rollback":
        roll_back(cycle, svc, f"{phase}: {look.why}", caused_by, evidence=evidence)
        return
    if look.decision == "pass":
        svc.store.save_cycle(cycle)
        note(
            svc,
            AuditKind.DECISION,
            f"{phase} healthy",
            cycle,
            reason=look.why,
            evidence=evidence,
            caused_by=caused_by,
        )
        _next_stage(cycle, svc, look.why, caused_by)
        return
    keep_looking(cycle, svc, look, now, caused_by)


def _next_stage(cycle: Cycle, svc: Services, why: str, caused_by: str) -> None:
    """A healthy stage: from shadow to the first canary step, from 100% to promotion, else
    to the next step."""
    ro = rollout_of(cycle)
    if ro.phase is Phase.SHADOW:
        svc.platform.set_mirror(ro.endpoint, {})
        _enter_step(cycle, svc, 0, caused_by)
    elif ro.percent == 100:
        _promote(cycle, svc, caused_by, why)
    else:
        _enter_step(cycle, svc, ro.step + 1, caused_by)


# --- follow-up work the bus runs (each reads its cycle again) -----------------------------


def on_start_rollout(msg: StartRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id, CycleState.REGISTERED)
    if cycle is not None:
        start_rollout(cycle, svc, msg.event_key)


def on_advance(msg: AdvanceRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id, CycleState.ROLLING_OUT)
    if cycle is not None:
        advance(cycle, svc, msg.event_key)


def on_roll_back(msg: RollBack, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id, CycleState.ROLLING_OUT, CycleState.PROMOTED)
    if cycle is not None:
        roll_back(cycle, svc, msg.reason, msg.event_key, evidence=msg.evidence, actor=msg.actor)


def on_fail_rollout(msg: FailRollout, svc: Services) -> None:
    # REGISTERED: a rollout that failed before it began closes the cycle as an error
    cycle = load(svc, msg.cycle_id, CycleState.ROLLING_OUT, CycleState.REGISTERED)
    if cycle is not None:
        fail_rollout(cycle, svc, msg.reason, msg.event_key)
