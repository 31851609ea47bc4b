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

import asyncio
import heapq
import hmac
import inspect
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import azure.functions as func

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
from autopilot.host_schedule import ScheduleError, TimerSchedule, parse_schedule, resolve_settings
from autopilot.host_triggers import (
    TriggerDecodeError,
    binding_for,
    decode,
    eventgrid_datum,
    http_datum,
    timer_datum,
)
from shared.envelope import load_json
from shared.errors import AutopilotError, BadEvent, PayloadTooLarge, TransientError

log = logging.getLogger("autopilot.host")

EVENTGRID_PATH = "/runtime/webhooks/eventgrid"
ADMIN_PREFIX = "/admin/functions/"
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
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
PAST_DUE_AFTER_SECONDS = 1.0  # a timer run this late (missed while busy or asleep) is past due
STOP_BUDGET_SECONDS = 1.0


def _text(raw: Any) -> str:
    """Binding values may be enums (``HttpMethod.GET``) or plain strings."""
    return str(getattr(raw, "value", raw))


@dataclass(frozen=True, slots=True)
class _Function:
    name: str
    kind: str  # the trigger binding's type, e.g. "httpTrigger"
    arg: str  # the parameter the trigger value is passed as
    trigger: Mapping[str, Any]
    call: Callable[..., Any]
    converter: str  # what decodes the trigger data: the binding type, or "generic"


@dataclass(frozen=True, slots=True)
class _HttpRoute:
    function: _Function
    template: RouteTemplate
    methods: frozenset[str]
    auth: str  # "anonymous" | "function" | "admin"


