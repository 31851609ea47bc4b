"""Azure ML system events as the embedded platform emits them, and where they go.

Events use the Event Grid schema with camelCase data keys, as real Azure ML deliveries do.
``WebhookEventSink`` delivers them like Event Grid: one event per POST (as a JSON array), from
a background thread, at least once, retried with exponential backoff on connection errors and
retryable statuses; a missing or down receiver never blocks or crashes the platform.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger("embedded.events")

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
WORKSPACE_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/local"
    "/providers/Microsoft.MachineLearningServices/workspaces/local"
)
AZUREML_TOPIC = WORKSPACE_ID
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"

Event = dict[str, Any]


def utc_iso(at: datetime | None = None) -> str:
    """``2026-01-02T03:04:05.123456Z``: ISO 8601 in UTC, as Event Grid writes eventTime."""
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def azureml_event(
    event_type: str, subject: str, data: dict[str, Any], *, at: datetime | None = None
) -> Event:
    """One event in the Event Grid schema, from the local workspace's topic, with a unique id."""
    return {
        "id": str(uuid.uuid4()),
        "topic": AZUREML_TOPIC,
        "subject": subject,
        "eventType": event_type,
        "eventTime": utc_iso(at),
        "data": data,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


class EventSink(Protocol):
    """Where the platform's events go. ``emit`` must not block for long and must not raise."""

    def emit(self, event: Event) -> None: ...


class ListEventSink:
    """Keeps every event in ``events`` (for tests and demos)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()

    def emit(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of_type(self, event_type: str) -> list[Event]:
        """Events whose type is ``event_type`` or ends with ``.event_type``."""
        with self._cond:
            return [
                e
                for e in self.events
                if e["eventType"] == event_type or e["eventType"].endswith("." + event_type)
            ]

    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(events)`` holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(list(self.events)), timeout)


# Statuses Event Grid never retries: the event is dropped (or dead-lettered) at once.
NOT_RETRIED = frozenset({400, 401, 403, 413})

# (url, body, headers, timeout) -> HTTP status; raises OSError when no answer came.
Poster = Callable[[str, bytes, dict[str, str], float], int]


def urllib_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to try one event: attempts, backoff and total age before giving up."""

    max_attempts: int = 10
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_age_s: float = 900.0
    timeout_s: float = 10.0
    jitter: float = 0.2  # +- fraction of each backoff

    def backoff(self, attempts: int) -> float:
        base = min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** max(0, attempts - 1))
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))  # noqa: S311


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    event: Event = field(compare=False)
    attempts: int = field(default=0, compare=False)
    first_at: float = field(default=0.0, compare=False)


class WebhookEventSink:
    """POSTs each event as ``[event]`` to an Event Grid webhook, like Event Grid would.

    ``url`` is the full webhook address, e.g.
    ``http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=azureml_events``;
    ``key`` goes in the ``x-functions-key`` header. Success is 200-204. Connection errors and
    other statuses are retried with exponential backoff until ``policy.max_attempts`` or
    ``policy.max_age_s``; 400/401/403/413 are dropped at once. Every drop is logged.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        policy: DeliveryPolicy | None = None,
        max_pending: int = 10_000,
        post: Poster | None = None,
    ) -> None:
        self.url = url
        self._key = key
        self.policy = policy or DeliveryPolicy()
        self._max_pending = max_pending
        self._post = post or urllib_post
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._inflight = 0
        self._closed = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self.dropped = 0
        self.attempts = 0

    def emit(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                log.warning("event %s not sent: sink is closed", event.get("id"))
                self.dropped += 1
                return
            if len(self._heap) >= self._max_pending:
                log.error("event %s dropped: %d events pending", event.get("id"), len(self._heap))
                self.dropped += 1
                return
            now = time.monotonic()
            heapq.heappush(self._heap, _Pending(now, next(self._seq), event, 0, now))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webhook-event-sink", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._inflight

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is pending; False if some events are still pending at timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._heap and not self._inflight, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting events, try to deliver what is pending for up to ``timeout`` s."""
        with self._cond:
            self._closed = True
        self.flush(timeout)
        with self._cond:
            self._stop = True
            left = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
            self.dropped += left
        if left:
            log.error("event sink closed with %d undelivered events (dropped)", left)
        if thread is not None:
            thread.join(timeout=self.policy.timeout_s + 1)

    # -- worker ---------------------------------------------------------------------------

    def _next_due(self) -> _Pending | None:
        with self._cond:
            while True:
                if self._stop:
                    return None
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    self._inflight += 1
                    return heapq.heappop(self._heap)
                wait = self._heap[0].due - now if self._heap else None
                self._cond.wait(wait)

    def _run(self) -> None:
        while (item := self._next_due()) is not None:
            retry_at: float | None = None
            try:
                retry_at = self._attempt(item)
            except Exception:  # never let the worker die
                log.exception("event %s: unexpected delivery failure", item.event.get("id"))
            with self._cond:
                self._inflight -= 1
                if retry_at is not None and self._stop:
                    self.dropped += 1
                    log.error("event %s dropped: sink closed", item.event.get("id"))
                elif retry_at is not None:
                    item.due = retry_at
                    heapq.heappush(self._heap, item)
                self._cond.notify_all()

    def _count(self, counter: str) -> None:
        with self._cond:
            setattr(self, counter, getattr(self, counter) + 1)

    def _attempt(self, item: _Pending) -> float | None:
        """Deliver once; the monotonic time of the next try, or None when done with it."""
        item.attempts += 1
        self._count("attempts")
        event_id = item.event.get("id")
        body = json.dumps([item.event]).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            "aeg-delivery-count": str(item.attempts - 1),
            "x-functions-key": self._key,
        }
        try:
            status: int | None = self._post(self.url, body, headers, self.policy.timeout_s)
            problem = f"HTTP {status}"
        except OSError as exc:
            status = None
            problem = f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status <= 204:
            self._count("delivered")
            return None
        if status in NOT_RETRIED:
            self._count("dropped")
            log.error("event %s dropped: %s is not retried", event_id, problem)
            return None
        now = time.monotonic()
        delay = self.policy.backoff(item.attempts)
        if item.attempts >= self.policy.max_attempts or (
            now + delay - item.first_at > self.policy.max_age_s
        ):
            self._count("dropped")
            log.error(
                "event %s dropped after %d attempts (last: %s)", event_id, item.attempts, problem
            )
            return None
        log.warning(
            "event %s: delivery attempt %d failed (%s); retrying in %.2fs",
            event_id,
            item.attempts,
            problem,
            delay,
        )
        return now + delay
