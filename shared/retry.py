"""Retry policies as data, and the one place that retries calls to Azure.

A :class:`RetryPolicy` says how often and how long a kind of call may be retried; the named
policies below (``READ``, ``WRITE_IDEMPOTENT``, ``LRO_POLL``, ``ONCE``) are what adapters use.
:func:`call_with_retry` runs a call under a policy with tenacity: it retries only what a retry
can fix (our ``TransientError``, azure-core connection errors, HTTP 408/429/5xx), honours the
server's Retry-After, backs off exponentially with jitter otherwise, keeps the whole thing
inside the policy's total budget, and translates the final failure into our errors.

Adapters switch the SDKs' own retries off (``retry_total=0``) so that retries never nest.
Inside an invocation (:func:`shared.budget.invocation_budget`), every call's waits also come out
of the invocation's shared budget, so retries across all calls of one invocation stay within
about 20 s (Event Grid gives a webhook ~30 s). Tests call ``set_testing(True)``: waits become
zero but attempts are still counted, and both budgets are charged as if the waits had happened.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import tenacity
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared import budget as budgets
from shared.errors import (
    AlreadyExists,
    AutopilotError,
    InProgress,
    NotFound,
    PermanentError,
    TransientError,
)
from shared.redact import NO_SECRETS

log = logging.getLogger(__name__)

T = TypeVar("T")

# No policy may spend more than one invocation's whole budget (Event Grid waits ~30 s).
MAX_TOTAL_S = budgets.INVOCATION_BUDGET_S


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one kind of call is retried.

    ``attempts`` counts the first call. The n-th wait is ``initial_s * 2**(n-1)`` capped at
    ``max_interval_s``, plus up to ``jitter`` times that at random; a server's Retry-After
    replaces the computed wait (still capped). ``total_s`` bounds the time spent in all
    attempts and waits together.
    """

    attempts: int
    initial_s: float
    max_interval_s: float
    total_s: float
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.initial_s < 0:
            raise ValueError(f"initial_s must be >= 0, got {self.initial_s}")
        if self.max_interval_s < self.initial_s:
            raise ValueError(
                f"max_interval_s ({self.max_interval_s}) must be >= initial_s ({self.initial_s})"
            )
        if not 0 < self.total_s <= MAX_TOTAL_S:
            raise ValueError(f"total_s must be in (0, {MAX_TOTAL_S}], got {self.total_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), before jitter."""
        return float(min(self.max_interval_s, self.initial_s * (2 ** (attempt - 1))))


# Reads (GET, list, query): cheap and safe to repeat.
READ = RetryPolicy(attempts=4, initial_s=0.5, max_interval_s=4.0, total_s=8.0)
# Writes that are idempotent by construction (PUT of the same body, tag updates, publish of
# an event with a fixed id).
WRITE_IDEMPOTENT = RetryPolicy(attempts=3, initial_s=1.0, max_interval_s=5.0, total_s=10.0)
# Starting a long-running operation (the PUT/DELETE only: nobody waits here for it to end; the
# adapter waits what is left of the invocation's budget, then the reconciler checks it).
LRO_POLL = RetryPolicy(attempts=3, initial_s=1.0, max_interval_s=5.0, total_s=10.0, jitter=0.3)
# Calls that must not be repeated blindly (job submit, auto-versioned model create): one try,
# errors still translated. Idempotency comes from a check before the call instead.
ONCE = RetryPolicy(attempts=1, initial_s=0.0, max_interval_s=0.0, total_s=1.0, jitter=0.0)


@dataclass(frozen=True, slots=True)
class RetryPolicies:
    """The policies an adapter uses, per call kind; tests pass tighter ones."""

    read: RetryPolicy = READ
    write: RetryPolicy = WRITE_IDEMPOTENT
    lro: RetryPolicy = LRO_POLL


DEFAULT_POLICIES = RetryPolicies()

_testing = False


def set_testing(testing: bool) -> None:
    """In tests: never sleep between attempts, but count attempts and charge the budget."""
    global _testing
    _testing = testing


def is_testing() -> bool:
    return _testing


def _sleep(seconds: float) -> None:
    if not _testing and seconds > 0:
        time.sleep(seconds)


# -- classifying failures ------------------------------------------------------------------


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an azure-core ``HttpResponseError``, else None."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _is_retryable_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may fix ``exc`` (an operation still in progress is not retried here)."""
    if isinstance(exc, InProgress):
        return False
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    if isinstance(exc, HttpResponseError):
        status = status_of(exc)
        return status is not None and _is_retryable_status(status)
    return False


def retry_after_s(exc: BaseException, now: datetime | None = None) -> float | None:
    """The server's Retry-After hint in seconds, from our error or the response headers."""
    if isinstance(exc, TransientError):
        return exc.retry_after
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return parse_retry_after(headers, now)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Read ``retry-after-ms`` / ``x-ms-retry-after-ms`` / ``Retry-After`` (seconds or date)."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) / 1000.0)
            except ValueError:
                pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def redact(text: str) -> str:
    """Drop secret-looking query values (SAS signatures, keys) from a message."""
    return NO_SECRETS.text(text)  # the one scrubber: shared.redact


def describe(exc: BaseException) -> str:
    """A one-line, secret-free description of an SDK error for messages and audit."""
    status = status_of(exc)
    code = getattr(exc, "error", None)
    code_text = getattr(code, "code", None) or ""
    message = getattr(exc, "message", None) or str(exc)
    first = redact(str(message).strip().splitlines()[0] if str(message).strip() else "")
    parts = [type(exc).__name__]
    if status is not None:
        parts.append(f"HTTP {status}")
    if code_text:
        parts.append(str(code_text))
    head = " ".join(parts)
    return f"{head}: {first}" if first else head


def translate(exc: BaseException, what: str) -> Exception:
    """Our error for an SDK failure of ``what`` (the caller raises it ``from exc``).

    Our own errors pass through unchanged; unknown exception types are returned as they are.
    """
    if isinstance(exc, AutopilotError):
        return exc
    detail = f"{what}: {describe(exc)}"
    status = status_of(exc)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return NotFound(detail)
    if isinstance(exc, ResourceExistsError) or status == 409:
        return AlreadyExists(detail)
    if is_transient(exc):
        return TransientError(detail, retry_after=retry_after_s(exc))
    if isinstance(exc, ClientAuthenticationError | HttpResponseError):
        return PermanentError(detail)
    if isinstance(exc, Exception):
        return exc
    return PermanentError(detail)


# -- running a call under a policy -------------------------------------------------------------


class _Budget:
    """Time one call spent so far; in testing mode the (skipped) waits are charged too."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.waited = 0.0

    def elapsed(self) -> float:
        real = time.monotonic() - self.start
        return real + self.waited if _testing else real


def _left(policy: RetryPolicy, budget: _Budget) -> float:
    """Seconds left for waits: the policy's own total and the invocation's, whichever is less."""
    return budgets.remaining(max(0.0, policy.total_s - budget.elapsed()))


def _next_wait(
    policy: RetryPolicy, budget: _Budget, state: tenacity.RetryCallState
) -> tuple[float, bool]:
    """How long to wait before the next attempt, and whether that fits in the budget."""
    exc = state.outcome.exception() if state.outcome else None
    remaining = _left(policy, budget)
    hint = retry_after_s(exc) if exc is not None else None
    if hint is not None:
        # The server said when; if that does not fit in the budget, give up now and let
        # the caller (or Event Grid's redelivery) come back later.
        seconds = min(hint, policy.max_interval_s)
        return seconds, seconds <= remaining
    base = policy.backoff_s(state.attempt_number)
    jittered = base + random.uniform(0, policy.jitter * base)  # noqa: S311 - jitter
    return min(jittered, policy.max_interval_s, remaining), remaining > 0


def call_with_retry(
    policy: RetryPolicy, fn: Callable[..., T], *args: Any, what: str, **kwargs: Any
) -> T:
    """Call ``fn(*args, **kwargs)``, retrying transient failures under ``policy``.

    ``what`` names the call in logs and error messages ("get job j-1"); never put a URL or
    secret in it. The final failure is raised as our error, chained to the SDK's.
    """
    budget = _Budget()
    planned: dict[str, float | bool] = {"seconds": 0.0, "fits": True}

    def wait(state: tenacity.RetryCallState) -> float:
        seconds, fits = _next_wait(policy, budget, state)
        planned["seconds"], planned["fits"] = seconds, fits
        return seconds if fits else 0.0

    def stop(state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= policy.attempts or not planned["fits"]

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        seconds = state.upcoming_sleep
        budget.waited += seconds
        invocation = budgets.current()
        if _testing and invocation is not None:
            invocation.charge(seconds)
        log.warning(
            "retrying %s after %s (attempt %d/%d, waiting %.1fs)",
            what,
            _short(exc),
            state.attempt_number,
            policy.attempts,
            seconds,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=wait,
        stop=stop,
        sleep=_sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn, *args, **kwargs)
    except Exception as exc:
        error = translate(exc, what)
        if error is exc:
            raise
        raise error from exc


def _short(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    status = status_of(exc)
    return f"{type(exc).__name__} (HTTP {status})" if status else type(exc).__name__
