"""The decisions: which handler runs for which message. Pure Python, no Azure SDK imports.

No handler module imports another: follow-up work is a message a handler records
(``Services.emit``) and the bus runs through these maps. This package's ``__init__`` is the
only place that knows every handler module.
"""

from __future__ import annotations

from handlers import approvals, cleanup, outbox, reconcile, rollout, signals, training, watch
from shared.messagebus import Handler
from shared.messages import (
    AdvanceRollout,
    AnchorAudit,
    Approve,
    CheckJob,
    CleanUpDeployments,
    Command,
    Deny,
    DrainOutbox,
    DriftSignalled,
    Event,
    EventIgnored,
    FailRollout,
    HealthAlertFired,
    IntentDone,
    JobStatusChanged,
    ManualRollback,
    ModelRegistered,
    PerformIntent,
    PurgeDeliveries,
    Reconcile,
    ReconcileCleanUps,
    ReconcileCycle,
    ReconcileEstimates,
    ReconcileWatches,
    Reevaluate,
    RegisterCandidate,
    ResumeCycle,
    RetrainRequested,
    RollBack,
    SignalResolved,
    StartRetraining,
    StartRollout,
    WatchRollout,
)

__all__ = ["CALL_OUT_FIRST", "COMMAND_HANDLERS", "EVENT_HANDLERS"]

# Work whose handler calls the platform before it decides anything: inside a batch's
# transaction it is deferred to the outbox at once, rather than tried and undone.
CALL_OUT_FIRST: frozenset[type[Command]] = frozenset({StartRetraining, CheckJob, Reevaluate})

EVENT_HANDLERS: dict[type[Event], list[Handler]] = {
    DriftSignalled: [signals.on_drift_signal],
    SignalResolved: [signals.on_signal_resolved],
    HealthAlertFired: [signals.on_health_alert],
    EventIgnored: [signals.on_ignored],
    JobStatusChanged: [training.on_job_status],
    ModelRegistered: [rollout.on_model_registered],
}

COMMAND_HANDLERS: dict[type[Command], Handler] = {
    Reconcile: reconcile.reconcile,
    Approve: approvals.approve,
    Deny: approvals.deny,
    ManualRollback: signals.manual_rollback,
    RetrainRequested: signals.retrain,
    # follow-up work a handler records; the bus runs it after that handler returns
    StartRetraining: training.on_start_retraining,
    ResumeCycle: training.on_resume,
    CheckJob: training.on_check_job,
    Reevaluate: training.on_reevaluate,
    RegisterCandidate: training.on_register,
    StartRollout: rollout.on_start_rollout,
    AdvanceRollout: rollout.on_advance,
    WatchRollout: watch.on_watch,
    RollBack: rollout.on_roll_back,
    FailRollout: rollout.on_fail_rollout,
    CleanUpDeployments: cleanup.on_clean_up,
    ReconcileCycle: reconcile.on_cycle,
    ReconcileWatches: reconcile.on_watches,
    ReconcileCleanUps: reconcile.on_clean_ups,
    ReconcileEstimates: reconcile.on_estimates,
    PurgeDeliveries: reconcile.on_purge,
    AnchorAudit: reconcile.on_anchor,
    # the outbox: work deferred past a batch's commit (handlers.outbox)
    DrainOutbox: outbox.drain,
    PerformIntent: outbox.perform,
    IntentDone: outbox.done,
}
