"""SQLite plumbing shared by the state store and the audit log.

One connection per thread (``threading.local``), opened lazily and reused: sqlite3 connections
must not be used by two threads at once and the local host runs invocations concurrently in
threads; opening a connection (with its pragmas) per operation would add ~0.2 ms to every call,
30 times the cost of reading a cycle. A forked child never uses (nor closes) a connection it
inherited, as SQLite requires: the owner's pid is checked on every use.

Several *processes* may share one database file: WAL mode lets readers run beside a writer, and
every write runs in a ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front (or
waits up to ``busy_timeout`` for it), so read-check-write sequences (claim a key, take a lock,
bump a version, chain a hash) are atomic across processes.

WAL checkpoints (copying committed pages back into the database file, with an fsync) run in a
background thread of each process, every ``CHECKPOINT_EVERY_S``, instead of inside whichever
commit happens to cross SQLite's automatic threshold: otherwise one unlucky event in a few
hundred pays a checkpoint (measured: per-event p99 5.9 ms with automatic checkpoints, 1.6 ms
with the thread; ``python -m benchmarks intake``). The automatic checkpoint stays on with a
high threshold (``AUTOCHECKPOINT_PAGES``) as a backstop, so the WAL stays bounded even where
the thread cannot keep up.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30.0
CHECKPOINT_EVERY_S = 0.5
AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of WAL: the backstop if the background thread lags
WAL_SIZE_LIMIT_BYTES = 8 * 1024 * 1024  # the WAL file is cut back to this after a checkpoint

log = logging.getLogger(__name__)


def connect(path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit) with WAL, a busy timeout,
    ``synchronous=NORMAL`` (durable at checkpoints, never corrupt in WAL) and foreign keys."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=True
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    except BaseException:
        conn.close()
        raise
    return conn


class immediate:
    """A write transaction that holds the database's write lock from its first statement.

    Committed when the block ends, rolled back when it raises (including a failed COMMIT).
    Inside a transaction already open on ``conn`` (a delivered batch's group commit), it is a
    savepoint of that transaction instead: undone alone when the block raises, committed with
    the enclosing transaction. (A class, not a generator: it wraps every write.)
    """

    __slots__ = ("_conn", "_nested")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._nested = False

    def __enter__(self) -> sqlite3.Connection:
        conn = self._conn
        self._nested = conn.in_transaction
        conn.execute("SAVEPOINT nested" if self._nested else "BEGIN IMMEDIATE")
        return conn

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        conn = self._conn
        if self._nested:
            if error is None:
                conn.execute("RELEASE nested")
            elif conn.in_transaction:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
            return
        if error is None:
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        elif conn.in_transaction:
            conn.execute("ROLLBACK")


class _Checkpointer:
    """One daemon thread per process: a passive checkpoint of every open database, every
    ``CHECKPOINT_EVERY_S``. Databases are held weakly; one that fails is logged and dropped."""

    def __init__(self) -> None:
        self._databases: weakref.WeakSet[SqliteDatabase] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0

    def add(self, database: SqliteDatabase) -> None:
        with self._lock:
            self._databases.add(database)
            if self._pid != os.getpid():  # first database in this process (or after a fork)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True).start()

    def _run(self) -> None:
        pid = os.getpid()
        stop = threading.Event()
        while not stop.wait(CHECKPOINT_EVERY_S) and pid == os.getpid():
            with self._lock:
                databases = list(self._databases)
            for database in databases:
                try:
                    database.checkpoint()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint of %s failed: %s", database.path, exc)
                    self._databases.discard(database)


_checkpointer = _Checkpointer()


class SqliteDatabase:
    """One database file, its schema, and a connection per thread (and per process)."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._inherited: list[sqlite3.Connection] = []
        # One transaction, so processes opening a new file at once see all of it or none.
        # ``schema``: CREATE ... IF NOT EXISTS statements separated by ';' (none inside one).
        with self.write() as conn:
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
        _checkpointer.add(self)

    def checkpoint(self) -> None:
        """A passive WAL checkpoint (never waits for readers or writers), on a connection of the
        checkpointer's own that never creates the file (a database deleted meanwhile is an
        error, not a new empty file)."""
        conn: sqlite3.Connection | None = getattr(self._local, "checkpoint_conn", None)
        if conn is None:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True)
            self._local.checkpoint_conn = conn
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            if conn is not None:  # inherited across fork: leave it be, closing it is a use too
                self._inherited.append(conn)
            conn = connect(self.path)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def write(self) -> immediate:
        """``with db.write() as conn:`` — an immediate transaction on this thread's connection
        (a savepoint of the open transaction of a :class:`WriteGroup` this thread holds)."""
        conn = self.connection()
        group: WriteGroup | None = getattr(self._local, "group", None)
        if group is not None and not conn.in_transaction:
            group.begin(self)
        return immediate(conn)

    def joined(self) -> sqlite3.Connection | None:
        """This thread's connection if a transaction is open on it (a held ``WriteGroup``'s
        is begun first), for a single statement that needs no savepoint of its own; else None.
        """
        conn = self.connection()
        group: WriteGroup | None = getattr(self._local, "group", None)
        if group is not None and not conn.in_transaction:
            group.begin(self)
        return conn if conn.in_transaction else None

    def read(self) -> sqlite3.Connection:
        """This thread's connection, for single statements (each one sees a consistent snapshot)."""
        return self.connection()

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None


class WriteGroup:
    """The writes of several databases, on this thread, held in one open transaction each
    until :meth:`flush`: fewer commits for work that writes a little at a time between calls
    to the outside world (which flush first: no lock is held across them).

    A write begins its database's transaction and those of the databases given before it, in
    that order (a batch's transaction takes the same order, so two processes never wait for
    each other crosswise);
    ``flush`` commits them last first (the audit log before the state, as a batch does). A
    block that raises still commits what it wrote: each write was its own transaction before,
    and a write that failed was undone alone (its savepoint).
    """

    def __init__(self, databases: Sequence[SqliteDatabase]) -> None:
        self._databases = tuple(databases)

    def begin(self, upto: SqliteDatabase) -> None:
        """Begin ``upto``'s transaction, and first those of the databases before it."""
        for database in self._databases:
            conn = database.connection()
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
            if database is upto:
                return

    def flush(self) -> None:
        for database in reversed(self._databases):
            conn = database.connection()
            if conn.in_transaction:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def held(self) -> Iterator[WriteGroup]:
        """Writes on this thread join the group while the block runs; flushed at its end."""
        for database in self._databases:
            database._local.group = self
        try:
            yield self
        finally:
            for database in self._databases:
                database._local.group = None
            self.flush()
