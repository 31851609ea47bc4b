"""Append-only, hash-chained audit log on Azure Table Storage (or Azurite), in S chains.

One table, ``<prefix>audit``. Records go to one of ``shards`` chains (S, setting
``AUTOPILOT_AUDIT_SHARDS``, default 1 = the single chain of the versions before sharding),
each an independent hash chain in a partition of its own (``table_chain``): a single append is
one conditional insert (a batch, one entity-group transaction) on one partition, so writers on
different chains never meet, and Table Storage's per-partition target (about 2,000
entities/s) applies per chain.

Which chain: a writer (process) starts on its home chain, a hash of its id (the Functions
instance id and the process id); each thread then keeps to the chain it last won on, and a
chain another thread here holds is skipped for a free one. Reading a chain's tail (first use,
or after a lost race) also shows how fresh its last record is: under ``BUSY_S`` old, another
writer is on it, and the writer tries another chain (at most ``MAX_PROBES`` tail reads). A
writer that loses a race (another writer inserted the seq first; nothing was written) moves to
a chain where it has not met anyone in the last ``CONTESTED_S``, at random: a lost race costs
the failed insert and at most ``MAX_PROBES`` tail reads, with no pause, whatever the number of
writers; writers settle one per chain instead of queueing on one. Only with nowhere to move
(S = 1) does it pause, at random, at most 20 ms.

A chain's order is seq order; across chains there is no common sequence: ``query`` merges by
time, then chain, then seq (``audit_anchor.merge_key``), so order across chains is only as
good as the writers' clocks. A model's records may sit in several chains.

Anchors (``anchor()``: the reconcile timer and ``autopilot audit anchor``) commit every
chain's head in a chain of their own (partition ``anchor``), so ``verify`` catches records
cut off, or chains rewritten, in any chain after an anchor (``shared.audit_anchor``).

Raise S freely; do not lower it: chains at or past S are no longer read (``verify`` still
reads every chain the newest anchor named).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from shared import retry as retries
from shared.adapters.table_chain import (
    AUDIT,
    CHAIN,
    QUERY_WINDOW,
    TableChain,
    Tail,
    as_entity,
    as_record,
    partition_of,
    row_key,
)
from shared.adapters.table_entity import entity_size, odata
from shared.adapters.tables import Tables
from shared.audit_anchor import (
    ANCHOR_CHAIN,
    Head,
    anchor_entry,
    anchored_heads,
    chain_count,
    merge_key,
)
from shared.audit_chain import GENESIS, format_time, seal, verify_rows
from shared.errors import SettingsError, TransientError
from shared.model import AuditEntry, AuditRecord, VerifyResult

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

__all__ = ["AUDIT", "CHAIN", "QUERY_WINDOW", "TableAuditLog", "as_entity", "row_key"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SHARDS = 256
ANCHOR_INDEX = -1  # ``AuditRecord.chain`` of anchor records
# Appends that keep losing races give up after this many tries (TransientError: retry later).
APPEND_ATTEMPTS = 200
# One entity-group transaction: at most 100 operations (the head and 99 records), under 4 MiB.
BATCH_RECORDS = 99
# Choosing a chain (see the module's docstring).
CONTESTED_S = 10.0  # a chain where a race was lost, or found busy, is avoided this long
BUSY_S = 1.0  # a chain whose last record is younger than this is another writer's
MAX_PROBES = 3  # tail reads before writing to the last chain read
BATCH_BYTES = 3_500_000
READ_THREADS = 8


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppendStats:
    """Counters for the benchmark and the logs: records appended, races lost."""

    appends: int = 0
    transactions: int = 0  # writes that landed: a single insert or a transaction each
    lost_races: int = 0
    busy_chains_skipped: int = 0


class TableAuditLog:
    """``AuditLog`` on Azure Table Storage. Behaves like ``SqliteAuditLog``, in ``shards``
    chains. ``clock`` stamps records (UTC wall clock by default)."""

    def __init__(
        self,
        connection_string: str | None = None,
        *,
        endpoint: str | None = None,
        credential: TokenCredential | None = None,
        table_prefix: str = "autopilot",
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicies = retries.DEFAULT_POLICIES,
        clock: Callable[[], datetime] = _utc_now,
        shards: int = 1,
        writer_id: str | None = None,
    ) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise SettingsError(f"audit shards must be 1 to {MAX_SHARDS}, not {shards}")
        self.tables = Tables(
            connection_string or None,
            endpoint=endpoint or None,
            credential=credential,
            table_prefix=table_prefix,
            transport=transport,
            retry=retry,
        )
        self._clock = clock
        self.shards = shards
        self._chains: dict[int, TableChain] = {}
        self._chains_lock = threading.Lock()
        self.anchors = TableChain(self.tables, ANCHOR_INDEX, ANCHOR_CHAIN, clock)
        self._mine = threading.local()
        self.home = home_chain(writer_id or default_writer_id(), shards)
        self._contested: dict[int, float] = {}  # chain -> when another writer was met there
        self.query_window = QUERY_WINDOW
        self.stats = AppendStats()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TableAuditLog({self.tables!r}, shards={self.shards})"

    def chain(self, index: int) -> TableChain:
        """Chain ``index`` (0 = the chain of the versions before sharding)."""
        with self._chains_lock:
            found = self._chains.get(index)
            if found is None:
                found = TableChain(self.tables, index, partition_of(index), self._clock)
                self._chains[index] = found
            return found

    # -- append ------------------------------------------------------------------------

    def append(self, entry: AuditEntry) -> AuditRecord:
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` in order to one chain, up to 99 records (and 3.5 MB) per
        entity-group transaction: a batch that fits is written all or none, in one round trip
        when this writer's head is current. Longer batches take several transactions."""
        written: list[AuditRecord] = []
        for batch in self._batches(list(entries)):
            written += self._append_batch(batch)
        return written

    def _batches(self, entries: list[AuditEntry]) -> list[list[AuditEntry]]:
        if len(entries) <= 1:
            return [entries] if entries else []
        now = self._clock()
        batches: list[list[AuditEntry]] = [[]]
        size = 0
        for entry in entries:
            # The entity's size does not depend on seq or hashes (fixed widths).
            this = entity_size(as_entity(seal(entry, seq=1, prev_hash=GENESIS, time=now)))
            if len(batches[-1]) >= BATCH_RECORDS or (batches[-1] and size + this > BATCH_BYTES):
                batches.append([])
                size = 0
            batches[-1].append(entry)
            size += this
        return batches

    def _append_batch(self, entries: list[AuditEntry]) -> list[AuditRecord]:
        lost = 0
        chain = self._take_chain()
        for _ in range(APPEND_ATTEMPTS):
            try:
                written = chain.try_append(entries)
            finally:
                chain.lock.release()
            if written is not None:
                self._mine.chain = chain.index
                self._count(len(written), lost)
                return written
            lost += 1
            chain = self._move_after_loss(chain, lost)
        self._count(0, lost)
        raise TransientError(f"audit append: lost the race {APPEND_ATTEMPTS} times; retry later")

    def _take_chain(self) -> TableChain:
        """The chain this thread last won on (at first, this writer's home chain) unless
        another thread here holds it, else a free one, else wait for it. Returned locked,
        and settled (see ``_settle``)."""
        mine = getattr(self._mine, "chain", None)
        if mine is None or mine >= self.shards:
            mine = self.home
        preferred = self.chain(mine)
        if preferred.lock.acquire(blocking=False):
            return self._settle(preferred)
        other = self._free_chain(avoid=mine)
        if other is not None:
            return self._settle(other)
        preferred.lock.acquire()
        return self._settle(preferred)

    def _move_after_loss(self, chain: TableChain, lost: int) -> TableChain:
        """After a lost race on ``chain``: another free chain (settled), no pause. With no
        other chain free (S = 1, or every chain held by a thread here): ``chain`` again,
        after a random pause of at most 1 ms x 2^lost, capped at 20 ms. Returned locked."""
        self._contest(chain.index)
        other = self._free_chain(avoid=chain.index)
        if other is not None:
            return self._settle(other)
        time.sleep(random.uniform(0, min(0.02, 0.001 * 2 ** min(lost, 5))))  # noqa: S311
        chain.lock.acquire()
        return chain

    def _settle(self, chain: TableChain) -> TableChain:
        """``chain`` (locked), or, when its tail had to be read and its last record is
        another writer's fresh one (under ``BUSY_S`` old), another free chain: at most
        ``MAX_PROBES`` tail reads, then the last chain read. Returned locked."""
        try:
            for _ in range(MAX_PROBES):
                if chain.current or self.shards == 1:
                    return chain
                if not self._busy(chain.read_tail()):
                    return chain
                self._contest(chain.index)
                with self._stats_lock:
                    self.stats.busy_chains_skipped += 1
                other = self._free_chain(avoid=chain.index)
                if other is None:
                    return chain
                chain.lock.release()
                chain = other
            return chain
        except BaseException:
            chain.lock.release()
            raise

    def _busy(self, tail: Tail) -> bool:
        """Whether the chain's last record is fresh (another writer is on it)."""
        if tail.time is None:
            return False
        return abs((self._clock() - tail.time).total_seconds()) < BUSY_S

    def _free_chain(self, avoid: int) -> TableChain | None:
        """Another chain no thread here holds, locked: one nobody was seen writing to in the
        last ``CONTESTED_S`` (at random), else the one seen longest ago; None when all are held."""
        now = time.monotonic()
        with self._chains_lock:
            seen = {i: t for i, t in self._contested.items() if now - t < CONTESTED_S}
            self._contested = seen
        others = [i for i in range(self.shards) if i != avoid]
        random.shuffle(others)
        others.sort(key=lambda i: seen.get(i, 0.0))  # stable: the quiet ones, at random
        for index in others:
            chain = self.chain(index)
            if chain.lock.acquire(blocking=False):
                return chain
        return None

    def _contest(self, index: int) -> None:
        """Note that another writer is on chain ``index`` now."""
        with self._chains_lock:
            self._contested[index] = time.monotonic()

    def _count(self, appended: int, lost: int) -> None:
        with self._stats_lock:
            self.stats.appends += appended
            self.stats.transactions += 1 if appended else 0
            self.stats.lost_races += lost
        if lost:
            log.debug("audit append lost %d race(s) before writing", lost)

    # -- anchors -----------------------------------------------------------------------

    def anchor(self) -> AuditRecord:
        """Commit every chain's current head in the anchor chain; the newest anchor when no
        chain moved since it was written."""
        latest = self.latest_anchor()
        count = chain_count(latest, self.shards)
        heads = self._each(range(count), lambda i: self.chain(i).current_head())
        if latest is not None and _same_heads(latest, heads):
            return latest
        entry = anchor_entry(heads)
        for _ in range(APPEND_ATTEMPTS):
            with self.anchors.lock:
                written = self.anchors.try_append([entry])
            if written is not None:
                return written[0]
        raise TransientError("audit anchor: the anchor chain keeps moving; retry later")

    def latest_anchor(self) -> AuditRecord | None:
        head = self.anchors.current_head()
        return self.anchors.get(head.seq) if head.seq else None

    def get_anchor(self, seq: int) -> AuditRecord | None:
        return self.anchors.get(seq)

    # -- reading -----------------------------------------------------------------------

    def _each(self, indexes: range, work: Callable[[int], T]) -> list[T]:
        """``work`` for each chain index, in index order, several chains at a time."""
        if len(indexes) <= 1:
            return [work(i) for i in indexes]
        with ThreadPoolExecutor(min(READ_THREADS, len(indexes))) as pool:
            return list(pool.map(work, indexes))

    def query(
        self,
        *,
        model: str | None = None,
        cycle: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Matching records of every chain, by time, then chain, then seq; with ``limit``,
        the newest ``limit`` of them."""
        conditions = [
            f"{name} eq {odata(str(value))}"
            for name, value in (("model", model), ("cycle", cycle), ("kind", kind))
            if value is not None
        ]
        if since is not None:
            conditions.append(f"time ge {odata(format_time(since))}")
        if limit is not None and limit <= 0:
            return []

        def read(index: int) -> list[AuditRecord]:
            chain = self.chain(index)
            if limit is None:
                return chain.records(conditions)
            return chain.newest(conditions, limit, self.query_window)

        merged = sorted(
            (r for found in self._each(range(self.shards), read) for r in found), key=merge_key
        )
        return merged if limit is None else merged[-limit:]

    def get(self, seq: int, chain: int = 0) -> AuditRecord | None:
        return self.chain(chain).get(seq)

    def verify(self) -> VerifyResult:
        """Every chain recomputed, the anchor chain too, and every chain checked against the
        newest anchor. ``records`` counts the records of all chains (anchors not included)."""
        anchors = verify_rows(self.anchors.rows(), lambda r: as_record(r, ANCHOR_INDEX), _row_seq)
        if not anchors.ok:
            problem = f"anchor chain seq {anchors.first_bad_seq}: {anchors.problem}"
            return VerifyResult(False, 0, anchors.first_bad_seq, problem, ANCHOR_CHAIN)
        latest = self.anchors.get(anchors.records) if anchors.records else None
        committed: dict[int, Head] = {}
        if latest is not None:
            try:
                committed = {h.chain: h for h in anchored_heads(latest)}
            except ValueError as exc:
                return VerifyResult(False, 0, latest.seq, str(exc), ANCHOR_CHAIN)
        count = chain_count(latest, self.shards)
        results = self._each(range(count), lambda i: self.chain(i).verify(committed.get(i)))
        total = sum(r.records for r in results)
        for result in results:
            if not result.ok:
                return VerifyResult(
                    False, total, result.first_bad_seq, result.problem, result.chain
                )
        return VerifyResult(True, total)


def default_writer_id() -> str:
    """This process on this instance: the Functions host's instance id (or the host name)
    and the process id."""
    instance = os.environ.get("WEBSITE_INSTANCE_ID") or socket.gethostname()
    return f"{instance}:{os.getpid()}"


def home_chain(writer_id: str, shards: int) -> int:
    """The chain a writer starts on: a hash of its id, spread evenly over the S chains."""
    digest = hashlib.sha256(writer_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def _row_seq(row: Any) -> int:
    key = str(row.get("RowKey"))
    return int(key) if key.isdigit() else 0


def _same_heads(anchor: AuditRecord, heads: list[Head]) -> bool:
    try:
        return anchored_heads(anchor) == heads
    except ValueError:
        return False
