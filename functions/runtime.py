"""Process-wide access to the wired services, built lazily on first use (not at import).

Production builds the services from settings (``composition.wiring``). Tests and ``autopilot serve``
inject their own with :func:`use`. Each invocation gets a fresh bus over the shared,
thread-safe adapters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from composition.bootstrap import bootstrap
from composition.wiring import Runtime
from shared.messagebus import MessageBus

_lock = threading.Lock()
_runtime: Runtime | None = None
_factory: Callable[[], Runtime] | None = None


def use(factory: Callable[[], Runtime] | Runtime | None) -> None:
    """Install how the runtime is built (or the runtime itself); None resets to settings."""
    global _runtime, _factory
    with _lock:
        _runtime = factory if isinstance(factory, Runtime) else None
        _factory = None if isinstance(factory, Runtime) else factory


def current() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            if _factory is not None:
                _runtime = _factory()
            else:
                from composition.wiring import runtime_from_settings

                _runtime = runtime_from_settings()
        return _runtime


def new_bus() -> MessageBus:
    return bootstrap(current().services)
