"""Delivery of one outside event: dedup, normalise, audit, dispatch — exactly once per key.

The dedup key is claimed with a lease before anything happens; it is marked done only when
the handlers finished, and released on failure so the redelivery is processed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from composition.batch_commit import Unit, handle_in_transaction, perform_intents, unit_of
from shared.budget import invocation_budget
from shared.envelope import Envelope, envelope_from_dict
from shared.errors import BadEvent, PermanentError, TransientError
from shared.lifecycle import ignored_record
from shared.messagebus import MessageBus, Services
from shared.messages import EventIgnored, Message
from shared.model import AuditKind
from shared.normalise import normalise_azureml, parse_alert
from shared.ports import Claim

IN_PROGRESS_RETRY_AFTER_S = 30.0


def _model_of(message: Message) -> str | None:
    model = getattr(message, "model", None)
    return model if isinstance(model, str) else None


def dispatch(
    bus: MessageBus, key: str, message: Message, evidence: dict[str, Any], summary: str
) -> str:
    """Claim ``key``, audit receipt, run handlers. Returns 'processed' or 'duplicate'.

    Everything, store calls included, shares one invocation budget (``shared.budget``): the
    sender is answered within it even when a platform operation runs on.
    """
    with invocation_budget():
        return _dispatch(bus, key, message, evidence, summary)


def _dispatch(
    bus: MessageBus, key: str, message: Message, evidence: dict[str, Any], summary: str
) -> str:
    svc = bus.services
    owner = svc.new_id()  # this attempt's lease: only it may release the key
    claim = svc.store.claim_delivery(key, svc.now(), svc.settings.delivery_lease_s, owner)
    if claim is Claim.IN_PROGRESS:
        # Another worker holds this delivery. Acknowledging it would lose the event if that
        # worker dies, so ask the sender to redeliver later (5xx): by then it is done (and
        # answered as a duplicate) or its lease has expired (and it is processed again).
        raise TransientError(
            "this event is being processed by another worker; retry later",
            retry_after=IN_PROGRESS_RETRY_AFTER_S,
        )
    if claim is Claim.DUPLICATE:
        svc.record(
            AuditKind.IGNORED,
            f"duplicate delivery: {summary}",
            model=_model_of(message),
            reason="this event was already processed (same source, type, subject, id)",
            caused_by=key,
        )
        return "duplicate"
    try:
        if not isinstance(message, EventIgnored):
            svc.record(
                AuditKind.EVENT_RECEIVED,
                summary,
                model=_model_of(message),
                evidence=evidence,
                caused_by=key,
                reason="redelivered after an unfinished attempt" if claim is Claim.RETRY else "",
            )
        bus.handle(message)
    except PermanentError as exc:
        # Retrying cannot help: record it and acknowledge, so it is not redelivered for 24 h.
        svc.record(
            AuditKind.ERROR,
            f"{summary}: failed permanently",
            model=_model_of(message),
            reason=str(exc),
            caused_by=key,
        )
        svc.store.finish_delivery(key, svc.now())
        return "failed"
    except Exception:  # a real crash skips this: the lease expires and a redelivery retries
        svc.store.release_delivery(key, owner)
        raise
    svc.store.finish_delivery(key, svc.now())
    return "processed"


def reject(
    bus: MessageBus,
    where: str,
    problem: str,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Audit a refused payload. The problem text names what is wrong, never echoes secrets."""
    bus.services.record(
        AuditKind.REJECTED, f"{where}: payload rejected", reason=problem, evidence=evidence or {}
    )


def deliver_azureml(bus: MessageBus, envelope: Envelope) -> str:
    """One Azure ML system event. Raises BadEvent (after auditing it) if its data is malformed."""
    try:
        message = normalise_azureml(envelope, bus.services.policy)
    except BadEvent as exc:
        reject(bus, f"event {envelope.type}", str(exc), envelope.to_json())
        raise
    return dispatch(
        bus,
        envelope.dedup_key,
        message,
        envelope.to_json(),
        f"{envelope.type.rsplit('.', 1)[-1]} {envelope.subject}",
    )


