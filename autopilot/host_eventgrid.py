"""The host's Event Grid webhook: handshakes, batch validation, one invocation per event."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from autopilot.host_functions import Function, KeyedHost, call_function
from autopilot.host_http import NeedsBody, Reply, Request, json_reply
from autopilot.host_triggers import TriggerDecodeError, decode, eventgrid_datum
from shared.errors import AutopilotError, PayloadTooLarge, TransientError
from shared.webhook import EVENTGRID_ORIGINS, VALIDATION_EVENT

log = logging.getLogger("autopilot.host")

EVENTGRID_PATH = "/runtime/webhooks/eventgrid"
__all__ = ["EVENTGRID_ORIGINS", "EVENTGRID_PATH", "VALIDATION_EVENT", "EventGridHost"]


class EventGridHost(KeyedHost):
    """Serves ``POST /runtime/webhooks/eventgrid?functionName=NAME`` as the real host does."""

    _eventgrid: dict[str, Function]
    _parse: Callable[[bytes], list[dict[str, Any]]]
    _on_reject: Callable[[str, str], None] | None
    _bad_input: tuple[type[BaseException], ...]

    def _reject(self, function: str, message: str) -> None:
        log.warning("Event Grid delivery to %s refused: %s", function, message)
        if self._on_reject is not None:
            try:
                self._on_reject(function, message)
            except Exception:
                log.exception("on_reject failed for %s", function)

    def _eventgrid_request(self, request: Request) -> Reply | NeedsBody:
        if request.method not in ("POST", "OPTIONS"):
            return json_reply(405, {"error": "use POST"}, (("Allow", "OPTIONS, POST"),))
        refusal = self._refusal(request, required=request.method == "POST")
        if refusal is not None:
            return refusal
        name = request.query.get("functionName", "")
        function = self._eventgrid.get(name)
        if function is None:
            return json_reply(404, {"error": "no Event Grid function with that functionName"})
        if request.method == "OPTIONS":  # CloudEvents webhook abuse protection
            origin = request.headers.get("webhook-request-origin", "").strip().lower()
            allowed = origin if origin in EVENTGRID_ORIGINS else "eventgrid.azure.net"
            return Reply(200, (("WebHook-Allowed-Origin", allowed), ("WebHook-Allowed-Rate", "*")))
        kind = request.headers.get("aeg-event-type", "Notification").strip().lower()
        if kind == "unsubscribe":
            return Reply(202)
        if kind not in ("notification", "subscriptionvalidation"):
            message = "aeg-event-type must be Notification or SubscriptionValidation"
            self._reject(name, message)
            return json_reply(400, {"error": message})
        binary = "ce-specversion" in request.headers  # CloudEvents binary mode (ce-* headers)
        return NeedsBody(
            lambda body: self._deliver(
                function, body, handshake=kind == "subscriptionvalidation", binary=binary
            ),
            refused=lambda message: self._reject(name, message),
        )

    def _deliver(
        self, function: Function, body: bytes, *, handshake: bool, binary: bool = False
    ) -> Reply:
        events = self._validated(function.name, body, binary=binary)
        if isinstance(events, Reply):
            return events
        validation = next(
            (
                e
                for e in events
                if isinstance(e, Mapping) and e.get("eventType") == VALIDATION_EVENT
            ),
            None,
        )
        if validation is None and handshake:
            message = "aeg-event-type is SubscriptionValidation but no SubscriptionValidationEvent"
            self._reject(function.name, message)
            return json_reply(400, {"error": message})
        if validation is not None:
            return self._handshake(function.name, validation)
        return self._invoke_each(function, events)

    def _validated(self, name: str, body: bytes, *, binary: bool) -> list[dict[str, Any]] | Reply:
        """The delivery's events, or the reply that refuses the whole batch."""
        try:
            return self._parse(body)
        except TransientError as exc:
            log.warning("Event Grid delivery to %s not validated: %s", name, exc)
            return _transient(str(exc), exc.retry_after)
        except self._bad_input as exc:
            message = str(exc) or type(exc).__name__
            if binary and not isinstance(exc, PayloadTooLarge):  # the body was the data alone
                message = (
                    "binary-mode CloudEvents (ce-* headers, the body is the data) are not "
                    "accepted; send structured mode (Content-Type: application/cloudevents+json "
                    f"or application/cloudevents-batch+json), as Event Grid does ({message})"
                )
            self._reject(name, message)
            return json_reply(413 if isinstance(exc, PayloadTooLarge) else 400, {"error": message})
        except Exception:
            log.exception("validating an Event Grid delivery to %s failed", name)
            return json_reply(500, {"error": "internal error"})

    def _handshake(self, name: str, validation: Mapping[str, Any]) -> Reply:
        """Answer a ``SubscriptionValidationEvent`` with its code."""
        data = validation.get("data")
        code = data.get("validationCode") if isinstance(data, Mapping) else None
        if not isinstance(code, str) or not code:
            message = "SubscriptionValidationEvent without data.validationCode"
            self._reject(name, message)
            return json_reply(400, {"error": message})
        log.info("Event Grid subscription validation handshake for %s", name)
        return json_reply(200, {"validationResponse": code})

    def _invoke_each(self, function: Function, events: list[dict[str, Any]]) -> Reply:
        """One invocation per event, in order, stopping at the first failure."""
        name = function.name
        for index, event in enumerate(events):
            try:
                value = decode(function.converter, eventgrid_datum(event))
            except TriggerDecodeError as exc:
                log.error("%s: event [%d] cannot be decoded by the worker: %s", name, index, exc)
                message = f"event [{index}]: the Functions worker cannot decode it: {exc}"
                return json_reply(500, {"error": message, "processed": index})
            try:
                call_function(function, value)
            except TransientError as exc:
                log.warning("%s: event [%d] failed, will be redelivered: %s", name, index, exc)
                return _transient(f"event [{index}]: {exc}", exc.retry_after, processed=index)
            except AutopilotError as exc:
                log.exception("%s: event [%d] failed", name, index)
                return json_reply(500, {"error": f"event [{index}]: {exc}", "processed": index})
            except Exception:
                log.exception("%s: event [%d] failed", name, index)
                return json_reply(
                    500, {"error": f"event [{index}]: internal error", "processed": index}
                )
        return Reply(200)


def _transient(message: str, retry_after: float | None, **extra: Any) -> Reply:
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None and math.isfinite(retry_after):
        headers = (("Retry-After", str(max(0, math.ceil(retry_after)))),)
    return json_reply(503, {"error": message, **extra}, headers)
