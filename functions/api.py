"""HTTP API: health, cycles, audit, approvals. Every route but health needs a function key."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import azure.functions as func

from functions import runtime
from functions.http import authenticated, error, json_body, respond
from shared.errors import BadEvent, Conflict, NotFound
from shared.json_out import Encoded, encode
from shared.lifecycle import cycle_id_for
from shared.messages import Approve, Command, Deny, ManualRollback, RetrainRequested
from shared.model import AuditRecord, Cycle

bp = func.Blueprint()


def cycle_json(cycle: Cycle) -> Encoded:
    """A cycle (``candidate`` in words) as JSON text, or ``{"id", "unrenderable"}``."""
    return encode(cycle.to_view, {"id": cycle.id})


def record_json(record: AuditRecord) -> Encoded:
    """An audit record as JSON text, or ``{"seq", "unrenderable"}`` if it cannot be written."""
    return encode(record.to_json, {"seq": record.seq})


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness probe: anonymous, says nothing about the data."""
    return respond(200, {"status": "ok"})


def _flag(req: func.HttpRequest, name: str) -> bool:
    value = (req.params.get(name) or "").lower()
    if value not in ("", "true", "false", "1", "0"):
        raise BadEvent(f"query parameter {name!r} must be true or false")
    return value in ("true", "1")


@bp.route(route="cycles", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def list_cycles(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    store = runtime.current().services.store
    cycles = store.list_cycles(req.params.get("model") or None, _flag(req, "active"))
    return respond(200, {"cycles": [cycle_json(c) for c in cycles]})


@bp.route(route="cycles/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def get_cycle(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    services = runtime.current().services
    cycle = services.store.get_cycle(req.route_params.get("id", ""))
    if cycle is None:
        return error(404, "no such cycle")
    audit = services.audit.query(cycle=cycle.id)
    return respond(200, {"cycle": cycle_json(cycle), "audit": [record_json(r) for r in audit]})


def _since(req: func.HttpRequest) -> datetime | None:
    raw = req.params.get("since")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadEvent("query parameter 'since' must be an ISO 8601 time") from exc
    if value.tzinfo is None:
        raise BadEvent("query parameter 'since' needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _limit(req: func.HttpRequest) -> int | None:
    raw = req.params.get("limit")
    if not raw:
        return None
    message = "query parameter 'limit' must be an integer from 1 to 100000"
    if not (raw.isascii() and raw.isdigit()):  # '¹'.isdigit() is True, but int('¹') raises
        raise BadEvent(message)
    value = int(raw)
    if not 0 < value <= 100_000:
        raise BadEvent(message)
    return value


@bp.route(route="audit", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def list_audit(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    audit = runtime.current().services.audit
    records = audit.query(
        model=req.params.get("model") or None,
        cycle=req.params.get("cycle") or None,
        kind=req.params.get("kind") or None,
        since=_since(req),
        limit=_limit(req),
    )
    return respond(200, {"records": [record_json(r) for r in records]})


def _reason(req: func.HttpRequest) -> str:
    body = json_body(req, required=False)
    if not isinstance(body, dict):
        raise BadEvent('body must be a JSON object like {"reason": "..."}')
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise BadEvent("'reason' must be a string of at most 2000 characters")
    return reason


def _run(command: Command) -> tuple[int, str | None]:
    """Run an operator command; (status, error). Conflicts are 409, unknown targets 404."""
    try:
        runtime.new_bus().handle(command)
    except NotFound as exc:
        return 404, str(exc)
    except Conflict as exc:
        return 409, str(exc)
    return 200, None


IDEMPOTENCY_HEADER = "Idempotency-Key"
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def _request_key(req: func.HttpRequest, actor: str, action: str) -> str:
    """The event key of one operator request: each request is a new intent (its own cycle);
    a retry that repeats the ``Idempotency-Key`` header gets the same key, so acts once."""
    given = req.headers.get(IDEMPOTENCY_HEADER)
    if given is None:
        return f"api:{actor}:{action}:{uuid.uuid4().hex}"
    if not _IDEMPOTENCY_KEY.match(given):
        raise BadEvent(f"header {IDEMPOTENCY_HEADER} must be 1 to 128 letters, digits or _ . : -")
    return f"api:{actor}:{action}:key:{given}"


def _decide(req: func.HttpRequest, actor: str, approve: bool) -> func.HttpResponse:
    reason = _reason(req)
    cycle_id = req.route_params.get("id", "")
    action = "approve" if approve else "deny"
    command = (Approve if approve else Deny)(
        cycle_id, actor, reason, _request_key(req, actor, f"{action}:{cycle_id}")
    )
    status, problem = _run(command)
    if problem:
        return error(status, problem)
    cycle = runtime.current().services.store.get_cycle(cycle_id)
    return respond(200, {"cycle": cycle_json(cycle) if cycle else None})


def _model_command(
    req: func.HttpRequest, actor: str, kind: type[RetrainRequested | ManualRollback]
) -> func.HttpResponse:
    model = req.route_params.get("model", "")
    event_key = _request_key(req, actor, f"{kind.__name__}:{model}")
    store = runtime.current().services.store
    own_id = cycle_id_for(model, event_key)
    existed = store.get_cycle(own_id) is not None
    status, problem = _run(kind(model, actor, _reason(req), event_key))
    if problem:
        return error(status, problem)
    if kind is not RetrainRequested:
        cycles = store.list_cycles(model)
        return respond(200, {"cycle": cycle_json(cycles[0]) if cycles else None})
    own = store.get_cycle(own_id)
    active = store.active_cycle(model)
    if own is not None:
        outcome = "already handled" if existed else "started"
        cycle = own
    elif active is not None:
        outcome, cycle = "coalesced", active
    else:
        outcome, cycle = "not started", None  # observe mode: audited as a dry run
    return respond(200, {"outcome": outcome, "cycle": cycle_json(cycle) if cycle else None})


@bp.route(route="models/{model}/retrain", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def retrain_model(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """Start a retraining cycle now (no cooldown or confirmation); coalesced if one is active."""
    return _model_command(req, actor, RetrainRequested)


@bp.route(route="models/{model}/rollback", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def rollback_model(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """Instant rollback to the last good deployment (rollout in progress or watch period)."""
    return _model_command(req, actor, ManualRollback)


@bp.route(route="cycles/{id}/approve", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def approve_cycle(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    return _decide(req, actor, approve=True)


@bp.route(route="cycles/{id}/deny", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def deny_cycle(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    return _decide(req, actor, approve=False)
