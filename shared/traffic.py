"""Traffic on a rollout's endpoint: change it and confirm, wait for the platform, fail safe,
roll back. The service layer under ``handlers.rollout`` (which decides when).

Every traffic change is read back to confirm it took effect. No invocation waits for a
long-running platform operation: when the platform answers ``InProgress`` the cycle records
what it waits for (``in_progress``) and the reconciler's next tick repeats the same call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.errors import InProgress, PermanentError, TransientError
from shared.lifecycle import move, note, rollout_of
from shared.messagebus import Services
from shared.messages import CleanUpDeployments
from shared.model import AuditKind, Cycle, CycleState
from shared.rollout_state import Phase, RollingBack, traffic_text


def clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")


def check_due(cycle: Cycle, due: datetime) -> datetime:
    """Record when the rollout must be looked at next (``_wake`` asks for it once saved)."""
    cycle.rollout = rollout_of(cycle).due(due)
    return due


def wake(cycle: Cycle, svc: Services) -> None:
    """After the cycle is saved: ask for a reconcile when its next check is due."""
    due = cycle.rollout.next_check_at if cycle.rollout is not None else None
    if svc.wakeups is not None and due:
        svc.wakeups.at(due, f"rollout of cycle {cycle.id}")


def set_and_confirm(svc: Services, endpoint: str, traffic: dict[str, int]) -> None:
    svc.platform.set_traffic(endpoint, traffic)
    # Deployment names compare case-insensitively, as Azure does (the SDK lower-cases them).
    actual = {k.lower(): v for k, v in svc.platform.get_traffic(endpoint).items() if v}
    wanted = {k.lower(): v for k, v in traffic.items() if v}
    if actual != wanted:
        raise TransientError(
            f"endpoint {endpoint}: traffic is {traffic_text(actual)}, "
            f"expected {traffic_text(wanted)}"
        )


def wait_for_platform(
    cycle: Cycle, svc: Services, what: str, exc: InProgress, caused_by: str
) -> None:
    """Record that ``what`` runs on in the platform; the reconciler's next tick checks it."""
    ro = rollout_of(cycle)
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


def change_traffic(cycle: Cycle, svc: Services, traffic: dict[str, int], caused_by: str) -> bool:
    """Change traffic and confirm it took effect. On failure count the attempt; after the
    policy's attempts, fail safe: the previous deployment keeps or regains all traffic."""
    ro = rollout_of(cycle)
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None
    try:
        set_and_confirm(svc, ro.endpoint, traffic)
    except InProgress as exc:  # not a failed attempt: the change is still being applied
        wait_for_platform(cycle, svc, f"traffic change to {traffic}", exc, caused_by)
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


NO_ROLLOUT_SECTION = (
    "the policy no longer has a rollout section for this model: the rollout stops and the "
    "previous deployment takes all the traffic again"
)


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
            set_and_confirm(svc, ro.endpoint, {previous: 100, ro.deployment: 0})
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


def finish_roll_back(cycle: Cycle, svc: Services, pending: RollingBack, caused_by: str) -> None:
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
            set_and_confirm(svc, ro.endpoint, {previous: 100, ro.deployment: 0})
    except InProgress as exc:
        assert ro is not None
        cycle.rollout = ro.rollback_pending(RollingBack(reason, evidence or {}, actor))
        wait_for_platform(cycle, svc, f"rollback to {previous}", exc, caused_by)
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
