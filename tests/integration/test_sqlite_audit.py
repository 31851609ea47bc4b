"""Audit log on SQLite: queries, and a hash chain that names the first tampered record.

Tests that ask only for ``log`` use nothing but the ``AuditLog`` port: they are the contract
any backend must pass (``log`` is a fixture another backend's suite can parametrise).
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing as mp
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_audit import INSERT, SqliteAuditLog, as_row
from shared.audit_chain import GENESIS, hash_fields, record_hash, seal, verify_chain
from shared.model import AuditEntry, AuditKind, AuditRecord
from shared.ports import AuditLog

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def ticking_clock(step_ms: float = 1.5) -> Callable[[], datetime]:
    """T0, then ``step_ms`` later on every call."""
    calls = iter(range(10**9))
    return lambda: T0 + timedelta(milliseconds=step_ms * next(calls))


def fill(log: AuditLog, n: int = 6) -> list[AuditRecord]:
    return [
        log.append(
            AuditEntry(
                AuditKind.DECISION if i % 2 else AuditKind.ACTION,
                f"step {i}",
                model="m" if i < 4 else "other",
                version=str(i),
                cycle=f"c{i % 2}",
                reason=f"because {i}",
                evidence={"i": i, "nested": {"b": [1, 2]}},
                caused_by=f"event-{i}",
            )
        )
        for i in range(n)
    ]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def log(path: Path) -> SqliteAuditLog:
    return SqliteAuditLog(path, clock=ticking_clock())


def test_append_returns_what_is_stored(log: AuditLog) -> None:
    first, second = fill(log, 2)
    assert (first.seq, first.prev_hash) == (1, GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert log.get(1) == first and log.get(2) == second
    assert log.get(3) is None and log.get(0) is None
    assert first.time == T0 and first.time.tzinfo is not None
    assert first.time.utcoffset() == timedelta(0)
    assert second.time - first.time == timedelta(microseconds=1500)


def test_time_is_stored_as_utc_with_microseconds(tmp_path: Path) -> None:
    on_the_second = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    log = SqliteAuditLog(tmp_path / "a.db", clock=lambda: on_the_second)
    record = log.append(AuditEntry(AuditKind.ACTION, "x"))
    with sqlite3.connect(tmp_path / "a.db") as db:
        (stored,) = db.execute("SELECT time FROM audit").fetchone()
    assert stored == "2026-01-01T12:00:00.000000+00:00"
    assert record.time == on_the_second and log.verify().ok
    wall = SqliteAuditLog(tmp_path / "b.db").append(AuditEntry(AuditKind.ACTION, "y"))
    assert wall.time.tzinfo is not None and wall.time.utcoffset() == timedelta(0)


def test_evidence_is_stored_as_canonical_json(log: SqliteAuditLog, path: Path) -> None:
    record = log.append(
        AuditEntry(AuditKind.DECISION, "x", evidence={"z": (1, 2), "at": T0, "a": {"y": None}})
    )
    assert record.evidence == {"z": [1, 2], "at": str(T0), "a": {"y": None}}
    assert log.get(1) == record
    with sqlite3.connect(path) as db:
        (stored,) = db.execute("SELECT evidence FROM audit").fetchone()
    assert stored == '{"a":{"y":null},"at":"2026-01-01 12:00:00.123456+00:00","z":[1,2]}'
    assert SqliteAuditLog(path).get(1) == record  # another handle reads the same


def test_query_filters_in_seq_order(log: AuditLog) -> None:
    records = fill(log)
    assert [r.seq for r in log.query()] == [1, 2, 3, 4, 5, 6]
    assert [r.seq for r in log.query(model="m")] == [1, 2, 3, 4]
    assert [r.seq for r in log.query(model="m", kind="decision")] == [2, 4]
    assert [r.seq for r in log.query(kind=AuditKind.ACTION)] == [1, 3, 5]
    assert [r.seq for r in log.query(cycle="c0")] == [1, 3, 5]
    assert [r.seq for r in log.query(since=records[3].time)] == [4, 5, 6]  # inclusive
    assert [r.seq for r in log.query(since=records[3].time + timedelta(microseconds=1))] == [5, 6]
    cest = records[3].time.astimezone(datetime.now().astimezone().tzinfo)
    assert [r.seq for r in log.query(since=cest)] == [4, 5, 6]  # any time zone
    assert [r.seq for r in log.query(limit=2)] == [5, 6]  # the newest N, still ascending
    assert [r.seq for r in log.query(cycle="c0", limit=2)] == [3, 5]
    assert [r.seq for r in log.query(model="m", since=records[1].time, limit=2)] == [3, 4]
    assert log.query(limit=0) == [] and log.query(model="nobody") == []
    assert log.query() == records


def test_an_empty_and_an_intact_log_verify(log: AuditLog) -> None:
    assert log.verify() == verify_chain([]) and log.verify().ok and log.verify().records == 0
    fill(log)
    result = log.verify()
    assert result.ok and result.records == 6 and result.first_bad_seq is None


def test_the_chain_functions_are_backend_free(log: AuditLog) -> None:
    records = fill(log, 4)
    fields = hash_fields(records[1])
    assert "hash" not in fields and fields["seq"] == 2 and fields["prev_hash"] == records[0].hash
    assert record_hash(fields) == records[1].hash
    assert record_hash(dict(reversed(list(fields.items())))) == records[1].hash  # key order
    assert record_hash({**fields, "hash": "ignored"}) == records[1].hash
    assert verify_chain(records).ok
    assert verify_chain([records[0], records[2], records[1], records[3]]).first_bad_seq == 3
    edited = dataclasses.replace(records[2], reason="edited")
    assert verify_chain([*records[:2], edited, records[3]]).first_bad_seq == 3
    resealed = seal(
        AuditEntry(AuditKind.ACTION, "x"), seq=1, prev_hash=GENESIS, time=records[0].time
    )
    assert verify_chain([resealed]).ok


def _forged_row(log: SqliteAuditLog, seq: int, *, rehash: bool) -> tuple[Any, ...]:
    """A made-up record for ``seq``, chained to the real one before it."""
    before = log.get(seq - 1)
    assert before is not None
    forged = seal(
        AuditEntry(AuditKind.DECISION, "approved by nobody", actor="mallory"),
        seq=seq,
        prev_hash=before.hash,
        time=before.time,
    )
    return as_row(forged if rehash else dataclasses.replace(forged, hash="f" * 64))


SHIFT_UP_FROM_3 = [  # make room at seq 3 (two steps: seq is a primary key)
    "UPDATE audit SET seq = -seq - 1 WHERE seq >= 3",
    "UPDATE audit SET seq = -seq WHERE seq < 0",
]
SWAP_3_4 = [  # records 3 and 4 change places (the same as swapping every column but seq)
    "UPDATE audit SET seq = -seq WHERE seq IN (3, 4)",
    "UPDATE audit SET seq = CASE seq WHEN -3 THEN 4 ELSE 3 END WHERE seq < 0",
]
# attack -> (SQL run behind the log's back, or a forged row to insert, first bad seq)
TAMPERING: dict[str, tuple[list[str], str | None, int]] = {
    "edit summary": (["UPDATE audit SET summary = 'nothing happened' WHERE seq = 3"], None, 3),
    "edit evidence": (["UPDATE audit SET evidence = '{\"i\":99}' WHERE seq = 3"], None, 3),
    "evidence unreadable": (["UPDATE audit SET evidence = '{not json' WHERE seq = 3"], None, 3),
    "edit actor": (["UPDATE audit SET actor = 'mallory' WHERE seq = 3"], None, 3),
    "null a field": (["UPDATE audit SET model = NULL WHERE seq = 3"], None, 3),
    "edit kind": (["UPDATE audit SET kind = 'ignored' WHERE seq = 3"], None, 3),
    "kind unreadable": (["UPDATE audit SET kind = 'whatever' WHERE seq = 3"], None, 3),
    "edit time": (
        ["UPDATE audit SET time = replace(time, '12:00', '11:00') WHERE seq = 3"],
        None,
        3,
    ),
    "time naive": (["UPDATE audit SET time = substr(time, 1, 26) WHERE seq = 3"], None, 3),
    "edit hash": (["UPDATE audit SET hash = prev_hash WHERE seq = 3"], None, 3),
    "edit prev_hash": (["UPDATE audit SET prev_hash = hash WHERE seq = 3"], None, 3),
    "delete first": (["DELETE FROM audit WHERE seq = 1"], None, 2),
    "delete middle": (["DELETE FROM audit WHERE seq = 3"], None, 4),
    "insert forged": (SHIFT_UP_FROM_3, "bad hash", 3),
    "insert forged, rehashed": (SHIFT_UP_FROM_3, "rehashed", 4),
    "replace with forged": (["DELETE FROM audit WHERE seq = 3"], "rehashed", 4),
    "swap two records": (SWAP_3_4, None, 3),
    "move a record to the end": (["UPDATE audit SET seq = 7 WHERE seq = 3"], None, 4),
}


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_verify_names_the_first_tampered_record(
    log: SqliteAuditLog, path: Path, attack: str
) -> None:
    fill(log)
    statements, forged, first_bad = TAMPERING[attack]
    row = _forged_row(log, 3, rehash=forged == "rehashed") if forged else None
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
        if row is not None:
            db.execute(INSERT, row)
    result = log.verify()
    print(f"{attack}: {result}")
    assert not result.ok
    assert result.first_bad_seq == first_bad
    assert result.problem


def _append(path: str, start: Any, out: Any, index: int, n: int) -> None:
    try:
        log = SqliteAuditLog(path)
        start.wait()
        seqs = []
        for i in range(n):
            seqs.append(log.append(AuditEntry(AuditKind.ACTION, f"p{index}:{i}")).seq)
            time.sleep(0.001)  # a writer does other work between appends: let them interleave
        out.put((index, seqs))
    except BaseException:
        out.put((index, traceback.format_exc()))
        raise


def test_concurrent_appends_from_four_processes_keep_one_chain(path: Path) -> None:
    procs_n, per_proc = 4, 50
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(procs_n, timeout=60), ctx.Queue()
    procs = [
        ctx.Process(target=_append, args=(str(path), start, out, i, per_proc))
        for i in range(procs_n)
    ]
    for p in procs:
        p.start()
    try:
        seqs = dict(out.get(timeout=90) for _ in procs)
    finally:
        for p in procs:
            p.join(30)
    assert all(isinstance(s, list) for s in seqs.values()), seqs
    assert [p.exitcode for p in procs] == [0] * procs_n
    log = SqliteAuditLog(path)
    result = log.verify()
    records = log.query()
    interleaved = sum(1 for a, b in itertools.pairwise(records) if a.summary[:3] != b.summary[:3])
    print(
        f"{procs_n} procs x {per_proc} appends: {result.records} records, chain ok={result.ok}, "
        f"{interleaved} switches between writers"
    )
    assert result.ok and result.records == procs_n * per_proc
    assert sorted(s for mine in seqs.values() for s in mine) == list(range(1, 201))
    assert all(a.time <= b.time for a, b in itertools.pairwise(records))
    summaries = {r.seq: r.summary for r in records}
    for index, mine in seqs.items():  # each writer's records appear in its own order
        assert [summaries[s] for s in mine] == [f"p{index}:{i}" for i in range(per_proc)]


def test_threads_appending_to_one_log_keep_one_chain(log: AuditLog) -> None:
    start = threading.Barrier(8)

    def append_some(t: int) -> None:
        start.wait()
        for i in range(25):
            log.append(AuditEntry(AuditKind.ACTION, f"t{t}:{i}"))

    threads = [threading.Thread(target=append_some, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    result = log.verify()
    assert result.ok and result.records == 200
