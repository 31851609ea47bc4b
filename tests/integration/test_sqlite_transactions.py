"""``immediate``: a write transaction, or a savepoint inside one, on a real SQLite file: what
a block wrote is kept when it ends and undone when it raises, and a nested block is undone
alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.adapters.sqlite_db import SqliteDatabase, connect, immediate


def database(tmp_path: Path) -> SqliteDatabase:
    return SqliteDatabase(tmp_path / "t.db", "CREATE TABLE IF NOT EXISTS t (v INTEGER UNIQUE)")


def values(db: SqliteDatabase) -> list[int]:
    other = connect(db.path)  # another connection sees only what was committed
    try:
        return [row[0] for row in other.execute("SELECT v FROM t ORDER BY v")]
    finally:
        other.close()


def test_a_block_commits_what_it_wrote_and_releases_the_lock(tmp_path: Path) -> None:
    db = database(tmp_path)
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        assert values(db) == []  # not visible before the commit
    assert values(db) == [1] and not db.connection().in_transaction


def test_a_block_that_raises_leaves_nothing(tmp_path: Path) -> None:
    db = database(tmp_path)
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("stop")
    assert values(db) == [] and not db.connection().in_transaction


def test_a_nested_block_that_raises_is_undone_alone(tmp_path: Path) -> None:
    db = database(tmp_path)
    with db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError), db.write() as inner:
            inner.execute("INSERT INTO t VALUES (2)")
            inner.execute("INSERT INTO t VALUES (1)")  # fails: unique
        with db.write() as inner:
            inner.execute("INSERT INTO t VALUES (3)")
        assert conn.in_transaction
    assert values(db) == [1, 3]


def test_an_outer_block_that_raises_undoes_its_nested_blocks_too(tmp_path: Path) -> None:
    db = database(tmp_path)
    with pytest.raises(KeyboardInterrupt), db.write() as conn:
        with immediate(conn) as inner:
            inner.execute("INSERT INTO t VALUES (1)")
        raise KeyboardInterrupt  # BaseException: still rolled back
    assert values(db) == [] and not db.connection().in_transaction


def test_a_failed_commit_rolls_back_and_raises(tmp_path: Path) -> None:
    db = database(tmp_path)
    db.connection().execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    db.connection().execute(
        "CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO c VALUES (42)")  # checked at COMMIT: no parent row
    assert values(db) == [] and not db.connection().in_transaction
