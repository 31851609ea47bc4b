"""Checks of the data folder's SQLite files before ``autopilot serve`` binds its port.

A damaged ``state.db`` or ``audit.db`` (truncated, overwritten, emptied) is refused with one
line naming the file and what to do, instead of a traceback after the port is already
bound. ``earlier_activity`` tells ``audit verify`` whether an empty audit log is plausible.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.errors import SettingsError

STATE_DB = "state.db"
AUDIT_DB = "audit.db"
_HEADER = b"SQLite format 3\x00"
_TIMEOUT_S = 10.0


def sqlite_problem(path: Path) -> str | None:
    """What is wrong with an existing SQLite file, or None if it reads back whole."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_HEADER))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not header:
        return "is empty (0 bytes)"
    if header != _HEADER:
        return "is not an SQLite database (its first bytes are not an SQLite header)"
    try:
        connection = sqlite3.connect(path, timeout=_TIMEOUT_S)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return f"is damaged ({exc})"
    if [tuple(r) for r in rows] != [("ok",)]:
        return f"is damaged (integrity check: {rows[0][0]})"
    return None


def damage(path: Path) -> str | None:
    """What is wrong with ``path`` if it exists and is not empty; None otherwise."""
    if not path.exists():
        return None
    problem = sqlite_problem(path)
    return None if problem is None or problem.startswith("is empty") else problem


def _count(path: Path, table: str) -> int:
    """Rows in ``table`` of a readable database; 0 if the file or table is not there."""
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_TIMEOUT_S)
        try:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - fixed names
        finally:
            connection.close()
    except sqlite3.Error:
        return 0


def earlier_activity(data_dir: Path) -> str | None:
    """A description of what ``state.db`` shows happened (cycles, deliveries), or None."""
    state = data_dir / STATE_DB
    cycles, deliveries = _count(state, "cycles"), _count(state, "deliveries")
    if not cycles and not deliveries:
        return None
    return f"{STATE_DB} holds {cycles} cycle(s) and {deliveries} delivery key(s)"


def check_state_files(data_dir: Path) -> None:
    """Refuse (``SettingsError``) a state or audit file that is damaged, or an empty audit
    log where the state store shows that records existed; absent files are created later."""
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise SettingsError(
            f"data dir {data_dir}: {existing} is a file, not a folder; pass --data-dir a folder "
            "(created if missing)"
        )
    for name, what in ((STATE_DB, "state store"), (AUDIT_DB, "audit log")):
        path = data_dir / name
        if not path.exists():
            continue
        problem = sqlite_problem(path)
        if problem is None:
            continue
        if problem.startswith("is empty"):
            activity = earlier_activity(data_dir) if name == AUDIT_DB else None
            if name == STATE_DB and _count(data_dir / AUDIT_DB, "audit"):
                activity = f"{AUDIT_DB} holds audit records"
            if activity is None:
                continue  # an empty file with no history elsewhere: a new database
            raise SettingsError(
                f"{path} (the {what}) {problem} although {activity}: it was lost or emptied; "
                f"restore it from a backup before starting"
            )
        raise SettingsError(
            f"{path} (the {what}) {problem}; restore it from a backup, or move it aside to "
            f"start with a new {what}"
        )
