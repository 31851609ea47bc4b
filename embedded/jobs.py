"""Local training jobs: real subprocesses, one folder and one JSON status file per job.

``data_dir/jobs/<name>/`` holds ``job.json`` (the record, rewritten atomically on each status
change so any process can read it), ``stdout.log``, ``stderr.log`` and ``outputs/``. Creating
the folder with ``os.mkdir`` is the atomic claim of the name: a second submit of the same name,
from any process, gets ``AlreadyExists`` and nothing runs twice.

The process that submitted a job watches it (a thread): it applies the timeout, records the
outcome and reports each status change. The job runs in its own session under a small
launcher (:mod:`embedded.job_launcher`) that writes its exit code to ``exit_code``, so it
outlives a crash or restart of that process. The next reader of a job whose watcher's process
has died adopts it (``take_over``): it watches a job still running (found by pid and process
start time), records the outcome of one that ended meanwhile, runs one that was never started,
and reports Failed only a job whose process is gone without an exit code.

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
import sys
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
ADOPTED_POLL_S = 0.2
LAUNCHER = str(Path(__file__).with_name("job_launcher.py"))
EXIT_FILE = "exit_code"


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
    pid_start: str | None = None  # the process's start time: tells it from a reused pid
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


def process_start(pid: int) -> str | None:
    """A token of when process ``pid`` started, or None if there is no live process ``pid``.

    On Linux: the start time in ``/proc/<pid>/stat`` (a zombie counts as gone); elsewhere
    only whether the pid exists.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() or not _pid_alive(pid) else "alive"
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _utc_parse(text: str | None) -> float | None:
    from datetime import datetime

    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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
            and not _pid_alive(record.runner_pid)
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
            self._kill_group(record.pid)
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
                if not _pid_alive(before.runner_pid):
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
                self._kill_group(proc.pid)
            timed_out = False
            try:
                code = proc.wait(timeout=record.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill_group(proc.pid, proc)
                code = proc.wait()
        reported = self._exit_code(record.name)  # the command's own code, not the launcher's
        self._conclude(record, code if reported is None else reported, timed_out=timed_out)

    def _follow(self, record: JobRecord) -> None:
        """Watch an adopted job (not this process's child) until it ends, as ``_run`` does."""
        assert record.pid is not None
        started = _utc_parse(record.started_at) or time.time()
        deadline = started + record.timeout_s
        timed_out = False
        kill_at: float | None = None  # SIGKILL the group then, if SIGTERM was not enough
        while self._running(record):
            stop = self._cancel_requested(record.name) or time.time() > deadline
            if stop and kill_at is None:
                timed_out = not self._cancel_requested(record.name)
                kill_at = time.time() + KILL_GRACE_S
                self._kill_group(record.pid)
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
                f"{self._stderr_tail(self.job_dir(record.name))}",
            )
        else:
            self._finish(
                record,
                JobStatus.FAILED,
                f"exit code {code}: {self._stderr_tail(self.job_dir(record.name))}",
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
