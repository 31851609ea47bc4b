"""``kill -9`` of a process delivering a batch, before its commit, after it, and after the
outbox ran but before the answer: the batch redelivered to a new process (and the
reconciler once the dead one's leases expired) gives one effect per event, one job included.

The process is really killed (SIGKILL, its SQLite transaction left open as a crash leaves
it); the jobs are kept in a file, so the job count is the same for both processes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import BatchOutcome, deliver_batch, validate_batch
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import AlreadyExists, NotFound
from shared.messages import Reconcile
from shared.model import JobInfo, JobRequest, JobStatus
from tests import payloads
from tests.fakes import FakePlatform, World, make_world

LEASE_S = 301.0


class FilePlatform(FakePlatform):
    """Jobs as lines of a file shared by every process (a name conflicts, as on Azure ML)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def names(self) -> list[str]:
        return self.path.read_text().split() if self.path.exists() else []

    def submit_job(self, request: JobRequest) -> JobInfo:
        if request.name in self.names():
            raise AlreadyExists(request.name)
        with self.path.open("a") as jobs:
            jobs.write(request.name + "\n")
        return JobInfo(request.name, JobStatus.QUEUED, dict(request.tags))

    def get_job(self, name: str) -> JobInfo:
        if name not in self.names():
            raise NotFound(name)
        return JobInfo(name, JobStatus.RUNNING, {})


class KillAt:
    """Delegates to ``inner``; SIGKILLs this process at ``<prefix>.<method>.<before|after>``."""

    def __init__(self, inner: Any, prefix: str, point: str) -> None:
        self._inner, self._prefix, self._point = inner, prefix, point

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._inner, attr)
        name = f"{self._prefix}.{attr}"

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._point == f"{name}.before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = target(*args, **kwargs)
            if self._point == f"{name}.after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call


def world_on(folder: Path) -> World:
    world = make_world()
    world.services.store = SqliteStateStore(folder / "state.db")
    world.services.audit = SqliteAuditLog(folder / "audit.db")
    world.services.platform = FilePlatform(folder / "jobs.txt")
    return world


def events() -> list[dict[str, Any]]:
    return [
        *(payloads.run_event(f"other-{i}", "Running") for i in range(5)),
        payloads.monitor_breach(),
    ]


def deliver(world: World, batch: list[dict[str, Any]]) -> BatchOutcome:
    return deliver_batch(bootstrap(world.services), validate_batch(batch, world.services.policy))


def killed_delivery(folder: str, point: str, batch: list[dict[str, Any]]) -> None:
    """The first process: delivers the batch and is killed at ``point``."""
    world = world_on(Path(folder))
    world.services.store = KillAt(world.services.store, "store", point)
    world.services.platform = KillAt(world.services.platform, "platform", point)
    deliver(world, batch)


@pytest.mark.parametrize(
    ("point", "committed"),
    [
        ("store.finish_deliveries.before", False),  # the transaction open, not committed
        ("store.take_intents.before", True),  # committed, the job not yet submitted
        ("store.finish_intent.after", True),  # job submitted, the answer never sent
    ],
)
def test_kill_9_around_the_commit_then_redelivery_acts_once_per_event(
    tmp_path: Path, point: str, committed: bool
) -> None:
    batch = events()
    child = multiprocessing.get_context("spawn").Process(
        target=killed_delivery, args=(str(tmp_path), point, batch)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    world = world_on(tmp_path)  # the restarted process, on the same files
    platform = world.services.platform
    assert isinstance(platform, FilePlatform)
    outcome = deliver(world, batch)
    if committed:
        assert outcome == BatchOutcome(processed=0, duplicate=6, failed=0)
    else:
        assert outcome == BatchOutcome(processed=6, duplicate=0, failed=0)
    world.clock.advance(LEASE_S)  # the dead process's intents are the reconciler's now
    bootstrap(world.services).handle(Reconcile())
    assert len(platform.names()) == 1
    assert len(world.services.store.list_cycles("credit")) == 1
    assert deliver(world, batch) == BatchOutcome(processed=0, duplicate=6, failed=0)
    assert len(platform.names()) == 1
    assert world.services.audit.verify().ok
