"""State store on SQLite: dedup keys, cycles, per-model locks, cooldowns, pending signals.

Every decision about "who acts" is one conditional write inside ``BEGIN IMMEDIATE``, so
several processes sharing the file act once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.adapters.sqlite_db import SqliteDatabase
from shared.errors import ConcurrencyError
from shared.model import Cycle
from shared.ports import Claim

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,            -- 'claimed' | 'done'
    until REAL NOT NULL              -- lease expiry (claimed) or completion time (done)
);
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
    model TEXT PRIMARY KEY,
    cycle_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS model_closed (
    model TEXT PRIMARY KEY,
    closed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signals (
    model TEXT NOT NULL,
    key TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (model, key)
);
"""


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class SqliteStateStore:
    def __init__(self, path: str | Path) -> None:
        self.db = SqliteDatabase(path, SCHEMA)

    # -- deliveries ---------------------------------------------------------------------

    def claim_delivery(self, key: str, now: datetime, lease_s: float) -> Claim:
        until = _ts(now + timedelta(seconds=lease_s))
        with self.db.write() as db:
            row = db.execute(
                "SELECT status, until FROM deliveries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO deliveries (key, status, until) VALUES (?, 'claimed', ?)",
                    (key, until),
                )
                return Claim.NEW
            if row["status"] == "done":
                return Claim.DUPLICATE
            if row["until"] > _ts(now):
                return Claim.IN_PROGRESS
            db.execute("UPDATE deliveries SET until = ? WHERE key = ?", (until, key))
            return Claim.RETRY

    def finish_delivery(self, key: str, now: datetime) -> None:
        with self.db.write() as db:
            db.execute(
                "UPDATE deliveries SET status = 'done', until = ? WHERE key = ?", (_ts(now), key)
            )

    def release_delivery(self, key: str) -> None:
        with self.db.write() as db:
            db.execute("DELETE FROM deliveries WHERE key = ? AND status = 'claimed'", (key,))

    # -- cycles -------------------------------------------------------------------------

    def create_cycle(self, cycle: Cycle) -> str | None:
        with self.db.write() as db:
            row = db.execute(
                "SELECT cycle_id FROM model_locks WHERE model = ?", (cycle.model,)
            ).fetchone()
            if row is not None:
                return str(row["cycle_id"])
            if cycle.is_active:
                db.execute(
                    "INSERT INTO model_locks (model, cycle_id) VALUES (?, ?)",
                    (cycle.model, cycle.id),
                )
            cycle.version += 1
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
                    cycle.version,
                    json.dumps(cycle.to_json()),
                ),
            )
            return None

    def save_cycle(self, cycle: Cycle) -> None:
        with self.db.write() as db:
            row = db.execute("SELECT version FROM cycles WHERE id = ?", (cycle.id,)).fetchone()
            if row is None or row["version"] != cycle.version:
                found = None if row is None else row["version"]
                raise ConcurrencyError(
                    f"cycle {cycle.id} is at version {found}, not {cycle.version}"
                )
            new_version = cycle.version + 1
            body = cycle.to_json()
            body["version"] = new_version
            db.execute(
                "UPDATE cycles SET state = ?, active = ?, job_name = ?, version = ?, body = ? "
                "WHERE id = ?",
                (
                    cycle.state.value,
                    int(cycle.is_active),
                    cycle.job_name,
                    new_version,
                    json.dumps(body),
                    cycle.id,
                ),
            )
            if not cycle.is_active:
                deleted = db.execute(
                    "DELETE FROM model_locks WHERE model = ? AND cycle_id = ?",
                    (cycle.model, cycle.id),
                ).rowcount
                if deleted:
                    db.execute(
                        "INSERT INTO model_closed (model, closed_at) VALUES (?, ?) "
                        "ON CONFLICT (model) DO UPDATE SET closed_at = excluded.closed_at",
                        (cycle.model, _ts(cycle.updated_at)),
                    )
            cycle.version = new_version

    def _one(self, sql: str, args: tuple[object, ...]) -> Cycle | None:
        row = self.db.read().execute(sql, args).fetchone()
        return self._cycle(row["body"], row["version"]) if row else None

    @staticmethod
    def _cycle(body: str, version: int) -> Cycle:
        data = json.loads(body)
        data["version"] = version
        return Cycle.from_json(data)

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
            "SELECT body, version FROM cycles WHERE job_name = ? ORDER BY created_at DESC",
            (job_name,),
        )

    def list_cycles(self, model: str | None = None, active_only: bool = False) -> list[Cycle]:
        sql = "SELECT body, version FROM cycles WHERE 1 = 1"
        args: list[object] = []
        if model is not None:
            sql += " AND model = ?"
            args.append(model)
        if active_only:
            sql += " AND active = 1"
        sql += " ORDER BY created_at DESC, id"
        rows = self.db.read().execute(sql, args).fetchall()
        return [self._cycle(r["body"], r["version"]) for r in rows]

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
                "INSERT OR IGNORE INTO signals (model, key, at) VALUES (?, ?, ?)",
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
        with self.db.write() as db:
            if source is None:
                cur = db.execute("DELETE FROM signals WHERE model = ?", (model,))
            else:
                cur = db.execute(
                    "DELETE FROM signals WHERE model = ? AND substr(key, 1, ?) = ?",
                    (model, len(source), source),
                )
            return int(cur.rowcount)
