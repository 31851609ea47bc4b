"""The outbox: side effects recorded in a batch's transaction, performed after its commit.

The writer drains its own intents right after committing; the reconciler drains those whose
lease expired (the writer died in between, or a try failed). Performing an intent twice is
harmless: the work it names finds its own earlier attempt through deterministic names (a
job, a deployment) and the cycle's recorded state, as a redelivered event does.

A try that fails with an error a retry can fix (an outage, a lost race) is counted with the
intent, which waits for its lease to expire and a later reconcile tick; after
``Settings.intent_attempts`` failed tries it is given up: audited as an error naming the
work, its model and cycle and the last error, and dropped. Work on a cycle that is given up
closes the cycle as a step that cannot succeed does in the reconciler (``FAILED``; a rollout
fails safe), so the cycle does not wait on work nobody will do.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from shared.errors import ConcurrencyError, PermanentError, TransientError
from shared.lifecycle import contain_cycle_errors
from shared.message_codec import decode
from shared.messagebus import Services
from shared.messages import CycleWork, DrainOutbox, IntentDone, Message, PerformIntent
from shared.model import AuditKind
from shared.ports import Outbox

log = logging.getLogger(__name__)

DRAIN_LIMIT = 1000  # intents taken over per reconcile tick


def drain(cmd: DrainOutbox, svc: Services) -> None:
    """Perform ``cmd.owner``'s intents, or (no owner) those whose lease expired, oldest first."""
    store = svc.store
    if not isinstance(store, Outbox):
        return
    owner = cmd.owner or svc.new_id()
    intents = store.take_intents(
        svc.now(),
        svc.settings.delivery_lease_s,
        owner,
        expired=not cmd.owner,
        limit=DRAIN_LIMIT,
    )
    for intent in intents:
        svc.emit(PerformIntent(intent.id, intent.kind, intent.body, cmd.event_key), keep_intent)


def perform(cmd: PerformIntent, svc: Services) -> None:
    """Run the intent's work; it is forgotten only once that work raised nothing."""
    if cmd.kind == "publish":
        event = json.loads(cmd.body)
        svc.publisher.publish(event["type"], event["subject"], event["data"])
    else:
        svc.emit(decode(cmd.body))
    svc.emit(IntentDone(cmd.intent_id, cmd.event_key))


def done(cmd: IntentDone, svc: Services) -> None:
    # only ``drain`` emits the work that ends here, and only from an ``Outbox``
    cast(Outbox, svc.store).finish_intent(cmd.intent_id)


def keep_intent(exc: Exception, work: Any, svc: Services) -> None:
    """An intent that failed: kept for a later drain if a retry can help (an outage, a lost
    race) and it has tries left, else given up -- audited and dropped, and its cycle closed
    if it was work on one (``_give_up``)."""
    assert isinstance(work, PerformIntent)
    if not isinstance(exc, TransientError | ConcurrencyError):
        _give_up(work, exc, svc, "failed")
        return
    failed = cast(Outbox, svc.store).fail_intent(work.intent_id)
    limit = svc.settings.intent_attempts
    if failed < limit:
        log.warning(
            "intent %s left for the reconciler (its lease expires first; try %d of %d): %s",
            work.intent_id,
            failed,
            limit,
            svc.redactor.text(str(exc)),  # SDK errors can quote a secret
        )
        return
    _give_up(work, exc, svc, f"given up after {failed} failed tries")


def _give_up(work: PerformIntent, exc: Exception, svc: Services, why: str) -> None:
    """Audit the intent with its model, cycle and last error (scrubbed, as every record is)
    and drop it. Work on an open cycle whose tries all met an outage closes the cycle
    through the reconciler's path for a step that cannot succeed; a permanent error is left
    to the cycle's own reconcile, which level-checks it (as before)."""
    message = _message_of(work)
    model, cycle = _model_and_cycle(work, message, svc)
    what = type(message).__name__ if message is not None else work.kind
    svc.record(
        AuditKind.ERROR,
        f"deferred work {what} {why}",
        model=model,
        cycle=cycle,
        reason=str(exc),
        evidence={"intent": work.body[:2000], "intent_id": work.intent_id},
        caused_by=work.event_key,
    )
    svc.emit(IntentDone(work.intent_id, work.event_key))
    if isinstance(message, CycleWork) and isinstance(exc, TransientError):
        # (a lost race, by contrast, means other work moves the cycle: it is not stuck)
        gave_up = PermanentError(f"{what} {why}; the last error: {exc}")
        contain_cycle_errors(gave_up, message, svc)


def _message_of(work: PerformIntent) -> Message | None:
    if work.kind != "message":
        return None
    try:
        return decode(work.body)
    except (ValueError, TypeError):  # an unreadable intent: audited and dropped as it is
        return None


def _model_and_cycle(
    work: PerformIntent, message: Message | None, svc: Services
) -> tuple[str | None, str | None]:
    """The model and cycle the intent is about, as far as it tells."""
    if message is None:  # a lifecycle event: its data names them (``shared.lifecycle``)
        try:
            data = json.loads(work.body).get("data", {})
        except (ValueError, AttributeError):
            return None, None
        data = data if isinstance(data, dict) else {}
        return _text(data.get("model")), _text(data.get("cycle"))
    cycle_id = _text(getattr(message, "cycle_id", None))
    model = _text(getattr(message, "model", None))
    if model is None and cycle_id is not None:
        found = svc.store.get_cycle(cycle_id)
        model = found.model if found is not None else None
    return model, cycle_id


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
