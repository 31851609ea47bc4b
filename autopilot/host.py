"""A local Azure Functions host: serves a ``FunctionApp``'s registered functions over HTTP.

Azure Functions Core Tools cannot be installed here, so ``autopilot serve`` uses this host.
Every route comes from the functions' own bindings (no second list to keep in sync), with the
real host's URL shapes and rules:

- HTTP triggers under ``/api/<route>``; ``function``/``admin`` auth levels need a key in the
  ``x-functions-key`` header or the ``code`` query parameter (compared in constant time).
- Event Grid triggers at ``POST /runtime/webhooks/eventgrid?functionName=NAME``: the
  ``SubscriptionValidationEvent`` handshake, the CloudEvents ``OPTIONS`` abuse-protection
  handshake, one invocation per event, 200 only when the whole batch was handled.
- Timer triggers on their NCRONTAB schedules (``%SETTING%`` resolved from settings), and
  ``POST /admin/functions/NAME`` to run one now.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.timer import TimerRequest

from shared.errors import BadEvent, TransientError

log = logging.getLogger("autopilot.host")

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
EVENTGRID_PATH = "/runtime/webhooks/eventgrid"


def _value(raw: Any) -> str:
    return str(getattr(raw, "value", raw))


# --- NCRONTAB -----------------------------------------------------------------------------

_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError("step must be at least 1")
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
        else:
            start = int(part)
            end = high if step > 1 else start
        if not low <= start <= end <= high:
            raise ValueError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A six-field NCRONTAB schedule: second minute hour day month day-of-week."""

    fields: tuple[frozenset[int], ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Schedule:
        parts = text.split()
        if len(parts) != 6:
            raise ValueError(
                f"NCRONTAB {text!r} needs 6 fields (second minute hour day month day-of-week)"
            )
        try:
            fields = tuple(_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True))
        except ValueError as exc:
            raise ValueError(f"NCRONTAB {text!r}: {exc}") from exc
        return cls(fields, text)

    def matches(self, moment: datetime) -> bool:
        dow = (moment.weekday() + 1) % 7  # NCRONTAB: 0 = Sunday
        values = (moment.second, moment.minute, moment.hour, moment.day, moment.month, dow)
        return all(v in f for v, f in zip(values, self.fields, strict=True))


# --- the host ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Function:
    name: str
    trigger: dict[str, Any]
    call: Callable[..., Any]

    @property
    def kind(self) -> str:
        return str(self.trigger["type"])

    @property
    def arg(self) -> str:
        return str(self.trigger["name"])


@dataclass(frozen=True)
class _Route:
    function: _Function
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth: str


def _route_pattern(route: str) -> re.Pattern[str]:
    out = ""
    for piece in re.split(r"(\{[^}]+\})", route.strip("/")):
        if piece.startswith("{"):
            name = piece[1:-1].split(":", 1)[0].rstrip("?")
            out += f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(piece)
    return re.compile(f"^{out}$")


