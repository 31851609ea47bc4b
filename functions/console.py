"""Operator console (read-only): one page and the JSON it needs that the API lacks.

``GET /api/console`` answers a single HTML page with its CSS and JavaScript inline, so one
authenticated request loads everything (the page is opened as ``/api/console?code=KEY``; its
script sends the key as ``x-functions-key`` on every API call). ``GET /api/models`` summarises
each model of the policy; ``GET /api/models/{model}/estimates`` the label-free estimates set
against realised performance over time; ``GET /api/audit/verify`` checks the audit hash
chain. Every route is
GET and needs a function key: nothing here changes state (approve/deny stay in the CLI and API).

The page route is anonymous to the Functions host and checks the key itself, so that a browser
without a key, or with a wrong one, gets a key prompt (401, no data) instead of a JSON error.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import azure.functions as func

from functions import runtime
from functions.http import actor_for, authenticated, error, respond
from shared.errors import PolicyError, SettingsError
from shared.estimated_performance import SERIES
from shared.log_scrub import errors_scrubbed
from shared.messagebus import Services
from shared.model import AuditRecord, Cycle

log = logging.getLogger(__name__)

bp = func.Blueprint()

STATIC = Path(__file__).resolve().parent / "console_static"
CSS_SLOT = "/*{{app.css}}*/"
JS_SLOT = "/*{{app.js}}*/"


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """The console page with its assets inline, and the CSP that allows exactly those."""

    html: bytes
    csp: str


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.cache
def page() -> Page:
    """Read and assemble the static files once, on first use (not at import: cold start)."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "app.css").read_text(encoding="utf-8")
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    if CSS_SLOT not in html or JS_SLOT not in html:
        raise RuntimeError("console_static/index.html lost its asset slots")
    if "</script" in js.lower() or "</style" in css.lower():
        raise RuntimeError("inline assets may not close their own element")
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_digest(js)}",
            f"style-src {_digest(css)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    body = html.replace(CSS_SLOT, css).replace(JS_SLOT, js)
    return Page(body.encode("utf-8"), csp)


PROMPT_CSS = (
    "body{font:15px/1.5 system-ui,sans-serif;color:#1d2430;background:#f5f7fa;margin:0}"
    "main{max-width:420px;margin:12vh auto;padding:0 16px}"
    "h1{font-size:20px}p.bad{background:#fde8e6;color:#b42318;padding:8px 12px;border-radius:6px}"
    "label{display:block;margin:12px 0 4px}input{font:inherit;width:100%;padding:6px 8px;"
    "box-sizing:border-box}button{font:inherit;margin-top:12px;padding:6px 14px}"
)


@functools.cache
def prompt(wrong: bool) -> Page:
    """The key prompt: static (nothing from the request or the data), its form GETs the page
    again with ``?code=``, the way the console is opened."""
    message = (
        '<p class="bad" id="key-refused">Wrong key: that function key was not accepted. '
        "Check it and enter it again.</p>"
        if wrong
        else "<p>Enter a function key to open the console.</p>"
    )
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">'
        f"<title>MLOps Autopilot — console: key needed</title><style>{PROMPT_CSS}</style>"
        "</head><body><main><h1>MLOps Autopilot console</h1>"
        f'{message}<form method="get" action="console" id="key-prompt">'
        '<label for="code">Function key</label>'
        '<input id="code" name="code" type="password" autocomplete="off" required autofocus>'
        '<button type="submit">Open the console</button></form>'
        "<p><small>The key is one of the function keys (x-functions-key) of this service; "
        "<code>autopilot serve</code> prints where it keeps them.</small></p>"
        "</main></body></html>"
    )
    csp = "; ".join(
        (
            "default-src 'none'",
            f"style-src {_digest(PROMPT_CSS)}",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html.encode("utf-8"), csp)


def _html(assembled: Page, status: int) -> func.HttpResponse:
    return func.HttpResponse(
        assembled.html,
        status_code=status,
        mimetype="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": assembled.csp,
            "Referrer-Policy": "no-referrer",  # the page URL carries ?code=KEY
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
        },
    )


