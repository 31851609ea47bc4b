"""Azure Monitor alerts (common alert schema) -> drift or health signals, per policy binding."""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from composition.delivery import deliver_alert, reject
from functions import runtime
from functions.http import authenticated, json_body, respond
from shared.errors import BadEvent
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    HealthAlertFired,
    Message,
    SignalResolved,
)
from shared.normalise import parse_alert

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _rule_of(payload: Any) -> str:
    """The alert rule's name, for the log line (any type: the payload is not validated yet)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    essentials = data.get("essentials") if isinstance(data, dict) else None
    rule = essentials.get("alertRule") if isinstance(essentials, dict) else None
    return str(rule)[:256] if rule is not None else "?"


@bp.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def receive_alert(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """Fired -> drift/health signal; Resolved -> clears pending signals. Always one alert."""
    bus = runtime.new_bus()
    try:
        payload = json_body(req)
    except BadEvent as exc:
        reject(bus, "alert", str(exc))
        raise
    outcome = deliver_alert(bus, payload)
    log.info("alert %s: %s", _rule_of(payload), outcome)
    return respond(200, alert_answer(outcome, parse_alert(payload, bus.services.policy)))


_MEANINGS = {
    DriftSignalled: "drift signal",
    HealthAlertFired: "health alert",
    SignalResolved: "resolved: pending drift signals cleared",
}


def alert_answer(outcome: str, message: Message) -> dict[str, str]:
    """What happened to the alert, in words: ignored (and why), or which model it signalled."""
    if isinstance(message, EventIgnored) and message.model is not None:  # bound, nothing to do
        return {
            "result": "ignored" if outcome == "processed" else outcome,
            "model": message.model,
            "reason": message.reason,
        }
    if isinstance(message, EventIgnored):
        rule = message.evidence.get("rule", "")
        return {
            "result": "ignored" if outcome == "processed" else outcome,
            "reason": f"no binding for alert rule {rule!r}: no model in the policy lists it "
            "under signals.drift_alerts or signals.health_alerts",
        }
    answer = {"result": outcome, "model": str(getattr(message, "model", ""))}
    answer["as"] = next((v for k, v in _MEANINGS.items() if isinstance(message, k)), "signal")
    return answer
