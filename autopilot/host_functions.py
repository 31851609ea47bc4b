"""The host's table of functions: what each trigger binding says, and how a function is called."""

from __future__ import annotations

import asyncio
import hmac
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autopilot.host_http import Reply, Request, json_reply
from autopilot.host_routes import RouteTemplate
from autopilot.host_schedule import TimerSchedule


def text(raw: Any) -> str:
    """Binding values may be enums (``HttpMethod.GET``) or plain strings."""
    return str(getattr(raw, "value", raw))


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    kind: str  # the trigger binding's type, e.g. "httpTrigger"
    arg: str  # the parameter the trigger value is passed as
    trigger: Mapping[str, Any]
    call: Callable[..., Any]
    converter: str  # what decodes the trigger data: the binding type, or "generic"


@dataclass(frozen=True, slots=True)
class HttpRoute:
    function: Function
    template: RouteTemplate
    methods: frozenset[str]
    auth: str  # "anonymous" | "function" | "admin"


@dataclass(slots=True)
class Timer:
    function: Function
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


def call_function(function: Function, value: Any) -> Any:
    """Invoke a user function with its trigger value; async functions run to completion."""
    result = function.call(**{function.arg: value})
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


class KeyedHost:
    """The function keys a host accepts, and the check every keyed request goes through."""

    _keys: tuple[bytes, ...]

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
