"""Messages the bus carries: events (facts from outside or from our handlers) and commands.

Events may have several handlers; a command has exactly one and fails loudly.
Every message that came from a delivery carries ``event_key`` (the dedup key of that
delivery), so audit records can name the event that caused them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Message:
    """Base class of every message."""

    event_key: str


class Event(Message):
    pass


class Command(Message):
    pass


# --- events from the outside world -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DriftSignalled(Event):
    model: str
    source: str  # "alert" | "model_monitor" | "datadrift"
    signal: str  # alert rule / monitor / drift name
    event_key: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignalResolved(Event):
    model: str
    source: str
    signal: str
    event_key: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthAlertFired(Event):
    model: str
    signal: str
    event_key: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobStatusChanged(Event):
    job_name: str
    status: str
    tags: dict[str, str]
    event_key: str
    experiment: str = ""


@dataclass(frozen=True, slots=True)
class ModelRegistered(Event):
    model: str
    version: str
    tags: dict[str, str]
    event_key: str


@dataclass(frozen=True, slots=True)
class EventIgnored(Event):
    """A delivered event we understood but have nothing to do with (audited as ignored)."""

    event_type: str
    reason: str
    event_key: str
    model: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reconcile(Command):
    """Level-check every active cycle against the platform and advance what is due."""

    event_key: str = "timer:reconcile"


@dataclass(frozen=True, slots=True)
class Approve(Command):
    cycle_id: str
    actor: str
    reason: str
    event_key: str = ""


@dataclass(frozen=True, slots=True)
class Deny(Command):
    cycle_id: str
    actor: str
    reason: str
    event_key: str = ""


@dataclass(frozen=True, slots=True)
class ManualRollback(Command):
    """Roll a model back to its last good deployment now (operator action)."""

    model: str
    actor: str
    reason: str
    event_key: str = ""


@dataclass(frozen=True, slots=True)
class RetrainRequested(Command):
    """Start a retraining cycle now (operator action); coalesced if one is active."""

    model: str
    actor: str
    reason: str
    event_key: str = ""


# --- follow-up work: recorded by a handler (``Services.emit``), run by the bus after it ------


class CycleWork(Command):
    """Follow-up work on one cycle; its handler reads the cycle again by id."""

    cycle_id: str


@dataclass(frozen=True, slots=True)
class StartRetraining(CycleWork):
    """A new (or stalled TRIGGERED) cycle: record the job name, then submit the job."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class ResumeCycle(CycleWork):
    """The event that started a cycle came again: finish what a crash may have cut short."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class CheckJob(CycleWork):
    """The reconciler asks the platform how a RETRAINING cycle's job is doing."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class Reevaluate(CycleWork):
    """An EVALUATING cycle stalled: claim it and gate the candidate again."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class RegisterCandidate(CycleWork):
    """An approved candidate: register it."""

    cycle_id: str
    event_key: str
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class StartRollout(CycleWork):
    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class AdvanceRollout(CycleWork):
    """One reconcile tick of a rollout: hold, wait, step on, promote or roll back."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class WatchRollout(CycleWork):
    """One reconcile tick of a promotion's watch period."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class RollBack(CycleWork):
    """Return every request to the previous deployment and close the cycle."""

    cycle_id: str
    reason: str
    event_key: str
    evidence: dict[str, Any] | None = None
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class FailRollout(CycleWork):
    """Fail a rollout safely: the previous deployment back to 100%, then FAILED."""

    cycle_id: str
    reason: str
    event_key: str


@dataclass(frozen=True, slots=True)
class CleanUpDeployments(CycleWork):
    """Delete (or begin deleting) the deployments a closed cycle no longer needs."""

    cycle_id: str
    event_key: str
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class ReconcileCycle(CycleWork):
    """The reconciler's look at one active cycle."""

    cycle_id: str
    event_key: str


@dataclass(frozen=True, slots=True)
class ReconcileWatches(Command):
    """The reconciler's pass over promotions in their watch period (after the active cycles)."""

    event_key: str


@dataclass(frozen=True, slots=True)
class ReconcileCleanUps(Command):
    """The reconciler's pass over closed cycles with leftover deployments."""

    event_key: str


@dataclass(frozen=True, slots=True)
class ReconcileEstimates(Command):
    """Due estimated-performance checks; a breach is a ``DriftSignalled``."""

    event_key: str


@dataclass(frozen=True, slots=True)
class PurgeDeliveries(Command):
    """Forget dedup keys older than the retention."""

    event_key: str


@dataclass(frozen=True, slots=True)
class AnchorAudit(Command):
    """Commit every audit chain's head in the anchor chain (the reconciler's last pass)."""

    event_key: str


@dataclass(frozen=True, slots=True)
class DrainOutbox(Command):
    """Perform recorded intents (``shared.ports.Outbox``): ``owner``'s own after its commit,
    or (``owner`` empty: the reconciler) every one whose lease expired."""

    event_key: str
    owner: str = ""


@dataclass(frozen=True, slots=True)
class PerformIntent(Command):
    """One intent of the outbox: follow-up work (``message``) or a lifecycle event to publish."""

    intent_id: int
    kind: str
    body: str
    event_key: str


@dataclass(frozen=True, slots=True)
class IntentDone(Command):
    """The intent was performed: forget it (runs only when its work raised nothing)."""

    intent_id: int
    event_key: str
