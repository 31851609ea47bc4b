"""The outbox: side effects recorded in a batch's transaction, performed after its commit.

The writer drains its own intents right after committing; the reconciler drains those whose
lease expired (the writer died in between). Performing an intent twice is harmless: the work
it names finds its own earlier attempt through deterministic names (a job, a deployment)
and the cycle's recorded state, as a redelivered event does.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from shared.errors import ConcurrencyError, TransientError
from shared.message_codec import decode
from shared.messagebus import Services
from shared.messages import DrainOutbox, IntentDone, PerformIntent
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
    race), else audited and dropped -- the cycle's own reconcile still level-checks it, and
    an intent that fails the same way on every tick would otherwise never leave."""
    if isinstance(exc, TransientError | ConcurrencyError):
        log.warning(
            "intent %s left for the reconciler (its lease expires first): %s", work.intent_id, exc
        )
        return
    svc.record(
        AuditKind.ERROR,
        f"deferred work {work.kind} failed",
        reason=str(exc),
        evidence={"intent": work.body[:2000]},
        caused_by=work.event_key,
    )
    svc.emit(IntentDone(work.intent_id, work.event_key))
