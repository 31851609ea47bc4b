"""Append-only, hash-chained audit log on SQLite.

``append`` reads the last record's hash and inserts the next record inside one
``BEGIN IMMEDIATE`` transaction, so concurrent processes build one unbroken chain.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_db import SqliteDatabase
from shared.audit_chain import GENESIS, canonical, record_hash, verify_chain
from shared.model import AuditEntry, AuditKind, AuditRecord, VerifyResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    model TEXT,
    version TEXT,
    cycle TEXT,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,
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


class SqliteAuditLog:
    def __init__(self, path: str | Path) -> None:
        self.db = SqliteDatabase(path, SCHEMA)

    def append(self, entry: AuditEntry) -> AuditRecord:
        evidence: dict[str, Any] = json.loads(canonical(entry.evidence))  # JSON-safe, normalised
        with self.db.write() as db:
            last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq = (last["seq"] + 1) if last else 1
            prev_hash = last["hash"] if last else GENESIS
            fields: dict[str, Any] = {
                "seq": seq,
                "time": datetime.now(UTC).isoformat(),
                "actor": entry.actor,
                "model": entry.model,
                "version": entry.version,
                "cycle": entry.cycle,
                "kind": entry.kind.value,
                "summary": entry.summary,
                "reason": entry.reason,
                "evidence": evidence,
                "caused_by": entry.caused_by,
                "prev_hash": prev_hash,
            }
            fields["hash"] = record_hash(fields)
            row = {**fields, "evidence": canonical(evidence)}
            db.execute(
                f"INSERT INTO audit ({', '.join(COLUMNS)}) "  # noqa: S608 (fixed names)
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                tuple(row[c] for c in COLUMNS),
            )
        return self._record(row)

    @staticmethod
    def _record(row: Any) -> AuditRecord:
        return AuditRecord(
            seq=int(row["seq"]),
            time=datetime.fromisoformat(row["time"]),
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

    def query(
        self,
        *,
        model: str | None = None,
        cycle: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        sql = "SELECT * FROM audit WHERE 1 = 1"
        args: list[Any] = []
        for column, value in (("model", model), ("cycle", cycle), ("kind", kind)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if since is not None:
            sql += " AND time >= ?"
            args.append(since.astimezone(UTC).isoformat())
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self.db.read().execute(sql, args).fetchall()
        return [self._record(r) for r in reversed(rows)]

    def get(self, seq: int) -> AuditRecord | None:
        row = self.db.read().execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone()
        return self._record(row) if row else None

    def verify(self) -> VerifyResult:
        cursor = self.db.read().execute("SELECT * FROM audit ORDER BY rowid")
        return verify_chain(self._record(r) for r in cursor)
