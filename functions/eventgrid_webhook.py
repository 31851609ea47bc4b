"""``POST /api/events``: an Event Grid webhook that takes a whole delivered batch at once.

The Event Grid trigger (``azureml_events``) costs one invocation per event. Subscribed as a
WebHook with the function key in its URL (``.../api/events?code=<key>``), Event Grid posts
batches of up to 5,000 events / 1,024 KB, and this one invocation validates the whole batch
before applying any of it (a bad event refuses the batch with 400, nothing applied), then
applies it. It answers both validation handshakes itself (``shared.webhook``), since no
Event Grid extension stands in front of an HTTP route.

200 means every event was applied (or was a duplicate, or failed permanently and was
audited); 503 + ``Retry-After`` means redeliver the batch (dedup makes that safe).
"""

from __future__ import annotations

import logging

import azure.functions as func

from composition.delivery import deliver_batch, reject, validate_envelopes
from functions import runtime
from functions.http import MAX_BODY_BYTES, authenticated, error, respond
from shared import webhook
from shared.envelope import read_delivery
from shared.errors import BadEvent, PayloadTooLarge

bp = func.Blueprint()
log = logging.getLogger(__name__)

WHERE = "Event Grid webhook"


@bp.route(route="events", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def eventgrid_webhook(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """Handshakes of both schemas; a delivered batch validated whole, then applied."""
    if req.method == "OPTIONS":
        origin = req.headers.get("webhook-request-origin", "")
        return func.HttpResponse(status_code=200, headers=webhook.handshake_headers(origin))
    bus = runtime.new_bus()
    kind = (req.headers.get("aeg-event-type") or "Notification").strip().lower()
    if kind == "unsubscribe":
        return func.HttpResponse(status_code=202)
    try:
        if kind not in ("notification", "subscriptionvalidation"):
            raise BadEvent("aeg-event-type must be Notification or SubscriptionValidation")
        body = req.get_body() or b""
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"body is {len(body)} bytes; at most {MAX_BODY_BYTES} allowed")
        events, envelopes = read_delivery(body)
        validation = webhook.validation_event(events)
        if validation is not None:
            code = webhook.validation_code(validation)
            log.info("Event Grid subscription validation handshake")
            return respond(200, {"validationResponse": code})
        if kind == "subscriptionvalidation":
            raise BadEvent("aeg-event-type is SubscriptionValidation but no validation event")
        batch = validate_envelopes(envelopes, bus.services.policy)
    except BadEvent as exc:
        reject(bus, WHERE, str(exc))
        log.warning("Event Grid delivery refused: %s", exc)
        if isinstance(exc, PayloadTooLarge):
            return error(413, str(exc))
        return error(400, str(exc))
    outcome = deliver_batch(bus, batch)
    log.info("Event Grid batch of %d: %s", len(batch), outcome)
    return respond(200, outcome.to_json())
