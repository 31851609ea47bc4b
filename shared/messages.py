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
