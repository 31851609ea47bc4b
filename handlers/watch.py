"""The watch period after promotion: the previous deployment is kept warm, and a health
breach rolls back (the previous champion restored too); at its end the previous deployment
is deleted (``CleanUpDeployments``, run by ``handlers.cleanup``)."""

from __future__ import annotations

from shared import estimated_performance as performance
from shared.canary_judges import health_json, look_at_watch, threshold_verdict
from shared.lifecycle import load, note, rollout_of, schedule_cleanup
from shared.messagebus import Services
from shared.messages import CleanUpDeployments, WatchRollout
from shared.model import AuditKind, Cycle, CycleState
from shared.traffic import finish_roll_back, roll_back


def watch(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """A reconcile tick after promotion: roll back on a health breach; end the watch on time."""
    spec = svc.policy.models[cycle.model].rollout
    ro = rollout_of(cycle)
    assert spec is not None
    if ro.rolling_back:  # a rollback whose traffic change was still running
        finish_roll_back(cycle, svc, ro.rolling_back, caused_by)
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


def on_watch(msg: WatchRollout, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id, CycleState.PROMOTED)
    if cycle is not None:
        watch(cycle, svc, msg.event_key)
