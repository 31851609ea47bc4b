"""Blue/green rollout: new deployment at 0%, canary steps with health checks, promote or roll back.

Steps advance on the reconcile tick once their bake time has passed: each step records when
its health check is due (``next_check_at``) and asks ``svc.wakeups`` for a reconcile then (the
local host runs one at that time; on Azure the timer's next tick after it checks). Health of
the new deployment is compared with the live one over the same window; too little traffic
means wait, not pass. Every traffic change is read back to confirm it took effect. The
cycle's reason always says where the rollout stands (traffic, step, when the check is due).
Whenever a cycle closes, the deployments it no longer needs are deleted: the rollout records
``CleanUpDeployments`` and the bus runs ``handlers.cleanup`` next. The judges (is the new
deployment healthy?) are ``shared.canary_judges``; this module acts on their verdicts.

No invocation waits for a long-running platform operation: when the platform answers
``InProgress`` (a deployment still provisioning, an endpoint update still running), the cycle
records what it waits for (``in_progress``) and the reconciler's next tick repeats the same
call, which checks on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared import estimated_performance as performance
from shared.canary_judges import (
    StepLook,
    health_json,
    look_at_step,
    look_at_watch,
    threshold_verdict,
    without_look,
)
from shared.errors import AlreadyExists, InProgress, PermanentError, TransientError
from shared.lifecycle import (
    CYCLE_TAG,
    deployment_name_for,
    is_stale,
    load,
    move,
    note,
    publish,
    schedule_cleanup,
)
from shared.messagebus import Services
from shared.messages import (
    AdvanceRollout,
    CleanUpDeployments,
    FailRollout,
    ModelRegistered,
    RollBack,
    StartRollout,
    WatchRollout,
)
from shared.model import AuditKind, Cycle, CycleState, HealthSample
from shared.rollout_state import Check, Phase, RollingBack, RolloutState, traffic_text

WAIT_RECHECK_MIN_S = 5.0  # "not enough traffic yet" is looked at again no sooner than this


__all__ = ["traffic_text"]  # re-exported from shared.rollout_state (older imports)


def _ro(cycle: Cycle) -> RolloutState:
    assert cycle.rollout is not None, f"cycle {cycle.id} has no rollout"
    return cycle.rollout


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")


def _check_due(cycle: Cycle, due: datetime) -> datetime:
    """Record when the rollout must be looked at next (``_wake`` asks for it once saved)."""
    cycle.rollout = _ro(cycle).due(due)
    return due


def _wake(cycle: Cycle, svc: Services) -> None:
    """After the cycle is saved: ask for a reconcile when its next check is due."""
    due = cycle.rollout.next_check_at if cycle.rollout is not None else None
    if svc.wakeups is not None and due:
        svc.wakeups.at(due, f"rollout of cycle {cycle.id}")


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


def _set_and_confirm(svc: Services, endpoint: str, traffic: dict[str, int]) -> None:
    svc.platform.set_traffic(endpoint, traffic)
    # Deployment names compare case-insensitively, as Azure does (the SDK lower-cases them).
    actual = {k.lower(): v for k, v in svc.platform.get_traffic(endpoint).items() if v}
    wanted = {k.lower(): v for k, v in traffic.items() if v}
    if actual != wanted:
        raise TransientError(
            f"endpoint {endpoint}: traffic is {traffic_text(actual)}, "
            f"expected {traffic_text(wanted)}"
        )


def _wait_for_platform(
    cycle: Cycle, svc: Services, what: str, exc: InProgress, caused_by: str
) -> None:
    """Record that ``what`` runs on in the platform; the reconciler's next tick checks it."""
    ro = _ro(cycle)
    first = ro.in_progress != what
    cycle.rollout = ro.waiting_for(what)
    svc.store.save_cycle(cycle)
    if first:  # audited once, not on every tick it is still running
        note(
            svc,
            AuditKind.ACTION,
            f"{what} in progress; the reconciler checks it on its next tick",
            cycle,
            reason=str(exc),
            caused_by=caused_by,
        )


