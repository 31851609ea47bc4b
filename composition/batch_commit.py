"""A delivered batch in one store transaction, with its side effects in an outbox.

On a store that has transactions (SQLite), everything the batch changes commits together:
the claims of its events, their audit records, the state its handlers write and the
finishing of each claim. Nothing reaches the outside world inside that transaction (it holds
SQLite's write lock): a handler that calls the platform, metrics or a query is undone to its
savepoint and recorded as an intent, and a lifecycle event published is recorded too. Once
the transaction has committed, the intents are performed (``handlers.outbox``) and only then
is the sender answered. A crash before the commit leaves nothing (the redelivery does it
all); a crash after it leaves the events done and the intents leased, which the reconciler
performs when the lease has expired. An intent performed twice acts once: the work it names
finds its own earlier attempt through deterministic names and the cycle's recorded state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from handlers import CALL_OUT_FIRST
from shared.adapters.sqlite_db import SqliteDatabase, WriteGroup
from shared.errors import PermanentError
from shared.lifecycle import CYCLE_TAG, job_name_for
from shared.message_codec import encode
from shared.messagebus import Deferral, Deferred, MessageBus, Services
from shared.messages import DrainOutbox, EventIgnored, JobStatusChanged, Message
from shared.model import AuditKind
from shared.ports import EventPublisher, Outbox, Transactional

log = logging.getLogger(__name__)


# The ports that reach the outside world: never called while a write lock is held.
OUTSIDE_PORTS = ("platform", "metrics", "logs", "scored", "labels")


class AfterCommit:
    """Stands in for a port inside the transaction: any call defers the calling message."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise Deferred(f"{self._name}.{attr}")

        return call


@dataclass(slots=True)
class Unit:
    """One batch's transaction: the store (with its outbox), the audit log, the intents' owner."""

    bus: MessageBus
    store: Outbox
    audit: Transactional
    owner: str
    deferred: int = 0  # messages deferred so far

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.store.transaction(), self.audit.transaction():
            yield

    def add(self, kind: str, body: str) -> int:
        svc = self.bus.services
        return self.store.add_intent(
            kind, body, svc.now(), svc.settings.delivery_lease_s, self.owner
        )

    def defer(self, message: Message) -> None:
        self.add("message", encode(message))
        self.deferred += 1

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        self.add("publish", publication(event_type, subject, data))


def publication(event_type: str, subject: str, data: dict[str, Any]) -> str:
    """A lifecycle event as a "publish" intent's body (``handlers.outbox.perform``)."""
    body = {"type": event_type, "subject": subject, "data": data}
    return json.dumps(body, separators=(",", ":"), default=str)


def unit_of(bus: MessageBus, owner: str) -> Unit | None:
    """The batch's unit of work if both the store and the audit log have transactions."""
    svc = bus.services
    if isinstance(svc.store, Outbox) and isinstance(svc.audit, Transactional):
        return Unit(bus, svc.store, svc.audit, owner)
    return None


def _inside(svc: Services, unit: Unit) -> Services:
    """``svc`` as handlers see it inside the transaction: the outside world deferred."""

    def port(name: str, real: object) -> Any:
        return None if real is None else AfterCommit(name)

    outside = {name: port(name, getattr(svc, name)) for name in OUTSIDE_PORTS}
    return replace(svc, **outside, publisher=unit)


@contextmanager
def deferring(unit: Unit) -> Iterator[None]:
    """Run the bus with the outside world deferred to the outbox while the block runs."""
    bus = unit.bus
    services, bus.services = bus.services, _inside(bus.services, unit)
    bus.deferral = Deferral(unit.savepoint, unit.defer, set(CALL_OUT_FIRST))
    try:
        yield
    finally:
        bus.services, bus.deferral = services, None


def order_key(message: Message, svc: Services) -> str:
    """Which events must keep their order within a batch: those of one model (``*``: any).

    A job's status that names no model is placed by what its handler would touch: the model
    whose cycle ran the job, else the model that adopts completed jobs of its experiment;
    a job neither concerns no model (a key of its own: it waits for nothing). A job named as
    ours are stays ``*``: its cycle may be one this batch is still starting."""
    model = getattr(message, "model", None) or getattr(message, "tags", {}).get("autopilot_model")
    if model:
        return str(model)
    if isinstance(message, JobStatusChanged) and not message.job_name.startswith(OUR_JOBS):
        return _job_model(message, svc) or f"job:{message.job_name}"
    return "*"


OUR_JOBS = job_name_for("")  # the prefix of every job a cycle submits