class LocalHost:
    def __init__(
        self,
        app: func.FunctionApp,
        *,
        keys: Mapping[str, str],
        parse_event_batch: Callable[[bytes], list[dict[str, Any]]],
        on_reject: Callable[[str, str], None] | None = None,
        settings: Mapping[str, str] | None = None,
        max_body_bytes: int = 1_048_576,
        run_timers: bool = True,
    ) -> None:
        import os

        self.keys = dict(keys)
        self.parse_event_batch = parse_event_batch
        self.on_reject = on_reject
        self.settings = dict(os.environ if settings is None else settings)
        self.max_body_bytes = max_body_bytes
        self.run_timers = run_timers
        self.functions: dict[str, _Function] = {}
        self.routes: list[_Route] = []
        self.timers: dict[str, tuple[_Function, Schedule]] = {}
        for fn in app.get_functions():  # may be called once per app object
            bindings = [b.get_dict_repr() for b in fn.get_bindings()]
            trigger = next(b for b in bindings if "Trigger" in str(b["type"]))
            entry = _Function(str(fn.get_function_name()), trigger, fn.get_user_function())
            self.functions[entry.name] = entry
            if entry.kind == "httpTrigger":
                route = trigger.get("route") or entry.name
                methods = frozenset(
                    _value(m).upper()
                    for m in trigger.get("methods") or ("GET", "POST", "PUT", "DELETE", "PATCH")
                )
                self.routes.append(
                    _Route(
                        entry,
                        _route_pattern(route),
                        methods,
                        _value(trigger.get("authLevel", "function")).lower(),
                    )
                )
            elif entry.kind == "timerTrigger":
                self.timers[entry.name] = (
                    entry,
                    Schedule.parse(self._resolve(str(trigger["schedule"]))),
                )
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def _resolve(self, text: str) -> str:
        match = re.fullmatch(r"%([^%]+)%", text.strip())
        if not match:
            return text
        name = match.group(1)
        if name not in self.settings:
            raise ValueError(f"timer schedule setting {name} is not set")
        return self.settings[name]

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("host not started")
        host, port = self._server.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host_text}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        handler = type("Handler", (_Handler,), {"host": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._stop.clear()
        serving = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="local-host",
            daemon=True,
        )
        serving.start()
        self._threads = [serving]
        if self.run_timers:
            for name in self.timers:
                if self.timers[name][0].trigger.get("runOnStartup"):
                    self.trigger_timer(name)
            ticker = threading.Thread(target=self._tick, name="timers", daemon=True)
            ticker.start()
            self._threads.append(ticker)
        address = self._server.server_address
        return str(address[0]), int(address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)

    def _tick(self) -> None:
        last = int(time.time())
        while not self._stop.wait(0.1):
            now = int(time.time())
            for second in range(last + 1, now + 1):
                moment = datetime.fromtimestamp(second, UTC)
                for name, (_, schedule) in self.timers.items():
                    if schedule.matches(moment):
                        self.trigger_timer(name, past_due=now - second > 1)
            last = max(last, now)

    def trigger_timer(self, name: str, past_due: bool = False) -> None:
        """Run a timer function once now; its exceptions are logged, never fatal."""
        entry = self.timers[name][0]
        try:
            entry.call(**{entry.arg: TimerRequest(past_due=past_due)})
        except Exception:
            log.exception("timer function %s failed", name)

    # -- request handling ------------------------------------------------------------------

    def authorised(self, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        presented = (headers.get("x-functions-key") or query.get("code") or "").encode()
        matched = False
        for key in self.keys.values():
            matched |= hmac.compare_digest(presented, key.encode())
        return matched

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if path.rstrip("/") == EVENTGRID_PATH:
            return self._eventgrid(method, query, headers, body)
        if path.startswith("/admin/functions/"):
            return self._admin(method, path.removeprefix("/admin/functions/"), query, headers)
        if path.startswith("/api/"):
            return self._http(method, target, path.removeprefix("/api/"), query, headers, body)
        return _json(404, {"error": "not found"})

    def _http(
        self,
        method: str,
        url: str,
        path: str,
        query: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        matched = [(r, m) for r in self.routes if (m := r.pattern.match(path.strip("/")))]
        if not matched:
            return _json(404, {"error": "not found"})
        allowed = [(r, m) for r, m in matched if method in r.methods]
        if not allowed:
            methods = sorted({x for r, _ in matched for x in r.methods})
            status, hdrs, data = _json(405, {"error": f"method {method} not allowed"})
            return status, {**hdrs, "Allow": ", ".join(methods)}, data
        route, match = allowed[0]
        if route.auth != "anonymous" and not self.authorised(headers, query):
            return _json(401, {"error": "missing or invalid function key"})
        request = func.HttpRequest(
            method,
            f"http://localhost{url}",
            headers=dict(headers),
            params=query,
            route_params=match.groupdict(),
            body=body,
        )
        try:
            response = route.function.call(**{route.function.arg: request})
        except Exception:
            log.error("function %s failed:\n%s", route.function.name, traceback.format_exc())
            return _json(500, {"error": "internal error"})
        out_headers = {k: v for k, v in response.headers.items()}
        if response.mimetype:
            charset = f"; charset={response.charset}" if response.charset else ""
            out_headers["Content-Type"] = f"{response.mimetype}{charset}"
        return response.status_code, out_headers, response.get_body() or b""

    def _admin(
        self, method: str, name: str, query: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method != "POST":
            return _json(405, {"error": "use POST"})
        if not self.authorised(headers, query):
            return _json(401, {"error": "missing or invalid function key"})
        if name not in self.timers:
            return _json(404, {"error": "no such timer function"})
        self.trigger_timer(name)
        return 202, {}, b""

    def _eventgrid(
        self, method: str, query: dict[str, str], headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "OPTIONS":  # CloudEvents webhook abuse protection
            origin = headers.get("webhook-request-origin")
            if not origin:
                return _json(400, {"error": "missing WebHook-Request-Origin"})
            return 200, {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}, b""
        if method != "POST":
            return _json(405, {"error": "use POST"})
        if not self.authorised(headers, query):
            return _json(401, {"error": "missing or invalid function key"})
        name = query.get("functionName", "")
        entry = self.functions.get(name)
        if entry is None or entry.kind != "eventGridTrigger":
            return _json(404, {"error": "no such Event Grid function"})
        try:
            events = self.parse_event_batch(body)
        except BadEvent as exc:
            if self.on_reject:
                self.on_reject(name, str(exc))
            return _json(400, {"error": str(exc)})
        validation = next((e for e in events if e.get("eventType") == VALIDATION_EVENT), None)
        if validation is not None:
            data = validation.get("data") or {}
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not isinstance(code, str):
                return _json(400, {"error": "validation event without validationCode"})
            return _json(200, {"validationResponse": code})
        for index, event in enumerate(events):
            try:
                entry.call(**{entry.arg: _grid_event(event)})
            except TransientError as exc:
                retry = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else {}
                status, hdrs, data = _json(503, {"error": f"event [{index}]: {exc}"})
                return status, {**hdrs, **retry}, data
            except Exception:
                log.error(
                    "function %s failed on event [%d]:\n%s", name, index, traceback.format_exc()
                )
                return _json(500, {"error": f"event [{index}]: internal error"})
        return 200, {}, b""


def _grid_event(event: dict[str, Any]) -> func.EventGridEvent:
    cloud = "specversion" in event
    raw_time = event.get("time" if cloud else "eventTime")
    try:
        when = datetime.fromisoformat(str(raw_time).replace("Z", "+00:00")) if raw_time else None
    except ValueError:
        when = None
    return func.EventGridEvent(
        id=str(event.get("id", "")),
        data=event.get("data"),  # type: ignore[arg-type]
        topic=str(event.get("source" if cloud else "topic") or ""),
        subject=str(event.get("subject") or ""),
        event_type=str(event.get("type" if cloud else "eventType") or ""),
        event_time=when,
        data_version=str(event.get("dataschema" if cloud else "dataVersion") or ""),
    )


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    host: LocalHost
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        started = time.perf_counter()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, data = self._dispatch(headers)
        self.send_response(status)
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        log.info(
            "%s %s %d %.1fms",
            self.command,
            urlsplit(self.path).path,
            status,
            (time.perf_counter() - started) * 1000,
        )

    def _dispatch(self, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            return _json(411, {"error": "chunked bodies are not accepted; send Content-Length"})
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self.close_connection = True
            return _json(400, {"error": "invalid Content-Length"})
        if length > self.host.max_body_bytes:
            self.close_connection = True  # do not read the oversized body
            return _json(
                413,
                {"error": f"body is {length} bytes; at most {self.host.max_body_bytes} allowed"},
            )
        body = self.rfile.read(length) if length > 0 else b""
        return self.host.handle(self.command, self.path, headers, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines are logged by _serve, without query strings (they may hold keys)