def _change_traffic(cycle: Cycle, svc: Services, traffic: dict[str, int], caused_by: str) -> bool:
    """Change traffic and confirm it took effect. On failure count the attempt; after the
    policy's attempts, fail safe: the previous deployment keeps or regains all traffic."""
    ro = _ro(cycle)
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    try:
        _set_and_confirm(svc, ro.endpoint, traffic)
    except InProgress as exc:  # not a failed attempt: the change is still being applied
        _wait_for_platform(cycle, svc, f"traffic change to {traffic}", exc, caused_by)
        return False
    except TransientError as exc:
        cycle.rollout = ro = ro.traffic_unconfirmed()
        if ro.traffic_failures < spec.traffic_attempts:
            cycle.reason = (
                f"traffic change to {traffic_text(traffic)} on {ro.endpoint} not confirmed "
                f"(attempt {ro.traffic_failures}/{spec.traffic_attempts}); "
                "retrying at the next reconcile"
            )
            svc.store.save_cycle(cycle)
            note(
                svc,
                AuditKind.ERROR,
                f"traffic change not confirmed "
                f"(attempt {ro.traffic_failures}/{spec.traffic_attempts}); will retry",
                cycle,
                reason=str(exc),
                caused_by=caused_by,
            )
            return False
        fail_rollout(
            cycle,
            svc,
            f"traffic change did not take effect after {spec.traffic_attempts} attempts",
            caused_by,
            evidence={"wanted": traffic, "error": str(exc)},
        )
        return False
    cycle.rollout = ro.traffic_confirmed()
    return True