def _job_model(msg: JobStatusChanged, svc: Services) -> str | None:
    cycle = svc.store.find_cycle_by_job(msg.job_name)
    cycle_id = msg.tags.get(CYCLE_TAG)
    if cycle is None and cycle_id:
        cycle = svc.store.get_cycle(cycle_id)
    if cycle is not None:
        return cycle.model
    return next(
        (
            name
            for name, spec in svc.policy.models.items()
            if spec.training.accept_foreign_jobs and spec.training.experiment == msg.experiment
        ),
        None,
    )


def handle_in_transaction(unit: Unit, todo: Sequence[tuple[str, Message, str]]) -> int:
    """Handle each ``(key, message, summary)``; how many failed permanently (audited).

    Once an event's work has been deferred, the later events of its model (of every model,
    if it names none) are deferred whole, so they still run after it, in delivery order. A
    permanent failure undoes that event's work (its savepoint) and is acknowledged; any
    other error rolls the whole transaction back and reaches the sender (who redelivers).
    """
    failed = 0
    waiting: set[str] = set()  # order keys with deferred work
    with deferring(unit):
        bus = unit.bus
        for key, message, summary in todo:
            order = order_key(message, bus.services)
            if not isinstance(message, EventIgnored) and (
                order in waiting or "*" in waiting or (order == "*" and waiting)
            ):
                unit.defer(message)
                continue
            before = unit.deferred
            try:
                bus.handle(message)
                if unit.deferred > before:
                    waiting.add(order)
            except PermanentError as exc:
                bus.services.record(
                    AuditKind.ERROR,
                    f"{summary}: failed permanently",
                    model=getattr(message, "model", None),
                    reason=str(exc),
                    caused_by=key,
                )
                failed += 1
    return failed


class FlushFirst:
    """Stands in for a port after the commit: commits the writes held so far, then calls."""

    def __init__(self, real: object, group: WriteGroup) -> None:
        self._real, self._group = real, group

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._real, attr)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self._group.flush()
            return value(*args, **kwargs)

        return call


@dataclass(slots=True)
class Publications:
    """Stands in for the publisher while intents are performed: each lifecycle event is an
    intent written with the work that published it, sent once that work has committed
    (``send``), all of a batch's together."""

    unit: Unit
    pending: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        intent_id = self.unit.add("publish", publication(event_type, subject, data))
        self.pending.append((intent_id, event_type, subject, data))

    def send(self, publisher: EventPublisher) -> None:
        """Publish in order, then forget what was sent in one transaction. The first that
        fails stops the sending: it and the rest stay intents, which the reconciler sends
        once their lease has expired (in order, its tries counted as every intent's are)."""
        sent: list[int] = []
        try:
            for intent_id, event_type, subject, data in self.pending:
                publisher.publish(event_type, subject, data)
                sent.append(intent_id)
        finally:
            if sent:
                with self.unit.store.transaction():
                    for intent_id in sent:
                        self.unit.store.finish_intent(intent_id)


@contextmanager
def grouped(unit: Unit) -> Iterator[Publications | None]:
    """The intents' writes in few commits (SQLite): held between calls to the outside world,
    which commit them first (``WriteGroup``). A crash loses at most what was written since
    the last call out, a state the one-commit-per-write order could also stop in; the intent
    is still in the outbox, so it is performed again. The lifecycle events the intents
    publish are intents too (``Publications``), sent after the block: a publication is no
    call out that would commit the writes before it."""
    store, audit = getattr(unit.store, "db", None), getattr(unit.audit, "db", None)
    if not isinstance(store, SqliteDatabase) or not isinstance(audit, SqliteDatabase):
        yield None
        return
    group = WriteGroup([store, audit])  # the batch transaction's order: state, then audit
    bus = unit.bus
    svc = bus.services
    outside: dict[str, Any] = {
        name: None if getattr(svc, name) is None else FlushFirst(getattr(svc, name), group)
        for name in OUTSIDE_PORTS
    }
    publications = Publications(unit)
    bus.services = replace(svc, **outside, publisher=publications)
    try:
        with group.held():
            yield publications
    finally:
        bus.services = svc


def perform_intents(unit: Unit) -> None:
    """After the commit: perform what the batch deferred, then send the lifecycle events
    that work published. An intent that fails stays in the outbox for the reconciler (the
    batch's events are done and answered as such)."""
    try:
        with grouped(unit) as publications:
            unit.bus.handle(DrainOutbox(f"batch:{unit.owner}", unit.owner))
        if publications is not None:
            publications.send(unit.bus.services.publisher)
    except Exception as exc:  # the intents are committed: the reconciler performs them
        log.warning("deferred work of batch %s left for the reconciler: %s", unit.owner, exc)
