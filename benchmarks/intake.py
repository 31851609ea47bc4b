"""Intake throughput and latency: Event Grid batches through parse -> dedup -> route -> audit.

The workload is an event storm as a workspace produces it: most events are redeliveries
(duplicates) or events no model is bound to (runs of other teams going Running/Completed,
deployments, monitors of other models), and a tenth are drift signals bound to a model in the
policy, which start a retraining cycle (fake platform: job submitted) or coalesce into the
active one. In ``live`` mode the jobs the fake platform accepted fail in the next batch, which
closes the cycle (cooldown 0), so cycles keep starting and closing throughout the run.

Variants, all measured in the same run on the same event stream:

- ``json.loads only`` (baseline): the floor any Python intake pays;
- in process, ``memory`` store (baseline): the pipeline over the in-memory fakes of the tests,
  showing what the SQLite store and audit log add;
- in process, ``sqlite``: the real pipeline on ``SqliteStateStore`` + ``SqliteAuditLog``;
- over HTTP: ``autopilot serve`` (local Functions host, SQLite, embedded platform) receiving
  the batches at ``/runtime/webhooks/eventgrid?functionName=azureml_events``. Its policy is
  in ``observe`` mode (no jobs: the embedded platform would start real subprocesses), so the
  in-process ``sqlite observe`` variant is its like-for-like comparison.

In process, each batch is parsed and validated whole (``parse_delivery`` + ``normalise_azureml``
per event, as ``autopilot serve`` does before applying anything), then each event is delivered
with a fresh bus. Per-event latency is timed around ``envelope_from_dict`` + ``bootstrap`` +
``deliver_azureml``; the batch validation is reported separately and included in events/s.
"""

from __future__ import annotations

import gc
import http.client
import json
import random
import sqlite3
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import pinned, process_cpu_seconds, summary
from composition.bootstrap import bootstrap
from composition.delivery import deliver_azureml
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.envelope import envelope_from_dict, parse_delivery
from shared.messagebus import Services
from shared.normalise import normalise_azureml
from shared.policy import Policy, parse_policy
from shared.ports import AuditLog, StateStore
from tests.fakes import FakeAudit, FakeMetrics, FakePlatform, FakePublisher, FakeStore

