"""State store on SQLite: dedup keys, cycles, per-model locks, cooldowns, pending signals.

Every decision about "who acts" is one conditional write inside ``BEGIN IMMEDIATE``, so
several threads and processes sharing the file act once. Times are stored as UTC epoch
seconds (REAL): exact to the microsecond for any date before 2242, and ordered numerically.
A cycle is stored whole as JSON (``Cycle.to_json``) beside the columns it is looked up by.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.adapters.sqlite_db import SqliteDatabase
from shared.errors import AlreadyExists, ConcurrencyError
from shared.model import Cycle
from shared.ports import Claim, Intent

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,            -- 'claimed' or 'done'
    until REAL NOT NULL,             -- lease expiry (claimed) or completion time (done)
    owner TEXT NOT NULL DEFAULT ''   -- who holds the lease (claimed)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cycles (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    active INTEGER NOT NULL,
    job_name TEXT,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cycles_model ON cycles (model, created_at);
CREATE INDEX IF NOT EXISTS cycles_job ON cycles (job_name);
CREATE INDEX IF NOT EXISTS cycles_active ON cycles (active);
CREATE TABLE IF NOT EXISTS model_locks (
    model TEXT PRIMARY KEY,          -- at most one active cycle per model
    cycle_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_closed (
    model TEXT PRIMARY KEY,
    closed_at REAL NOT NULL          -- when the model's last active cycle closed (cooldowns)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- 'message' or 'publish' (shared.ports.Intent)
    body TEXT NOT NULL,
    owner TEXT NOT NULL,             -- who performs it
    until REAL NOT NULL,             -- until then, then the reconciler takes it
    attempts INTEGER NOT NULL DEFAULT 0  -- tries that failed (handlers.outbox gives up at N)
);
CREATE TABLE IF NOT EXISTS signals (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (model, key)
);
"""


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the state store needs UTC-aware")
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _body(cycle: Cycle, version: int) -> str:
    data = cycle.to_json()
    data["version"] = version
    return json.dumps(data, separators=(",", ":"))


def _intent(row: sqlite3.Row) -> Intent:
    return Intent(int(row["id"]), row["kind"], row["body"], int(row["attempts"]))


def _cycle(row: sqlite3.Row) -> Cycle:
    data = json.loads(row["body"])
    data["version"] = row["version"]  # the column is authoritative
    return Cycle.from_json(data)


def _deliveries(db: sqlite3.Connection, keys: Sequence[str]) -> dict[str, tuple[str, float]]:
    """``key -> (status, until)`` of the keys that have a row, read in chunks of 500."""
    found: dict[str, tuple[str, float]] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for row in db.execute(
            f"SELECT key, status, until FROM deliveries WHERE key IN ({marks})",  # noqa: S608
            chunk,
        ):
            found[row["key"]] = (row["status"], row["until"])
    return found


def _classify(
    keys: Sequence[str], known: dict[str, tuple[str, float]], at: float
) -> tuple[list[Claim], list[str], list[str]]:
    """Each key's claim given the rows found (``known``, updated as keys are taken: the same
    key again in ``keys`` is then in progress); also the keys to insert and to take over."""
    claims: list[Claim] = []
    new: list[str] = []
    retried: list[str] = []
    for key in keys:
        row = known.get(key)
        if row is None:
            new.append(key)
            claims.append(Claim.NEW)
            known[key] = ("claimed", math.inf)
        elif row[0] == "done":
            claims.append(Claim.DUPLICATE)
        elif row[1] > at:
            claims.append(Claim.IN_PROGRESS)
        else:
            retried.append(key)
            claims.append(Claim.RETRY)
            known[key] = ("claimed", math.inf)
    return claims, new, retried


