"""Ports: what the handlers need from the outside world, as Protocols.

Each port has an Azure adapter and an embedded (offline) adapter; tests use fakes that keep
their state as plain data. Handlers import only this module, never an SDK.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from shared.ground_truth import Labelled
from shared.model import (
    AuditEntry,
    AuditRecord,
    Cycle,
    HealthSample,
    JobInfo,
    JobRequest,
    VerifyResult,
)
from shared.sequential import RequestSample


class Clock(Protocol):
    def now(self) -> datetime: ...


class Claim(enum.StrEnum):
    """Outcome of claiming a delivered event's dedup key."""

    NEW = "new"  # first delivery: process it
    DUPLICATE = "duplicate"  # already processed: acknowledge, do nothing
    IN_PROGRESS = "in_progress"  # a worker holds an unexpired lease: ask the sender to retry
    RETRY = "retry"  # an earlier attempt's lease expired unfinished: process it again


class StateStore(Protocol):
    """Dedup keys, cycles, per-model active-cycle lock, cooldowns, pending signals.

    Every write that decides "who acts" is conditional (insert-if-absent, update-if-version),
    so concurrent processes sharing one store act once.
    """

    # -- delivery dedup (key = source|type|subject|id of the delivered event)
    def claim_delivery(self, key: str, now: datetime, lease_s: float, owner: str = "") -> Claim:
        """NEW or RETRY: ``owner`` now holds the key's lease until ``now + lease_s``."""
        ...

    def finish_delivery(self, key: str, now: datetime) -> None: ...
    def claim_deliveries(
        self, keys: Sequence[str], now: datetime, lease_s: float, owner: str = ""
    ) -> list[Claim]:
        """``claim_delivery`` of each (distinct) key, in one store transaction where the
        store has them (SQLite); in order."""
        ...

    def finish_deliveries(self, keys: Sequence[str], now: datetime) -> None:
        """``finish_delivery`` of each key, in one store transaction where it can."""
        ...

    def release_delivery(self, key: str, owner: str = "") -> None:
        """Drop the claim so a redelivery is processed again -- only while ``owner`` holds it
        (a worker whose lease expired and was taken over must not free the new holder's)."""
        ...

    def purge_deliveries(self, done_before: datetime, limit: int) -> int:
        """Forget up to ``limit`` delivery keys finished before ``done_before``; how many.

        Keys under a lease are never purged. Callers keep keys longer than any sender retries
        (Event Grid: 24 hours), so a purged key cannot come back as a redelivery.
        """
        ...

    # -- cycles
    def create_cycle(self, cycle: Cycle) -> str | None:
        """Insert ``cycle`` and take its model's active lock atomically.

        Returns None on success (the stored version is ``cycle.version + 1`` and the passed
        object's ``version`` is bumped to match, as ``save_cycle`` does), else the id of the
        model's already-active cycle (nothing is written then).
        """
        ...

    def save_cycle(self, cycle: Cycle) -> None:
        """Write ``cycle`` if its stored version equals ``cycle.version``; then bump it.

        Raises ConcurrencyError when the stored version differs. Closing a cycle
        (inactive state) releases its model's lock and records the model's last close time.
        """
        ...

    def get_cycle(self, cycle_id: str) -> Cycle | None: ...
    def active_cycle(self, model: str) -> Cycle | None: ...
    def find_cycle_by_job(self, job_name: str) -> Cycle | None: ...
    def list_cycles(self, model: str | None = None, active_only: bool = False) -> list[Cycle]: ...
    def last_closed_at(self, model: str) -> datetime | None: ...

    # -- pending drift signals for confirmation rules (cleared by Resolved alerts)
    def add_signal(self, model: str, key: str, at: datetime) -> int:
        """Record a pending signal; return how many pending signals the model has."""
        ...

    def count_signals(self, model: str, since: datetime) -> int: ...
    def clear_signals(self, model: str, source: str | None = None) -> int: ...


@runtime_checkable
class Transactional(Protocol):
    """A store that can hold several writes in one transaction (SQLite; not Table Storage)."""

    def transaction(self) -> AbstractContextManager[None]:
        """``with store.transaction():`` -- every write inside commits together, or none.

        Nested inside another, it is a savepoint: undone alone when its block raises.
        """
        ...


@dataclass(frozen=True, slots=True)
class Intent:
    """A side effect recorded in a transaction, performed after its commit (the outbox).

    ``kind`` is ``message`` (follow-up work, ``shared.message_codec``) or ``publish``;
    ``attempts`` counts the tries that failed and left it for a later drain.
    """

    id: int
    kind: str
    body: str
    attempts: int = 0


