"""Append-only, hash-chained audit log on SQLite.

``append`` reads the last record's hash and inserts the next record inside one
``BEGIN IMMEDIATE`` transaction, so concurrent threads and processes build one unbroken chain
with no duplicate ``seq``. Hashing and verification live in :mod:`shared.audit_chain`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_db import SqliteDatabase
from shared.audit_chain import GENESIS, canonical, format_time, seal_fields, verify_rows
from shared.model import AuditEntry, AuditKind, AuditRecord, VerifyResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,              -- UTC ISO 8601 with microseconds: sorts as it reads
    actor TEXT NOT NULL,
    model TEXT,
    version TEXT,
    cycle TEXT,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,          -- canonical JSON
    caused_by TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_model ON audit (model);
CREATE INDEX IF NOT EXISTS audit_cycle ON audit (cycle);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
"""
COLUMNS = (
    "seq",
    "time",
    "actor",
    "model",
    "version",
    "cycle",
    "kind",
    "summary",
    "reason",
    "evidence",
    "caused_by",
    "prev_hash",
    "hash",
)
INSERT = (
    f"INSERT INTO audit ({', '.join(COLUMNS)}) "  # noqa: S608 (fixed names)
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def as_row(record: AuditRecord) -> tuple[Any, ...]:
    """``record``'s column values, in ``COLUMNS`` order (for ``INSERT``)."""
    values = {
        **{c: getattr(record, c) for c in COLUMNS},
        "time": format_time(record.time),
        "kind": record.kind.value,
        "evidence": canonical(record.evidence),
    }
    return tuple(values[c] for c in COLUMNS)


def _record(row: sqlite3.Row) -> AuditRecord:
    time = datetime.fromisoformat(row["time"])
    if time.tzinfo is None:
        raise ValueError(f"time {row['time']!r} has no time zone")
    return AuditRecord(
        seq=int(row["seq"]),
        time=time,
        kind=AuditKind(row["kind"]),
        summary=row["summary"],
        actor=row["actor"],
        model=row["model"],
        version=row["version"],
        cycle=row["cycle"],
        reason=row["reason"],
        evidence=json.loads(row["evidence"]),
        caused_by=row["caused_by"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


class SqliteAuditLog:
    """``AuditLog`` on one SQLite file. ``clock`` stamps records (UTC wall clock by default)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.db = SqliteDatabase(path, SCHEMA)
        self._clock = clock

    def append(self, entry: AuditEntry) -> AuditRecord:
        with self.db.write() as db:
            last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            record, fields, evidence_text = seal_fields(
                entry,
                seq=int(last["seq"]) + 1 if last else 1,
                prev_hash=str(last["hash"]) if last else GENESIS,
                time=self._clock(),  # stamped under the write lock: time follows seq
            )
            fields["evidence"] = evidence_text
            fields["hash"] = record.hash
            db.execute(INSERT, tuple(fields[c] for c in COLUMNS))
        return record

    def query(
        self,
        *,
        model: str | None = None,
        cycle: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Matching records in seq order; with ``limit``, the newest ``limit`` of them."""
        sql = "SELECT * FROM audit WHERE 1 = 1"
        args: list[Any] = []
        for column, value in (("model", model), ("cycle", cycle), ("kind", kind)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(str(value))
        if since is not None:
            sql += " AND time >= ?"
            args.append(format_time(since))
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(limit, 0))
        rows = self.db.read().execute(sql, args).fetchall()
        return [_record(r) for r in reversed(rows)]

    def get(self, seq: int) -> AuditRecord | None:
        row = self.db.read().execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone()
        return _record(row) if row else None

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; a row that no longer decodes counts as edited."""
        rows = self.db.read().execute("SELECT * FROM audit ORDER BY seq")
        try:
            return verify_rows(rows, _record, lambda row: int(row["seq"]))
        finally:
            rows.close()  # verification may stop early: do not leave the read snapshot open