TARGET_EVENTS_PER_S = 5000.0
TARGET_P99_S = 0.002
AML = "Microsoft.MachineLearningServices."
TOPIC = (
    "/subscriptions/6a3a1b0c-1d2e-4f50-9a8b-0c1d2e3f4a5b/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/ml-prod-ws"
)
BATCH_SIZE = 100
HTTP_KEY = "k-bench-0123456789abcdefghijkl"
EVENTGRID_PATH = "/runtime/webhooks/eventgrid?functionName=azureml_events"


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of a batch (the rest after ``duplicate`` is new events)."""

    duplicate: float = 0.5  # redelivery of an event already processed
    running: float = 0.2  # RunStatusChanged Running/Finalizing of someone's job: not terminal
    foreign_done: float = 0.05  # RunCompleted of a job no cycle submitted
    deployed: float = 0.05  # ModelDeployed: recorded only
    unbound_drift: float = 0.1  # v2 monitor breach / v1 drift of a monitor no model is bound to
    drift: float = 0.1  # bound drift signal: starts a cycle or coalesces into the active one

    def kinds(self) -> list[tuple[str, float]]:
        return [(k, v) for k, v in asdict(self).items() if v > 0]


# -- workload -------------------------------------------------------------------------------


def model_name(i: int) -> str:
    return f"m{i:04d}"


def policy_data(models: int, *, mode: str = "live") -> dict[str, Any]:
    """A policy with ``models`` models, each bound to its own monitor, v1 drift monitor and
    alert rule. Cooldown 0, so a model whose cycle closed can start the next at once."""
    specs: dict[str, Any] = {}
    for i in range(models):
        name = model_name(i)
        specs[name] = {
            "signals": {
                "drift_alerts": [f"{name}-drift"],
                "monitors": [{"name": f"{name}-monitor"}],
                "datadrift": [f"{name}-datadrift"],
            },
            "training": {
                "experiment": f"{name}-retrain",
                "command": ["{python}", "-c", "pass"],
            },
            "gate": {"primary_metric": "auc"},
            "rollout": {"endpoint": f"{name}-ep"},
        }
    return {"version": 1, "defaults": {"mode": mode, "cooldown": "0s"}, "models": specs}


def build_policy(models: int, *, mode: str = "live") -> Policy:
    return parse_policy(policy_data(models, mode=mode), f"bench-{models}-{mode}")


class EventStream:
    """A reproducible stream of Azure ML events (Event Grid schema, camelCase data)."""

    def __init__(self, models: int, mix: Mix | None = None, seed: int = 7) -> None:
        self.models = models
        self.mix = mix or Mix()
        self.rng = random.Random(seed)
        self.delivered: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []  # job-failed events for our submitted jobs
        self.counts: Counter[str] = Counter()
        self._kinds, self._weights = zip(*self.mix.kinds(), strict=True)
        self._seen_jobs: set[str] = set()
        self.last_kinds: list[str] = []

    def _id(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _run(
        self,
        run_id: str,
        status: str | None,
        *,
        experiment: str,
        tags: dict[str, str] | None = None,
        event_type: str = "RunStatusChanged",
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "experimentId": self._id(),
            "experimentName": experiment,
            "runId": run_id,
            "runType": "azureml.scriptrun",
            "runTags": tags or {},
            "runProperties": {
                "_azureml.ComputeTargetType": "amlcompute",
                "ContentSnapshotId": self._id(),
                "azureml.git.repository_uri": "https://example.invalid/team/repo.git",
                "azureml.git.branch": "main",
                "mlflow.source.git.commit": f"{self.rng.getrandbits(160):040x}",
                "ProcessInfoFile": "azureml-logs/process_info.json",
                "ProcessStatusFile": "azureml-logs/process_status.json",
            },
        }
        if status is not None:
            data["runStatus"] = status
        return {
            "topic": TOPIC,
            "subject": f"experiments/{data['experimentId']}/runs/{run_id}",
            "eventType": AML + event_type,
            "eventTime": "2026-01-01T12:00:00.0000000Z",
            "id": self._id(),
            "data": data,
            "dataVersion": "2",
            "metadataVersion": "1",
        }

    def _new(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        model = model_name(rng.randrange(self.models))
        if kind == "running":
            status = rng.choice(("Running", "Finalizing", "Queued", "Preparing"))
            return self._run(f"team_job_{self._id()[:13]}", status, experiment="team-experiment")
        if kind == "foreign_done":
            return self._run(
                f"team_job_{self._id()[:13]}", None, experiment="team", event_type="RunCompleted"
            )
        if kind == "deployed":
            return {
                "topic": TOPIC,
                "subject": "endpoints/team-endpoint",
                "eventType": AML + "ModelDeployed",
                "eventTime": "2026-01-01T12:00:00Z",
                "id": self._id(),
                "data": {
                    "serviceName": "team-endpoint",
                    "serviceComputeType": "Managed",
                    "modelIds": "team_model:3,team_model:4",
                    "serviceTags": {"area": "ops"},
                    "serviceProperties": {},
                },
                "dataVersion": "2",
                "metadataVersion": "1",
            }
        monitor = "other-team-monitor" if kind == "unbound_drift" else f"{model}-monitor"
        if rng.random() < 0.5:  # v2 model monitor breach
            return self._run(
                f"{monitor}-run-{self._id()[:8]}",
                "Failed",
                experiment=monitor,
                tags={
                    "azureml_modelmonitor_threshold_breached": f"Monitor {monitor} signal "
                    "data-drift has failed due to one or more features violating thresholds"
                },
            )
        drift = "other-team-datadrift" if kind == "unbound_drift" else f"{model}-datadrift"
        return {
            "topic": TOPIC,
            "subject": f"datadrifts/{self._id()}/runs/{self._id()}",
            "eventType": AML + "DatasetDriftDetected",
            "eventTime": "2026-01-01T12:00:00Z",
            "id": self._id(),
            "data": {
                "dataDriftId": self._id(),
                "dataDriftName": drift,
                "runId": self._id(),
                "baseDatasetId": self._id(),
                "targetDatasetId": self._id(),
                "driftCoefficient": round(rng.uniform(0.3, 0.9), 6),
                "startTime": "2026-01-01T00:00:00+00:00",
                "endTime": "2026-01-02T00:00:00+00:00",
            },
            "dataVersion": "2",
            "metadataVersion": "1",
        }

    def note_jobs(self, platform: FakePlatform) -> None:
        """Queue a job-failed event (next batch) for every job the platform accepted."""
        for request in platform.submitted:
            if request.name in self._seen_jobs:
                continue
            self._seen_jobs.add(request.name)
            self.failures.append(
                self._run(request.name, "Failed", experiment=request.experiment, tags=request.tags)
            )

    def batch(self, size: int) -> list[dict[str, Any]]:
        """The next ``size`` events; their kinds are in ``last_kinds``."""
        events: list[dict[str, Any]] = []
        kinds: list[str] = []
        self.last_kinds = kinds
        while self.failures and len(events) < size:
            events.append(self.failures.pop())
            kinds.append("job_failed")
            self.counts["job_failed"] += 1
        while len(events) < size:
            kind = self.rng.choices(self._kinds, self._weights)[0]
            if kind == "duplicate":
                if not self.delivered:
                    continue
                events.append(self.delivered[self.rng.randrange(len(self.delivered))])
            else:
                event = self._new(kind)
                self.delivered.append(event)
                events.append(event)
            kinds.append(kind)
            self.counts[kind] += 1
        return events


# -- in-process pipeline ----------------------------------------------------------------------


def make_services(
    store: str, policy: Policy, folder: Path
) -> tuple[Services, FakePlatform, list[sqlite3.Connection]]:
    """Services over the fakes, with the SQLite or the in-memory store and audit log; also the
    SQLite connections of this thread (for the inline-checkpoint variant)."""
    platform = FakePlatform()
    state: StateStore
    audit: AuditLog
    connections: list[sqlite3.Connection] = []
    if store == "sqlite":
        sqlite_state = SqliteStateStore(folder / "state.db")
        sqlite_audit = SqliteAuditLog(folder / "audit.db")
        connections = [sqlite_state.db.connection(), sqlite_audit.db.connection()]
        state, audit = sqlite_state, sqlite_audit
    else:
        state, audit = FakeStore(), FakeAudit()
    services = Services(
        store=state,
        audit=audit,
        platform=platform,
        metrics=FakeMetrics(),
        publisher=FakePublisher(),
        policy=policy,
    )
    return services, platform, connections


@dataclass
class Measured:
    events: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    validate_s: float = 0.0
    per_event_s: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    def report(self) -> dict[str, Any]:
        lat = summary(self.per_event_s) if self.per_event_s else {}
        return {
            "events": self.events,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "events_per_s": self.events / self.wall_s if self.wall_s else 0.0,
            "events_per_cpu_s": self.events / self.cpu_s if self.cpu_s else 0.0,
            "validate_per_event_s": self.validate_s / self.events if self.events else 0.0,
            "per_event_s": {k: lat[k] for k in ("median", "p90", "p99", "max", "mean")}
            if lat
            else {},
            "per_event_by_kind_s": {
                kind: {k: v for k, v in summary(times).items() if k in ("n", "median", "p99")}
                for kind, times in sorted(self.by_kind.items())
            },
            "outcomes": dict(self.outcomes),
        }


def deliver_batch(
    services: Services,
    body: bytes,
    measured: Measured,
    kinds: list[str] | None = None,
    platform: FakePlatform | None = None,
) -> None:
    """One delivery as ``autopilot serve`` handles it: validate whole, then apply each event.
    With ``kinds`` (and ``platform``, to tell a cycle start from a coalesced signal), the
    latency is also kept per kind of event."""
    clock = time.perf_counter
    start = clock()
    events = parse_delivery(body)
    policy = services.policy
    for index, event in enumerate(events):
        normalise_azureml(envelope_from_dict(event, index), policy)
    validated = clock()
    measured.validate_s += validated - start
    per_event = measured.per_event_s
    outcomes = measured.outcomes
    for index, event in enumerate(events):
        jobs = len(platform.submitted) if platform is not None else 0
        t0 = clock()
        outcome = deliver_azureml(bootstrap(services), envelope_from_dict(event, index))
        elapsed = clock() - t0
        per_event.append(elapsed)
        outcomes[outcome] += 1
        if kinds is not None:
            kind = kinds[index]
            if kind == "drift" and platform is not None:
                started = len(platform.submitted) > jobs
                kind = "drift: cycle started" if started else "drift: coalesced or dry run"
            measured.by_kind.setdefault(kind, []).append(elapsed)
    measured.events += len(events)


def run_in_process(
    *,
    store: str,
    events: int,
    batch_size: int = BATCH_SIZE,
    models: int = 10,
    mode: str = "live",
    mix: Mix | None = None,
    warmup_events: int = 200,
    cpu: int | None = 0,
    inline_checkpoint: bool = False,
    profile: Callable[[Callable[[], None]], None] | None = None,
) -> dict[str, Any]:
    """The pipeline on one core over ``events`` events (after ``warmup_events`` not counted).

    ``inline_checkpoint`` (SQLite, the "before" of ``shared.adapters.sqlite_db``'s background
    checkpointer): SQLite's default automatic checkpoint every 1,000 WAL pages, inside
    whichever commit crosses it.
    """
    stream = EventStream(models, mix)
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        services, platform, connections = make_services(
            store, build_policy(models, mode=mode), Path(tmp)
        )
        if inline_checkpoint:
            for conn in connections:
                conn.execute("PRAGMA wal_autocheckpoint = 1000")
        warm = Measured()
        while warm.events < warmup_events:
            size = min(batch_size, warmup_events - warm.events)
            deliver_batch(services, json.dumps(stream.batch(size)).encode(), warm)
            stream.note_jobs(platform)
        stream.counts.clear()
        bodies_done = 0
        measured = Measured()

        def work() -> None:
            nonlocal bodies_done
            while measured.events < events:
                body = json.dumps(stream.batch(min(batch_size, events - measured.events)))
                kinds = stream.last_kinds
                cpu0, wall0 = time.process_time(), time.perf_counter()
                deliver_batch(services, body.encode(), measured, kinds, platform)
                measured.wall_s += time.perf_counter() - wall0
                measured.cpu_s += time.process_time() - cpu0
                bodies_done += 1
                stream.note_jobs(platform)

        with pinned(cpu) as used:
            gc.collect()
            if profile is not None:
                profile(work)
            else:
                work()
        result = measured.report()
        result.update(
            store=store,
            mode=mode,
            models=models,
            batch_size=batch_size,
            batches=bodies_done,
            cpu=used,
            mix=dict(stream.counts),
            cycles_started=len(platform.submitted),
        )
        return result


def run_json_only(*, events: int, batch_size: int = BATCH_SIZE, models: int = 10) -> dict[str, Any]:
    """Baseline: ``json.loads`` of the same batches and nothing else."""
    stream = EventStream(models)
    batches = max(1, events // batch_size)
    bodies = [json.dumps(stream.batch(batch_size)).encode() for _ in range(batches)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for body in bodies:
        json.loads(body)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    n = len(bodies) * batch_size
    return {
        "events": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": n / wall if wall else 0.0,
        "events_per_cpu_s": n / cpu if cpu else 0.0,
        "bytes_per_event": sum(len(b) for b in bodies) / n if n else 0,
    }


def store_operations(n: int = 2000, *, cpu: int | None = 0) -> dict[str, Any]:
    """Median/p99 cost of the store calls one event makes, and of an empty write transaction,
    so the per-event cost can be read as a sum of parts (SQLite, one core)."""
    from shared.model import AuditEntry, AuditKind

    def timed(fn: Callable[[int], object]) -> dict[str, float]:
        times: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t0)
        s = summary(times)
        return {k: s[k] for k in ("median", "p99", "mean")}

    entry = AuditEntry(
        kind=AuditKind.IGNORED,
        summary="Microsoft.MachineLearningServices.RunStatusChanged ignored",
        reason="run status 'running' is not terminal",
        evidence={"breach": "x" * 80, "experiment": "team-experiment"},
        caused_by="source|type|subject|id",
    )
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp, pinned(cpu):
        store = SqliteStateStore(Path(tmp) / "state.db")
        audit = SqliteAuditLog(Path(tmp) / "audit.db")
        conn = store.db.connection()

        def empty_transaction(_: int) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")

        results: dict[str, Any] = {"n": n}
        results["empty BEGIN IMMEDIATE/COMMIT"] = timed(empty_transaction)
        results["claim_delivery (new key)"] = timed(
            lambda i: store.claim_delivery(f"k{i}", now, 300)
        )
        results["finish_delivery"] = timed(lambda i: store.finish_delivery(f"k{i}", now))
        results["claim_delivery (duplicate)"] = timed(
            lambda i: store.claim_delivery(f"k{i}", now, 300)
        )
        results["audit append"] = timed(lambda i: audit.append(entry))
        return results


# -- over HTTP --------------------------------------------------------------------------------


@contextmanager
def served(models: int, folder: Path, *, cpu: int | None = 1) -> Iterator[tuple[Any, int | None]]:
    """``autopilot serve`` in a subprocess, pinned to one CPU, with an observe-mode policy."""
    from tests.integration.serve_proc import start_serve

    policy = folder / "policy.yaml"
    policy.write_text(json.dumps(policy_data(models, mode="observe")))  # JSON is YAML
    with pinned(cpu) as used:  # the child inherits the affinity of this thread
        service = start_serve(folder / "data", policy, keys=f"bench={HTTP_KEY}")
    try:
        yield service, used
    finally:
        service.stop()


class Client:
    """One keep-alive connection, as Event Grid holds one per subscription and instance."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def post(self, body: bytes) -> int:
        headers = {
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            "x-functions-key": HTTP_KEY,
        }
        for attempt in (1, 2):
            try:
                self.conn.request("POST", EVENTGRID_PATH, body, headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def run_http(
    *,
    events: int,
    batch_size: int = BATCH_SIZE,
    models: int = 10,
    single_events: int = 200,
    warmup_events: int = 200,
    server_cpu: int | None = 1,
    client_cpu: int | None = 0,
) -> dict[str, Any]:
    """Batches POSTed to ``autopilot serve``: events/s (wall and per server CPU-second) and
    per-batch latency; then ``single_events`` one-event deliveries (Event Grid's default
    ``maxEventsPerBatch`` is 1) for the per-event latency over HTTP."""
    stream = EventStream(models, Mix())
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
        served(models, Path(tmp), cpu=server_cpu) as (service, server_cpu_used),
        pinned(client_cpu),
    ):
        client = Client(service.url)
        try:
            done = 0
            while done < warmup_events:
                status = client.post(json.dumps(stream.batch(batch_size)).encode())
                if status != 200:
                    raise RuntimeError(f"warm-up batch answered {status}: {service.log}")
                done += batch_size
            stream.counts.clear()
            latencies: list[float] = []
            sent = 0
            cpu0 = process_cpu_seconds(service.proc.pid)
            wall0 = time.perf_counter()
            while sent < events:
                size = min(batch_size, events - sent)
                body = json.dumps(stream.batch(size)).encode()
                t0 = time.perf_counter()
                status = client.post(body)
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"batch answered {status}; see {service.log}")
                sent += size
            wall = time.perf_counter() - wall0
            cpu = process_cpu_seconds(service.proc.pid) - cpu0
            singles: list[float] = []
            for _ in range(single_events):
                body = json.dumps(stream.batch(1)).encode()
                t0 = time.perf_counter()
                status = client.post(body)
                singles.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"single event answered {status}; see {service.log}")
        finally:
            client.close()
        batch = summary(latencies)
        single = summary(singles)
        return {
            "events": sent,
            "batch_size": batch_size,
            "models": models,
            "mode": "observe",
            "wall_s": wall,
            "server_cpu_s": cpu,
            "events_per_s": sent / wall if wall else 0.0,
            "events_per_server_cpu_s": sent / cpu if cpu else 0.0,
            "batch_latency_s": {k: batch[k] for k in ("median", "p90", "p99", "max")},
            "per_event_amortised_s": {
                k: batch[k] / batch_size for k in ("median", "p90", "p99", "max")
            },
            "single_event_latency_s": {k: single[k] for k in ("median", "p90", "p99", "max")},
            "single_events": single_events,
            "server_cpu": server_cpu_used,
            "mix": dict(stream.counts),
        }


