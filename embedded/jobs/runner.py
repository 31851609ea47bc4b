"""The job runner: submits, watches, adopts, cancels and reports local jobs."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path

from embedded.events import utc_iso
from embedded.files import read_json, write_json_atomic
from embedded.jobs.environment import env_name, job_environment
from embedded.jobs.process import (
    KILL_GRACE_S,
    kill_group,
    pid_alive,
    process_start,
    stderr_tail,
    utc_parse,
)
from embedded.jobs.record import JOB_NAME, JobRecord
from shared.errors import AlreadyExists, NotFound, PermanentError
from shared.model import JobRequest, JobStatus
from shared.redact import Redactor

log = logging.getLogger("embedded.jobs")

_PLACEHOLDER = re.compile(r"\{(python|outputs|inputs\.([A-Za-z0-9_\-]+))\}")
ADOPTED_POLL_S = 0.2
LAUNCHER = str(Path(__file__).resolve().parents[1] / "job_launcher.py")
EXIT_FILE = "exit_code"


Prepare = Callable[[JobRecord], str]
# Called after every status change (events).
OnChange = Callable[[JobRecord], None]


class JobRunner:
    """Runs, watches, cancels and reports local jobs under ``data_dir/jobs``."""

    def __init__(
        self,
        jobs_dir: Path,
        *,
        python: str,
        code_dir: Path,
        env: Mapping[str, str],
        prepare: Prepare | None = None,
        on_change: OnChange | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """``env`` is set for every job (the platform's own variables). ``redactor`` scrubs
        job error text; by default it knows the secrets of this process's environment."""
        self.jobs_dir = jobs_dir
        self.python = python
        self.code_dir = code_dir
        self._extra_env = dict(env)
        self._prepare = prepare
        self._on_change = on_change
        self._redactor = redactor or Redactor.from_env(os.environ)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._watchers: dict[str, threading.Thread] = {}
        self._adopted: set[str] = set()  # taken over from a dead process: never canceled here

    # -- paths and records ----------------------------------------------------------------

    def job_dir(self, name: str) -> Path:
        if not JOB_NAME.match(name):
            raise PermanentError(
                f"job name {name!r} is not valid: use letters, digits, '_', '.', '-' "
                "(at most 255, starting with a letter or digit)"
            )
        return self.jobs_dir / name

    def _record_path(self, name: str) -> Path:
        return self.job_dir(name) / "job.json"

    def _save(self, record: JobRecord) -> None:
        write_json_atomic(self._record_path(record.name), asdict(record))

    def load(self, name: str) -> JobRecord:
        path = self._record_path(name)
        try:
            return JobRecord.from_json(read_json(path))
        except FileNotFoundError:
            if not path.parent.is_dir():
                raise NotFound(f"job {name!r} does not exist") from None
        except ValueError as exc:
            raise PermanentError(f"job {name!r}: unreadable record {path}: {exc}") from exc
        # claimed a moment ago: the record follows right after the folder
        for _ in range(50):
            time.sleep(0.01)
            if path.exists():
                return JobRecord.from_json(read_json(path))
        # the submitting process died between claiming the name and writing the record
        return JobRecord(
            name=name,
            model="",
            experiment="",
            argv=[],
            inputs={},
            tags={},
            timeout_s=0.0,
            status=JobStatus.FAILED.value,
            error="the submission was interrupted before the job started",
            runner_pid=0,
        )

    def outputs_dir(self, name: str) -> Path:
        return self.job_dir(name) / "outputs"

    # -- submit ---------------------------------------------------------------------------

    def _resolve(self, value: str) -> str:
        """A relative path that exists under ``code_dir`` becomes absolute (Azure ML resolves
        code and inputs for the job the same way); anything else is left as it is."""
        if not value or value.startswith("-") or os.path.isabs(value):
            return value
        candidate = self.code_dir / value
        try:
            return str(candidate.resolve()) if candidate.exists() else value
        except (OSError, ValueError):
            return value

    def expand(self, request: JobRequest) -> tuple[list[str], dict[str, str]]:
        """The argv with placeholders substituted, and the input values as strings."""
        if not request.command:
            raise PermanentError(
                f"job {request.name}: the policy gives no 'command'; the embedded platform "
                "runs commands (job_file is for Azure ML)"
            )
        inputs = {str(k): self._resolve(str(v)) for k, v in request.inputs.items()}
        outputs = str(self.outputs_dir(request.name))

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) == "python":
                return self.python
            if match.group(1) == "outputs":
                return outputs
            key = match.group(2)
            if key not in inputs:
                raise PermanentError(
                    f"job {request.name}: command uses {{inputs.{key}}} but the job has no "
                    f"input {key!r} (inputs: {sorted(inputs) or 'none'})"
                )
            return inputs[key]

        argv = [self._resolve(_PLACEHOLDER.sub(substitute, item)) for item in request.command]
        return argv, inputs

    def submit(self, request: JobRequest) -> JobRecord:
        argv, inputs = self.expand(request)
        job_dir = self.job_dir(request.name)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(job_dir)  # the atomic claim of the name, across processes
        except FileExistsError:
            raise AlreadyExists(f"job {request.name!r} already exists") from None
        (job_dir / "outputs").mkdir()
        record = JobRecord(
            name=request.name,
            model=request.model,
            experiment=request.experiment,
            argv=argv,
            inputs=inputs,
            tags={str(k): str(v) for k, v in request.tags.items()},
            timeout_s=float(request.timeout_s),
            environment=dict(request.environment),
        )
        self._save(record)
        self._start_watcher(record, self._run)
        return record

    def _start_watcher(self, record: JobRecord, target: Callable[[JobRecord], None]) -> None:
        watcher = threading.Thread(
            target=self._watch, args=(record, target), name=f"job-{record.name}", daemon=True
        )
        with self._lock:
            self._watchers[record.name] = watcher
        watcher.start()

    # -- status ---------------------------------------------------------------------------

    def get(self, name: str) -> JobRecord:
        record = self.load(name)
        if (
            not record.job_status.is_terminal
            and record.runner_pid != os.getpid()
            and not pid_alive(record.runner_pid)
        ):
            return self.take_over(record)
        return record

    def take_over(self, record: JobRecord) -> JobRecord:
        """Adopt a job whose watching process died: it must not fail for that alone."""
        dead = record.runner_pid
        claim = self.job_dir(record.name) / f"adopted-from-{dead}"
        try:
            os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return self.load(record.name)  # another reader is taking it over right now
        record = self.load(record.name)
        if record.job_status.is_terminal or record.runner_pid != dead:
            return record
        record.runner_pid = os.getpid()
        alive = record.pid is not None and self._running(record)
        never_started = (
            record.pid is None and record.job_status is JobStatus.QUEUED and bool(record.argv)
        )
        if alive or (never_started and not self._cancel_requested(record.name)):
            self._save(record)
            with self._lock:
                self._adopted.add(record.name)
            target = self._follow if alive else self._run
            log.info(
                "job %s: %s after its watcher (pid %d) exited",
                record.name,
                "adopted" if alive else "started",
                dead,
            )
            self._start_watcher(record, target)
            return record
        code = self._exit_code(record.name) if record.pid is not None else None
        if code is None and not self._cancel_requested(record.name):
            kill_group(record.pid)
            self._finish(
                record,
                JobStatus.FAILED,
                f"the process that ran this job (pid {dead}) exited before it ended",
            )
            return record
        self._conclude(record, code, timed_out=False)
        return record

    def adopt_orphans(self) -> list[str]:
        """Take over every unfinished job whose watcher died; returns their names."""
        names: list[str] = []
        if not self.jobs_dir.is_dir():
            return names
        for folder in sorted(self.jobs_dir.iterdir()):
            if not folder.is_dir() or not JOB_NAME.match(folder.name):
                continue
            try:
                before = self.load(folder.name)
                if before.job_status.is_terminal or before.runner_pid == os.getpid():
                    continue
                if not pid_alive(before.runner_pid):
                    self.get(folder.name)
                    names.append(folder.name)
            except Exception:
                log.exception("job %s: could not take it over", folder.name)
        return names

    @staticmethod
    def _running(record: JobRecord) -> bool:
        """Whether the job's own process (not a reuse of its pid) still runs."""
        if record.pid is None:
            return False
        started = process_start(record.pid)
        return started is not None and record.pid_start in (None, started)

    def _exit_code(self, name: str) -> int | None:
        try:
            return int((self.job_dir(name) / EXIT_FILE).read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def _finish(self, record: JobRecord, status: JobStatus, error: str = "") -> None:
        record.status = status.value
        record.error = self._redactor.text(error)
        record.finished_at = utc_iso()
        self._save(record)
        self._notify(record)

    def _notify(self, record: JobRecord) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(record)
        except Exception:
            log.exception("job %s: status listener failed", record.name)

    def _cancel_requested(self, name: str) -> bool:
        return (self.job_dir(name) / "cancel").exists()

    def _environment(self, record: JobRecord) -> dict[str, str]:
        env = job_environment(os.environ, record.environment)
        env.update(self._extra_env)
        env.update(
            {
                "AUTOPILOT_JOB_NAME": record.name,
                "AUTOPILOT_OUTPUT_DIR": str(self.outputs_dir(record.name)),
                "AUTOPILOT_EXPERIMENT": record.experiment,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for key, value in record.inputs.items():
            env[env_name(key)] = str(value)
        return env

    def _watch(self, record: JobRecord, target: Callable[[JobRecord], None]) -> None:
        try:
            target(record)
        except Exception as exc:
            log.exception("job %s: watcher failed", record.name)
            with contextlib.suppress(Exception):
                self._finish(record, JobStatus.FAILED, f"platform error: {exc}")
        finally:
            with self._lock:
                self._procs.pop(record.name, None)
                self._watchers.pop(record.name, None)

    def _run(self, record: JobRecord) -> None:
        if self._prepare is not None:
            try:
                record.experiment_id = self._prepare(record)
            except Exception as exc:
                log.exception("job %s: preparing the experiment failed", record.name)
                self._finish(record, JobStatus.FAILED, f"could not prepare the job: {exc}")
                return
            self._save(record)
        self._notify(record)  # Queued
        if self._cancel_requested(record.name):
            self._finish(record, JobStatus.CANCELED, "canceled before it started")
            return
        job_dir = self.job_dir(record.name)
        with (
            open(job_dir / "stdout.log", "wb") as stdout,
            open(job_dir / "stderr.log", "wb") as stderr,
        ):
            with contextlib.suppress(FileNotFoundError):
                (job_dir / EXIT_FILE).unlink()
            try:
                launcher = [sys.executable, "-I", "-S", LAUNCHER, str(job_dir / EXIT_FILE), "--"]
                proc = subprocess.Popen(
                    [*launcher, *record.argv],
                    cwd=job_dir,
                    env=self._environment(record),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,  # own group: kill the tree; outlive this process
                )
            except OSError as exc:
                self._finish(record, JobStatus.FAILED, f"could not start {record.argv[0]}: {exc}")
                return
            with self._lock:
                self._procs[record.name] = proc
            record.status = JobStatus.RUNNING.value
            record.pid = proc.pid
            record.pid_start = process_start(proc.pid)
            record.started_at = utc_iso()
            self._save(record)
            self._notify(record)
            if self._cancel_requested(record.name):
                kill_group(proc.pid)
            timed_out = False
            try:
                code = proc.wait(timeout=record.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(proc.pid, proc)
                code = proc.wait()
        reported = self._exit_code(record.name)  # the command's own code, not the launcher's
        self._conclude(record, code if reported is None else reported, timed_out=timed_out)

    def _follow(self, record: JobRecord) -> None:
        """Watch an adopted job (not this process's child) until it ends, as ``_run`` does."""
        assert record.pid is not None
        started = utc_parse(record.started_at) or time.time()
        deadline = started + record.timeout_s
        timed_out = False
        kill_at: float | None = None  # SIGKILL the group then, if SIGTERM was not enough
        while self._running(record):
            stop = self._cancel_requested(record.name) or time.time() > deadline
            if stop and kill_at is None:
                timed_out = not self._cancel_requested(record.name)
                kill_at = time.time() + KILL_GRACE_S
                kill_group(record.pid)
            elif kill_at is not None and time.time() > kill_at:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(record.pid, signal.SIGKILL)
            time.sleep(ADOPTED_POLL_S)
        self._conclude(record, self._exit_code(record.name), timed_out=timed_out)

    def _conclude(self, record: JobRecord, code: int | None, *, timed_out: bool) -> None:
        """Record how a job that has ended ended: canceled, timed out, completed or failed."""
        record.exit_code = code
        if self._cancel_requested(record.name):
            self._finish(record, JobStatus.CANCELED, "canceled")
        elif timed_out:
            self._finish(record, JobStatus.FAILED, f"timed out after {record.timeout_s:g} s")
        elif code == 0:
            self._finish(record, JobStatus.COMPLETED)
        elif code is None:
            self._finish(
                record,
                JobStatus.FAILED,
                "the job's process ended without reporting an exit code: "
                f"{stderr_tail(self.job_dir(record.name))}",
            )
        else:
            self._finish(
                record,
                JobStatus.FAILED,
                f"exit code {code}: {stderr_tail(self.job_dir(record.name))}",
            )

    def cancel(self, name: str, wait_s: float = 10.0) -> JobRecord:
        """Ask the job to stop; Canceled once its watcher saw it end (waits up to ``wait_s``)."""
        record = self.get(name)
        if record.job_status.is_terminal:
            return record
        with contextlib.suppress(FileExistsError):
            (self.job_dir(name) / "cancel").touch(exist_ok=False)
        with self._lock:
            proc = self._procs.get(name)
            watcher = self._watchers.get(name)
        if proc is not None:
            threading.Thread(target=kill_group, args=(proc.pid, proc), daemon=True).start()
        elif record.pid is not None:
            kill_group(record.pid)
        if watcher is None:
            # nobody in this process watches it: its watcher (in another process) or the
            # next reader records the outcome; if its runner is gone, record it here
            record = self.get(name)
            if not record.job_status.is_terminal and not pid_alive(record.runner_pid):
                self._finish(record, JobStatus.CANCELED, "canceled")
            return record
        watcher.join(wait_s)
        return self.load(name)

    def close(self, wait_s: float = 10.0, *, leave_running: bool = False) -> None:
        """Cancel the jobs this process submitted, or with ``leave_running`` leave them to the
        next process on this data folder, which adopts them. Adopted jobs are left running."""
        if leave_running:
            return
        with self._lock:
            names = [name for name in self._watchers if name not in self._adopted]
        for name in names:
            with contextlib.suppress(Exception):
                self.cancel(name, wait_s)
