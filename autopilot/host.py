"""A local Azure Functions host: serves a ``FunctionApp``'s registered functions over HTTP.

Azure Functions Core Tools cannot be installed here, so ``autopilot serve`` uses this host.
Every route comes from the functions' own bindings (no second list to keep in sync), with the
real host's URL shapes and rules:

- HTTP triggers under ``/api/<route>`` (route templates as in ``host_routes``); ``function``
  and ``admin`` auth levels need a key in the ``x-functions-key`` header (looked at first) or
  the ``code`` query parameter, compared in constant time with every configured key.
- Event Grid triggers at ``POST /runtime/webhooks/eventgrid?functionName=NAME`` (key
  required): the ``SubscriptionValidationEvent`` handshake, the CloudEvents ``OPTIONS``
  abuse-protection handshake, the whole batch validated first (malformed: 400, nothing
  invoked), then one invocation per event in order; 200 only when every event was handled,
  503 + ``Retry-After`` when a function raises ``TransientError``, 500 for anything else.
- Timer triggers on their NCRONTAB schedules (``host_schedule``), and
  ``POST /admin/functions/NAME`` (key required) to run one now.

``start()`` serves over HTTP in background threads; ``handle()`` runs one request in process
with the same rules, for tests and tools.

Where this host differs from the real one on purpose:

- A delivery is invoked event by event in order and stops at the first failure (the real
  Event Grid extension runs the batch's events in parallel); success is 200 (the real one
  answers 202). Event Grid treats both as delivered.
- A request without an ``aeg-event-type`` header is treated as a ``Notification`` (the real
  host answers 400), so plain ``curl``/replay posts work.
- The CloudEvents ``OPTIONS`` handshake is answered without a key, because it invokes
  nothing; a key that *is* sent must be valid. The real host checks the key first (Event Grid
  sends the ``code`` from the subscription URL, so both hosts accept real handshakes). As in
  the real extension, only Event Grid's own origins are echoed in ``WebHook-Allowed-Origin``;
  any other origin is answered ``eventgrid.azure.net``.
- The admin route accepts any configured key (the real host wants the master key).
- ``wake(NAME, at)`` runs a timer once more at a given time, besides its schedule (the real
  host has no such thing); ``autopilot serve`` uses it to check a rollout step when it is due.

What a function receives is built as the Python worker builds it (``autopilot.host_triggers``):
the data the real host would send, decoded by the converter the worker picks (azure-functions'
own for the binding type; the data as it is for a ``str``/``bytes`` parameter). An Event Grid
function annotated with ``func.EventGridEvent`` gets a ``func.CloudEvent`` for a CloudEvents
event, and an event that converter cannot decode (e.g. a time with a non-UTC offset) fails its
invocation (500), as on Azure.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, tzinfo
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import azure.functions as func

from autopilot.host_eventgrid import EVENTGRID_PATH, EventGridHost
from autopilot.host_functions import Endpoint, Function, HttpRoute, Timer, call_function, text
from autopilot.host_http import (
    BodyError,
    HttpServer,
    NeedsBody,
    Reply,
    Request,
    answer,
    build_request,
    json_reply,
)
from autopilot.host_routes import RouteTemplate
from autopilot.host_schedule import ScheduleError, parse_schedule, resolve_settings
from autopilot.host_timers import TimerHost
from autopilot.host_triggers import binding_for, decode, http_datum
from shared.envelope import load_json
from shared.errors import BadEvent

__all__ = ["ADMIN_PREFIX", "EVENTGRID_PATH", "Endpoint", "LocalHost"]

log = logging.getLogger("autopilot.host")

ADMIN_PREFIX = "/admin/functions/"
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
STOP_BUDGET_SECONDS = 1.0


class LocalHost(TimerHost, EventGridHost):
    """Serves a FunctionApp's HTTP, Event Grid and timer triggers on one machine.

    ``app`` is the ``func.FunctionApp`` (its ``get_functions()`` is called once, here, as the
    SDK allows only one call per app object) or the list that call already returned.
    ``parse_event_batch`` validates a whole Event Grid delivery body and returns its events;
    exceptions of the ``bad_input`` types mean "malformed" (400, ``on_reject`` told),
    ``TransientError`` means "try again" (503). ``settings`` resolve ``%NAME%`` schedules and
    ``WEBSITE_TIME_ZONE`` (an IANA name; UTC when unset, as on Azure).
    """

    def __init__(
        self,
        app: func.FunctionApp | Sequence[Any],
        *,
        keys: Mapping[str, str],
        parse_event_batch: Callable[[bytes], list[dict[str, Any]]],
        on_reject: Callable[[str, str], None] | None = None,
        settings: Mapping[str, str] | None = None,
        max_body_bytes: int = 1_048_576,
        run_timers: bool = True,
        route_prefix: str = "api",
        bad_input: tuple[type[BaseException], ...] = (BadEvent, ValueError),
    ) -> None:
        self.run_timers = run_timers
        self.max_body_bytes = max_body_bytes
        self._keys = tuple(k.encode() for k in keys.values() if k)
        self._parse = parse_event_batch
        self._on_reject = on_reject
        self._settings = dict(os.environ if settings is None else settings)
        self._prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self._bad_input = bad_input
        self._zone = _time_zone(self._settings.get("WEBSITE_TIME_ZONE", ""))
        self._functions: dict[str, Function] = {}
        self._routes: list[HttpRoute] = []
        self._eventgrid: dict[str, Function] = {}
        self._timers: dict[str, Timer] = {}
        functions = app.get_functions() if isinstance(app, func.FunctionApp) else list(app)
        for fn in functions:
            self._index(fn)
        self._routes.sort(key=lambda r: r.template.precedence)
        if not self._keys:
            log.warning("no function keys configured: every keyed request will be refused")
        self._server: HttpServer | None = None
        self._stopping = threading.Event()
        self._wake_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- indexing ---------------------------------------------------------------------------

    def _index(self, fn: Any) -> None:
        name = str(fn.get_function_name())
        bindings = [b.get_dict_repr() for b in fn.get_bindings()]
        trigger = next((b for b in bindings if text(b.get("type", "")).endswith("Trigger")), None)
        if trigger is None:
            log.warning("function %s has no trigger binding; not served", name)
            return
        kind, arg, call = text(trigger["type"]), str(trigger["name"]), fn.get_user_function()
        function = Function(name, kind, arg, trigger, call, binding_for(call, arg, kind))
        self._functions[name] = function
        if function.kind == "httpTrigger":
            template = RouteTemplate.parse(str(trigger.get("route") or name))
            for ignored in template.ignored:
                log.warning(
                    "route %s: constraint %s is not enforced locally", template.text, ignored
                )
            methods = frozenset(text(m).upper() for m in trigger.get("methods") or ALL_METHODS)
            auth = text(trigger.get("authLevel") or "function").lower()
            self._routes.append(HttpRoute(function, template, methods, auth))
        elif function.kind == "eventGridTrigger":
            self._eventgrid[name] = function
        elif function.kind == "timerTrigger":
            raw = str(trigger.get("schedule", ""))
            try:
                schedule = parse_schedule(resolve_settings(raw, self._settings))
            except ScheduleError as exc:
                raise ValueError(f"timer function {name}: {exc}") from exc
            self._timers[name] = Timer(function, schedule, bool(trigger.get("runOnStartup")))
        else:
            log.warning("function %s: %s triggers are not served locally", name, function.kind)

    @property
    def endpoints(self) -> list[Endpoint]:
        """What this host serves, derived from the bindings."""
        out = [
            Endpoint(
                r.function.name,
                "http",
                tuple(sorted(r.methods)),
                f"{self._prefix}/{r.template.text.strip('/')}",
                r.auth,
            )
            for r in self._routes
        ]
        out += [
            Endpoint(name, "eventgrid", ("POST",), f"{EVENTGRID_PATH}?functionName={name}", "key")
            for name in self._eventgrid
        ]
        out += [Endpoint(n, "timer", (), t.schedule.text, "") for n, t in self._timers.items()]
        return out

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("host not started")
        host, port = self._server.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve in background threads; returns the bound (host, port)."""
        if self._server is not None:
            raise RuntimeError("host already started")
        self._stopping.clear()
        server = HttpServer(self.dispatch, max_body_bytes=self.max_body_bytes)
        address = server.start(host, port)
        self._server = server
        self._threads = []
        if self.run_timers:
            for timer in self._timers.values():
                thread = threading.Thread(
                    target=self._run_schedule,
                    args=(timer,),
                    name=f"timer-{timer.function.name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        log.info(
            "local Functions host on %s: %d HTTP, %d Event Grid, %d timer functions",
            self.url,
            len(self._routes),
            len(self._eventgrid),
            len(self._timers),
        )
        return address

    def stop(self) -> None:
        """Stop serving and release the port; waits about a second at most for timers."""
        self._stopping.set()
        for timer in self._timers.values():
            timer.poke.set()  # wake sleeping timer threads now
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        deadline = time.monotonic() + STOP_BUDGET_SECONDS
        for thread in self._threads:
            if thread is threading.current_thread():
                continue  # stop() called from a timer function
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s is still running a function; not waiting for it", thread.name)
        self._threads = []

    def serve_forever(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ready: Callable[[str], None] | None = None,
    ) -> None:
        """Start (unless started), call ``ready(url)``, block until ``stop()`` or Ctrl-C."""
        if self._server is None:
            self.start(host, port)
        if ready is not None:
            ready(self.url)
        try:
            while not self._stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            log.info("interrupted; stopping")
        finally:
            self.stop()

    # -- timers -----------------------------------------------------------------------------

    # -- requests ---------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """One request in process, without a socket: the same routing, auth, limits, calls.

        Returns (status, headers, body). For tests and tools that want the host's behaviour
        without HTTP; ``start()`` is not needed.
        """

        def read() -> bytes:
            if len(body) > self.max_body_bytes:
                raise BodyError(
                    413, f"body is {len(body)} bytes; at most {self.max_body_bytes} are accepted"
                )
            return body

        request = build_request(method.upper(), target, list(headers.items()), "localhost")
        reply, _ = answer(self.dispatch, request, read)
        return reply.status, dict(reply.headers), reply.body

    def dispatch(self, request: Request) -> Reply | NeedsBody:
        """Route one request: an answer now, or what to run once the body is read."""
        path = request.path.lower()
        if path.rstrip("/") == EVENTGRID_PATH:
            return self._eventgrid_request(request)
        if path.startswith(ADMIN_PREFIX):
            name = unquote(request.path[len(ADMIN_PREFIX) :].strip("/"))
            return self._admin_request(request, name)
        prefix = self._prefix.lower()
        if path == prefix or path.startswith(prefix + "/"):
            return self._http_request(request, request.path[len(prefix) :])
        return json_reply(404, {"error": "not found"})

    def _http_request(self, request: Request, subpath: str) -> Reply | NeedsBody:
        matches = [(r, v) for r in self._routes if (v := r.template.match(subpath)) is not None]
        if not matches:
            return json_reply(404, {"error": "not found"})
        chosen = next(((r, v) for r, v in matches if request.method in r.methods), None)
        if chosen is None:
            allowed = ", ".join(sorted({m for r, _ in matches for m in r.methods}))
            return json_reply(
                405, {"error": f"method {request.method} not allowed"}, (("Allow", allowed),)
            )
        route, values = chosen
        if route.auth != "anonymous" and (refusal := self._refusal(request)) is not None:
            return refusal

        def run(body: bytes) -> Reply:
            datum = http_datum(
                request.method,
                request.base_url + request.target,
                headers=request.headers,
                query=request.query,
                route_params=values,
                body=body,
            )
            try:
                result = call_function(route.function, decode(route.function.converter, datum))
            except Exception:
                log.exception("HTTP function %s failed", route.function.name)
                return json_reply(500, {"error": "internal error"})
            return _http_reply(route.function.name, result)

        return NeedsBody(run)

    def _admin_request(self, request: Request, name: str) -> Reply | NeedsBody:
        if request.method != "POST":
            return json_reply(405, {"error": "use POST"}, (("Allow", "POST"),))
        if (refusal := self._refusal(request)) is not None:
            return refusal
        timer = self._timers.get(name)
        if timer is None:
            if name in self._functions:
                return json_reply(400, {"error": "only timer functions can be run from here"})
            return json_reply(404, {"error": "no such function"})

        def run(body: bytes) -> Reply:
            if body.strip():
                try:
                    payload = load_json(body)
                except BadEvent:
                    payload = None
                if not isinstance(payload, dict):
                    return json_reply(400, {"error": 'body must be a JSON object: {"input": ""}'})
            threading.Thread(
                target=self._run_timer,
                args=(timer,),
                kwargs={"past_due": False, "next_due": None},
                name=f"admin-{name}",
                daemon=True,
            ).start()
            return Reply(202)

        return NeedsBody(run)


# -- helpers ---------------------------------------------------------------------------------


def _time_zone(name: str) -> tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"WEBSITE_TIME_ZONE {name!r} is not an IANA time zone name (e.g. Europe/Paris)"
        ) from exc


def _http_reply(name: str, result: Any) -> Reply:
    """Copy a function's ``func.HttpResponse`` (or str) to the wire, as the worker does."""
    if isinstance(result, str):
        return Reply(200, (("Content-Type", "text/plain; charset=utf-8"),), result.encode())
    if not isinstance(result, func.HttpResponse):
        log.error("HTTP function %s returned %s, not an HttpResponse", name, type(result).__name__)
        return json_reply(500, {"error": "internal error"})
    headers = [(str(k), str(v)) for k, v in result.headers.items()]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype = str(result.mimetype)
        text = mimetype.startswith("text/")
        headers.append(
            ("Content-Type", f"{mimetype}; charset={result.charset}" if text else mimetype)
        )
    return Reply(int(result.status_code), tuple(headers), result.get_body() or b"")
