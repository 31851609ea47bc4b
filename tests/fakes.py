"""Fakes for the ports: state as plain data, behaviour as the real adapters promise it."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.audit_anchor import Head, anchor_entry
from shared.errors import (
    AlreadyExists,
    ConcurrencyError,
    InProgress,
    NotFound,
    PermanentError,
    TransientError,
)
from shared.messagebus import Services, Settings
from shared.model import (
    AuditEntry,
    AuditRecord,
    Cycle,
    HealthSample,
    JobInfo,
    JobRequest,
    JobStatus,
    VerifyResult,
)
from shared.policy import Policy, parse_policy
from shared.ports import Claim
from shared.sequential import RequestSample

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeStore:
    def __init__(self) -> None:
        self.deliveries: dict[str, tuple[str, datetime]] = {}
        self.owners: dict[str, str] = {}
        self.cycles: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, str] = {}
        self.closed_at: dict[str, datetime] = {}
        self.signals: dict[str, dict[str, datetime]] = {}

    def claim_delivery(self, key: str, now: datetime, lease_s: float, owner: str = "") -> Claim:
        found = self.deliveries.get(key)
        if found is None:
            self.deliveries[key] = ("claimed", now + timedelta(seconds=lease_s))
            self.owners[key] = owner
            return Claim.NEW
        status, until = found
        if status == "done":
            return Claim.DUPLICATE
        if until > now:
            return Claim.IN_PROGRESS
        self.deliveries[key] = ("claimed", now + timedelta(seconds=lease_s))
        self.owners[key] = owner
        return Claim.RETRY

    def finish_delivery(self, key: str, now: datetime) -> None:
        self.deliveries[key] = ("done", now)

    def claim_deliveries(
        self, keys: Sequence[str], now: datetime, lease_s: float, owner: str = ""
    ) -> list[Claim]:
        return [self.claim_delivery(key, now, lease_s, owner) for key in keys]

    def finish_deliveries(self, keys: Sequence[str], now: datetime) -> None:
        for key in keys:
            self.finish_delivery(key, now)

    def release_delivery(self, key: str, owner: str = "") -> None:
        found = self.deliveries.get(key)
        if found is not None and found[0] == "claimed" and self.owners.get(key) == owner:
            del self.deliveries[key]

    def purge_deliveries(self, done_before: datetime, limit: int) -> int:
        old = [k for k, (status, at) in self.deliveries.items() if status == "done"]
        old = [k for k in old if self.deliveries[k][1] < done_before][: max(limit, 0)]
        for key in old:
            del self.deliveries[key]
        return len(old)

    def create_cycle(self, cycle: Cycle) -> str | None:
        if cycle.model in self.locks:
            return self.locks[cycle.model]
        if cycle.id in self.cycles:  # as the real stores: a closed cycle is never overwritten
            raise AlreadyExists(f"cycle {cycle.id} already exists (and is closed)")
        self.locks[cycle.model] = cycle.id
        cycle.version += 1
        self.cycles[cycle.id] = copy.deepcopy(cycle.to_json())
        return None

    def save_cycle(self, cycle: Cycle) -> None:
        stored = self.cycles.get(cycle.id)
        if stored is None or stored["version"] != cycle.version:
            raise ConcurrencyError(f"cycle {cycle.id} changed")
        cycle.version += 1
        self.cycles[cycle.id] = copy.deepcopy(cycle.to_json())
        if not cycle.is_active and self.locks.get(cycle.model) == cycle.id:
            del self.locks[cycle.model]
            self.closed_at[cycle.model] = cycle.updated_at

    def get_cycle(self, cycle_id: str) -> Cycle | None:
        data = self.cycles.get(cycle_id)
        return Cycle.from_json(copy.deepcopy(data)) if data else None

    def must(self, cycle_id: str) -> Cycle:
        cycle = self.get_cycle(cycle_id)
        assert cycle is not None, f"no cycle {cycle_id}"
        return cycle

    def active_cycle(self, model: str) -> Cycle | None:
        cycle_id = self.locks.get(model)
        return self.get_cycle(cycle_id) if cycle_id else None

    def find_cycle_by_job(self, job_name: str) -> Cycle | None:
        for data in self.cycles.values():
            if data.get("job_name") == job_name:
                return Cycle.from_json(copy.deepcopy(data))
        return None

    def list_cycles(self, model: str | None = None, active_only: bool = False) -> list[Cycle]:
        cycles = [Cycle.from_json(copy.deepcopy(d)) for d in self.cycles.values()]
        cycles = [
            c
            for c in cycles
            if (model is None or c.model == model) and (not active_only or c.is_active)
        ]
        return sorted(cycles, key=lambda c: c.created_at, reverse=True)

    def last_closed_at(self, model: str) -> datetime | None:
        return self.closed_at.get(model)

    def add_signal(self, model: str, key: str, at: datetime) -> int:
        self.signals.setdefault(model, {}).setdefault(key, at)
        return len(self.signals[model])

    def count_signals(self, model: str, since: datetime) -> int:
        return sum(1 for at in self.signals.get(model, {}).values() if at >= since)

    def clear_signals(self, model: str, source: str | None = None) -> int:
        pending = self.signals.get(model, {})
        gone = [k for k in pending if source is None or k.startswith(source)]
        for k in gone:
            del pending[k]
        return len(gone)


class FakeAudit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.anchors: list[AuditRecord] = []

    def append(self, entry: AuditEntry) -> AuditRecord:
        json.dumps(entry.evidence, default=str)  # evidence must be serialisable
        prev = self.records[-1].hash if self.records else "0" * 64
        record = AuditRecord(
            seq=len(self.records) + 1,
            time=T0,
            kind=entry.kind,
            summary=entry.summary,
            actor=entry.actor,
            model=entry.model,
            version=entry.version,
            cycle=entry.cycle,
            reason=entry.reason,
            evidence=entry.evidence,
            caused_by=entry.caused_by,
            prev_hash=prev,
            hash=hashlib.sha256(f"{prev}{entry}".encode()).hexdigest(),
        )
        self.records.append(record)
        return record

    def query(
        self,
        *,
        model: str | None = None,
        cycle: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        out = [
            r
            for r in self.records
            if (model is None or r.model == model)
            and (cycle is None or r.cycle == cycle)
            and (kind is None or r.kind == kind)
        ]
        return out[-limit:] if limit else out

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        return [self.append(entry) for entry in entries]

    def get(self, seq: int, chain: int = 0) -> AuditRecord | None:
        if chain != 0:
            return None
        return self.records[seq - 1] if 0 < seq <= len(self.records) else None

    def verify(self) -> VerifyResult:
        return VerifyResult(True, len(self.records))

    def anchor(self) -> AuditRecord:
        """An anchor of the one chain, kept apart from the records."""
        head = self.records[-1] if self.records else None
        heads = [Head(0, head.seq, head.hash) if head else Head(0, 0, "0" * 64)]
        if (
            not self.anchors
            or self.anchors[-1].evidence["heads"] != anchor_entry(heads).evidence["heads"]
        ):
            entry = anchor_entry(heads)
            self.anchors.append(replace(self.append(entry), seq=len(self.anchors) + 1, chain=-1))
            self.records.pop()
        return self.anchors[-1]

    def get_anchor(self, seq: int) -> AuditRecord | None:
        return self.anchors[seq - 1] if 0 < seq <= len(self.anchors) else None

    def summaries(self, kind: str | None = None) -> list[str]:
        return [r.summary for r in self.records if kind is None or r.kind == kind]


@dataclass
class FakePlatform:
    """Jobs finish when a test says so; evaluations are what the test puts in."""

    jobs: dict[str, JobInfo] = field(default_factory=dict)
    submitted: list[JobRequest] = field(default_factory=list)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    registered: list[tuple[str, str, str]] = field(default_factory=list)  # model, version, job
    champions: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, dict[str, str]] = field(default_factory=dict)  # endpoint -> dep -> ver
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    traffic_changes: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    mirrors: dict[str, dict[str, int]] = field(default_factory=dict)
    ignore_traffic_changes: bool = False
    delete_failures: int = 0  # how many delete calls fail transiently first
    fail_creates: bool = False
    # operation name -> how many calls answer InProgress first (the change not applied yet)
    in_progress: dict[str, int] = field(default_factory=dict)
    created: list[tuple[str, str, str, str]] = field(default_factory=list)  # ep, dep, model, v
    champion_failures: int = 0  # how many set_champion calls fail transiently first
    served: dict[str, str] = field(default_factory=dict)  # endpoint -> version its live serves

    def _still_running(self, operation: str, what: str) -> None:
        if self.in_progress.get(operation, 0) > 0:
            self.in_progress[operation] -= 1
            raise InProgress(f"{operation} {what}: operation still running")

    def submit_job(self, request: JobRequest) -> JobInfo:
        if request.name in self.jobs:
            raise AlreadyExists(request.name)
        info = JobInfo(request.name, JobStatus.QUEUED, dict(request.tags))
        self.jobs[request.name] = info
        self.submitted.append(request)
        return info

    def get_job(self, name: str) -> JobInfo:
        if name not in self.jobs:
            raise NotFound(name)
        return self.jobs[name]

    def finish(self, name: str, status: JobStatus = JobStatus.COMPLETED, error: str = "") -> None:
        self.jobs[name] = JobInfo(name, status, self.jobs[name].tags, error)

    def get_evaluation(self, job_name: str) -> dict[str, Any]:
        if job_name not in self.evaluations:
            raise NotFound(f"no evaluation for {job_name}")
        return self.evaluations[job_name]

    def register_model(self, model: str, job_name: str, tags: dict[str, str]) -> str:
        for m, v, j in self.registered:
            if m == model and j == job_name:
                return v
        # versions count up from the highest the registry holds, the champion's included
        held = [int(v) for m, v, _ in self.registered if m == model and v.isdigit()]
        champion = self.champions.get(model, "")
        version = str(max([*held, int(champion) if champion.isdigit() else 0]) + 1)
        self.registered.append((model, version, job_name))
        return version

    def champion_version(self, model: str, endpoint: str | None) -> str | None:
        if endpoint and endpoint in self.served:  # as on Azure: the endpoint's live version
            return self.served[endpoint]
        return self.champions.get(model)

    def set_champion(self, model: str, version: str) -> None:
        if self.champion_failures:
            self.champion_failures -= 1
            raise TransientError(f"setting the champion of {model}: registry unavailable")
        self.champions[model] = version

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        deps = self.deployments.setdefault(endpoint, {})
        if deployment in deps:
            raise AlreadyExists(deployment)
        self._still_running("create_deployment", deployment)
        self.created.append((endpoint, deployment, model, version))
        deps[deployment] = version
        self.traffic.setdefault(endpoint, {})[deployment] = 0
        if self.fail_creates:  # like Azure: the deployment exists, in state Failed
            raise PermanentError(f"deployment {deployment} failed to provision")

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        return dict(self.traffic.get(endpoint, {}))

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        unknown = set(traffic) - set(self.deployments.get(endpoint, {}))
        if unknown:
            raise PermanentError(f"unknown deployments {sorted(unknown)}")
        self._still_running("set_traffic", endpoint)
        self.traffic_changes.append((endpoint, dict(traffic)))
        if not self.ignore_traffic_changes:
            self.traffic[endpoint] = {**self.traffic.get(endpoint, {}), **traffic}

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        unknown = set(mirror) - set(self.deployments.get(endpoint, {}))
        if unknown:
            raise PermanentError(f"unknown deployments {sorted(unknown)}")
        self._still_running("set_mirror", endpoint)
        self.mirrors[endpoint] = dict(mirror)

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        if self.delete_failures:
            self.delete_failures -= 1
            raise TransientError(f"deleting {deployment}: service unavailable")
        if self.traffic.get(endpoint, {}).get(deployment):
            raise PermanentError(f"deployment {deployment} takes traffic")
        self.deployments.get(endpoint, {}).pop(deployment, None)
        self.traffic.get(endpoint, {}).pop(deployment, None)
        return True


@dataclass
class FakeMetrics:
    """Health per deployment, as the test sets it."""

    samples: dict[str, HealthSample] = field(default_factory=dict)
    default: HealthSample = field(default_factory=lambda: HealthSample(0, 0, None))

    # per-request data for the sequential judge: (at, error, latency_ms) per deployment
    requests: dict[str, list[tuple[datetime, bool, float]]] = field(default_factory=dict)
    asked: list[tuple[str, str, datetime, datetime]] = field(default_factory=list)  # health reads
    failure: Exception | None = None  # raised by every health read while set

    def deployment_health(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> HealthSample:
        self.asked.append((endpoint, deployment, start, end))
        if self.failure is not None:
            raise self.failure
        return self.samples.get(deployment, self.default)

    def deployment_requests(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> RequestSample:
        rows = [r for r in self.requests.get(deployment, []) if start <= r[0] < end]
        return RequestSample(len(rows), sum(1 for r in rows if r[1]), tuple(r[2] for r in rows))

    def serve(
        self, deployment: str, start: datetime, seconds: float, count: int, errors: int, ms: float
    ) -> None:
        """Record ``count`` requests spread over ``seconds`` from ``start``; the first
        ``errors`` of every ``count`` failed; latencies ``ms`` (slightly spread)."""
        rows = self.requests.setdefault(deployment, [])
        for i in range(count):
            at = start + timedelta(seconds=seconds * i / count)
            rows.append((at, i * errors // count != (i + 1) * errors // count, ms + (i % 20)))


@dataclass
class FakeWakeups:
    """Reconciles asked for, in the order asked: (when, why)."""

    asked: list[tuple[datetime, str]] = field(default_factory=list)

    def at(self, when: datetime, why: str) -> None:
        self.asked.append((when, why))


@dataclass
class FakeScoredLog:
    """Scores served per (endpoint, deployment), each with its time, as the test adds them."""

    rows: dict[tuple[str, str], list[tuple[datetime, float]]] = field(default_factory=dict)
    failures: int = 0  # how many reads fail transiently first
    reads: int = 0

    def add(self, endpoint: str, deployment: str, at: datetime, scores: Any) -> None:
        self.rows.setdefault((endpoint, deployment), []).extend((at, float(s)) for s in scores)

    def scores(
        self, endpoint: str, deployment: str | None, start: datetime, end: datetime, limit: int
    ) -> list[float]:
        self.reads += 1
        if self.failures:
            self.failures -= 1
            raise TransientError("blob storage unavailable")
        found = [
            (at, score)
            for (ep, dep), items in self.rows.items()
            if ep == endpoint and deployment in (None, dep)
            for at, score in items
            if start <= at < end
        ]
        found.sort(key=lambda item: item[0])
        return [score for _, score in found[-limit:]]


@dataclass
class FakePublisher:
    published: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        self.published.append((event_type, subject, data))

    def types(self) -> list[str]:
        return [t for t, _, _ in self.published]


POLICY: dict[str, Any] = {
    "defaults": {"cooldown": "1h"},
    "models": {
        "credit": {
            "signals": {
                "drift_alerts": ["credit-drift"],
                "health_alerts": ["credit-endpoint-errors"],
                "monitors": [{"name": "credit-monitor"}],
                "datadrift": ["myDriftMonitor"],
            },
            "training": {
                "experiment": "credit-retrain",
                "command": ["{python}", "train.py", "--outputs", "{outputs}"],
                "inputs": {"window": "7d"},
            },
            "gate": {
                "primary_metric": "auc",
                "min_improvement": 0.01,
                "guardrails": [{"metric": "accuracy", "tolerance": 0.02}],
                "floors": [{"metric": "auc", "min": 0.6}],
            },
            "rollout": {
                "endpoint": "credit-ep",
                "steps": [10, 50, 100],
                "bake": "5m",
                "health": {"min_requests": 20, "max_error_rate": 0.05},
            },
        },
    },
}


def make_policy(**overrides: Any) -> Policy:
    """The test policy, with ``models.credit`` fields overridden by dotted keys."""
    data = copy.deepcopy(POLICY)
    for dotted, value in overrides.items():
        node = data["models"]["credit"]
        *path, last = dotted.split("__")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return parse_policy(data, "test-policy")


@dataclass
class World:
    """A bus over fakes, and the fakes to look at afterwards."""

    services: Services
    store: FakeStore
    audit: FakeAudit
    platform: FakePlatform
    metrics: FakeMetrics
    publisher: FakePublisher
    clock: FakeClock
    wakeups: FakeWakeups = field(default_factory=FakeWakeups)
    scored: FakeScoredLog = field(default_factory=FakeScoredLog)


def make_world(policy: Policy | None = None) -> World:
    store, audit, platform = FakeStore(), FakeAudit(), FakePlatform()
    metrics, publisher, clock = FakeMetrics(), FakePublisher(), FakeClock()
    wakeups, scored = FakeWakeups(), FakeScoredLog()
    services = Services(
        store=store,
        audit=audit,
        platform=platform,
        metrics=metrics,
        publisher=publisher,
        policy=policy or make_policy(),
        clock=clock,
        settings=Settings(),
        wakeups=wakeups,
        scored=scored,
    )
    return World(services, store, audit, platform, metrics, publisher, clock, wakeups, scored)
