"""A job outlives the process that started it; the next reader adopts it instead of failing it.

The submitting process is a real child process killed with SIGKILL (no clean-up), as a
crashed or restarted ``autopilot serve`` would be.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from embedded.jobs import JobRecord, JobRunner
from shared.model import JobStatus
from tests.embedded.conftest import ROOT, wait_until

SUBMIT = """
import sys, time
from dataclasses import replace
from pathlib import Path
from embedded.jobs import JobRunner
from shared.model import JobRequest
jobs = JobRunner(Path(sys.argv[1]), python=sys.executable, code_dir=Path.cwd(), env={})
jobs.submit(JobRequest(name=sys.argv[2], model="m", experiment="e",
                       command=("{python}", "-c", sys.argv[3]), timeout_s=float(sys.argv[4])))
while jobs.load(sys.argv[2]).pid is None:
    time.sleep(0.01)
print("running", flush=True)
time.sleep(600)
"""


def submit_then_die(jobs_dir: Path, name: str, code: str, timeout_s: float = 60.0) -> None:
    """A process submits the job, waits until it runs, and is killed with SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBMIT, str(jobs_dir), name, code, str(timeout_s)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def runner(jobs_dir: Path, seen: list[JobRecord]) -> JobRunner:
    return JobRunner(
        jobs_dir,
        python=sys.executable,
        code_dir=ROOT,
        env={},
        on_change=lambda record: seen.append(replace(record)),
    )


def test_a_running_job_is_adopted_and_its_outcome_recorded(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    marker = tmp_path / "go"
    code = (
        "import pathlib, time, sys\n"
        f"while not pathlib.Path({str(marker)!r}).exists(): time.sleep(0.02)\n"
        "sys.exit(0)"
    )
    submit_then_die(jobs_dir, "adopt-me", code)
    seen: list[JobRecord] = []
    jobs = runner(jobs_dir, seen)
    record = jobs.get("adopt-me")
    assert record.job_status is JobStatus.RUNNING  # not failed for its watcher's death
    assert record.runner_pid == os.getpid()
    marker.touch()
    assert wait_until(lambda: jobs.load("adopt-me").job_status.is_terminal, 10)
    done = jobs.get("adopt-me")
    assert (done.job_status, done.exit_code) == (JobStatus.COMPLETED, 0)
    # the event the cycle waits for (reported just after job.json is written)
    assert wait_until(lambda: [r.status for r in seen] == ["Completed"], 10), seen


def test_a_job_that_ended_while_unwatched_keeps_its_exit_code(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    submit_then_die(jobs_dir, "failed-alone", "import time, sys; time.sleep(0.3); sys.exit(3)")
    submit_then_die(jobs_dir, "done-alone", "import time; time.sleep(0.3)")
    time.sleep(1.0)  # both end with nobody watching them
    jobs = runner(jobs_dir, [])
    assert sorted(jobs.adopt_orphans()) == ["done-alone", "failed-alone"]
    failed, done = jobs.get("failed-alone"), jobs.get("done-alone")
    assert (failed.job_status, failed.exit_code) == (JobStatus.FAILED, 3)
    assert "exit code 3" in failed.error
    assert (done.job_status, done.exit_code) == (JobStatus.COMPLETED, 0)


def test_an_adopted_job_still_times_out_and_can_be_canceled(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    submit_then_die(jobs_dir, "too-slow", "import time; time.sleep(60)", timeout_s=1.5)
    submit_then_die(jobs_dir, "to-cancel", "import time; time.sleep(60)")
    jobs = runner(jobs_dir, [])
    assert jobs.get("too-slow").job_status is JobStatus.RUNNING
    assert jobs.get("to-cancel").job_status is JobStatus.RUNNING
    canceled = jobs.cancel("to-cancel", wait_s=10)
    assert canceled.job_status is JobStatus.CANCELED
    assert wait_until(lambda: jobs.load("too-slow").job_status.is_terminal, 10)
    slow = jobs.load("too-slow")
    assert slow.job_status is JobStatus.FAILED and "timed out" in slow.error


@pytest.mark.parametrize("reader_count", [3])
def test_concurrent_readers_adopt_a_job_once(tmp_path: Path, reader_count: int) -> None:
    jobs_dir = tmp_path / "jobs"
    submit_then_die(jobs_dir, "one-owner", "import time; time.sleep(1)")
    readers = [runner(jobs_dir, []) for _ in range(reader_count)]
    statuses = [r.get("one-owner").job_status for r in readers]
    assert statuses.count(JobStatus.FAILED) == 0
    assert wait_until(lambda: readers[0].load("one-owner").job_status.is_terminal, 10)
    claims = [p.name for p in (jobs_dir / "one-owner").iterdir() if p.name.startswith("adopted")]
    assert len(claims) == 1
    assert json.loads((jobs_dir / "one-owner" / "job.json").read_text())["status"] == "Completed"
