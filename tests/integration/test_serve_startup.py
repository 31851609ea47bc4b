"""``autopilot serve`` refuses what it cannot run with one line and exit 2, before binding.

A busy or impossible port, a damaged ``state.db`` / ``audit.db``, an audit log emptied while
the state store shows history: each is named in one line, nothing is left behind, and no
port is held. ``audit verify`` fails (exit 1) on an audit log that lost its records.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.model import AuditEntry, AuditKind
from tests.integration.serve_proc import ROOT

POLICY = ROOT / "tests" / "data" / "http_policy.yaml"


def autopilot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}
    return subprocess.run(
        [sys.executable, "-m", "autopilot.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def serve(data_dir: Path, port: int = 0) -> subprocess.CompletedProcess[str]:
    """``autopilot serve`` expected to refuse: it must exit on its own, quickly."""
    return autopilot(
        "serve", "--port", str(port), "--policy", str(POLICY), "--data-dir", str(data_dir)
    )


def one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert "Traceback" not in done.stdout + done.stderr
    assert "serving" not in done.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_a_busy_port_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(tmp_path / "data", port)
    one_line_error(done, f"127.0.0.1:{port}", "--port")
    assert not (tmp_path / "data").exists()  # no key file, no data folder


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_an_impossible_port_is_one_line_and_leaves_nothing_behind(
    tmp_path: Path, port: str
) -> None:
    done = serve(tmp_path / "data", int(port))
    one_line_error(done, "--port must be 0-65535", port)
    assert not (tmp_path / "data").exists()


def fill_state(data_dir: Path, deliveries: int = 300) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteStateStore(data_dir / "state.db")
    now = datetime.now(UTC)
    for n in range(deliveries):
        store.claim_delivery(f"event-{n}-" + "x" * 200, now, 60.0)
    store.db.close()
    return data_dir / "state.db"


def fill_audit(data_dir: Path, records: int = 300) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = SqliteAuditLog(data_dir / "audit.db")
    for n in range(records):
        log.append(AuditEntry(AuditKind.IGNORED, f"event {n} " + "y" * 200))
    log.db.close()
    return data_dir / "audit.db"


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file, so damaging the file damages the data."""
    import sqlite3

    gc.collect()  # connections the fill helpers' objects may still hold
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for _ in range(50):  # leaving WAL needs every other connection gone: wait for it
            try:
                connection.execute("PRAGMA journal_mode=DELETE")
                break
            except sqlite3.OperationalError:
                time.sleep(0.1)
        # (if still in WAL mode, the checkpoint already folded every record into the file)
    finally:
        connection.close()


def damage(path: Path, how: str) -> None:
    checkpoint(path)
    if how == "truncated":
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.truncate(size // 2)
    else:
        path.write_bytes(random.Random(7).randbytes(path.stat().st_size))


@pytest.mark.parametrize("how", ["truncated", "random"])
@pytest.mark.parametrize("name", ["state.db", "audit.db"])
def test_a_damaged_state_or_audit_file_is_named_before_the_port_is_bound(
    tmp_path: Path, name: str, how: str
) -> None:
    data_dir = tmp_path / "data"
    fill_state(data_dir)
    fill_audit(data_dir)
    damage(data_dir / name, how)
    before = files_of(data_dir)
    line = one_line_error(serve(data_dir), str(data_dir / name), "restore it from a backup")
    print(line)
    assert files_of(data_dir) == before  # no key file written


def files_of(data_dir: Path) -> list[str]:
    """The data folder's files, without SQLite's own -wal/-shm companions (checking the other,
    healthy file may open it, and SQLite then keeps them while a connection is being closed)."""
    return sorted(p.name for p in data_dir.iterdir() if not p.name.endswith(("-wal", "-shm")))


def test_an_emptied_audit_log_with_history_in_the_store_is_refused_and_fails_verify(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    fill_state(data_dir, deliveries=3)
    fill_audit(data_dir, records=3)
    (data_dir / "audit.db").write_bytes(b"")  # zero bytes: SQLite would open it as empty
    for suffix in ("-wal", "-shm"):
        (data_dir / f"audit.db{suffix}").unlink(missing_ok=True)
    one_line_error(serve(data_dir), str(data_dir / "audit.db"), "0 bytes", "3 delivery key")
    verify = autopilot("audit", "verify", "--data-dir", str(data_dir))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert "intact" not in verify.stdout
    assert "no records although state.db holds 0 cycle(s) and 3 delivery key(s)" in verify.stdout


def test_verify_of_a_damaged_audit_file_is_one_line_exit_1(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fill_audit(data_dir)
    damage(data_dir / "audit.db", "random")
    verify = autopilot("audit", "verify", "--data-dir", str(data_dir))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert verify.stdout.strip().splitlines() == [
        f"AUDIT LOG UNREADABLE: {data_dir / 'audit.db'} is not an SQLite database "
        "(its first bytes are not an SQLite header)"
    ]


def test_an_empty_audit_log_without_history_verifies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fill_audit(data_dir, records=0)
    verify = autopilot("audit", "verify", "--data-dir", str(data_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit chain intact: 0 records" in verify.stdout