# Anonymous to the host: the function checks the key itself, to answer a browser with a prompt.
@bp.route(route="console", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def console_page(req: func.HttpRequest) -> func.HttpResponse:
    """The operator console: a single page, read-only, live (it polls the API). Without a
    valid key: 401 with a key prompt that says whether a key was given and refused."""
    with errors_scrubbed():  # what escapes is logged by the host: no secret in it
        try:
            keys = runtime.current().keys
        except (PolicyError, SettingsError) as exc:
            log.error("service not configured: %s", exc)
            return error(503, "service not configured; see the host log")
        if actor_for(req, keys) is None:
            presented = req.headers.get("x-functions-key") or req.params.get("code")
            return _html(prompt(wrong=bool(presented)), 401)
        return _html(page(), 200)


def _guarded(what: str, call: Any, *args: Any) -> tuple[Any, str | None]:
    """(value, None) or (None, problem): the console shows a platform outage, it does not fail."""
    try:
        return call(*args), None
    except Exception as exc:
        log.warning("console: %s failed: %s", what, exc)
        return None, f"{what} unavailable: {type(exc).__name__}: {exc}"


def _cycle_brief(cycle: Cycle | None) -> dict[str, Any] | None:
    if cycle is None:
        return None
    return {
        "id": cycle.id,
        "state": cycle.state.value,
        "created_at": cycle.created_at.isoformat(),
        "updated_at": cycle.updated_at.isoformat(),
        "candidate_version": cycle.candidate_version,
        "candidate": cycle.candidate,
        "champion_version": cycle.champion_version,
        "reason": cycle.reason,
        "dry_run": cycle.dry_run,
    }


def _record_brief(record: AuditRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "seq": record.seq,
        "time": record.time.isoformat(),
        "summary": record.summary,
        "reason": record.reason,
        "cycle": record.cycle,
        "version": record.version,
    }


def model_summary(services: Services, model: str) -> dict[str, Any]:
    """What an operator wants first about one model: who serves, what runs, what was decided."""
    spec = services.policy.models[model]
    endpoint = spec.rollout.endpoint if spec.rollout else None
    champion, champion_problem = _guarded(
        "champion lookup", services.platform.champion_version, model, endpoint
    )
    traffic: dict[str, int] | None = None
    traffic_problem = None
    if endpoint:
        traffic, traffic_problem = _guarded("traffic", services.platform.get_traffic, endpoint)
    cycles = services.store.list_cycles(model)
    active = next((c for c in cycles if c.is_active), None)
    gated = next((c for c in cycles if c.decision is not None), None)
    decisions = services.audit.query(model=model, kind="decision", limit=1)
    return {
        "model": model,
        "mode": services.policy.mode(model),
        "endpoint": endpoint,
        "champion": champion,
        "traffic": traffic,
        "problems": [p for p in (champion_problem, traffic_problem) if p],
        "active_cycle": _cycle_brief(active),
        "latest_cycle": _cycle_brief(cycles[0] if cycles else None),
        "cycles": len(cycles),
        "last_decision": _record_brief(decisions[-1] if decisions else None),
        "last_gate": None
        if gated is None or gated.decision is None
        else {
            "cycle": gated.id,
            "passed": bool(gated.decision.get("passed")),
            "summary": str(gated.decision.get("summary", "")),
        },
        "approval_required": spec.gate.approval_required,
        "approval_timeout": spec.gate.approval_timeout,
    }


@bp.route(route="models", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def list_models(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """Each model of the policy: mode, champion version, active cycle, last decision."""
    services = runtime.current().services
    return respond(200, {"models": [model_summary(services, m) for m in services.policy]})


@bp.route(route="audit/verify", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def verify_audit(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """Verify the audit log's hash chain: ok, record count, first bad record and why."""
    result = runtime.current().services.audit.verify()
    return respond(200, dataclasses.asdict(result))


ESTIMATE_POINTS = 500  # newest estimate-vs-realised records plotted per model
ESTIMATE_SERIES = SERIES  # the mark of the audit records the model page plots


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _estimate_point(record: AuditRecord) -> dict[str, Any] | None:
    """One audited check with ground truth: the estimate, its interval and the realised value."""
    ev = record.evidence
    if not isinstance(ev, dict) or ev.get("series") != ESTIMATE_SERIES:
        return None
    estimate = _finite(ev.get("estimate"))
    if estimate is None:
        return None
    interval = ev.get("interval")
    low, high = (
        (_finite(interval[0]), _finite(interval[1]))
        if isinstance(interval, list) and len(interval) == 2
        else (None, None)
    )
    window = ev.get("window")
    rows = ev.get("rows")
    return {
        "seq": record.seq,
        "time": record.time.isoformat(),
        "metric": str(ev.get("metric", "")),
        "window": [str(w) for w in window] if isinstance(window, list) else None,
        "estimate": estimate,
        "low": low,
        "high": high,
        "realised": _finite(ev.get("value")),
        "reference": _finite(ev.get("reference")),
        "rows": rows if isinstance(rows, int) and not isinstance(rows, bool) else None,
        "covered": ev.get("covered") if isinstance(ev.get("covered"), bool) else None,
    }


def estimate_series(services: Services, model: str) -> dict[str, Any]:
    """Estimated against realised performance over time, from the audit log's records."""
    est = services.policy.models[model].signals.estimated_performance
    records = services.audit.query(model=model, kind="decision", limit=4 * ESTIMATE_POINTS)
    points = [p for p in map(_estimate_point, records) if p is not None]
    return {
        "model": model,
        "metric": est.metric if est else None,
        "threshold": est.threshold if est else None,
        "max_drop": est.max_drop if est else None,
        "ground_truth": bool(est and est.ground_truth),
        "points": points[-ESTIMATE_POINTS:],
    }


@bp.route(route="models/{model}/estimates", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@authenticated
def model_estimates(req: func.HttpRequest, actor: str) -> func.HttpResponse:
    """The model's label-free estimates against the realised values, oldest first."""
    services = runtime.current().services
    model = req.route_params.get("model", "")
    if model not in services.policy.models:
        return error(404, "no such model in the policy")
    return respond(200, estimate_series(services, model))
