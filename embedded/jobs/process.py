"""A job's process, seen from outside: is it alive, when did it start, stop its group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

STDERR_TAIL_CHARS = 2000
KILL_GRACE_S = 3.0


def pid_alive(pid: int) -> bool:
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
        return None if Path("/proc/self/stat").exists() or not pid_alive(pid) else "alive"
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def utc_parse(text: str | None) -> float | None:
    from datetime import datetime

    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def stderr_tail(job_dir: Path) -> str:
    try:
        with open(job_dir / "stderr.log", "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - STDERR_TAIL_CHARS))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def kill_group(pid: int | None, proc: subprocess.Popen[bytes] | None = None) -> None:
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
