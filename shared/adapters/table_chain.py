"""One hash chain of the audit log in one Table Storage partition.

The partition holds the chain's records (RowKey = the seq zero-padded to 12 digits, so key
order is seq order; properties as in ``SqliteAuditLog``, long texts split by
``tables.put_text``) and its head (RowKey ``head``: the last seq and its hash).

An append is one entity-group transaction on that partition: move the head from what was
read (If-Match its ETag, or create it when there is none) to (N+k, hash of N+k) and insert
records N+1..N+k. The head's conditional write is the claim of the seqs: of several writers
exactly one commits and the others wrote nothing (all or none), so a crash leaves no gap and
the head is never behind. A writer whose head was stale gets 412 on it and reads the head
again (one point read). A record that exists past the head (written by a version before
sharding, which did not move a head in this partition) fails its insert with 409: the writer
then reads the tail past the head (one range query) and goes on from there.

Chain 0 is the partition ``chain`` of the versions before sharding; until it has a head of
its own, its head starts from the old ``head`` partition's hint and the tail past it, so an
upgraded log keeps its records and hashes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.adapters.tables import Entity, Row, Tables, get_text, odata, put_text
from shared.audit_anchor import Head, cut_problem
from shared.audit_chain import GENESIS, format_time, seal, verify_rows
from shared.model import AuditEntry, AuditKind, AuditRecord, VerifyResult

AUDIT = "audit"
CHAIN = "chain"  # chain 0's partition (the only one before sharding)
LEGACY_HEAD = "head"  # partition and RowKey of the head before sharding
HEAD = "head"  # RowKey of a chain's head inside its partition
SEQ_DIGITS = 12
RECORD_KEYS = "RowKey ge '0' and RowKey lt ':'"  # record RowKeys are digits; the head's is not
# ``query(limit=n)`` reads the newest records in windows of seqs, starting with this many.
QUERY_WINDOW = 256

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
class _Head:
    seq: int
    hash: str
    etag: str | None  # None: there is no head entity yet (the transaction creates it)


class TableChain:
    """One chain: its partition, its cached head, and the operations on it.

    ``lock`` serialises this process's appends to the chain (a lost race inside one process
    would only waste a round trip); other processes are kept apart by the head's ETag.
    """

    def __init__(
        self, tables: Tables, index: int, partition: str, clock: Callable[[], datetime]
    ) -> None:
        self.tables = tables
        self.index = index
        self.partition = partition
        self.lock = threading.Lock()
        self._clock = clock
        self._head: _Head | None = None
        self._resync = False  # a record was found past the head: read the tail next time

    def forget_head(self) -> None:
        """Read the head again before the next append (another writer may have moved it)."""
        self._head = None

    # -- the head ----------------------------------------------------------------------

    def _read_head(self, with_tail: bool) -> _Head:
        row = self.tables.get(AUDIT, self.partition, HEAD)
        if row is not None:
            head = _Head(int(row["seq"]), str(row["hash"]), row.etag)
        else:
            head, with_tail = _Head(*self._legacy_start(), None), True
        if with_tail:
            tail = self._tail_after(head.seq)
            if tail is not None:
                head = _Head(tail[0], tail[1], head.etag)
        return head

    def _legacy_start(self) -> tuple[int, str]:
        """Where a chain without a head of its own starts: chain 0 from the old head's hint."""
        if self.partition == CHAIN:
            old = self.tables.get(AUDIT, LEGACY_HEAD, LEGACY_HEAD)
            if old is not None:
                return int(old["seq"]), str(old["hash"])
        return 0, GENESIS

    def _tail_after(self, seq: int) -> tuple[int, str] | None:
        """The last record after ``seq`` (seq, hash), or None when there is none."""
        beyond = self.tables.query(
            AUDIT,
            f"PartitionKey eq {odata(self.partition)} and RowKey gt {odata(row_key(seq))} "
            "and RowKey lt ':'",
            select=["RowKey", "hash"],
        )
        if not beyond:
            return None
        last = beyond[-1]
        return int(str(last["RowKey"])), str(last["hash"])

    def current_head(self) -> Head:
        """The chain's last record as stored now (for an anchor)."""
        head = self._read_head(with_tail=True)
        return Head(self.index, head.seq, head.hash)

    # -- append ------------------------------------------------------------------------

    def try_append(self, entries: list[AuditEntry]) -> list[AuditRecord] | None:
        """One attempt to append ``entries`` (at most 99) in one transaction; None when
        another writer moved the chain first (nothing was written). Hold ``lock``."""
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        head = self._head or self._read_head(with_tail=self._resync)
        self._resync = False
        records: list[AuditRecord] = []
        seq, prev = head.seq, head.hash
        for entry in entries:
            # Stamped after its predecessor was read: on one clock, time follows seq.
            record = seal(entry, seq=seq + 1, prev_hash=prev, time=self._clock())
            records.append(replace(record, chain=self.index))
            seq, prev = record.seq, record.hash
        moved = {"PartitionKey": self.partition, "RowKey": HEAD, "seq": seq, "hash": prev}
        claim: tuple[Any, ...] = (
            ("create", moved)
            if head.etag is None
            else (
                "update",
                moved,
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": head.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        )
        inserts = [("create", as_entity(r, self.partition)) for r in records]
        done = self.tables.transact(AUDIT, [claim, *inserts])
        if done.failed is None:
            etag = done.etags[0] if done.etags and done.etags[0] else None
            self._head = _Head(seq, prev, etag) if etag else None
            return records
        self._head = None
        self._resync = done.failed > 0  # a record past the head: older writers were here
        return None

    # -- reading -----------------------------------------------------------------------

    def rows(self, conditions: Iterable[str] = ()) -> Iterator[Row]:
        where = [f"PartitionKey eq {odata(self.partition)}", RECORD_KEYS, *conditions]
        return self.tables.scan(AUDIT, " and ".join(where))

    def records(self, conditions: Iterable[str] = ()) -> list[AuditRecord]:
        return [as_record(row, self.index) for row in self.rows(conditions)]

    def newest(
        self, conditions: list[str], limit: int, window: int = QUERY_WINDOW
    ) -> list[AuditRecord]:
        """The newest ``limit`` matching records, read backwards from the head in growing
        windows of seqs (the first window is open-ended: records past a lagging head too)."""
        window = max(window, limit)
        row = self.tables.get(AUDIT, self.partition, HEAD)
        top = int(row["seq"]) if row else self._legacy_start()[0]
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
        """Recompute the chain page by page; then check it still holds what the head and the
        anchor (when given) say it held. A record that no longer decodes counts as edited."""
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
