"""Local training jobs: real subprocesses, one folder and one JSON status file per job.

``data_dir/jobs/<name>/`` holds ``job.json`` (the record, rewritten atomically on each status
change so any process can read it), ``stdout.log``, ``stderr.log`` and ``outputs/``. Creating
the folder with ``os.mkdir`` is the atomic claim of the name: a second submit of the same name,
from any process, gets ``AlreadyExists`` and nothing runs twice.

The process that submitted a job watches it (a thread): it applies the timeout, records the
outcome and reports each status change. A job whose watcher's process has died is reported
Failed by the next reader, so nothing waits forever on an orphan.

A job does not inherit the service's environment (function keys, connection strings): it gets
the allow-listed basics a Python program needs (:data:`BASE_ENV`), what the policy declares
(``training.environment``) and the job's own variables. Its error text (the stderr tail) is
scrubbed of every configured secret before it is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embedded.events import utc_iso
from embedded.files import read_json, write_json_atomic
from shared.errors import AlreadyExists, NotFound, PermanentError
from shared.model import JobInfo, JobRequest, JobStatus
from shared.redact import Redactor

log = logging.getLogger("embedded.jobs")

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
_PLACEHOLDER = re.compile(r"\{(python|outputs|inputs\.([A-Za-z0-9_\-]+))\}")
STDERR_TAIL_CHARS = 2000
KILL_GRACE_S = 3.0
# What a job takes from the service's environment without the policy asking: enough to run
# Python (and its numeric libraries) in the same locale, nothing that could hold a credential.
BASE_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "SYSTEMROOT",  # Windows: Python cannot start without it
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
    }
)
BASE_ENV_PREFIXES = ("LC_", "OMP_", "OPENBLAS_", "MKL_")


@dataclass(slots=True)
class JobRecord:
    """What ``job.json`` holds."""

    name: str
    model: str
    experiment: str
    argv: list[str]
    inputs: dict[str, Any]
    tags: dict[str, str]
    timeout_s: float
    # policy-declared variables: a value, or None = pass through from the service's environment
    environment: dict[str, str | None] = field(default_factory=dict)
    status: str = JobStatus.QUEUED.value
    error: str = ""
    experiment_id: str = ""
    exit_code: int | None = None
    pid: int | None = None
    runner_pid: int = field(default_factory=os.getpid)
    created_at: str = field(default_factory=utc_iso)
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)

    def info(self) -> JobInfo:
        return JobInfo(self.name, self.job_status, dict(self.tags), self.error)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def env_name(input_name: str) -> str:
    return "AUTOPILOT_INPUT_" + re.sub(r"[^A-Za-z0-9]", "_", input_name).upper()


def job_environment(
    service_env: Mapping[str, str], declared: Mapping[str, str | None]
) -> dict[str, str]:
    """The allow-listed part of the service's environment plus what the policy declares."""
    env = {k: v for k, v in service_env.items() if k in BASE_ENV or k.startswith(BASE_ENV_PREFIXES)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"  # offline: no usage telemetry
    for name, value in declared.items():
        if value is not None:
            env[name] = value
        elif name in service_env:
            env[name] = service_env[name]
    return env


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Called after the job is claimed and before it starts; returns the MLflow experiment id.
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
        watcher = threading.Thread(
            target=self._watch, args=(record,), name=f"job-{request.name}", daemon=True
        )
        with self._lock:
            self._watchers[request.name] = watcher
        watcher.start()
        return record

    # -- status ---------------------------------------------------------------------------

    def get(self, name: str) -> JobRecord:
        record = self.load(name)
        if (
            not record.job_status.is_terminal
            and record.runner_pid != os.getpid()
            and not _pid_alive(record.runner_pid)
        ):
            self._kill_group(record.pid)
            self._finish(
                record,
                JobStatus.FAILED,
                f"the process that ran this job (pid {record.runner_pid}) exited before it ended",
            )
        return record

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

    def _watch(self, record: JobRecord) -> None:
        try:
            self._run(record)
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
            try:
                proc = subprocess.Popen(
                    record.argv,
                    cwd=job_dir,
                    env=self._environment(record),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,  # its own process group: kill the whole tree
                )
            except OSError as exc:
                self._finish(record, JobStatus.FAILED, f"could not start {record.argv[0]}: {exc}")
                return
            with self._lock:
                self._procs[record.name] = proc
            record.status = JobStatus.RUNNING.value
            record.pid = proc.pid
            record.started_at = utc_iso()
            self._save(record)
            self._notify(record)
            if self._cancel_requested(record.name):
                self._kill_group(proc.pid)
            timed_out = False
            try:
                code = proc.wait(timeout=record.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_group(proc.pid, proc)
                code = proc.wait()
        record.exit_code = code
        if self._cancel_requested(record.name):
            self._finish(record, JobStatus.CANCELED, "canceled")
        elif timed_out:
            self._finish(record, JobStatus.FAILED, f"timed out after {record.timeout_s:g} s")
        elif code == 0:
            self._finish(record, JobStatus.COMPLETED)
        else:
            self._finish(
                record, JobStatus.FAILED, f"exit code {code}: {self._stderr_tail(job_dir)}"
            )

    @staticmethod
    def _stderr_tail(job_dir: Path) -> str:
        try:
            with open(job_dir / "stderr.log", "rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - STDERR_TAIL_CHARS))
                return handle.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    @staticmethod
    def _kill_group(pid: int | None, proc: subprocess.Popen[bytes] | None = None) -> None:
        """SIGTERM the job's process group, then SIGKILL it after a grace period."""
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        if proc is None:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    # -- cancel and shutdown --------------------------------------------------------------

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
            threading.Thread(target=self._kill_group, args=(proc.pid, proc), daemon=True).start()
        elif record.pid is not None:
            self._kill_group(record.pid)
        if watcher is None:
            # nobody in this process watches it: its watcher (in another process) or the
            # next reader records the outcome; if its runner is gone, record it here
            record = self.get(name)
            if not record.job_status.is_terminal and not _pid_alive(record.runner_pid):
                self._finish(record, JobStatus.CANCELED, "canceled")
            return record
        watcher.join(wait_s)
        return self.load(name)

    def close(self, wait_s: float = 10.0) -> None:
        """Cancel the jobs this process runs (their processes would be orphaned otherwise)."""
        with self._lock:
            names = list(self._watchers)
        for name in names:
            with contextlib.suppress(Exception):
                self.cancel(name, wait_s)
