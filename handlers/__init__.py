"""The decisions: which handler runs for which message. Pure Python, no Azure SDK imports."""

from __future__ import annotations

from handlers import approvals, reconcile, rollout, signals, training
from shared.messagebus import Handler
from shared.messages import (
    Approve,
    Command,
    Deny,
    DriftSignalled,
    Event,
    EventIgnored,
    HealthAlertFired,
    JobStatusChanged,
    ManualRollback,
    ModelRegistered,
    Reconcile,
    RetrainRequested,
    SignalResolved,
)

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
}
