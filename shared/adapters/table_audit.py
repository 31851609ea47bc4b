"""Append-only, hash-chained audit log on Azure Table Storage (or Azurite).

One table, ``<prefix>audit``, two partitions:

- ``chain``: one entity per record, RowKey = the seq zero-padded to 12 digits (so key order is
  seq order), properties as in ``SqliteAuditLog`` (summary, reason and evidence may be split
  over numbered properties when long, see ``table_store.put_text``);
- ``head``: one entity holding the last seq and its hash.

``append`` starts from the head (seq N, hash h) and inserts record N+1 with ``prev_hash = h``
as an insert-if-absent: of several writers only one can insert N+1. A writer that finds N+1
taken reads the tail of the chain past N (one range query), and tries again after it. The
winner then moves the head forward under its ETag. The head is only a hint where the tail
is: every record's ``prev_hash`` comes from the record actually stored before it, so
concurrent writers in any number of processes build one chain, and a crash between a
record's insert and the head's move costs the next writer one step (the record stays).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared import retry as retries
from shared.adapters.tables import Entity, Row, Tables, get_text, odata, put_text
from shared.audit_chain import GENESIS, format_time, seal, verify_rows
from shared.errors import TransientError
from shared.model import AuditEntry, AuditKind, AuditRecord, VerifyResult

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

log = logging.getLogger(__name__)

AUDIT = "audit"
CHAIN, HEAD = "chain", "head"
SEQ_DIGITS = 12
# Appends that keep losing the race to other writers give up after this many tries.
APPEND_ATTEMPTS = 200
# ``query(limit=n)`` reads the newest records in windows of seqs, starting with this many.
QUERY_WINDOW = 256

_PLAIN = ("actor", "model", "version", "cycle", "kind", "caused_by", "prev_hash", "hash")


def compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _seq_of(row: Row) -> int:
    key = str(row.get("RowKey"))
    return int(key) if key.isdigit() else 0


def row_key(seq: int) -> str:
    return str(seq).zfill(SEQ_DIGITS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def as_entity(record: AuditRecord) -> Entity:
    """``record`` as a ``chain`` entity (long texts split over numbered properties)."""
    entity: Entity = {"PartitionKey": CHAIN, "RowKey": row_key(record.seq), "seq": record.seq}
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


def as_record(row: Row) -> AuditRecord:
    """The record a ``chain`` entity holds; ValueError when it no longer decodes."""
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
    )


class TableAuditLog:
    """``AuditLog`` on Azure Table Storage. Behaves like ``SqliteAuditLog``.

    ``clock`` stamps records (UTC wall clock by default). A record is stamped after the head
    it follows was read, so on one clock time never goes back along the chain.
    """

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
    ) -> None:
        self.tables = Tables(
            connection_string or None,
            endpoint=endpoint or None,
            credential=credential,
            table_prefix=table_prefix,
            transport=transport,
            retry=retry,
        )
        self._clock = clock
        self.query_window = QUERY_WINDOW

    def __repr__(self) -> str:
        return f"TableAuditLog({self.tables!r})"

    # -- the head --------------------------------------------------------------------------

    def _head(self) -> Row:
        """The head entity; created at seq 0 (the genesis hash) when there is none."""
        for _ in range(3):
            row = self.tables.get(AUDIT, HEAD, HEAD)
            if row is not None:
                return row
            self.tables.insert(
                AUDIT, {"PartitionKey": HEAD, "RowKey": HEAD, "seq": 0, "hash": GENESIS}
            )
        raise TransientError("audit head: created but not readable; retry later")

    def _advance_head(self, head: Row, seq: int, hash_: str) -> None:
        """Move the head from what was read to (seq, hash), under its ETag. Best effort: when
        another writer moved it first, it is left alone (a head that lags only costs the next
        writer one range query), so the head never moves backwards."""
        if not self.tables.replace(
            AUDIT, {"PartitionKey": HEAD, "RowKey": HEAD, "seq": seq, "hash": hash_}, head.etag
        ):
            log.debug("audit head not moved to %d: another writer moved it", seq)

    def _tail_after(self, seq: int) -> tuple[int, str] | None:
        """The last record after ``seq`` (seq, hash), or None when there is none."""
        beyond = self.tables.query(
            AUDIT,
            f"PartitionKey eq '{CHAIN}' and RowKey gt {odata(row_key(seq))}",
            select=["RowKey", "hash"],
        )
        if not beyond:
            return None
        last = beyond[-1]
        return int(str(last["RowKey"])), str(last["hash"])

    # -- append ----------------------------------------------------------------------------

    def append(self, entry: AuditEntry) -> AuditRecord:
        head = self._head()
        seq, prev_hash = int(head["seq"]), str(head["hash"])
        for attempt in range(APPEND_ATTEMPTS):
            record = seal(
                entry,
                seq=seq + 1,
                prev_hash=prev_hash,
                time=self._clock(),  # stamped after its predecessor was written: time follows seq
            )
            if self.tables.insert(AUDIT, as_entity(record)):
                self._advance_head(head, record.seq, record.hash)
                return record
            # seq + 1 is taken (by another writer, or by one that died before moving the
            # head): jump to the tail and try after it, after a short random pause.
            tail = self._tail_after(seq)
            if tail is not None:
                seq, prev_hash = tail
            time.sleep(random.uniform(0, min(0.02, 0.001 * 2 ** min(attempt, 5))))  # noqa: S311
        raise TransientError(f"audit append: lost the race {APPEND_ATTEMPTS} times; retry later")

    def _rows(self, conditions: list[str]) -> Iterator[Row]:
        return self.tables.scan(AUDIT, " and ".join([f"PartitionKey eq '{CHAIN}'", *conditions]))

    def _records(self, conditions: list[str]) -> list[AuditRecord]:
        return [as_record(row) for row in self._rows(conditions)]

    # -- reading ---------------------------------------------------------------------------

    def query(
        self,
        *,
        model: str | None = None,
        cycle: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Matching records in seq order; with ``limit``, the newest ``limit`` of them."""
        conditions = [
            f"{name} eq {odata(str(value))}"
            for name, value in (("model", model), ("cycle", cycle), ("kind", kind))
            if value is not None
        ]
        if since is not None:
            conditions.append(f"time ge {odata(format_time(since))}")
        if limit is None:
            return self._records(conditions)
        if limit <= 0:
            return []
        # Read backwards from the head in growing windows of seqs until ``limit`` match; the
        # first window is open-ended so records written past a lagging head are included.
        window = max(self.query_window, limit)
        head = self.tables.get(AUDIT, HEAD, HEAD)  # read-only: no head yet means no records
        low = max(1, (int(head["seq"]) if head else 0) - window + 1)
        found = self._records([*conditions, f"RowKey ge {odata(row_key(low))}"])
        while len(found) < limit and low > 1:
            window *= 2
            high, low = low, max(1, low - window)
            found = (
                self._records(
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
        row = self.tables.get(AUDIT, CHAIN, row_key(seq))
        return as_record(row) if row else None

    def verify(self) -> VerifyResult:
        """Recompute the whole chain in seq order, page by page; a record that no longer
        decodes counts as edited."""
        return verify_rows(self._rows([]), as_record, _seq_of)
