"""Append-only, hash-chained audit log on SQLite: one chain, and the anchor chain.

``append`` reads the last record's hash and inserts the next record inside one
``BEGIN IMMEDIATE`` transaction, so concurrent threads and processes build one unbroken chain
with no duplicate ``seq``; ``append_many`` writes a batch in one transaction. SQLite keeps
one chain (chain 0): its writers are serialised by the file's write lock anyway, so shards
would buy nothing. Anchors (``shared.audit_anchor``) go to the table ``audit_anchor``, a
chain of its own, as on Table Storage. Hashing and verification live in
:mod:`shared.audit_chain`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_db import SqliteDatabase
from shared.audit_anchor import ANCHOR_CHAIN, Head, anchor_entry, anchored_heads, cut_problem
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
CREATE TABLE IF NOT EXISTS audit_anchor (
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
INSERT_ANCHOR = INSERT.replace("INSERT INTO audit ", "INSERT INTO audit_anchor ")
ANCHOR_INDEX = -1  # ``AuditRecord.chain`` of anchor records


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


def _record(row: sqlite3.Row, chain: int = 0) -> AuditRecord:
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
        chain=chain,
    )


class SqliteAuditLog:
    """``AuditLog`` on one SQLite file. ``clock`` stamps records (UTC wall clock by default)."""

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.db = SqliteDatabase(path, SCHEMA)
        self._clock = clock

    def transaction(self) -> AbstractContextManager[Any]:
        """One ``BEGIN IMMEDIATE`` transaction for every append inside (a savepoint if nested)."""
        return self.db.write()

    def append(self, entry: AuditEntry) -> AuditRecord:
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` in order, in one transaction (all or none): the chain's tail is
        read once, under the write lock, and the records are inserted with one statement."""
        conn = self.db.joined() if len(entries) == 1 else None
        if conn is not None:  # inside a transaction, one INSERT is atomic: no savepoint
            return self._insert_many(conn, "audit", INSERT, entries, 0)
        with self.db.write() as db:
            return self._insert_many(db, "audit", INSERT, entries, 0)

    def _insert(
        self, db: sqlite3.Connection, table: str, insert: str, entry: AuditEntry, chain: int
    ) -> AuditRecord:
        return self._insert_many(db, table, insert, [entry], chain)[0]

    def _insert_many(
        self,
        db: sqlite3.Connection,
        table: str,
        insert: str,
        entries: Sequence[AuditEntry],
        chain: int,
    ) -> list[AuditRecord]:
        last = db.execute(
            f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1"  # noqa: S608 (fixed)
        ).fetchone()
        seq, prev = (int(last["seq"]), str(last["hash"])) if last else (0, GENESIS)
        records: list[AuditRecord] = []
        rows: list[tuple[Any, ...]] = []
        for entry in entries:
            seq += 1
            record, fields, evidence_text = seal_fields(
                entry,
                seq=seq,
                prev_hash=prev,
                time=self._clock(),  # stamped under the write lock: time follows seq
                chain=chain,
            )
            fields["evidence"] = evidence_text
            fields["hash"] = prev = record.hash
            rows.append(tuple(fields[c] for c in COLUMNS))
            records.append(record)
        db.executemany(insert, rows)
        return records

    def anchor(self) -> AuditRecord:
        """Commit the chain's head in the anchor chain (the newest anchor if it did not move)."""
        with self.db.write() as db:
            last = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            heads = [Head(0, int(last["seq"]), str(last["hash"])) if last else Head(0, 0, GENESIS)]
            newest = db.execute("SELECT * FROM audit_anchor ORDER BY seq DESC LIMIT 1").fetchone()
            if newest is not None:
                latest = _record(newest, ANCHOR_INDEX)
                with contextlib.suppress(ValueError):
                    if anchored_heads(latest) == heads:
                        return latest
            return self._insert(db, "audit_anchor", INSERT_ANCHOR, anchor_entry(heads), -1)

    def get_anchor(self, seq: int) -> AuditRecord | None:
        row = self.db.read().execute("SELECT * FROM audit_anchor WHERE seq = ?", (seq,)).fetchone()
        return _record(row, ANCHOR_INDEX) if row else None

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

    def get(self, seq: int, chain: int = 0) -> AuditRecord | None:
        if chain != 0:
            return None
        row = self.db.read().execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone()
        return _record(row) if row else None

    def verify(self) -> VerifyResult:
        """Recompute the anchor chain and the chain, and check the chain still holds what the
        newest anchor committed; a row that no longer decodes counts as edited."""
        db = self.db.read()
        anchors = self._verify_table(db, "audit_anchor", ANCHOR_INDEX, None)
        if not anchors.ok:
            problem = f"anchor chain seq {anchors.first_bad_seq}: {anchors.problem}"
            return VerifyResult(False, 0, anchors.first_bad_seq, problem, ANCHOR_CHAIN)
        committed: Head | None = None
        latest = self.get_anchor(anchors.records) if anchors.records else None
        if latest is not None:
            try:
                committed = next((h for h in anchored_heads(latest) if h.chain == 0), None)
            except ValueError as exc:
                return VerifyResult(False, 0, latest.seq, str(exc), ANCHOR_CHAIN)
        return self._verify_table(db, "audit", 0, committed)

    def _verify_table(
        self, db: sqlite3.Connection, table: str, chain: int, anchored: Head | None
    ) -> VerifyResult:
        rows = db.execute(f"SELECT * FROM {table} ORDER BY seq")  # noqa: S608 (fixed names)
        seen: dict[int, str] = {}
        wanted = anchored.seq if anchored is not None else 0

        def watched() -> Iterator[sqlite3.Row]:
            for row in rows:
                if row["seq"] == wanted:
                    seen[wanted] = str(row["hash"])
                yield row

        try:
            result = verify_rows(watched(), lambda r: _record(r, chain), lambda r: int(r["seq"]))
        finally:
            rows.close()  # verification may stop early: do not leave the read snapshot open
        name = ANCHOR_CHAIN if chain == ANCHOR_INDEX else str(chain)
        if not result.ok:
            return replace(result, chain=name)
        if anchored is not None:
            gone = cut_problem(anchored, result.records, seen.get(wanted))
            if gone:
                return VerifyResult(False, result.records, anchored.seq, gone, name)
        return result
