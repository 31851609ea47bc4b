"""The message bus: maps message types to handlers and runs them with the services.

A bus is cheap to build; build one per invocation (``bootstrap``) rather than sharing a
mutable one between concurrent invocations. Adapters inside ``Services`` are thread-safe.

Follow-up work goes through the bus, as in cosmicpython's ``collect_new_events``: a handler
records it (``Services.emit``) and does not call another handler; once the handler returns,
the bus runs what it recorded, depth first and in order, so it runs in the same invocation
and before the work the handler's caller does next. A follow-up may carry a ``Guard``: the
errors of that follow-up, and of all the work it leads to, go to the guard (the reconciler
keeps one cycle's outage from stalling the others this way).

Inside a delivered batch's transaction (group commit) the bus runs with a ``Deferral``: each
message runs in a savepoint, and a message whose work reaches the outside world (a port that
raises ``Deferred`` there) is undone to its savepoint and recorded as an intent instead, to
run after the commit (``composition.batch_commit``).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.audit_chain import strict_canonical
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

# What the handler running in this context recorded (None: no bus is running here).
_outbox: ContextVar[list[FollowUp] | None] = ContextVar("autopilot_follow_ups", default=None)


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
    intent_attempts: int = 5  # an outbox intent is given up after this many failed tries


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

    def emit(self, message: Message, guard: Guard | None = None) -> None:
        """Record follow-up work; the bus runs its handler once the current handler returns.
        With a ``guard``, errors of that work (and of what it leads to) go to the guard."""
        outbox = _outbox.get()
        if outbox is None:
            raise RuntimeError(f"{type(message).__name__} emitted outside a message bus")
        outbox.append(FollowUp(message, guard))

    def record(self, kind: AuditKind, summary: str, **fields: Any) -> AuditRecord:
        """Append to the audit log; every text in the record is scrubbed of secrets first."""
        return self.audit.append(self.entry(kind, summary, **fields))

    def entry(self, kind: AuditKind, summary: str, **fields: Any) -> AuditEntry:
        """An audit entry with every text scrubbed of secrets. The evidence is looked at in
        its canonical JSON, which the entry then carries for the log to store as it is."""
        scrub = self.redactor
        evidence = fields.pop("evidence", _NO_EVIDENCE)
        texts = fields.values()
        if all(v is None or type(v) is str for v in texts) and not scrub.needs(
            "\n".join(v for v in texts if v)  # one look at them all; a field's secret is in it
        ):
            clean = fields
        else:
            clean = dict(zip(fields, scrub.json(list(texts)), strict=True))
        if evidence is not _NO_EVIDENCE:
            text = strict_canonical(evidence)
            if text is None or scrub.needs(text):  # a secret, or NaN/inf: made safe first
                clean["evidence"] = scrub.json(evidence)
            else:
                clean["evidence"], clean["evidence_json"] = evidence, text
        return AuditEntry(kind=kind, summary=scrub.text(summary), **clean)


_NO_EVIDENCE: Any = object()

Handler = Callable[[Any, Services], None]
# Takes the error of a guarded follow-up: handles it, or raises it again. What it emits runs
# unguarded, as work done in an ``except`` clause would.
Guard = Callable[[Exception, Any, Services], None]


@dataclass(frozen=True, slots=True)
class FollowUp:
    message: Message
    guard: Guard | None = None


class Deferred(BaseException):
    """Raised by a port that must not be used inside a transaction (the platform, metrics,
    queries): the bus undoes the message's work to its savepoint and defers the message.
    A ``BaseException``, so no handler's ``except Exception`` swallows it."""


@dataclass(frozen=True, slots=True)
class Deferral:
    """How the bus defers work inside a transaction: a savepoint per message, and where a
    deferred message is recorded (an intent of the same transaction). A message of a type
    that was deferred once is deferred at once after that, rather than tried and undone."""

    savepoint: Callable[[], AbstractContextManager[object]]
    defer: Callable[[Message], None]
    types: set[type[Message]] = field(default_factory=set)


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
        self.dispatched: list[Message] = []  # what the last ``handle`` ran, follow-ups included
        self.deferral: Deferral | None = None  # set while a batch's transaction is open

    def handle(self, message: Message) -> None:
        """Run the handlers of ``message``, then the follow-up work they recorded.

        A handler that lost an optimistic-concurrency race is re-run (what it recorded in the
        lost attempt is dropped): handlers read the cycle's state first, so the re-run sees
        what the winner did and acts accordingly. Inside guarded work a lost race goes to the
        guard instead. All of it shares one invocation budget for waits on the cloud
        (``shared.budget``).
        """
        self.dispatched = []
        with invocation_budget():
            self._dispatch(FollowUp(message), guarded=False)

    def _dispatch(self, item: FollowUp, guarded: bool) -> None:
        deferral = self.deferral
        if deferral is None:
            self._dispatch_now(item, guarded)
            return
        if type(item.message) in deferral.types:
            deferral.defer(item.message)
            return
        try:
            with deferral.savepoint():
                self._dispatch_now(item, guarded)
        except Deferred:
            log.debug("%s deferred until after the commit", type(item.message).__name__)
            deferral.types.add(type(item.message))
            deferral.defer(item.message)

    def _dispatch_now(self, item: FollowUp, guarded: bool) -> None:
        if item.guard is None:
            self._handle(item.message, guarded)
            return
        try:
            self._handle(item.message, guarded=True)
        except Exception as exc:
            for follow_up in self._collect(item.guard, exc, item.message):
                self._dispatch(follow_up, guarded)

    def _handle(self, message: Message, guarded: bool) -> None:
        self.dispatched.append(message)
        log.debug("handling %s", type(message).__name__)
        for handler in self._handlers(message):
            for follow_up in self._run(handler, message, guarded):
                self._dispatch(follow_up, guarded)

    def _handlers(self, message: Message) -> list[Handler]:
        if isinstance(message, Command):
            handler = self.command_handlers.get(type(message))
            if handler is None:
                raise LookupError(f"no handler for command {type(message).__name__}")
            return [handler]
        assert isinstance(message, Event)
        return self.event_handlers.get(type(message), [])

    def _collect(self, handler: Callable[..., None], *args: Any) -> list[FollowUp]:
        """Run ``handler(*args, services)`` and return what it recorded."""
        outbox: list[FollowUp] = []
        token = _outbox.set(outbox)
        try:
            handler(*args, self.services)
        finally:
            _outbox.reset(token)
        return outbox

    def _run(self, handler: Handler, message: Message, guarded: bool) -> list[FollowUp]:
        if guarded:  # the guard decides what a lost race means
            return self._collect(handler, message)
        for attempt in range(CONCURRENCY_RETRIES):
            try:
                return self._collect(handler, message)
            except ConcurrencyError:
                log.info(
                    "%s lost a concurrent update (attempt %d); re-reading state",
                    type(message).__name__,
                    attempt + 1,
                )
        raise ConcurrencyError(f"{type(message).__name__}: too many concurrent updates")
