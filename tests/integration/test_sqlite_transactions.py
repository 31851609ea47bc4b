"""``immediate``: a write transaction, or a savepoint inside one, on a real SQLite file: what
a block wrote is kept when it ends and undone when it raises, and a nested block is undone
alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shared.adapters.sqlite_db import SqliteDatabase, WriteGroup, connect, immediate


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


def test_a_write_group_holds_writes_until_flushed(tmp_path: Path) -> None:
    state, audit = database(tmp_path / "s"), database(tmp_path / "a")
    with WriteGroup([state, audit]).held() as group:
        with state.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        with state.write() as conn:
            conn.execute("INSERT INTO t VALUES (2)")
        assert values(state) == []  # one transaction, still open
        assert not audit.connection().in_transaction  # a state write leaves the audit alone
        group.flush()  # what a call to the outside world does first
        assert values(state) == [1, 2]
        with audit.write() as conn:  # the audit's write takes the state's lock first
            conn.execute("INSERT INTO t VALUES (3)")
        assert state.connection().in_transaction and audit.connection().in_transaction
    assert values(audit) == [3]
    assert not state.connection().in_transaction and not audit.connection().in_transaction


def test_a_write_group_keeps_what_was_written_before_an_error(tmp_path: Path) -> None:
    """As when every write was its own transaction; the write that failed is undone alone."""
    db = database(tmp_path)
    with pytest.raises(RuntimeError), WriteGroup([db]).held():
        with db.write() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("the intent failed")
    assert values(db) == [1]
    with db.write() as conn:  # the group is gone: writes commit on their own again
        conn.execute("INSERT INTO t VALUES (5)")
    assert values(db) == [1, 5]