# -- the benchmark ----------------------------------------------------------------------------


def run(*, events: int = 20_000, http_events: int = 10_000, quick: bool = False) -> dict[str, Any]:
    """Every variant on the same workload (10 models, batches of 100)."""
    if quick:
        events, http_events = min(events, 600), min(http_events, 300)
    warm = min(500, max(100, events // 10))
    variants: dict[str, Any] = {
        "json.loads only (baseline)": run_json_only(events=events),
        "in-process memory live (baseline)": run_in_process(
            store="memory", events=events, warmup_events=warm
        ),
        "in-process sqlite live": run_in_process(store="sqlite", events=events, warmup_events=warm),
        "in-process sqlite live, checkpoints inside commits (before)": run_in_process(
            store="sqlite", events=events, warmup_events=warm, inline_checkpoint=True
        ),
        "in-process sqlite observe": run_in_process(
            store="sqlite", events=events, mode="observe", warmup_events=warm
        ),
        "http serve sqlite observe": run_http(
            events=http_events,
            single_events=min(300, max(20, http_events // 10)),
            warmup_events=warm,
        ),
    }
    main = variants["in-process sqlite live"]
    memory = variants["in-process memory live (baseline)"]
    main_cpu = main["cpu_s"] / main["events"]
    return {
        "workload": {"mix": asdict(Mix()), "batch_size": BATCH_SIZE, "models": 10},
        "variants": variants,
        "store_operations": store_operations(min(2000, events)),
        "store_share_of_cpu": 1 - (memory["cpu_s"] / memory["events"]) / main_cpu,
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "p99_s": TARGET_P99_S},
        "meets_targets": main["events_per_s"] >= TARGET_EVENTS_PER_S
        and main["per_event_s"]["p99"] < TARGET_P99_S,
    }