def deliver_alert(bus: MessageBus, payload: Any) -> str:
    """One Azure Monitor common-alert-schema payload."""
    try:
        message = parse_alert(payload, bus.services.policy)
    except BadEvent as exc:
        reject(bus, "alert", str(exc))
        raise
    evidence = dict(getattr(message, "evidence", {}))
    return dispatch(
        bus,
        message.event_key,
        message,
        evidence,
        f"alert {evidence.get('rule', '')} {type(message).__name__}",
    )


@dataclass(frozen=True, slots=True)
class Validated:
    """One event of a delivered batch, checked and normalised, not yet applied."""

    envelope: Envelope
    message: Message

    @property
    def summary(self) -> str:
        return f"{self.envelope.type.rsplit('.', 1)[-1]} {self.envelope.subject}"


def validate_batch(events: Sequence[Any], policy: Any) -> list[Validated]:
    """Every event of a delivery checked and normalised before any is applied.

    Raises BadEvent naming the first bad event (``event [i]: ...``): the whole batch is refused.
    """
    return validate_envelopes(
        [envelope_from_dict(event, index) for index, event in enumerate(events)], policy
    )


def validate_envelopes(envelopes: Sequence[Envelope], policy: Any) -> list[Validated]:
    """:func:`validate_batch` of events already read into envelopes (``read_delivery``)."""
    validated = []
    for index, envelope in enumerate(envelopes):
        try:
            validated.append(Validated(envelope, normalise_azureml(envelope, policy)))
        except BadEvent as exc:
            raise BadEvent(f"event [{index}]: {exc}") from exc
    return validated


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How many events of a batch were processed, duplicates, or failed permanently."""

    processed: int = 0
    duplicate: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, int]:
        return {"processed": self.processed, "duplicate": self.duplicate, "failed": self.failed}


def deliver_batch(bus: MessageBus, batch: Sequence[Validated]) -> BatchOutcome:
    """A validated batch with group commit, answered only after it is committed.

    On SQLite (a store with transactions): one transaction claims every event, records their
    receipts, runs their handlers and finishes them; the platform calls and publications the
    handlers make are intents in that transaction, performed after the commit
    (``composition.batch_commit``). A crash before the commit leaves nothing, and the
    redelivered batch is processed afresh; a crash after it makes the redelivery all
    duplicates, and the reconciler performs the intents left over. Elsewhere (Table Storage)
    the claims and the finishes are grouped, and the handlers run between them.

    An event another worker holds is left to it; the batch is then answered with a
    ``TransientError`` (503) after the rest is done, so its redelivery finds them duplicates.
    """
    with invocation_budget():
        owner = bus.services.new_id()
        unit = unit_of(bus, owner)
        if unit is None:
            return _deliver_stepwise(bus, batch, owner)
        return _deliver_in_one_transaction(unit, batch)


@dataclass
class _Claimed:
    """A batch's claims sorted out: receipts to record, events to handle, the others."""

    receipts: list[tuple[AuditKind, str, dict[str, Any]]]
    todo: list[tuple[str, Validated]]
    busy: int = 0
    duplicates: int = 0
    ignored: list[str] = field(default_factory=list)  # done by their receipt alone


def _claim(
    svc: Services, batch: Sequence[Validated], owner: str, unit: Unit | None = None
) -> _Claimed:
    """Sort out the batch's claims. Inside the batch's transaction (``unit``) they are only
    read: the transaction finishes every event it handles before it commits, so a claim row
    written first would be seen by nobody."""
    first: dict[str, Validated] = {}
    repeated: list[Validated] = []
    for item in batch:  # the same event twice in one batch is applied once
        if item.envelope.dedup_key in first:
            repeated.append(item)
        else:
            first[item.envelope.dedup_key] = item
    lease = svc.settings.delivery_lease_s
    if unit is None:
        claims = svc.store.claim_deliveries(list(first), svc.now(), lease, owner)
    else:
        claims = unit.store.delivery_claims(list(first), svc.now())
    out = _Claimed([], [])
    for (key, item), claim in zip(first.items(), claims, strict=True):
        if claim is Claim.IN_PROGRESS:
            out.busy += 1
        elif claim is Claim.DUPLICATE:
            out.receipts.append(_duplicate(key, item))
            out.duplicates += 1
        elif isinstance(item.message, EventIgnored):  # its only effect is its audit record
            out.receipts.append(ignored_record(item.message))
            out.ignored.append(key)
        else:
            out.receipts.append(_receipt(key, item, retry=claim is Claim.RETRY))
            out.todo.append((key, item))
    out.receipts += [_duplicate(item.envelope.dedup_key, item) for item in repeated]
    out.duplicates += len(repeated)
    return out


