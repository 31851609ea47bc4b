"""What every HTTP trigger shares: key authentication, JSON bodies and error responses."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions import runtime
from shared.errors import (
    BadEvent,
    Conflict,
    NotFound,
    PayloadTooLarge,
    PolicyError,
    SettingsError,
    TransientError,
)
from shared.json_out import document
from shared.log_scrub import errors_scrubbed

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576


def respond(status: int, body: Any, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON response; ``body`` may hold ``json_out.Encoded`` parts (records written one by
    one); strict JSON: a NaN or Infinity raises rather than being written."""
    return func.HttpResponse(
        document(body),
        status_code=status,
        mimetype="application/json",
        charset="utf-8",
        headers=headers,
    )


def error(status: int, message: str, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return respond(status, {"error": message}, headers)


def actor_for(req: func.HttpRequest, keys: dict[str, str]) -> str | None:
    """The name of the key presented (header ``x-functions-key`` or query ``code``), if valid.

    Every configured key is compared, in constant time, whatever matches first.
    """
    presented = req.headers.get("x-functions-key") or req.params.get("code") or ""
    found: str | None = None
    for name, key in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()) and found is None:
            found = name
    return found


Route = Callable[[func.HttpRequest, str], func.HttpResponse]


def authenticated(route: Route) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap a route: 401 without a valid key; map our errors to clear responses."""

    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        with errors_scrubbed():  # what escapes is logged by the host: no secret in it
            try:
                current = runtime.current()
                keys = current.keys
            except (PolicyError, SettingsError) as exc:
                log.error("service not configured: %s", exc)
                return error(503, "service not configured; see the host log")
            actor = actor_for(req, keys)
            if actor is None:
                return error(401, "missing or invalid function key (x-functions-key or code)")
            said = current.services.redactor.text  # an error's text may quote a secret
            try:
                return route(req, actor)
            except PayloadTooLarge as exc:
                return error(413, said(str(exc)))
            except BadEvent as exc:
                return error(400, said(str(exc)))
            except NotFound as exc:
                return error(404, said(str(exc)))
            except Conflict as exc:
                return error(409, said(str(exc)))
            except TransientError as exc:
                headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
                return error(503, said(f"temporarily unavailable: {exc}"), headers)

    wrapper.__name__ = route.__name__
    wrapper.__doc__ = route.__doc__
    return wrapper


def json_body(req: func.HttpRequest, *, required: bool = True) -> Any:
    from shared.envelope import load_json

    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is {len(body)} bytes; at most {MAX_BODY_BYTES} allowed")
    if not body.strip() and not required:
        return {}
    return load_json(body)