def fail_rollout(
    cycle: Cycle,
    svc: Services,
    reason: str,
    caused_by: str,
    *,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Fail a rollout safely: the previous deployment back to 100% (mirror off), then FAILED.

    If that restore does not take effect now (a transient outage), the cycle stays
    ROLLING_OUT in phase ``restoring``, keeping the model's lock, and every reconcile tick
    tries again until the endpoint is back on the previous deployment; only then is the cycle
    closed. A permanent error while restoring closes it at once, saying so.
    """
    ro = cycle.rollout
    if ro is None or not ro.endpoint:
        move(svc, cycle, CycleState.FAILED, reason, caused_by=caused_by, kind=AuditKind.ERROR)
        return
    previous = ro.previous
    try:
        if ro.phase is Phase.SHADOW or ro.mirror_off_pending:
            cycle.rollout = ro = ro.mirror_off(pending=True)
            svc.platform.set_mirror(ro.endpoint, {})
            cycle.rollout = ro = ro.mirror_off(pending=False)
        if previous:
            _set_and_confirm(svc, ro.endpoint, {previous: 100, ro.deployment: 0})
        restored = f"{previous} at 100%" if previous else "no previous deployment"
    except TransientError as exc:
        cycle.rollout = ro = ro.restoring(reason, evidence)
        cycle.reason = (
            f"failing safe: restoring {previous} to 100% not confirmed yet "
            f"(attempt {ro.restore_attempts}); {reason}"
        )
        svc.store.save_cycle(cycle)
        note(
            svc,
            AuditKind.ERROR,
            f"failing safe: restoring {previous} did not take effect "
            f"(attempt {ro.restore_attempts}); retrying every reconcile tick",
            cycle,
            reason=f"{reason}; {exc}",
            caused_by=caused_by,
        )
        return
    except PermanentError as exc:
        restored = f"restoring {previous} failed permanently: {exc}"
    cycle.rollout = ro.failed()
    move(
        svc,
        cycle,
        CycleState.FAILED,
        f"{reason}; failed safe ({restored})",
        caused_by=caused_by,
        kind=AuditKind.ERROR,
        evidence=evidence,
    )
    svc.emit(CleanUpDeployments(cycle.id, caused_by))


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
    ro = _ro(cycle)
    assert cycle.candidate_version
    try:
        svc.platform.create_deployment(
            ro.endpoint, ro.deployment, cycle.model, cycle.candidate_version
        )
    except AlreadyExists:
        pass  # created before a crash or by a concurrent worker: the name is deterministic
    except InProgress as exc:  # still provisioning (or a same-named one still being deleted)
        _wait_for_platform(cycle, svc, f"deployment {ro.deployment}", exc, caused_by)
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
    shadow = spec.shadow
    if shadow is not None and ro.previous:
        try:
            svc.platform.set_mirror(ro.endpoint, {ro.deployment: shadow.percent})
        except InProgress as exc:
            _wait_for_platform(cycle, svc, f"mirroring to {ro.deployment}", exc, caused_by)
            return
        now = svc.now()
        cycle.rollout = ro = ro.platform_done().in_shadow(now, shadow.percent)
        first = spec.sequential.check_every if spec.analysis == "sequential" else shadow.bake
        due = _check_due(cycle, now + timedelta(seconds=first))
        cycle.reason = (
            f"shadow: {ro.previous} serves 100% on {ro.endpoint}, {shadow.percent}% "
            f"mirrored to {ro.deployment}; health check due {_clock(due)}"
        )
        svc.store.save_cycle(cycle)
        _wake(cycle, svc)
        note(
            svc,
            AuditKind.ACTION,
            f"shadow: {shadow.percent}% of live traffic mirrored to "
            f"{ro.deployment} (responses discarded)",
            cycle,
            caused_by=caused_by,
        )
        return
    _enter_step(cycle, svc, 0, caused_by)


def _enter_step(
    cycle: Cycle, svc: Services, index: int, caused_by: str, kind: AuditKind = AuditKind.ACTION
) -> None:
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    ro = _ro(cycle)
    steps = spec.steps if ro.previous else (100,)
    percent = steps[index]
    traffic = ro.traffic_for(percent)
    cycle.rollout = ro.applying_step(index)  # what a retry must apply if this does not take
    if not _change_traffic(cycle, svc, traffic, caused_by):
        return
    now = svc.now()
    cycle.rollout = ro = _ro(cycle).in_step(index, percent, now, traffic)
    where = f"{traffic_text(traffic)} on {spec.endpoint} (step {index + 1}/{len(steps)})"
    if ro.previous:
        first = spec.sequential.check_every if spec.analysis == "sequential" else spec.bake
        due = _check_due(cycle, now + timedelta(seconds=first))
        cycle.reason = f"canary: {where}; health check due {_clock(due)}"
    else:
        cycle.rollout = ro.due(None)
        cycle.reason = f"first deployment: {where}"
    svc.store.save_cycle(cycle)
    _wake(cycle, svc)
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
    """One reconcile tick of a rollout: hold, wait for traffic, step on, promote or roll back."""
    spec = svc.policy.models[cycle.model].rollout
    ro = cycle.rollout
    if spec is None or ro is None:
        return
    if ro.phase is Phase.RESTORING:  # failing safe: the restore has not taken effect yet
        fail_rollout(cycle, svc, ro.failed_because, caused_by, evidence=ro.failed_evidence)
        return
    if ro.rolling_back:  # a rollback whose traffic change was still running
        _finish_roll_back(cycle, svc, ro.rolling_back, caused_by)
        return
    if not ro.judging:
        if ro.traffic_failures or ro.in_progress or is_stale(cycle, svc):
            resume(cycle, svc, caused_by)  # retry a step that did not take effect, or a crash
        return
    pending_change = bool(ro.in_progress) and ro.pending_step is not None
    if (ro.phase is Phase.CANARY and ro.traffic_failures) or pending_change:
        # retry the change that was not confirmed (not the step before it, which would reset
        # the attempt count and step back and forth for ever)
        pending = ro.pending_step
        _enter_step(cycle, svc, pending if pending is not None else ro.step, caused_by)
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
    if now - started < timedelta(seconds=bake):
        return
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
        due = _check_due(cycle, min(recheck, deadline + timedelta(seconds=1)))
        cycle.reason = (
            f"{phase}: waiting for traffic ({why}); next health check {_clock(due)}, "
            f"rolled back if still too little after {_clock(deadline)}"
        )
        svc.store.save_cycle(cycle)
        _wake(cycle, svc)
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


def _promote(cycle: Cycle, svc: Services, caused_by: str, why: str) -> None:
    """Make the candidate champion; keep the previous deployment warm for the watch period."""
    spec = svc.policy.models[cycle.model].rollout
    ro = _ro(cycle)
    assert cycle.candidate_version and spec is not None
    svc.platform.set_champion(cycle.model, cycle.candidate_version)
    now = svc.now()
    watching = bool(ro.previous) and spec.watch > 0
    until = now + timedelta(seconds=spec.watch) if watching else None
    cycle.rollout = ro = ro.promoted(now, until)
    if until is not None:
        _check_due(cycle, until)
    move(
        svc,
        cycle,
        CycleState.PROMOTED,
        f"promoted {cycle.model} v{cycle.candidate_version}: {why}",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
        evidence={"watch_until": until.isoformat() if until else None, "kept_warm": ro.previous},
    )
    _wake(cycle, svc)  # the watch period ends then
    svc.emit(CleanUpDeployments(cycle.id, caused_by))  # no watch period: the previous goes now


def watch(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """A reconcile tick after promotion: roll back on a health breach; end the watch on time."""
    spec = svc.policy.models[cycle.model].rollout
    ro = _ro(cycle)
    assert spec is not None
    if ro.rolling_back:  # a rollback whose traffic change was still running
        _finish_roll_back(cycle, svc, ro.rolling_back, caused_by)
        return
    now = svc.now()
    promoted = ro.promoted_at
    assert promoted is not None
    new = svc.metrics.deployment_health(ro.endpoint, ro.deployment, promoted, now)
    verdict, why = threshold_verdict(new, None, spec.health)
    before = promoted - (now - promoted)  # live's own traffic: as long a window before promotion
    perf = performance.guard(
        svc, cycle, (ro.deployment, promoted, now), (ro.previous, before, promoted)
    )
    if verdict != "breach" and perf.verdict == "breach":
        verdict, why = "breach", f"estimated performance: {perf.why}"
    if verdict == "breach":
        roll_back(
            cycle,
            svc,
            f"health breach during the watch period: {why}",
            caused_by,
            evidence={
                "new": health_json(new),
                "window": [promoted.isoformat(), now.isoformat()],
                "estimated_performance": perf.evidence or None,
            },
        )
        return
    if spec.analysis == "sequential":
        breach = look_at_watch(cycle, svc, promoted, now)
        if breach is not None:
            why, evidence = breach
            roll_back(cycle, svc, f"during the watch period: {why}", caused_by, evidence=evidence)
            return
    assert ro.watch_until is not None
    if now < ro.watch_until:
        return
    cycle.rollout = ro.watch_over()
    schedule_cleanup(cycle)
    svc.store.save_cycle(cycle)
    note(
        svc,
        AuditKind.ACTION,
        f"watch period over; deleting previous deployment {ro.previous}",
        cycle,
        reason=why,
        caused_by=caused_by,
    )
    svc.emit(CleanUpDeployments(cycle.id, caused_by))


def _finish_roll_back(cycle: Cycle, svc: Services, pending: RollingBack, caused_by: str) -> None:
    """Finish a rollback whose traffic change was still running when it was asked for."""
    roll_back(
        cycle,
        svc,
        pending.reason,
        caused_by,
        evidence=pending.evidence,
        actor=pending.actor,
    )


def roll_back(
    cycle: Cycle,
    svc: Services,
    reason: str,
    caused_by: str,
    *,
    evidence: dict[str, Any] | None = None,
    actor: str = "system",
) -> None:
    """Return every request to the previous deployment in one step, then close the cycle.

    After promotion (watch period) the previous champion is restored too. If the traffic
    change is still running, the cycle records the rollback and the reconciler finishes it.
    """
    ro = cycle.rollout
    previous = ro.previous if ro is not None else None
    try:
        if ro is not None and ro.phase is Phase.SHADOW:
            svc.platform.set_mirror(ro.endpoint, {})
        if ro is not None and previous:
            _set_and_confirm(svc, ro.endpoint, {previous: 100, ro.deployment: 0})
    except InProgress as exc:
        assert ro is not None
        cycle.rollout = ro.rollback_pending(RollingBack(reason, evidence or {}, actor))
        _wait_for_platform(cycle, svc, f"rollback to {previous}", exc, caused_by)
        return
    if ro is not None:
        if cycle.state is CycleState.PROMOTED and ro.previous_champion:
            svc.platform.set_champion(cycle.model, ro.previous_champion)
        cycle.rollout = ro.rolled_back()
    move(
        svc,
        cycle,
        CycleState.ROLLED_BACK,
        f"rolled back: {reason}",
        caused_by=caused_by,
        kind=AuditKind.DECISION,  # the model's latest decision (the console shows it)
        evidence={**(evidence or {}), "restored": {previous: 100} if previous else None},
        actor=actor,
    )
    svc.emit(CleanUpDeployments(cycle.id, caused_by, actor))


def _act_on_look(
    cycle: Cycle, svc: Services, look: StepLook, now: datetime, caused_by: str
) -> None:
    """Act on one sequential look: pass the step, roll back, or keep looking (a wakeup
    ``check_every`` later). At ``max_bake`` without a decision: hold or fail safe, as the
    policy says."""
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    seq = spec.sequential
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
    deadline = look.deadline
    if now >= deadline and seq.on_max_bake == "fail":
        roll_back(
            cycle,
            svc,
            f"{phase}: no decision within max_bake ({seq.max_bake:g}s), failing safe: {look.why}",
            caused_by,
            evidence=evidence,
        )
        return
    ro = _ro(cycle)
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
        cycle.rollout = without_look(_ro(cycle), look.stale)
    next_look = _check_due(cycle, now + timedelta(seconds=seq.check_every))
    held = " (held past max_bake)" if now >= deadline else ""
    cycle.reason = f"{phase}{held}: {look.why}; next look {_clock(next_look)}" + (
        "" if now >= deadline else f", decision by {_clock(deadline)} at the latest"
    )
    svc.store.save_cycle(cycle)
    _wake(cycle, svc)


def _next_stage(cycle: Cycle, svc: Services, why: str, caused_by: str) -> None:
    """A healthy stage: from shadow to the first canary step, from 100% to promotion, else
    to the next step."""
    ro = _ro(cycle)
    if ro.phase is Phase.SHADOW:
        svc.platform.set_mirror(ro.endpoint, {})
        _enter_step(cycle, svc, 0, caused_by)
    elif ro.percent == 100:
        _promote(cycle, svc, caused_by, why)
    else:
        _enter_step(cycle, svc, ro.step + 1, caused_by)


# --- follow-up work the bus runs (each reads its cycle again) -----------------------------


def on_start_rollout(msg: StartRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        start_rollout(cycle, svc, msg.event_key)


def on_advance(msg: AdvanceRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        advance(cycle, svc, msg.event_key)


def on_watch(msg: WatchRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        watch(cycle, svc, msg.event_key)


def on_roll_back(msg: RollBack, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        roll_back(cycle, svc, msg.reason, msg.event_key, evidence=msg.evidence, actor=msg.actor)


def on_fail_rollout(msg: FailRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        fail_rollout(cycle, svc, msg.reason, msg.event_key)
