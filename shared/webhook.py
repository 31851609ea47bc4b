"""Event Grid's webhook protocol: the two validation handshakes, the same on every host.

- Event Grid schema: a delivery holding a ``Microsoft.EventGrid.SubscriptionValidationEvent``
  is answered 200 ``{"validationResponse": <data.validationCode>}``.
- CloudEvents 1.0 abuse protection: ``OPTIONS`` with ``WebHook-Request-Origin`` is answered
  200 with ``WebHook-Allowed-Origin`` (and ``WebHook-Allowed-Rate``, ``Allow: POST``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.errors import BadEvent

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
# The origins the real Event Grid extension echoes in the CloudEvents handshake.
EVENTGRID_ORIGINS = frozenset(
    {
        "eventgrid.azure.net",
        "eventgrid.azure.us",
        "eventgrid.azure.cn",
        "eventgrid.azure.eaglex.ic.gov",
        "eventgrid.azure.microsoft.scloud",
    }
)


def allowed_origin(request_origin: str) -> str:
    """The ``WebHook-Allowed-Origin`` answer: an Event Grid origin echoed, any other refused
    by answering Event Grid's own (a sender that is not Event Grid gets no consent)."""
    origin = request_origin.strip().lower()
    return origin if origin in EVENTGRID_ORIGINS else "eventgrid.azure.net"


def handshake_headers(request_origin: str) -> dict[str, str]:
    """Headers of the 200 answer to a CloudEvents ``OPTIONS`` validation request."""
    return {
        "WebHook-Allowed-Origin": allowed_origin(request_origin),
        "WebHook-Allowed-Rate": "*",
        "Allow": "OPTIONS, POST",
    }


def validation_event(events: Sequence[Any]) -> Mapping[str, Any] | None:
    """The delivery's ``SubscriptionValidationEvent``, if it holds one."""
    return next(
        (e for e in events if isinstance(e, Mapping) and e.get("eventType") == VALIDATION_EVENT),
        None,
    )


def validation_code(event: Mapping[str, Any]) -> str:
    """The code to echo as ``validationResponse``; BadEvent if the event has none."""
    data = event.get("data")
    code = data.get("validationCode") if isinstance(data, Mapping) else None
    if not isinstance(code, str) or not code:
        raise BadEvent("SubscriptionValidationEvent without data.validationCode")
    return code
