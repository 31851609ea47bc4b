"""The message bus: maps message types to handlers and runs them with the services.

A bus is cheap to build; build one per invocation (``bootstrap``) rather than sharing a
mutable one between concurrent invocations. Adapters inside ``Services`` are thread-safe.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.budget import invocation_budget
from shared.errors import ConcurrencyError
from shared.messages import Command, Event, Message
from shared.model import AuditEntry, AuditKind, AuditRecord
from shared.ports import (
    AuditLog,
    Clock,
    EventPublisher,
    GroundTruth,
    LogQueries,
    Metrics,
    MLPlatform,
    ScoredLog,
    StateStore,
    Wakeups,
)
from shared.redact import NO_SECRETS, Redactor

if TYPE_CHECKING:
    from shared.policy import Policy

log = logging.getLogger(__name__)

CONCURRENCY_RETRIES = 5


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Settings:
    """Timing knobs of the lifecycle (not per model: those live in the policy)."""

    delivery_lease_s: float = 300.0
    stale_after_s: float = 600.0  # a cycle stuck mid-step this long is resumed by the reconciler
    # dedup keys are kept this long after their event was processed (Event Grid retries 24 h)
    delivery_retention_s: float = 7 * 24 * 3600.0
    purge_batch: int = 1000  # at most this many keys forgotten per reconcile tick


@dataclass
class Services:
    """Everything a handler may touch. Built by ``composition.wiring``."""

    store: StateStore
    audit: AuditLog
    platform: MLPlatform
    metrics: Metrics
    publisher: EventPublisher
    policy: Policy
    logs: LogQueries | None = None  # Log Analytics, for policies that confirm with a query
    wakeups: Wakeups | None = None  # one-shot reconcile at a due time (local host only)
    scored: ScoredLog | None = None  # scores served to live traffic, for estimated_performance
    labels: GroundTruth | None = None  # late labels (ground_truth); None: local files only
    clock: Clock = field(default_factory=SystemClock)
    settings: Settings = field(default_factory=Settings)
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    # masks configured secrets in text that is stored (audit records, cycle reasons)
    redactor: Redactor = NO_SECRETS

    def now(self) -> datetime:
        return self.clock.now()

    def record(self, kind: AuditKind, summary: str, **fields: Any) -> AuditRecord:
        """Append to the audit log; every text in the record is scrubbed of secrets first."""
        scrub = self.redactor
        clean = {name: scrub.json(value) for name, value in fields.items()}
        return self.audit.append(AuditEntry(kind=kind, summary=scrub.text(summary), **clean))


Handler = Callable[[Any, Services], None]


def stable_suffix(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


class MessageBus:
    def __init__(
        self,
        services: Services,
        event_handlers: dict[type[Event], list[Handler]],
        command_handlers: dict[type[Command], Handler],
    ) -> None:
        self.services = services
        self.event_handlers = event_handlers
        self.command_handlers = command_handlers

    def handle(self, message: Message) -> None:
        """Run the handlers of ``message``.

        A handler that lost an optimistic-concurrency race is re-run: handlers read the
        cycle's state first, so the re-run sees what the winner did and acts accordingly.
        All of it shares one invocation budget for waits on the cloud (``shared.budget``).
        """
        with invocation_budget():
            self._handle(message)

    def _handle(self, message: Message) -> None:
        if isinstance(message, Command):
            handler = self.command_handlers.get(type(message))
            if handler is None:
                raise LookupError(f"no handler for command {type(message).__name__}")
            handlers = [handler]
        else:
            assert isinstance(message, Event)
            handlers = self.event_handlers.get(type(message), [])
        for handler in handlers:
            self._run(handler, message)

    def _run(self, handler: Handler, message: Message) -> None:
        for attempt in range(CONCURRENCY_RETRIES):
            try:
                handler(message, self.services)
                return
            except ConcurrencyError:
                log.info(
                    "%s lost a concurrent update (attempt %d); re-reading state",
                    type(message).__name__,
                    attempt + 1,
                )
        raise ConcurrencyError(f"{type(message).__name__}: too many concurrent updates")
