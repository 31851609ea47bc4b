"""The reconciler: level-check every active cycle against the platform and move it on.

Event Grid may drop or delay events; this timer makes sure no cycle hangs forever. What it
does is audited as ``reconciled`` and goes through the same steps the missing event would.
It also retries deleting the deployments closed cycles left behind (``handlers.cleanup``)
and anchors the audit log's chains (``shared.audit_anchor``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from handlers import cleanup, performance, rollout, signals, training
from handlers.cycles import is_stale, move
from shared.errors import ConcurrencyError, NotFound, PermanentError, TransientError
from shared.messagebus import Services
from shared.messages import Reconcile
from shared.model import AuditKind, Cycle, CycleState

log = logging.getLogger(__name__)


def reconcile(cmd: Reconcile, svc: Services) -> None:
    for cycle in svc.store.list_cycles(active_only=True):
        _guarded(reconcile_cycle, cycle, svc, cmd.event_key)
    for cycle in rollout.watching(svc):
        _guarded(rollout.watch, cycle, svc, cmd.event_key)
    for cycle in cleanup.pending(svc):  # leftover deployments of closed cycles
        _guarded(cleanup.run, cycle, svc, cmd.event_key)
    _estimate(svc)
    _purge_deliveries(svc)
    _anchor_audit(svc)


def _anchor_audit(svc: Services) -> None:
    """Commit every audit chain's head in the anchor chain, so a record cut off any chain
    later is caught by ``verify`` (housekeeping: a failure waits for the next tick)."""
    try:
        svc.audit.anchor()
    except TransientError as exc:
        log.warning("audit anchor deferred: %s", exc)


def _estimate(svc: Services) -> None:
    """Due estimated-performance checks; a breach takes the drift signal's path."""
    for signal in performance.check_all(svc):
        try:
            signals.on_drift_signal(signal, svc)
        except (TransientError, ConcurrencyError) as exc:  # the next interval checks again
            log.warning("estimated-performance signal for %s deferred: %s", signal.model, exc)


def _purge_deliveries(svc: Services) -> None:
    """Forget dedup keys of events processed longer ago than the retention (housekeeping:
    logged, not audited; a failure waits for the next tick)."""
    before = svc.now() - timedelta(seconds=svc.settings.delivery_retention_s)
    try:
        purged = svc.store.purge_deliveries(before, svc.settings.purge_batch)
    except TransientError as exc:
        log.warning("purging old delivery keys deferred: %s", exc)
        return
    if purged:
        log.info("forgot %d delivery key(s) processed before %s", purged, before.isoformat())


def _guarded(
    step: Callable[[Cycle, Services, str], None], cycle: Cycle, svc: Services, key: str
) -> None:
    try:
        step(cycle, svc, key)
    except TransientError as exc:  # one cycle's outage must not stall the others
        log.warning("reconcile of cycle %s deferred: %s", cycle.id, exc)
    except ConcurrencyError:
        log.info("cycle %s changed while reconciling; next tick will look again", cycle.id)
    except PermanentError as exc:  # retrying every tick cannot help: close the cycle safely
        fresh = svc.store.get_cycle(cycle.id)
        if fresh is None or not fresh.is_active:
            return
        if fresh.state is CycleState.ROLLING_OUT:
            rollout.fail_rollout(fresh, svc, str(exc), key)
        else:
            move(svc, fresh, CycleState.FAILED, str(exc), caused_by=key, kind=AuditKind.ERROR)


def reconcile_cycle(cycle: Cycle, svc: Services, key: str) -> None:
    state = cycle.state
    if svc.policy.model(cycle.model) is None:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            "model removed from the policy",
            caused_by=key,
            kind=AuditKind.RECONCILED,
        )
    elif state is CycleState.TRIGGERED and is_stale(cycle, svc):
        training.start_retraining(cycle, svc, key)
    elif state is CycleState.RETRAINING and cycle.job_name:
        _check_job(cycle, svc, key)
    elif state is CycleState.EVALUATING and is_stale(cycle, svc):
        svc.store.save_cycle(cycle)  # claim it (version bump) before redoing the evaluation
        training.evaluate(cycle, svc, key)
    elif state is CycleState.AWAITING_APPROVAL:
        timeout = svc.policy.models[cycle.model].gate.approval_timeout
        if svc.now() - cycle.updated_at > timedelta(seconds=timeout):
            move(
                svc,
                cycle,
                CycleState.REJECTED,
                f"approval expired after {timeout:g}s",
                caused_by=key,
                kind=AuditKind.RECONCILED,
            )
    elif state is CycleState.REGISTERED:
        rollout.start_rollout(cycle, svc, key)
    elif state is CycleState.ROLLING_OUT:
        rollout.advance(cycle, svc, key)


def _check_job(cycle: Cycle, svc: Services, key: str) -> None:
    assert cycle.job_name
    try:
        info = svc.platform.get_job(cycle.job_name)
    except NotFound:
        if is_stale(cycle, svc):  # intent recorded, submission lost (crash): submit it now
            training.submit_job(cycle, svc, key)
        return
    if info.status.is_terminal:
        training.finish_job(cycle, svc, info.status, key, kind=AuditKind.RECONCILED)
    elif training.job_overdue(cycle, svc):
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"job {cycle.job_name} still {info.status.value} past its timeout",
            caused_by=key,
            kind=AuditKind.RECONCILED,
        )
