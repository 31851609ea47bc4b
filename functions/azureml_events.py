"""Azure ML system events from Event Grid (ModelRegistered, RunCompleted, RunStatusChanged, ...).

The Functions host handles the subscription handshake and splits the delivered batch; this
trigger gets one event. Malformed event data is a permanent problem: it is audited as rejected
and the invocation succeeds, so Event Grid does not retry it for 24 hours. Transient failures
raise, so the host answers 5xx and Event Grid redelivers.
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions import runtime
from handlers.intake import deliver_azureml, reject
from shared.envelope import Envelope, check_envelope
from shared.errors import BadEvent

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def envelope_of(event: func.EventGridEvent | func.CloudEvent) -> Envelope:
    """The Python worker passes a CloudEvent for CloudEvents 1.0 deliveries, whatever the hint."""
    if isinstance(event, func.CloudEvent):
        return Envelope(
            schema="cloudevents",
            id=event.id or "",
            source=event.source or "",
            type=event.type or "",
            subject=event.subject or "",
            time=event.time.isoformat() if event.time else "",
            data=event.get_json(),
        )
    return Envelope(
        schema="eventgrid",
        id=event.id or "",
        source=event.topic or "",
        type=event.event_type or "",
        subject=event.subject or "",
        time=event.event_time.isoformat() if event.event_time else "",
        data=event.get_json(),
    )


@bp.event_grid_trigger(arg_name="event")
def azureml_events(event: func.EventGridEvent | func.CloudEvent) -> None:
    bus = runtime.new_bus()
    envelope = envelope_of(event)
    try:
        check_envelope(envelope)  # the local host checked the body; the worker does not
    except BadEvent as exc:
        reject(bus, "event", str(exc))
        log.warning("event rejected: %s", exc)
        return
    try:
        outcome = deliver_azureml(bus, envelope)
    except BadEvent as exc:
        log.warning("event %s rejected: %s", event.id, exc)
        return
    log.info("event %s: %s", event.id, outcome)
