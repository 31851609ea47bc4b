"""``kill -9`` of a process delivering a batch, before its commit, after it, and after the
outbox ran but before the answer: the batch redelivered to a new process (and the
reconciler once the dead one's leases expired) gives one effect per event, one job included.
And two processes delivering overlapping batches at once act once per event, one job.

The process is really killed (SIGKILL, its SQLite transaction left open as a crash leaves
it); the jobs are kept in a file, so the job count is the same for both processes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from composition.bootstrap import bootstrap
from composition.delivery import BatchOutcome, deliver_batch, validate_batch
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import AlreadyExists, NotFound, TransientError
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


def overlapping_delivery(folder: str, batch: list[dict[str, Any]], start: Any, done: Any) -> None:
    """One of two processes: delivers its batch at the signal, as Event Grid would, again
    after a 503 (an event the other process holds)."""
    world = world_on(Path(folder))
    start.wait(30)
    for _ in range(100):
        try:
            done.put(deliver(world, batch).to_json())
            return
        except TransientError:
            time.sleep(0.05)
    done.put("never acknowledged")


def test_two_processes_with_overlapping_batches_act_once_per_event_one_job(
    tmp_path: Path,
) -> None:
    runs = [payloads.run_event(f"other-{i}", "Running") for i in range(60)]
    breaches = [payloads.monitor_breach(event_id=f"breach-{i}") for i in range(2)]
    first, second = [*runs[:40], breaches[0]], [breaches[0], *runs[20:], breaches[1]]
    world_on(tmp_path)  # the files exist before both start
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    children = [
        context.Process(target=overlapping_delivery, args=(str(tmp_path), b, start, done))
        for b in (first, second)
    ]
    for child in children:
        child.start()
    start.set()
    answers = [done.get(timeout=120) for _ in children]
    for child in children:
        child.join(30)
    assert all(isinstance(a, dict) for a in answers), answers
    world = world_on(tmp_path)
    ignored = [
        r.caused_by
        for r in world.services.audit.query(kind="ignored", limit=1000)
        if not r.summary.startswith("duplicate")
    ]
    assert len(ignored) == len(set(ignored)) == 60  # each run handled once, by one process
    received = world.services.audit.query(kind="event_received", limit=100)
    assert len(received) == 2  # each breach received once
    platform = world.services.platform
    assert isinstance(platform, FilePlatform) and len(platform.names()) == 1
    assert sum(a["processed"] for a in answers) == 62
