"""The reconciler: level-check every active cycle against the platform and move it on.

Event Grid may drop or delay events; this timer makes sure no cycle hangs forever. What it
does is audited as ``reconciled`` and goes through the same steps the missing event would.
It also retries deleting the deployments closed cycles left behind (``handlers.cleanup``)
and anchors the audit log's chains (``AuditLog.anchor``).

Each tick is follow-up work on the bus, in this order: the outbox's intents whose writer
died before performing them (``handlers.outbox``), one ``ReconcileCycle`` per active
cycle, then the watch periods, the clean-ups, the estimated-performance checks, the purge
of old dedup keys and the audit anchor. The work on one cycle is guarded
(:func:`contain_cycle_errors`): one cycle's outage does not stall the others.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from shared import estimated_performance as performance
from shared.errors import ConcurrencyError, TransientError
from shared.lifecycle import contain_cycle_errors, is_stale, load, move, watching, with_leftovers
from shared.messagebus import Services
from shared.messages import (
    AdvanceRollout,
    AnchorAudit,
    CheckJob,
    CleanUpDeployments,
    DrainOutbox,
    DriftSignalled,
    FailRollout,
    PurgeDeliveries,
    Reconcile,
    ReconcileCleanUps,
    ReconcileCycle,
    ReconcileEstimates,
    ReconcileWatches,
    Reevaluate,
    StartRetraining,
    StartRollout,
    WatchRollout,
)
from shared.model import AuditKind, Cycle, CycleState

log = logging.getLogger(__name__)


def reconcile(cmd: Reconcile, svc: Services) -> None:
    key = cmd.event_key
    svc.emit(DrainOutbox(key))  # work a batch deferred past its commit, its writer gone
    for cycle in svc.store.list_cycles(active_only=True):
        svc.emit(ReconcileCycle(cycle.id, key), contain_cycle_errors)
    svc.emit(ReconcileWatches(key))
    svc.emit(ReconcileCleanUps(key))  # leftover deployments of closed cycles
    svc.emit(ReconcileEstimates(key))
    svc.emit(PurgeDeliveries(key))
    svc.emit(AnchorAudit(key))


def on_watches(msg: ReconcileWatches, svc: Services) -> None:
    for cycle in watching(svc):
        svc.emit(WatchRollout(cycle.id, msg.event_key), contain_cycle_errors)


def on_clean_ups(msg: ReconcileCleanUps, svc: Services) -> None:
    for cycle in with_leftovers(svc):
        svc.emit(CleanUpDeployments(cycle.id, msg.event_key), contain_cycle_errors)


def on_estimates(msg: ReconcileEstimates, svc: Services) -> None:
    """Due estimated-performance checks; a breach takes the drift signal's path."""
    for signal in performance.check_all(svc):
        svc.emit(signal, _defer_signal)


def _defer_signal(exc: Exception, signal: Any, svc: Services) -> None:
    if not isinstance(exc, TransientError | ConcurrencyError):
        raise exc
    assert isinstance(signal, DriftSignalled)  # the next interval checks again
    log.warning("estimated-performance signal for %s deferred: %s", signal.model, exc)


def on_purge(msg: PurgeDeliveries, svc: Services) -> None:
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


def on_anchor(msg: AnchorAudit, svc: Services) -> None:
    """Commit every audit chain's head in the anchor chain, so a record cut off any chain
    later is caught by ``verify`` (housekeeping: a failure waits for the next tick)."""
    try:
        svc.audit.anchor()
    except TransientError as exc:
        log.warning("audit anchor deferred: %s", exc)


def on_cycle(msg: ReconcileCycle, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None and cycle.is_active:
        reconcile_cycle(cycle, svc, msg.event_key)


def reconcile_cycle(cycle: Cycle, svc: Services, key: str) -> None:
    """What one active cycle needs now, by its state (the work itself is follow-up work)."""
    state = cycle.state
    if svc.policy.model(cycle.model) is None and state is CycleState.ROLLING_OUT:
        # fail safe: the candidate's traffic goes back to the previous deployment
        svc.emit(FailRollout(cycle.id, "model removed from the policy", key))
    elif svc.policy.model(cycle.model) is None:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            "model removed from the policy",
            caused_by=key,
            kind=AuditKind.RECONCILED,
        )
    elif state is CycleState.TRIGGERED and is_stale(cycle, svc):
        svc.emit(StartRetraining(cycle.id, key))
    elif state is CycleState.RETRAINING and cycle.job_name:
        svc.emit(CheckJob(cycle.id, key))
    elif state is CycleState.EVALUATING and is_stale(cycle, svc):
        svc.emit(Reevaluate(cycle.id, key))
    elif state is CycleState.AWAITING_APPROVAL:
        _expire_approval(cycle, svc, key)
    elif state is CycleState.REGISTERED:
        svc.emit(StartRollout(cycle.id, key))
    elif state is CycleState.ROLLING_OUT:
        svc.emit(AdvanceRollout(cycle.id, key))


def _expire_approval(cycle: Cycle, svc: Services, key: str) -> None:
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