class SqliteStateStore:
    """``StateStore`` on one SQLite file, safe to share between threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.db = SqliteDatabase(path, SCHEMA)
        with self.db.write() as db:  # files written before deliveries had an owner
            columns = {row["name"] for row in db.execute("PRAGMA table_info(deliveries)")}
            if "owner" not in columns:
                db.execute("ALTER TABLE deliveries ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            columns = {row["name"] for row in db.execute("PRAGMA table_info(outbox)")}
            if "attempts" not in columns:  # outboxes written before intents counted tries
                db.execute("ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")

    def transaction(self) -> AbstractContextManager[Any]:
        """One ``BEGIN IMMEDIATE`` transaction for every write inside (a savepoint if nested)."""
        return self.db.write()

    # -- outbox -------------------------------------------------------------------------

    def add_intent(self, kind: str, body: str, now: datetime, lease_s: float, owner: str) -> int:
        until = _ts(now + timedelta(seconds=lease_s))
        # one statement: inside the open transaction (no savepoint needed) or on its own
        cur = (self.db.joined() or self.db.connection()).execute(
            "INSERT INTO outbox (kind, body, owner, until) VALUES (?, ?, ?, ?)",
            (kind, body, owner, until),
        )
        return int(cur.lastrowid or 0)

    def take_intents(
        self, now: datetime, lease_s: float, owner: str, *, expired: bool, limit: int
    ) -> list[Intent]:
        if not expired:
            rows = self.db.read().execute(
                "SELECT id, kind, body, attempts FROM outbox WHERE owner = ? ORDER BY id LIMIT ?",
                (owner, max(limit, 0)),
            )
            return [_intent(r) for r in rows]
        due = "SELECT id, kind, body, attempts FROM outbox WHERE until <= ? ORDER BY id LIMIT ?"
        args = (_ts(now), max(limit, 0))
        if not self.db.read().execute(due, args).fetchone():
            return []  # the usual tick: nothing left over, no write lock taken
        with self.db.write() as db:
            found = db.execute(due, args).fetchall()
            until = _ts(now + timedelta(seconds=lease_s))
            db.executemany(
                "UPDATE outbox SET owner = ?, until = ? WHERE id = ?",
                [(owner, until, r["id"]) for r in found],
            )
        return [_intent(r) for r in found]

    def finish_intent(self, intent_id: int) -> None:
        # one statement: inside the open transaction (a held ``WriteGroup``'s) or on its own
        (self.db.joined() or self.db.connection()).execute(
            "DELETE FROM outbox WHERE id = ?", (intent_id,)
        )

    def fail_intent(self, intent_id: int) -> int:
        with self.db.write() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (intent_id,))
            row = db.execute("SELECT attempts FROM outbox WHERE id = ?", (intent_id,)).fetchone()
        return int(row["attempts"]) if row is not None else 0

    # -- deliveries ---------------------------------------------------------------------

    def claim_delivery(self, key: str, now: datetime, lease_s: float, owner: str = "") -> Claim:
        at, until = _ts(now), _ts(now + timedelta(seconds=lease_s))
        # Fast paths, one statement each (atomic on its own): a new key is inserted; a key
        # done is final. Only a key under lease needs the read-check-write transaction.
        conn = self.db.connection()  # autocommit: a lone write statement waits for the lock
        if conn.execute(
            "INSERT INTO deliveries (key, status, until, owner) VALUES (?, 'claimed', ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (key, until, owner),
        ).rowcount:
            return Claim.NEW
        row = conn.execute("SELECT status FROM deliveries WHERE key = ?", (key,)).fetchone()
        if row is not None and row["status"] == "done":
            return Claim.DUPLICATE
        with self.db.write() as db:
            row = db.execute(
                "SELECT status, until FROM deliveries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO deliveries (key, status, until, owner) "
                    "VALUES (?, 'claimed', ?, ?)",
                    (key, until, owner),
                )
                return Claim.NEW
            if row["status"] == "done":
                return Claim.DUPLICATE
            if row["until"] > at:
                return Claim.IN_PROGRESS
            db.execute(
                "UPDATE deliveries SET until = ?, owner = ? WHERE key = ?", (until, owner, key)
            )
            return Claim.RETRY

    def claim_deliveries(
        self, keys: Sequence[str], now: datetime, lease_s: float, owner: str = ""
    ) -> list[Claim]:
        """Every key's claim in one ``BEGIN IMMEDIATE`` transaction (a batch's group commit):
        the keys' rows read in one statement, the new ones inserted in one."""
        until = _ts(now + timedelta(seconds=lease_s))
        with self.db.write() as db:
            claims, new, retried = _classify(keys, _deliveries(db, keys), _ts(now))
            db.executemany(
                "INSERT INTO deliveries (key, status, until, owner) VALUES (?, 'claimed', ?, ?)",
                [(key, until, owner) for key in new],
            )
            db.executemany(
                "UPDATE deliveries SET until = ?, owner = ? WHERE key = ?",
                [(until, owner, key) for key in retried],
            )
        return claims

    def delivery_claims(self, keys: Sequence[str], now: datetime) -> list[Claim]:
        """What ``claim_deliveries`` would answer, read without writing the claims: for the
        transaction of a batch that finishes every key it takes (``finish_deliveries``) before
        it commits, so no other worker could have seen a claim row anyway."""
        conn = self.db.joined() or self.db.read()
        return _classify(keys, _deliveries(conn, keys), _ts(now))[0]

    def finish_deliveries(self, keys: Sequence[str], now: datetime) -> None:
        """Every key marked done in one transaction."""
        at = _ts(now)
        with self.db.write() as db:
            db.executemany(
                "INSERT INTO deliveries (key, status, until) VALUES (?, 'done', ?) "
                "ON CONFLICT (key) DO UPDATE SET status = 'done', until = excluded.until",
                [(key, at) for key in keys],
            )

    def finish_delivery(self, key: str, now: datetime) -> None:
        self.db.connection().execute(  # one statement: its own atomic transaction
            "INSERT INTO deliveries (key, status, until) VALUES (?, 'done', ?) "
            "ON CONFLICT (key) DO UPDATE SET status = 'done', until = excluded.until",
            (key, _ts(now)),
        )

    def release_delivery(self, key: str, owner: str = "") -> None:
        self.db.connection().execute(
            "DELETE FROM deliveries WHERE key = ? AND status = 'claimed' AND owner = ?",
            (key, owner),
        )

    def purge_deliveries(self, done_before: datetime, limit: int) -> int:
        with self.db.write() as db:
            return db.execute(
                "DELETE FROM deliveries WHERE key IN (SELECT key FROM deliveries "
                "WHERE status = 'done' AND until < ? LIMIT ?)",
                (_ts(done_before), max(limit, 0)),
            ).rowcount

    # -- cycles -------------------------------------------------------------------------

    def create_cycle(self, cycle: Cycle) -> str | None:
        with self.db.write() as db:
            lock = db.execute(
                "SELECT cycle_id FROM model_locks WHERE model = ?", (cycle.model,)
            ).fetchone()
            if lock is not None:
                return str(lock["cycle_id"])
            if db.execute("SELECT 1 FROM cycles WHERE id = ?", (cycle.id,)).fetchone():
                raise AlreadyExists(f"cycle {cycle.id} already exists (and is closed)")
            version = cycle.version + 1
            db.execute(
                "INSERT INTO cycles (id, model, state, active, job_name, created_at, version, "
                "body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cycle.id,
                    cycle.model,
                    cycle.state.value,
                    int(cycle.is_active),
                    cycle.job_name,
                    _ts(cycle.created_at),
                    version,
                    _body(cycle, version),
                ),
            )
            if cycle.is_active:
                db.execute(
                    "INSERT INTO model_locks (model, cycle_id) VALUES (?, ?)",
                    (cycle.model, cycle.id),
                )
        cycle.version = version  # only once committed
        return None

    def save_cycle(self, cycle: Cycle) -> None:
        version = cycle.version + 1
        with self.db.write() as db:
            updated = db.execute(
                "UPDATE cycles SET state = ?, active = ?, job_name = ?, version = ?, body = ? "
                "WHERE id = ? AND version = ?",
                (
                    cycle.state.value,
                    int(cycle.is_active),
                    cycle.job_name,
                    version,
                    _body(cycle, version),
                    cycle.id,
                    cycle.version,
                ),
            ).rowcount
            if not updated:
                row = db.execute("SELECT version FROM cycles WHERE id = ?", (cycle.id,)).fetchone()
                found = "missing" if row is None else f"at version {row['version']}"
                raise ConcurrencyError(
                    f"cycle {cycle.id} is {found}, not at version {cycle.version}: "
                    "reload it and decide again"
                )
            if not cycle.is_active:
                released = db.execute(
                    "DELETE FROM model_locks WHERE model = ? AND cycle_id = ?",
                    (cycle.model, cycle.id),
                ).rowcount
                if released:
                    db.execute(
                        "INSERT INTO model_closed (model, closed_at) VALUES (?, ?) "
                        "ON CONFLICT (model) DO UPDATE SET closed_at = excluded.closed_at",
                        (cycle.model, _ts(cycle.updated_at)),
                    )
        cycle.version = version  # only once committed

    def _one(self, sql: str, args: tuple[object, ...]) -> Cycle | None:
        row = self.db.read().execute(sql, args).fetchone()
        return _cycle(row) if row else None

    def get_cycle(self, cycle_id: str) -> Cycle | None:
        return self._one("SELECT body, version FROM cycles WHERE id = ?", (cycle_id,))

    def active_cycle(self, model: str) -> Cycle | None:
        return self._one(
            "SELECT c.body, c.version FROM model_locks l JOIN cycles c ON c.id = l.cycle_id "
            "WHERE l.model = ?",
            (model,),
        )

    def find_cycle_by_job(self, job_name: str) -> Cycle | None:
        return self._one(
            "SELECT body, version FROM cycles WHERE job_name = ? "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (job_name,),
        )

    def list_cycles(self, model: str | None = None, active_only: bool = False) -> list[Cycle]:
        """Newest first (by ``created_at``, then by insertion)."""
        sql = "SELECT body, version FROM cycles WHERE 1 = 1"
        args: list[object] = []
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        if active_only:
            sql += " AND active = 1"
        sql += " ORDER BY created_at DESC, rowid DESC"
        return [_cycle(r) for r in self.db.read().execute(sql, args)]

    def last_closed_at(self, model: str) -> datetime | None:
        row = (
            self.db.read()
            .execute("SELECT closed_at FROM model_closed WHERE model = ?", (model,))
            .fetchone()
        )
        return _dt(row["closed_at"]) if row else None

    # -- pending signals ----------------------------------------------------------------

    def add_signal(self, model: str, key: str, at: datetime) -> int:
        with self.db.write() as db:
            db.execute(
                "INSERT INTO signals (model, key, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (model, key, _ts(at)),
            )
            row = db.execute(
                "SELECT COUNT(*) AS n FROM signals WHERE model = ?", (model,)
            ).fetchone()
            return int(row["n"])

    def count_signals(self, model: str, since: datetime) -> int:
        row = (
            self.db.read()
            .execute(
                "SELECT COUNT(*) AS n FROM signals WHERE model = ? AND at >= ?", (model, _ts(since))
            )
            .fetchone()
        )
        return int(row["n"])

    def clear_signals(self, model: str, source: str | None = None) -> int:
        """Clear the model's pending signals, or only those whose key starts with ``source``."""
        with self.db.write() as db:
            if source is None:
                cur = db.execute("DELETE FROM signals WHERE model = ?", (model,))
            else:
                cur = db.execute(
                    "DELETE FROM signals WHERE model = ? AND substr(key, 1, ?) = ?",
                    (model, len(source), source),
                )
            return int(cur.rowcount)
