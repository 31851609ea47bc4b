"""N deliveries of the same events spread over 4 processes sharing one store -> effects once.

Each process runs its own bus (as separate function instances do) over the same store -- the
SQLite files, or Table Storage on Azurite -- and a platform whose side effects are directories:
creating a name twice fails, as Azure ML's name conflicts do, so every side effect that
happened is counted exactly.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert, deliver_azureml
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.adapters.table_audit import TableAuditLog
from shared.adapters.table_store import TableStateStore
from shared.envelope import envelope_from_dict
from shared.errors import AlreadyExists, NotFound, TransientError
from shared.lifecycle import cycle_id_for, deployment_name_for, job_name_for
from shared.messagebus import Services
from shared.messages import Reconcile
from shared.model import HealthSample, JobInfo, JobRequest, JobStatus
from shared.policy import parse_policy
from shared.ports import AuditLog, StateStore
from tests import payloads
from tests.fakes import POLICY, FakeMetrics, FakePublisher
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)

PROCESSES = 4
ROUNDS = 5


class DirectoryPlatform:
    """Side effects as directories under ``root``: atomic, shared across processes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _create(self, *parts: str) -> None:
        path = self.root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError as exc:
            raise AlreadyExists("/".join(parts)) from exc

    def submit_job(self, request: JobRequest) -> JobInfo:
        self._create("jobs", request.name)
        return JobInfo(request.name, JobStatus.QUEUED)

    def get_job(self, name: str) -> JobInfo:
        if not (self.root / "jobs" / name).exists():
            raise NotFound(name)
        return JobInfo(name, JobStatus.COMPLETED)

    def get_evaluation(self, job_name: str) -> dict[str, Any]:
        return payloads.evaluation({"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.8})

    def register_model(self, model: str, job_name: str, tags: dict[str, str]) -> str:
        with contextlib.suppress(AlreadyExists):  # idempotent per job, like the real adapters
            self._create("registrations", job_name)
        return "2"

    def champion_version(self, model: str, endpoint: str | None) -> str | None:
        return "1"

    def set_champion(self, model: str, version: str) -> None:
        (self.root / "champion").write_text(version)

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        self._create("deployments", deployment)

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        try:
            return dict(json.loads((self.root / "traffic.json").read_text()))
        except FileNotFoundError:
            return {"blue": 100}

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        tmp = self.root / f"traffic.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(traffic))
        tmp.replace(self.root / "traffic.json")

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        pass

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        return True


def policy_data() -> dict[str, Any]:
    spec = json.loads(json.dumps(POLICY["models"]["credit"]))
    spec["rollout"].update(steps=[50, 100], bake="0s", watch="0s")
    spec["rollout"]["health"] = {"min_requests": 0}
    return {"models": {"credit": spec}}


def open_backend(root: str, backend: tuple[str, str]) -> tuple[StateStore, AuditLog]:
    """A new handle on the shared store and audit log: ("sqlite", "") or ("azurite", conn)."""
    kind, connection = backend
    if kind == "sqlite":
        return SqliteStateStore(Path(root) / "state.db"), SqliteAuditLog(Path(root) / "audit.db")
    prefix = "dup" + Path(root).name.replace("_", "").replace("-", "")[-20:].lower()
    return TableStateStore(connection, table_prefix=prefix), TableAuditLog(
        connection, table_prefix=prefix
    )


def worker(
    root: str,
    backend: tuple[str, str],
    barrier: Any,
    deliveries: list[tuple[str, Any]],
    seed: int,
) -> None:
    platform = DirectoryPlatform(Path(root) / "platform")
    metrics = FakeMetrics(default=HealthSample(100, 0, 10.0))
    store, audit = open_backend(root, backend)
    services = Services(
        store=store,
        audit=audit,
        platform=platform,
        metrics=metrics,
        publisher=FakePublisher(),
        policy=parse_policy(policy_data(), "dup"),
    )
    rng = random.Random(seed)
    queue = [d for _ in range(ROUNDS) for d in deliveries]
    rng.shuffle(queue)
    barrier.wait()
    while queue:
        kind, payload = queue.pop(0)
        bus = bootstrap(services)
        try:
            if kind == "alert":
                deliver_alert(bus, payload)
            else:
                deliver_azureml(bus, envelope_from_dict(payload))
        except TransientError:  # in progress elsewhere: Event Grid delivers it again later
            queue.append((kind, payload))
            time.sleep(0.01)
        if rng.random() < 0.3:
            bootstrap(services).handle(Reconcile())
    for _ in range(6):
        bootstrap(services).handle(Reconcile())


@pytest.mark.parametrize("kind", ["sqlite", "azurite"])
def test_many_deliveries_over_four_processes_act_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = (kind, request.getfixturevalue("azurite") if kind == "azurite" else "")
    alert = payloads.alert(alert_id="the-drift-alert")
    key = "|".join(
        ("azure-monitor", "Fired", "the-drift-alert", alert["data"]["essentials"]["firedDateTime"])
    )
    cycle_id = cycle_id_for("credit", key)
    job = job_name_for(cycle_id)
    deliveries: list[tuple[str, Any]] = [
        ("alert", alert),
        ("event", payloads.run_event(job, "Completed", event_id="done-1")),
        ("event", payloads.run_event(job, None, event_type="RunCompleted", event_id="done-2")),
        (
            "event",
            payloads.model_registered(
                "credit", "2", {"autopilot_cycle": cycle_id}, event_id="reg-1"
            ),
        ),
    ]
    open_backend(str(tmp_path), backend)  # tables and schema exist before the race
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=worker, args=(str(tmp_path), backend, barrier, deliveries, seed))
        for seed in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)

    root = tmp_path / "platform"
    jobs = sorted(p.name for p in (root / "jobs").iterdir())
    registrations = sorted(p.name for p in (root / "registrations").iterdir())
    deployments = sorted(p.name for p in (root / "deployments").iterdir())
    store, audit = open_backend(str(tmp_path), backend)
    cycles = store.list_cycles()
    total = PROCESSES * ROUNDS * len(deliveries)
    print(
        f"{kind}: {total} deliveries over {PROCESSES} processes -> {len(cycles)} cycle "
        f"({cycles[0].state.value}), {len(jobs)} job, {len(registrations)} registration, "
        f"{len(deployments)} deployment"
    )
    assert jobs == [job]
    assert registrations == [job]
    assert deployments == [deployment_name_for("credit", "2")]
    assert len(cycles) == 1 and cycles[0].state.value == "PROMOTED"
    assert json.loads((root / "traffic.json").read_text())[deployments[0]] == 100
    result = audit.verify()
    assert result.ok, result
    trail = audit.query(cycle=cycles[0].id)
    promotions = [r for r in trail if r.summary.endswith("-> PROMOTED")]
    submissions = [r for r in trail if r.summary.endswith("-> RETRAINING")]
    print(
        f"{kind}: {len(trail)} audit records for the cycle, "
        f"{len(submissions)} job submission, {len(promotions)} promotion"
    )
    assert len(promotions) == 1 and len(submissions) == 1
