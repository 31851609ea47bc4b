"""One hash chain of the audit log in one Table Storage partition.

The partition holds the chain's records (RowKey = the seq zero-padded to 12 digits, so key
order is seq order; properties as in ``SqliteAuditLog``, long texts split by
``table_entity.put_text``) and a head hint (RowKey ``head``: a seq and its hash, at most the last).

A single append is one conditional insert of record N+1, which carries the hash of record N:
the insert is the claim of the seq, so of several writers exactly one writes N+1 and the
others get 409 (a lost race: nothing written). The writer keeps the chain's last seq and hash
in memory, so an append that wins costs one round trip and no read. Every ``HINT_EVERY``-th
seq, and every batch, is instead one entity-group transaction that inserts the records and
moves the head hint to the last of them; as it commits only when every insert did, the hint
never moves back and never passes the last record. A writer without a current head (first
use, after a lost race) reads it as the hint plus one range query of the records past it (at
most about ``HINT_EVERY`` per writer, only keys and hashes).

Chain 0 is the partition ``chain`` of the versions before sharding; until it has a hint of its
own, the hint is the old ``head`` partition's, so an upgraded log keeps its records and hashes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.adapters.table_entity import Entity, get_text, odata, put_text
from shared.adapters.tables import Row, Tables
from shared.audit_anchor import Head, cut_problem
from shared.audit_chain import GENESIS, format_time, seal, verify_rows
from shared.model import AuditEntry, AuditKind, AuditRecord, VerifyResult

AUDIT = "audit"
CHAIN = "chain"  # chain 0's partition (the only one before sharding)
LEGACY_HEAD = "head"  # partition and RowKey of the head before sharding
HEAD = "head"  # RowKey of a chain's head hint inside its partition
SEQ_DIGITS = 12
RECORD_KEYS = "RowKey ge '0' and RowKey lt ':'"  # record RowKeys are digits; the head's is not
# ``query(limit=n)`` reads the newest records in windows of seqs, starting with this many.
QUERY_WINDOW = 256
# A single append at a seq that is a multiple of this moves the head hint (in a transaction).
HINT_EVERY = 32

_PLAIN = ("actor", "model", "version", "cycle", "kind", "caused_by", "prev_hash", "hash")


def partition_of(chain: int) -> str:
    """Chain 0 keeps the partition of the log before sharding; others are ``chain001``..."""
    return CHAIN if chain == 0 else f"{CHAIN}{chain:03d}"


def compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_key(seq: int) -> str:
    return str(seq).zfill(SEQ_DIGITS)


def _seq_of(row: Row) -> int:
    key = str(row.get("RowKey"))
    return int(key) if key.isdigit() else 0


def as_entity(record: AuditRecord, partition: str = CHAIN) -> Entity:
    """``record`` as an entity of ``partition`` (long texts split over numbered properties)."""
    entity: Entity = {"PartitionKey": partition, "RowKey": row_key(record.seq), "seq": record.seq}
    entity["time"] = format_time(record.time)
    for name in _PLAIN:
        entity[name] = getattr(record, name)
    entity["kind"] = record.kind.value
    put_text(entity, "summary", record.summary)
    put_text(entity, "reason", record.reason)
    # Stored unescaped (half the size of canonical's \uXXXX for non-ASCII); verify hashes
    # the parsed value, not this text.
    put_text(entity, "evidence", compact(record.evidence))
    return entity


def as_record(row: Row, chain: int = 0) -> AuditRecord:
    """The record an entity holds; ValueError when it no longer decodes."""
    stamped = datetime.fromisoformat(str(row["time"]))
    if stamped.tzinfo is None:
        raise ValueError(f"time {row['time']!r} has no time zone")
    evidence = json.loads(get_text(row.props, "evidence") or "")
    if not isinstance(evidence, dict):
        raise ValueError(f"evidence is {type(evidence).__name__}, not an object")
    return AuditRecord(
        seq=int(row["seq"]),
        time=stamped,
        kind=AuditKind(row["kind"]),
        summary=get_text(row.props, "summary") or "",
        actor=row.get("actor") or "",
        model=row.get("model"),
        version=row.get("version"),
        cycle=row.get("cycle"),
        reason=get_text(row.props, "reason") or "",
        evidence=evidence,
        caused_by=row.get("caused_by"),
        prev_hash=str(row.get("prev_hash")),
        hash=str(row.get("hash")),
        chain=chain,
    )


@dataclass(frozen=True, slots=True)
class Tail:
    """A chain's last record as read: its seq and hash, and when it was stamped (None for an
    empty chain, or when only the hint was known)."""

    seq: int
    hash: str
    time: datetime | None = None


class TableChain:
    """One chain: its partition, its cached head, and the operations on it.

    ``lock`` serialises this process's appends to the chain (a lost race inside one process
    would only waste a round trip); other processes are kept apart by the conditional insert.
    """

    def __init__(
        self, tables: Tables, index: int, partition: str, clock: Callable[[], datetime]
    ) -> None:
        self.tables = tables
        self.index = index
        self.partition = partition
        self.lock = threading.Lock()
        self._clock = clock
        self._head: Tail | None = None  # the last record, or a record before it when stale
        self._stale = True  # the cached head may be behind: read the tail before appending

    @property
    def current(self) -> bool:
        """Whether the next append can go without a read (this writer's head is current)."""
        return self._head is not None and not self._stale

    def forget_head(self) -> None:
        """Read the tail again before the next append (another writer may have moved it)."""
        self._stale = True

    # -- the head ----------------------------------------------------------------------

    def _hint(self) -> Tail:
        row = self.tables.get(AUDIT, self.partition, HEAD)
        if row is not None:
            return Tail(int(row["seq"]), str(row["hash"]))
        if self.partition == CHAIN:  # chain 0 without a hint yet: the old head's
            old = self.tables.get(AUDIT, LEGACY_HEAD, LEGACY_HEAD)
            if old is not None:
                return Tail(int(old["seq"]), str(old["hash"]))
        return Tail(0, GENESIS)

    def tail(self) -> Tail:
        """The chain's last record as stored now: past what this writer last knew (or the
        hint), one range query of keys, hashes and times. Needs no lock; caches nothing."""
        known = self._head or self._hint()
        beyond = self.tables.query(
            AUDIT,
            f"PartitionKey eq {odata(self.partition)} and RowKey gt {odata(row_key(known.seq))} "
            "and RowKey lt ':'",
            select=["RowKey", "hash", "time"],
        )
        if not beyond:
            return known
        last = beyond[-1]
        return Tail(int(str(last["RowKey"])), str(last["hash"]), _time(last.get("time")))

    def read_tail(self) -> Tail:
        """:meth:`tail`, kept as this writer's head for the next append. Hold ``lock``."""
        tail = self.tail()
        self._head, self._stale = tail, False
        return tail

    def current_head(self) -> Head:
        """The chain's last record as stored now (for an anchor)."""
        tail = self.tail()
        return Head(self.index, tail.seq, tail.hash)

    # -- append ------------------------------------------------------------------------

    def try_append(self, entries: list[AuditEntry]) -> list[AuditRecord] | None:
        """One attempt to append ``entries`` (at most 99) after this writer's head: one
        conditional insert, or one transaction for a batch or a hint seq. None when another
        writer wrote there first (nothing was written). Hold ``lock``."""
        head = self._head if self.current and self._head else self.read_tail()
        records: list[AuditRecord] = []
        seq, prev = head.seq, head.hash
        for entry in entries:
            # Stamped after its predecessor was known: on one clock, time follows seq.
            record = seal(entry, seq=seq + 1, prev_hash=prev, time=self._clock())
            records.append(replace(record, chain=self.index))
            seq, prev = record.seq, record.hash
        inserts = [as_entity(r, self.partition) for r in records]
        if len(records) == 1 and seq % HINT_EVERY:
            won = self.tables.insert(AUDIT, inserts[0])
        else:
            from azure.data.tables import UpdateMode

            hint = {"PartitionKey": self.partition, "RowKey": HEAD, "seq": seq, "hash": prev}
            replace_hint = ("upsert", hint, {"mode": UpdateMode.REPLACE})
            done = self.tables.transact(AUDIT, [*(("create", e) for e in inserts), replace_hint])
            won = done.failed is None
        if not won:
            self._stale = True  # the head kept as a lower bound: the tail is read past it
            return None
        self._head = Tail(seq, prev, records[-1].time)
        return records

    # -- reading -----------------------------------------------------------------------

    def rows(self, conditions: Iterable[str] = ()) -> Iterator[Row]:
        where = [f"PartitionKey eq {odata(self.partition)}", RECORD_KEYS, *conditions]
        return self.tables.scan(AUDIT, " and ".join(where))

    def records(self, conditions: Iterable[str] = ()) -> list[AuditRecord]:
        return [as_record(row, self.index) for row in self.rows(conditions)]

    def newest(
        self, conditions: list[str], limit: int, window: int = QUERY_WINDOW
    ) -> list[AuditRecord]:
        """The newest ``limit`` matching records, read backwards from the hint in growing
        windows of seqs (the first window is open-ended: the records past the hint too)."""
        window = max(window, limit)
        top = self._hint().seq
        low = max(1, top - window + 1)
        found = self.records([*conditions, f"RowKey ge {odata(row_key(low))}"])
        while len(found) < limit and low > 1:
            window *= 2
            high, low = low, max(1, low - window)
            found = (
                self.records(
                    [
                        *conditions,
                        f"RowKey ge {odata(row_key(low))}",
                        f"RowKey lt {odata(row_key(high))}",
                    ]
                )
                + found
            )
        return found[-limit:]

    def get(self, seq: int) -> AuditRecord | None:
        if seq < 1:
            return None
        row = self.tables.get(AUDIT, self.partition, row_key(seq))
        return as_record(row, self.index) if row else None

    def verify(self, anchored: Head | None, label: str | None = None) -> VerifyResult:
        """Recompute the chain page by page; then check it still holds what the head hint and
        the anchor (when given) say it held. A record that no longer decodes counts as edited."""
        name = label or str(self.index)
        seen: dict[int, str] = {}
        wanted = anchored.seq if anchored is not None else 0

        def watched() -> Iterator[Row]:
            for row in self.rows():
                if _seq_of(row) == wanted:
                    seen[wanted] = str(row.get("hash"))
                yield row

        result = verify_rows(watched(), lambda r: as_record(r, self.index), _seq_of)
        if not result.ok:
            problem = f"chain {name} seq {result.first_bad_seq}: {result.problem}"
            return replace(result, problem=problem, chain=name)
        head = self.tables.get(AUDIT, self.partition, HEAD)
        if head is not None and int(head["seq"]) > result.records:
            cut = (
                f"chain {name} ends at seq {result.records}, but its head says "
                f"{int(head['seq'])}: records were cut off"
            )
            return VerifyResult(False, result.records, result.records + 1, cut, name)
        if anchored is not None:
            gone = cut_problem(anchored, result.records, seen.get(wanted))
            if gone:
                return VerifyResult(False, result.records, anchored.seq, gone, name)
        return result


def _time(value: Any) -> datetime | None:
    try:
        stamped = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return stamped if stamped.tzinfo is not None else None
