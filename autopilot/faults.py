"""Fault injection: wrap the platform, metrics and store ports to break things on purpose.

Usable in tests and by hand (wrap the adapters in ``composition.wiring`` output)::

    plan = FaultPlan(seed=1, transient_rate=0.3, crash_at={"platform.submit_job.after"})
    services.platform = FaultyPlatform(services.platform, plan)

- latency: every call sleeps ``latency_s`` (or a random share of it);
- transient errors at ``transient_rate``: 429 with Retry-After, 503, connection reset —
  raised as ``TransientError`` like the real adapters translate them;
- permanent errors for named calls (``permanent={"platform.register_model"}``);
- crashes at named points (``<port>.<method>.before`` / ``.after``): ``Crash`` is a
  ``BaseException``, so nothing in the service catches it — like a process dying there.

``ChaosEventSink`` does the same to the embedded platform's Event Grid emitter: duplicates,
delays, reorders and drops events.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.errors import PermanentError, SettingsError, TransientError

TRANSIENT_KINDS = ("429 Too Many Requests", "503 Service Unavailable", "connection reset")


class Crash(BaseException):
    """The process 'dies' here. BaseException: no ``except Exception`` in the service sees it."""


@dataclass
class FaultPlan:
    seed: int = 0
    transient_rate: float = 0.0
    latency_s: float = 0.0
    permanent: set[str] = field(default_factory=set)
    crash_at: set[str] = field(default_factory=set)
    only: set[str] | None = None  # restrict transient faults to these calls
    calls: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 (fault sampling, not security)

    def before(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1
            roll = self._rng.random()
            kind = self._rng.choice(TRANSIENT_KINDS)
        if self.latency_s:
            time.sleep(self.latency_s)
        if f"{name}.before" in self.crash_at:
            self._count(f"crash:{name}.before")
            raise Crash(f"{name}.before")
        if name in self.permanent:
            self._count(f"permanent:{name}")
            raise PermanentError(f"injected permanent failure of {name}")
        if roll < self.transient_rate and (self.only is None or name in self.only):
            self._count(f"transient:{name}")
            retry_after = 1.0 if kind.startswith("429") else None
            raise TransientError(f"injected {kind} in {name}", retry_after=retry_after)

    def after(self, name: str) -> None:
        if f"{name}.after" in self.crash_at:
            self._count(f"crash:{name}.after")
            raise Crash(f"{name}.after")

    def _count(self, what: str) -> None:
        with self._lock:
            self.injected[what] += 1

    @property
    def transient_injected(self) -> int:
        return sum(n for k, n in self.injected.items() if k.startswith("transient:"))


class _Faulty:
    """Delegates every method of ``inner``, with the plan's faults around each call."""

    prefix = "port"

    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        self._inner = inner
        self._plan = plan

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._inner, attr)
        if not callable(target):
            return target
        name = f"{self.prefix}.{attr}"

        def call(*args: Any, **kwargs: Any) -> Any:
            self._plan.before(name)
            result = target(*args, **kwargs)
            self._plan.after(name)
            return result

        return call


class FaultyPlatform(_Faulty):
    prefix = "platform"


class FaultyMetrics(_Faulty):
    prefix = "metrics"


class FaultyStore(_Faulty):
    prefix = "store"


@dataclass
class ChaosEventSink:
    """Wraps an event sink: duplicates, delays, reorders and drops events (seeded)."""

    inner: Any
    seed: int = 0
    duplicate_rate: float = 0.0
    drop_rate: float = 0.0
    drop_types: set[str] = field(default_factory=set)  # e.g. {"RunCompleted"}: all dropped
    reorder: bool = False
    delay_s: float = 0.0
    dropped: list[dict[str, Any]] = field(default_factory=list)
    _held: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 (chaos sampling, not security)

    def emit(self, event: dict[str, Any]) -> None:
        kind = str(event.get("eventType", "")).rsplit(".", 1)[-1]
        if kind in self.drop_types or self._rng.random() < self.drop_rate:
            self.dropped.append(event)
            return
        copies = 2 if self._rng.random() < self.duplicate_rate else 1
        for _ in range(copies):
            if self.reorder and not self._held:
                self._held.append(event)  # hold this one back until the next event passes it
                continue
            self._send(event)
            while self._held:
                self._send(self._held.pop())

    def _send(self, event: dict[str, Any]) -> None:
        if self.delay_s:
            timer = threading.Timer(
                self._rng.random() * self.delay_s, self.inner.emit, args=(event,)
            )
            timer.daemon = True
            timer.start()
        else:
            self.inner.emit(event)

    def flush(self, timeout: float = 5.0) -> None:
        while self._held:
            self._send(self._held.pop())
        flush: Callable[..., Any] | None = getattr(self.inner, "flush", None)
        if flush:
            flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        close: Callable[..., Any] | None = getattr(self.inner, "close", None)
        if close:
            close(timeout)


def chaos_sink(inner: Any, spec: str) -> Any:
    """Wrap ``inner`` per AUTOPILOT_EMBEDDED_CHAOS, e.g. ``drop=RunCompleted;duplicate=0.3``."""
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, value = part.partition("=")
        if not sep or name not in ("drop", "drop_rate", "duplicate", "reorder", "delay", "seed"):
            raise SettingsError(
                f"AUTOPILOT_EMBEDDED_CHAOS: unknown or malformed option {part!r}; use "
                "drop=TYPE+TYPE;drop_rate=0.1;duplicate=0.3;reorder=1;delay=2;seed=1"
            )
        options[name] = value
    try:
        return ChaosEventSink(
            inner,
            seed=int(options.get("seed", "0")),
            drop_types=set(filter(None, options.get("drop", "").split("+"))),
            drop_rate=float(options.get("drop_rate", "0")),
            duplicate_rate=float(options.get("duplicate", "0")),
            reorder=options.get("reorder", "0") in ("1", "true"),
            delay_s=float(options.get("delay", "0")),
        )
    except ValueError as exc:
        raise SettingsError(f"AUTOPILOT_EMBEDDED_CHAOS: {exc}") from exc


def chaos_wrapper(spec: str) -> Callable[[Any], Any] | None:
    """A sink wrapper for ``embedded_platform`` from the chaos setting; None when it is empty."""
    if not spec:
        return None
    return lambda inner: chaos_sink(inner, spec)