@dataclass(slots=True)
class _Timer:
    function: _Function
    schedule: TimerSchedule
    run_on_startup: bool
    lock: threading.Lock = field(default_factory=threading.Lock)  # one run at a time
    last: datetime | None = None
    one_shots: list[datetime] = field(default_factory=list)  # extra runs asked for (heap)
    poke: threading.Event = field(default_factory=threading.Event)  # a one-shot was added


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One thing the host serves, for banners and docs: ``POST /api/alerts -> alerts``."""

    function: str
    kind: str  # "http" | "eventgrid" | "timer"
    methods: tuple[str, ...]
    path: str  # URL path (with query for Event Grid), or the schedule for timers
    auth: str

    def __str__(self) -> str:
        if self.kind == "timer":
            return f"timer {self.function}: {self.path}"
        return f"{','.join(self.methods)} {self.path} -> {self.function} ({self.auth})"


class LocalHost:
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
        self._functions: dict[str, _Function] = {}
        self._routes: list[_HttpRoute] = []
        self._eventgrid: dict[str, _Function] = {}
        self._timers: dict[str, _Timer] = {}
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
        trigger = next((b for b in bindings if _text(b.get("type", "")).endswith("Trigger")), None)
        if trigger is None:
            log.warning("function %s has no trigger binding; not served", name)
            return
        kind, arg, call = _text(trigger["type"]), str(trigger["name"]), fn.get_user_function()
        function = _Function(name, kind, arg, trigger, call, binding_for(call, arg, kind))
        self._functions[name] = function
        if function.kind == "httpTrigger":
            template = RouteTemplate.parse(str(trigger.get("route") or name))
            for ignored in template.ignored:
                log.warning(
                    "route %s: constraint %s is not enforced locally", template.text, ignored
                )
            methods = frozenset(_text(m).upper() for m in trigger.get("methods") or ALL_METHODS)
            auth = _text(trigger.get("authLevel") or "function").lower()
            self._routes.append(_HttpRoute(function, template, methods, auth))
        elif function.kind == "eventGridTrigger":
            self._eventgrid[name] = function
        elif function.kind == "timerTrigger":
            raw = str(trigger.get("schedule", ""))
            try:
                schedule = parse_schedule(resolve_settings(raw, self._settings))
            except ScheduleError as exc:
                raise ValueError(f"timer function {name}: {exc}") from exc
            self._timers[name] = _Timer(function, schedule, bool(trigger.get("runOnStartup")))
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

    def trigger_timer(self, name: str, *, past_due: bool = False) -> bool:
        """Run a timer function once now, in this thread; False if it raised (logged)."""
        timer = self._timers.get(name)
        if timer is None:
            raise LookupError(f"no timer function named {name!r}")
        return self._run_timer(timer, past_due=past_due, next_due=None)

    def wake(self, name: str, at: datetime) -> None:
        """Run timer ``name`` once more at ``at`` (aware), besides its schedule.

        Not a Functions host feature: the embedded service uses it so a rollout step is
        checked when its bake ends, not at the next scheduled tick. Runs due together (or
        with a scheduled run) collapse into one. Without running timers it does nothing.
        """
        timer = self._timers.get(name)
        if timer is None:
            raise LookupError(f"no timer function named {name!r}")
        if not self.run_timers:
            return
        with self._wake_lock:
            heapq.heappush(timer.one_shots, at.astimezone(UTC))
        timer.poke.set()

    def _take_one_shots(self, timer: _Timer, now: datetime) -> tuple[bool, datetime | None]:
        """(whether a one-shot is due at ``now``, removing those; the earliest one left)."""
        due = False
        with self._wake_lock:
            while timer.one_shots and timer.one_shots[0] <= now:
                heapq.heappop(timer.one_shots)
                due = True
            return due, timer.one_shots[0] if timer.one_shots else None

    def _now(self) -> datetime:
        return datetime.now(self._zone)

    def _run_timer(self, timer: _Timer, *, past_due: bool, next_due: datetime | None) -> bool:
        with timer.lock:  # like the real listener: never two runs of one timer at once
            started = self._now()
            status = {
                "Last": timer.last.isoformat() if timer.last else "0001-01-01T00:00:00",
                "Next": next_due.isoformat() if next_due else "",
                "LastUpdated": started.isoformat(),
            }
            try:
                datum = timer_datum(past_due=past_due, status=status)
                _call(timer.function, decode(timer.function.converter, datum))
            except Exception:
                log.exception("timer function %s failed", timer.function.name)
                return False
            finally:
                timer.last = started
            return True

    def _wait_for(self, timer: _Timer, due: datetime) -> str:
        """Sleep until the scheduled ``due`` or an earlier one-shot: "scheduled", "one-shot"
        or "stop"."""
        while not self._stopping.is_set():
            now = datetime.now(UTC)
            shot_due, next_shot = self._take_one_shots(timer, now)
            if shot_due:
                return "one-shot"
            remaining = (due.astimezone(UTC) - now).total_seconds()
            if remaining <= 0:
                return "scheduled"
            if next_shot is not None:
                remaining = min(remaining, (next_shot - now).total_seconds())
            if timer.poke.wait(min(max(remaining, 0.0), 1.0)):  # re-check: clocks can jump
                timer.poke.clear()
        return "stop"

    def _run_schedule(self, timer: _Timer) -> None:
        if timer.run_on_startup and not self._stopping.is_set():
            self._run_timer(timer, past_due=False, next_due=None)
        due = timer.schedule.next_after(self._now())
        while due is not None:
            woke = self._wait_for(timer, due)
            if woke == "stop":
                return
            if woke == "one-shot":
                self._run_timer(timer, past_due=False, next_due=due)
                continue
            fired = self._now()
            late = (fired.astimezone(UTC) - due.astimezone(UTC)).total_seconds()
            # Counted from this run's start: occurrences missed while it runs collapse into
            # one immediate run, which is then late, hence past due.
            following = timer.schedule.next_after(max(fired, due))
            self._take_one_shots(timer, fired.astimezone(UTC))  # this run covers them
            self._run_timer(timer, past_due=late > PAST_DUE_AFTER_SECONDS, next_due=following)
            due = following
        log.warning("timer %s: schedule has no further occurrence", timer.function.name)

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

    def _refusal(self, request: Request, *, required: bool = True) -> Reply | None:
        """None when the request carries a valid key (or needs none), else a 401 reply."""
        presented = request.headers.get("x-functions-key") or request.query.get("code")
        if not presented:
            if not required:
                return None
            return json_reply(
                401,
                {"error": "a function key is required (x-functions-key header or code parameter)"},
            )
        valid = False
        for key in self._keys:  # compare with every key: timing says nothing about which
            valid |= hmac.compare_digest(presented.encode(), key)
        return None if valid else json_reply(401, {"error": "the function key is not valid"})

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
                result = _call(route.function, decode(route.function.converter, datum))
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

    # -- Event Grid -------------------------------------------------------------------------

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
        self, function: _Function, body: bytes, *, handshake: bool, binary: bool = False
    ) -> Reply:
        name = function.name
        try:
            events = self._parse(body)
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
            self._reject(name, message)
            return json_reply(400, {"error": message})
        if validation is not None:
            data = validation.get("data")
            code = data.get("validationCode") if isinstance(data, Mapping) else None
            if not isinstance(code, str) or not code:
                message = "SubscriptionValidationEvent without data.validationCode"
                self._reject(name, message)
                return json_reply(400, {"error": message})
            log.info("Event Grid subscription validation handshake for %s", name)
            return json_reply(200, {"validationResponse": code})
        for index, event in enumerate(events):
            try:
                value = decode(function.converter, eventgrid_datum(event))
            except TriggerDecodeError as exc:
                log.error("%s: event [%d] cannot be decoded by the worker: %s", name, index, exc)
                message = f"event [{index}]: the Functions worker cannot decode it: {exc}"
                return json_reply(500, {"error": message, "processed": index})
            try:
                _call(function, value)
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


def _call(function: _Function, value: Any) -> Any:
    """Invoke a user function with its trigger value; async functions run to completion."""
    result = function.call(**{function.arg: value})
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def _transient(message: str, retry_after: float | None, **extra: Any) -> Reply:
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None and math.isfinite(retry_after):
        headers = (("Retry-After", str(max(0, math.ceil(retry_after)))),)
    return json_reply(503, {"error": message, **extra}, headers)


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
