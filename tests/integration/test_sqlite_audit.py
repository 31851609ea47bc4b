"""Audit log on SQLite: queries, and a chain that detects every kind of tampering."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.model import AuditEntry, AuditKind


def fill(log: SqliteAuditLog, n: int = 6) -> None:
    for i in range(n):
        log.append(
            AuditEntry(
                AuditKind.DECISION if i % 2 else AuditKind.ACTION,
                f"step {i}",
                model="m" if i < 4 else "other",
                cycle=f"c{i % 2}",
                evidence={"i": i, "nested": {"b": [1, 2]}},
            )
        )


def test_append_and_query(tmp_path: Path) -> None:
    log = SqliteAuditLog(tmp_path / "audit.db")
    fill(log)
    assert [r.seq for r in log.query()] == [1, 2, 3, 4, 5, 6]
    assert [r.seq for r in log.query(model="m", kind="decision")] == [2, 4]
    assert [r.seq for r in log.query(cycle="c0", limit=2)] == [3, 5]
    record = log.get(2)
    assert record is not None and record.evidence == {"i": 1, "nested": {"b": [1, 2]}}
    assert log.query(since=record.time)[0].seq >= 1
    assert log.verify().ok and log.verify().records == 6


TAMPERING = {
    "edit summary": ["UPDATE audit SET summary = 'nothing happened' WHERE seq = 3"],
    "edit evidence": ["UPDATE audit SET evidence = '{\"i\":99}' WHERE seq = 3"],
    "edit actor": ["UPDATE audit SET actor = 'mallory' WHERE seq = 3"],
    "delete": ["DELETE FROM audit WHERE seq = 3"],
    "insert forged": [
        "UPDATE audit SET seq = -seq WHERE seq >= 3",
        "UPDATE audit SET seq = 1 - seq WHERE seq < 0",
        "INSERT INTO audit SELECT 3, time, 'mallory', model, version, cycle, kind, 'forged', "
        "reason, evidence, caused_by, hash, hash FROM audit WHERE seq = 2",
    ],
    "swap": [
        "UPDATE audit SET seq = -seq WHERE seq IN (3, 4)",
        "UPDATE audit SET seq = CASE seq WHEN -3 THEN 4 ELSE 3 END WHERE seq < 0",
    ],
}


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_verify_names_the_first_tampered_record(tmp_path: Path, attack: str) -> None:
    log = SqliteAuditLog(tmp_path / "audit.db")
    fill(log)
    with sqlite3.connect(tmp_path / "audit.db") as db:
        for statement in TAMPERING[attack]:
            db.execute(statement)
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq in (3, 4)
    assert result.problem


def _append(path: str, barrier: Any, n: int) -> None:
    log = SqliteAuditLog(path)
    barrier.wait()
    for i in range(n):
        log.append(AuditEntry(AuditKind.ACTION, f"{mp.current_process().pid}:{i}"))


def test_concurrent_appends_from_four_processes_keep_one_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.db")
    SqliteAuditLog(path)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append, args=(path, barrier, 50)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    result = SqliteAuditLog(path).verify()
    print(f"4 procs x 50 appends: {result.records} records, chain ok={result.ok}")
    assert result.ok and result.records == 200
