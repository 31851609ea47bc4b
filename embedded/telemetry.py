"""What the local endpoint records, in one SQLite file other processes read.

- ``requests``: one row per scored request (live or mirrored): endpoint, deployment, time,
  HTTP status, latency. Per-minute counts and latency percentiles are queries over it, and so
  is any exact window a rollout health check asks for.
- ``inputs``: the rows the endpoint scored (live traffic only), for the drift monitor.
- ``scores``: the positive-class score each live row got (when the model returns
  probabilities), for label-free performance estimation.

Only the standard library is imported here: the metrics adapter runs inside the service.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    ts REAL NOT NULL,
    status INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    mirrored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_by_deployment ON requests (endpoint, deployment, ts);
CREATE TABLE IF NOT EXISTS inputs (
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    ts REAL NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inputs_by_endpoint ON inputs (endpoint, ts);
CREATE TABLE IF NOT EXISTS scores (
    endpoint TEXT NOT NULL,
    deployment TEXT NOT NULL,
    ts REAL NOT NULL,
    score REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scores_by_endpoint ON scores (endpoint, ts);
"""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    endpoint: str
    deployment: str
    ts: float
    status: int
    latency_ms: float
    mirrored: bool = False


@dataclass(frozen=True, slots=True)
class InputRecord:
    endpoint: str
    deployment: str
    ts: float
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    endpoint: str
    deployment: str
    ts: float
    score: float


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Requests of one deployment over one window (live and mirrored together)."""

    requests: int
    errors: int  # HTTP 5xx
    latencies_ms: tuple[float, ...]

    def percentile(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)


@dataclass(frozen=True, slots=True)
class MinuteStats:
    minute: int  # epoch seconds // 60
    requests: int
    errors: int
    mirrored: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class TelemetryStore:
    """Append and query the endpoint's request and input records (SQLite, WAL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=30.0)) as conn:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
                self._ready = True
            conn.execute("PRAGMA synchronous=NORMAL")
            with conn:
                yield conn

    def exists(self) -> bool:
        return self.path.exists()

    def append(
        self,
        requests: Sequence[RequestRecord],
        inputs: Sequence[InputRecord] = (),
        scores: Sequence[ScoreRecord] = (),
    ) -> None:
        if not requests and not inputs and not scores:
            return
        with self._connect() as conn:
            conn.executemany(
                "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (r.endpoint, r.deployment, r.ts, r.status, r.latency_ms, int(r.mirrored))
                    for r in requests
                ],
            )
            conn.executemany(
                "INSERT INTO inputs VALUES (?, ?, ?, ?)",
                [(i.endpoint, i.deployment, i.ts, json.dumps(i.row, default=str)) for i in inputs],
            )
            conn.executemany(
                "INSERT INTO scores VALUES (?, ?, ?, ?)",
                [(s.endpoint, s.deployment, s.ts, s.score) for s in scores],
            )

    def window(self, endpoint: str, deployment: str, start: float, end: float) -> WindowStats:
        """Requests with ``start <= ts < end``."""
        if not self.exists():
            return WindowStats(0, 0, ())
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT status, latency_ms FROM requests"
                " WHERE endpoint = ? AND deployment = ? AND ts >= ? AND ts < ?",
                (endpoint, deployment, start, end),
            ).fetchall()
        errors = sum(1 for status, _ in rows if status >= 500)
        return WindowStats(len(rows), errors, tuple(float(ms) for _, ms in rows))

    def per_minute(
        self, endpoint: str, deployment: str, start: float, end: float
    ) -> list[MinuteStats]:
        """Counts and latency percentiles per minute bucket in ``[start, end)``."""
        if not self.exists():
            return []
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT CAST(ts / 60 AS INTEGER), status, latency_ms, mirrored FROM requests"
                " WHERE endpoint = ? AND deployment = ? AND ts >= ? AND ts < ?"
                " ORDER BY ts",
                (endpoint, deployment, start, end),
            ).fetchall()
        buckets: dict[int, list[tuple[int, float, int]]] = {}
        for minute, status, latency, mirrored in rows:
            buckets.setdefault(int(minute), []).append((int(status), float(latency), mirrored))
        out = []
        for minute, items in sorted(buckets.items()):
            latencies = [ms for _, ms, _ in items]
            out.append(
                MinuteStats(
                    minute=minute,
                    requests=len(items),
                    errors=sum(1 for s, _, _ in items if s >= 500),
                    mirrored=sum(1 for _, _, m in items if m),
                    p50_ms=percentile(latencies, 50),
                    p95_ms=percentile(latencies, 95),
                    p99_ms=percentile(latencies, 99),
                )
            )
        return out

    def inputs(
        self,
        endpoint: str,
        start: float,
        end: float,
        *,
        deployment: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Scored rows with ``start <= ts < end``, oldest first (the newest ``limit`` if set)."""
        if not self.exists():
            return []
        query = "SELECT row FROM inputs WHERE endpoint = ? AND ts >= ? AND ts < ?"
        params: list[Any] = [endpoint, start, end]
        if deployment is not None:
            query += " AND deployment = ?"
            params.append(deployment)
        query += " ORDER BY ts DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [json.loads(row) for (row,) in reversed(rows)]

    def scores(
        self, endpoint: str, deployment: str | None, start: float, end: float, limit: int
    ) -> list[float]:
        """Scores of live rows with ``start <= ts < end``, oldest first (the newest ``limit``)."""
        if not self.exists():
            return []
        query = "SELECT score FROM scores WHERE endpoint = ? AND ts >= ? AND ts < ?"
        params: list[Any] = [endpoint, start, end]
        if deployment is not None:
            query += " AND deployment = ?"
            params.append(deployment)
        query += " ORDER BY ts DESC, rowid DESC LIMIT ?"
        params.append(int(limit))
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [float(score) for (score,) in reversed(rows)]

    def prune(self, before: float) -> None:
        """Forget records older than ``before`` (epoch seconds)."""
        if not self.exists():
            return
        with self._connect() as conn:
            conn.execute("DELETE FROM requests WHERE ts < ?", (before,))
            conn.execute("DELETE FROM inputs WHERE ts < ?", (before,))
            conn.execute("DELETE FROM scores WHERE ts < ?", (before,))