@runtime_checkable
class Outbox(Transactional, Protocol):
    """Intents written in the same transaction as the state that needs them.

    Each is held by an owner under a lease, like a delivery: the writer performs its own
    after the commit; one whose lease expired (the writer died) is taken by the reconciler.
    Performing one twice is safe: the work it names acts through deterministic names.
    """

    def add_intent(self, kind: str, body: str, now: datetime, lease_s: float, owner: str) -> int:
        """Record an intent held by ``owner`` until ``now + lease_s``; its id."""
        ...

    def take_intents(
        self, now: datetime, lease_s: float, owner: str, *, expired: bool, limit: int
    ) -> list[Intent]:
        """``owner``'s own intents (``expired`` False), or up to ``limit`` whose lease has
        expired, now leased to ``owner`` (``expired`` True); oldest first."""
        ...

    def finish_intent(self, intent_id: int) -> None:
        """The intent was performed: forget it."""
        ...

    def fail_intent(self, intent_id: int) -> int:
        """A try of the intent failed and it stays for a later drain (its lease unchanged):
        count it; how many tries have failed so far (0 if the intent is gone)."""
        ...

    def delivery_claims(self, keys: Sequence[str], now: datetime) -> list[Claim]:
        """What ``claim_deliveries`` would answer, without writing claims: inside a batch's
        transaction, which finishes every key it handles before it commits."""
        ...


class AuditLog(Protocol):
    """Append-only, hash-chained log of every event, decision and action, in one or more
    chains (``AuditRecord.chain``), committed together by anchors (``shared.audit_anchor``)."""

    def append(self, entry: AuditEntry) -> AuditRecord: ...
    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` in order to one chain; a batch of up to 99 is written at once
        (one transaction), all or none."""
        ...

    def query(
        self,
        *,
        model: str | None = None,
        cycle: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]: ...
    def get(self, seq: int, chain: int = 0) -> AuditRecord | None: ...
    def verify(self) -> VerifyResult:
        """Every chain and the anchor chain recomputed; every chain checked against the newest
        anchor (records cut off or rewritten after it are caught)."""
        ...

    def anchor(self) -> AuditRecord:
        """Write an anchor committing every chain's head (the newest one if none moved)."""
        ...

    def get_anchor(self, seq: int) -> AuditRecord | None: ...


class MLPlatform(Protocol):
    """Training jobs, model registry and online endpoints (Azure ML or the embedded platform).

    Deployments, traffic, mirroring and deletions may take the platform minutes. A platform
    may start such an operation and raise ``InProgress`` (a ``TransientError``) instead of
    waiting; repeating the same call later checks on it (and never starts it twice).
    """

    def submit_job(self, request: JobRequest) -> JobInfo:
        """Submit a job under ``request.name``. Raises AlreadyExists if that name is taken."""
        ...

    def get_job(self, name: str) -> JobInfo: ...

    def get_evaluation(self, job_name: str) -> dict[str, Any]:
        """The evaluation document the training job wrote (its schema: shared.gate)."""
        ...

    def register_model(self, model: str, job_name: str, tags: dict[str, str]) -> str:
        """Register the job's model output; returns the new version. Idempotent per job."""
        ...

    def champion_version(self, model: str, endpoint: str | None) -> str | None: ...

    def set_champion(self, model: str, version: str) -> None:
        """Mark ``version`` as the model's champion (registry alias / tag) after promotion."""
        ...

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        """Create ``deployment`` serving ``model:version`` at 0% traffic.

        Raises AlreadyExists once it exists and is ready, ``InProgress`` while it (or the
        deletion of a same-named one) is still running.
        """
        ...

    def get_traffic(self, endpoint: str) -> dict[str, int]: ...
    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None: ...

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        """Mirror (shadow) a percentage of live traffic to deployments; {} switches it off."""
        ...

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        """Begin deleting ``deployment`` without waiting for it: True once it is gone (a
        missing one counts), False while the platform is still deleting it. Idempotent: call
        again until True. Refused (PermanentError) while it takes live traffic."""
        ...


class Metrics(Protocol):
    """Deployment health for rollout decisions."""

    def deployment_health(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> HealthSample: ...

    def deployment_requests(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> RequestSample:
        """Every request of ``deployment`` in ``[start, end)``: error count and each latency
        (what the sequential canary judge needs, ``rollout.analysis: sequential``)."""
        ...


class LogQueries(Protocol):
    """Log Analytics / Application Insights queries (KQL) the policy asks for."""

    def count(self, query: str, timespan: timedelta) -> int:
        """The single number ``query`` returns over the last ``timespan`` (0 for no row)."""
        ...


class EventPublisher(Protocol):
    """Our own lifecycle events, for others to subscribe to."""

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None: ...


class Wakeups(Protocol):
    """Ask for a reconcile at a given time (a rollout step's bake ends then).

    The local host schedules a one-shot run of its reconcile timer; on Azure there is none
    and the step is checked at the reconcile timer's next tick after ``at``.
    """

    def at(self, when: datetime, why: str) -> None: ...


class ScoredLog(Protocol):
    """The scores deployments gave to live traffic (the scored-input log), for estimation."""

    def scores(
        self, endpoint: str, deployment: str | None, start: datetime, end: datetime, limit: int
    ) -> list[float]:
        """Positive-class scores of live (not mirrored) rows with ``start <= time < end``,
        the newest ``limit`` of them; ``deployment`` None means every deployment."""
        ...


class GroundTruth(Protocol):
    """Labels that arrived later (``estimated_performance.ground_truth``)."""

    def read(self, source: str, start: datetime, end: datetime, *, binary: bool) -> Labelled:
        """Scores and labels of ``source``'s rows with ``start <= time < end``; OSError when
        the source cannot be read, TransientError when its store is briefly unavailable."""
        ...