def _deliver_in_one_transaction(unit: Unit, batch: Sequence[Validated]) -> BatchOutcome:
    svc = unit.bus.services
    with unit.store.transaction(), unit.audit.transaction():  # audit commits first
        claimed = _claim(svc, batch, unit.owner, unit)
        _record_all(svc, claimed.receipts)
        failed = handle_in_transaction(
            unit, [(key, item.message, item.summary) for key, item in claimed.todo]
        )
        svc.store.finish_deliveries(
            [*claimed.ignored, *(key for key, _ in claimed.todo)], svc.now()
        )
    perform_intents(unit)  # committed: now the outside world may be touched
    return _outcome(claimed, len(claimed.todo), failed)


def _outcome(claimed: _Claimed, done: int, failed: int) -> BatchOutcome:
    if claimed.busy:
        raise TransientError(
            f"{claimed.busy} event(s) of this batch are being processed by another worker; "
            "the rest is done, retry later",
            retry_after=IN_PROGRESS_RETRY_AFTER_S,
        )
    processed = len(claimed.ignored) + done - failed
    return BatchOutcome(processed=processed, duplicate=claimed.duplicates, failed=failed)


def _deliver_stepwise(bus: MessageBus, batch: Sequence[Validated], owner: str) -> BatchOutcome:
    """Without transactions: claims in one write, receipts in one, handlers, finishes."""
    svc = bus.services
    claimed = _claim(svc, batch, owner)
    done: list[str] = []
    failed = 0
    try:
        _record_all(svc, claimed.receipts)
        done += claimed.ignored
        for key, item in claimed.todo:
            try:
                bus.handle(item.message)
            except PermanentError as exc:  # retrying cannot help: audit it, acknowledge it
                svc.record(
                    AuditKind.ERROR,
                    f"{item.summary}: failed permanently",
                    model=_model_of(item.message),
                    reason=str(exc),
                    caused_by=key,
                )
                failed += 1
            done.append(key)
    except Exception:  # a real crash skips this: the leases expire, a redelivery retries
        svc.store.finish_deliveries(done, svc.now())
        finished = set(done)
        for key in [*claimed.ignored, *(key for key, _ in claimed.todo)]:
            if key not in finished:
                svc.store.release_delivery(key, owner)
        raise
    svc.store.finish_deliveries(done, svc.now())
    return _outcome(claimed, len(done) - len(claimed.ignored), failed)


def _record_all(svc: Services, records: list[tuple[AuditKind, str, dict[str, Any]]]) -> None:
    """The batch's receipts and duplicates, scrubbed as ``Services.record`` does, appended
    with ``AuditLog.append_many`` (SQLite: one transaction; Table Storage: entity-group
    transactions of up to 99 records)."""
    entries = [svc.entry(kind, summary, **fields) for kind, summary, fields in records]
    if entries:
        svc.audit.append_many(entries)


def _receipt(key: str, item: Validated, *, retry: bool) -> tuple[AuditKind, str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "model": _model_of(item.message),
        "evidence": item.envelope.to_json(),
        "caused_by": key,
        "reason": "redelivered after an unfinished attempt" if retry else "",
    }
    return AuditKind.EVENT_RECEIVED, item.summary, fields


def _duplicate(key: str, item: Validated) -> tuple[AuditKind, str, dict[str, Any]]:
    fields: dict[str, Any] = {
        "model": _model_of(item.message),
        "reason": "this event was already processed (same source, type, subject, id)",
        "caused_by": key,
    }
    return AuditKind.IGNORED, f"duplicate delivery: {item.summary}", fields
