"""Azure ML system events from Event Grid (ModelRegistered, RunCompleted, RunStatusChanged, ...).

The Functions host handles the subscription handshake and splits the delivered batch; this
trigger gets one event, of either schema, as the JSON text the host sent. The parameter is a
``str`` so that the Python worker hands the text over as it is (its generic binding) and our
own parser reads it, the same one that validates deliveries in ``autopilot serve``:
azure-functions' Event Grid converter would run first and fail the invocation on data it cannot
decode (a CloudEvents time with a non-UTC offset, say), before any of our code could audit it,
and Event Grid would retry that event for 24 hours. (The worker also refuses a union
annotation such as ``EventGridEvent | CloudEvent`` and then loads no function at all.)

Malformed events are a permanent problem: audited as rejected, and the invocation succeeds so
Event Grid does not retry them. Transient failures raise, so the host answers 5xx and Event
Grid redelivers.
"""

from __future__ import annotations

import logging

import azure.functions as func

from composition.delivery import deliver_azureml, reject
from functions import runtime
from shared.envelope import Envelope, envelope_from_dict, load_json
from shared.errors import BadEvent
from shared.log_scrub import errors_scrubbed

log = logging.getLogger(__name__)

bp = func.Blueprint()


def envelope_of(event: str | bytes) -> Envelope:
    """The envelope of one event's JSON text (Event Grid or CloudEvents 1.0 schema)."""
    if isinstance(event, str):
        try:
            event = event.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadEvent(f"event is not valid Unicode (character {exc.start})") from exc
    return envelope_from_dict(load_json(event, what="event"))


@bp.event_grid_trigger(arg_name="event")
def azureml_events(event: str) -> None:
    with errors_scrubbed():  # what escapes is logged by the host: no secret in it
        bus = runtime.new_bus()
        try:
            envelope = envelope_of(event)
        except BadEvent as exc:
            reject(bus, "event", str(exc))
            log.warning("event rejected: %s", exc)
            return
        try:
            outcome = deliver_azureml(bus, envelope)
        except BadEvent as exc:
            log.warning("event %s rejected: %s", envelope.id, exc)
            return
        log.info("event %s: %s", envelope.id, outcome)
