"""State store on Azure Table Storage: dedup keys, cycles, per-model locks, cooldowns, signals.

Table Storage has no multi-entity transactions across partitions, so every decision about
"who acts" is one conditional write on one entity:

- claims and locks are inserts (``create_entity``: the second insert gets 409);
- version-guarded updates and lease takeovers replace an entity only while its ETag is the one
  read (``If-Match``: a stale ETag gets 412, which is our ``ConcurrencyError``).

One table, ``<prefix>state`` (the audit log has ``<prefix>audit``), one entity per partition
except the signals; the PartitionKey is a kind prefix and the escaped id, RowKey ``-``:

==================  ========  ======================================================
PartitionKey        RowKey    properties
==================  ========  ======================================================
delivery:key(key)   ``-``     key, status (claimed|done), until (epoch s)
cycle:key(id)       ``-``     id, model, state, active, job_name, created_at,
                              inserted_at, version, body (the cycle's JSON)
lock:key(model)     ``-``     model, cycle_id, taken_at
closed:key(model)   ``-``     model, closed_at
signal:key(model)   key(key)  model, key, at  (one partition per model)
==================  ========  ======================================================

``key(text)`` (:func:`table_key`) escapes any text into a legal key: Table keys may not hold
``/ \\ # ?`` or control characters and are at most 1 KiB. The original text is always kept in
a property. Times are epoch seconds (``Edm.Double``, exact to the microsecond). Point reads
serve claims, locks and ``get_cycle``; ``list_cycles`` and ``find_cycle_by_job`` filter the
range of ``cycle:`` partitions (one per retraining: few), signals are one partition per model.

Limits: a string property holds at most 64 KiB (UTF-16) and an entity at most 1 MiB and 252
properties. Long texts (a cycle's JSON body, audit summaries, reasons and evidence) are split
over numbered properties (:func:`put_text`), so one cycle or audit record holds up to about
500,000 characters of text in all; an entity over 1 MiB is refused with ``PermanentError``
before it is sent (SQLite has no such limit). A cycle body is a few kilobytes in practice.

Steps that cannot be one write are ordered so a crash leaves a state the next caller repairs:
``create_cycle`` takes the lock, then inserts the cycle (a lock whose cycle never appeared is
removed after ``LOCK_GRACE_S``); closing a cycle saves it, records ``closed_at``, then drops
the lock (a lock still held by a closed cycle is dropped by the next ``create_cycle``).

The ``Tables`` plumbing (retries with the SDK's own off, the ``wtoken`` that recognises a
retried conditional write's own earlier success, key escaping, long texts, sizes,
authentication) lives in :mod:`shared.adapters.tables`, shared with ``table_audit``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import retry as retries
from shared.adapters.table_entity import Entity, get_text, odata, plain, put_text, table_key
from shared.adapters.tables import Row, Tables
from shared.errors import AlreadyExists, ConcurrencyError, TransientError
from shared.model import Cycle
from shared.ports import Claim

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

log = logging.getLogger(__name__)

# A lock whose cycle never appeared (a crash between the two writes) is removed after this.
LOCK_GRACE_S = 120.0
# Bounded loops for conditional writes that lose races (each loss means someone else won).
RACE_ATTEMPTS = 8


# Claims a failed batch gives back.
_TAKEN = (Claim.NEW, Claim.RETRY)


def _rounds(keys: Sequence[str]) -> list[list[int]]:
    """The indexes of ``keys`` in rounds that may each run at once: a key's first occurrence
    in the first round, its second in the next, and so on (a repeat sees its first claim)."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for index, key in enumerate(keys):
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(index)
    return rounds


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the state store needs UTC-aware")
    return value.timestamp()


def _dt(value: Any) -> datetime:
    return datetime.fromtimestamp(float(plain(value)), UTC)


# -- the state store -------------------------------------------------------------------------

STATE = "state"
# PartitionKey = kind + table_key(id); each kind's partitions sort together, so listing the
# cycles is a range query that never reads the (many) deliveries.
DELIVERY, CYCLE, LOCK, CLOSED, SIGNAL = "delivery:", "cycle:", "lock:", "closed:", "signal:"
ROW = "-"  # the RowKey of every single-entity partition


def pk(kind: str, text: str) -> str:
    return kind + table_key(text)


def _kind_range(kind: str) -> str:
    """A filter for the partitions of one kind (``kind`` ends in ':', and ';' follows it)."""
    return f"PartitionKey gt {odata(kind)} and PartitionKey lt {odata(kind[:-1] + ';')}"


class TableStateStore:
    """``StateStore`` on Azure Table Storage (or Azurite). Behaves like ``SqliteStateStore``."""

    def __init__(
        self,
        connection_string: str | None = None,
        *,
        endpoint: str | None = None,
        credential: TokenCredential | None = None,
        table_prefix: str = "autopilot",
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicies = retries.DEFAULT_POLICIES,
        lock_grace_s: float = LOCK_GRACE_S,
    ) -> None:
        self.tables = Tables(
            connection_string or None,
            endpoint=endpoint or None,
            credential=credential,
            table_prefix=table_prefix,
            transport=transport,
            retry=retry,
        )
        self.lock_grace_s = lock_grace_s

    def __repr__(self) -> str:
        return f"TableStateStore({self.tables!r})"

    # -- deliveries ---------------------------------------------------------------------

    def claim_delivery(self, key: str, now: datetime, lease_s: float, owner: str = "") -> Claim:
        key_pk = pk(DELIVERY, key)
        until = _ts(now + timedelta(seconds=lease_s))
        claim = {
            "PartitionKey": key_pk,
            "RowKey": ROW,
            "key": key,
            "status": "claimed",
            "owner": owner,
        }
        for _ in range(RACE_ATTEMPTS):
            if self.tables.insert(STATE, {**claim, "until": until}):
                return Claim.NEW
            row = self.tables.get(STATE, key_pk, ROW)
            if row is None:
                continue  # released meanwhile: try to insert again
            if row["status"] == "done":
                return Claim.DUPLICATE
            if float(row["until"]) > _ts(now):
                return Claim.IN_PROGRESS
            # The lease expired unfinished: take it over, but only from the state we read, so
            # of several workers doing this at once exactly one gets RETRY.
            if self.tables.replace(STATE, {**claim, "until": until}, row.etag):
                return Claim.RETRY
        return Claim.IN_PROGRESS  # others keep winning: the sender retries later

    # Delivery rows are partitioned by their key (one partition each), so an entity-group
    # transaction (one partition, at most 100 operations) cannot hold two of them: a batch's
    # claims and finishes are one conditional write per key, sent WRITE_THREADS at a time
    # (independent entities: the order they reach the service in changes nothing).
    def claim_deliveries(
        self, keys: Sequence[str], now: datetime, lease_s: float, owner: str = ""
    ) -> list[Claim]:
        """Claim every key, several at a time; the claims in key order, as claiming them in
        turn gives (a key listed twice is claimed again only after its first claim). If a
        claim fails (an outage), every key this call took is given back before the first
        failure (in key order) is raised, as SQLite's rollback does: the redelivered batch is
        then processed at once, not refused (503) until their leases expire."""
        claims: list[Claim | None] = [None] * len(keys)
        failure: Exception | None = None
        for indexes in _rounds(keys):
            outcomes = self.tables.each(
                indexes, lambda i: self.claim_delivery(keys[i], now, lease_s, owner)
            )
            for i, outcome in zip(indexes, outcomes, strict=True):
                claims[i] = outcome.value
            failure = next((o.error for o in outcomes if o.error is not None), None)
            if failure is not None:  # the first in key order (indexes ascend in a round)
                break
        if failure is None:
            return [claim for claim in claims if claim is not None]
        taken = sorted({k for k, c in zip(keys, claims, strict=True) if c in _TAKEN})
        released = self.tables.each(taken, lambda key: self.release_delivery(key, owner))
        for key, release in zip(taken, released, strict=True):
            if release.error is not None:  # still down: this key's lease expires instead
                log.warning("claim of delivery %r left to expire after a failed batch", key)
        raise failure

    def finish_deliveries(self, keys: Sequence[str], now: datetime) -> None:
        """Finish every key, several at a time; every one is tried, then the first failure
        (in key order) is raised."""
        for done in self.tables.each(list(keys), lambda key: self.finish_delivery(key, now)):
            if done.error is not None:
                raise done.error

    def finish_delivery(self, key: str, now: datetime) -> None:
        """Mark the delivery done (recorded even when it was never claimed)."""
        self.tables.upsert(
            STATE,
            {
                "PartitionKey": pk(DELIVERY, key),
                "RowKey": ROW,
                "key": key,
                "status": "done",
                "until": _ts(now),
            },
        )

    def release_delivery(self, key: str, owner: str = "") -> None:
        key_pk = pk(DELIVERY, key)
        for _ in range(RACE_ATTEMPTS):
            row = self.tables.get(STATE, key_pk, ROW)
            if row is None or row["status"] != "claimed" or (row.get("owner") or "") != owner:
                return
            if self.tables.delete(STATE, key_pk, ROW, row.etag):
                return
        raise TransientError(f"release of delivery {key!r}: it keeps changing")

    def purge_deliveries(self, done_before: datetime, limit: int) -> int:
        """One range scan of the delivery partitions; each delete is guarded by the ETag read."""
        query = (
            f"{_kind_range(DELIVERY)} and status eq 'done' and until lt {odata(_ts(done_before))}"
        )
        purged = 0
        for row in self.tables.scan(STATE, query, select=["PartitionKey", "RowKey"]):
            if purged >= limit:
                break
            if self.tables.delete(STATE, str(row["PartitionKey"]), ROW, row.etag):
                purged += 1
        return purged

    # -- cycles -------------------------------------------------------------------------

    def create_cycle(self, cycle: Cycle) -> str | None:
        for _ in range(RACE_ATTEMPTS):
            holder = self._lock_holder(cycle.model)
            if holder is not None:
                return holder
            if cycle.is_active:
                lock = {
                    "PartitionKey": pk(LOCK, cycle.model),
                    "RowKey": ROW,
                    "model": cycle.model,
                    "cycle_id": cycle.id,
                    "taken_at": time.time(),
                }
                if not self.tables.insert(STATE, lock):
                    continue  # someone took it first: the next round names the holder
            new_version = cycle.version + 1
            entity = self._entity(cycle, new_version, time.time())
            try:
                inserted = self.tables.insert(STATE, entity)
            except Exception:
                if cycle.is_active:
                    self._release_lock_unless_created(cycle)
                raise
            if not inserted:
                if cycle.is_active:
                    self._release_lock(cycle.model, cycle.id)
                raise AlreadyExists(f"cycle {cycle.id} already exists (and is closed)")
            cycle.version = new_version
            return None
        raise TransientError(f"create cycle for model {cycle.model!r}: its lock keeps changing")

    def _lock_holder(self, model: str) -> str | None:
        """The id of the cycle holding ``model``'s lock, after repairing a crash's leftovers."""
        lock = self.tables.get(STATE, pk(LOCK, model), ROW)
        if lock is None:
            return None
        holder_id = str(lock["cycle_id"])
        holder = self.get_cycle(holder_id)
        if holder is None:
            if time.time() - float(lock["taken_at"]) < self.lock_grace_s:
                return holder_id  # its creator is between taking the lock and inserting
            log.warning("model %s: removing lock of cycle %s that never appeared", model, holder_id)
            self.tables.delete(STATE, pk(LOCK, model), ROW, lock.etag)
            return None
        if not holder.is_active:
            log.warning("model %s: releasing lock still held by closed cycle %s", model, holder_id)
            self._record_close(holder)
            self.tables.delete(STATE, pk(LOCK, model), ROW, lock.etag)
            return None
        return holder_id

    def _release_lock_unless_created(self, cycle: Cycle) -> None:
        """After a failed cycle insert: give the lock back, unless the insert did happen (its
        answer was lost). When even that cannot be told, the lock expires after the grace."""
        try:
            if self.tables.get(STATE, pk(CYCLE, cycle.id), ROW) is None:
                self._release_lock(cycle.model, cycle.id)
        except Exception:
            log.warning("model %s: lock of cycle %s left to expire", cycle.model, cycle.id)

    def _release_lock(self, model: str, cycle_id: str) -> bool:
        lock = self.tables.get(STATE, pk(LOCK, model), ROW)
        if lock is None or lock["cycle_id"] != cycle_id:
            return False
        return self.tables.delete(STATE, pk(LOCK, model), ROW, lock.etag)

    def _record_close(self, cycle: Cycle) -> None:
        self.tables.upsert(
            STATE,
            {
                "PartitionKey": pk(CLOSED, cycle.model),
                "RowKey": ROW,
                "model": cycle.model,
                "closed_at": _ts(cycle.updated_at),
            },
        )

    def save_cycle(self, cycle: Cycle) -> None:
        _ts(cycle.updated_at)  # refuse a naive time before writing anything
        row = self.tables.get(STATE, pk(CYCLE, cycle.id), ROW)
        if row is None or int(row["version"]) != cycle.version:
            found = "missing" if row is None else f"at version {row['version']}"
            raise ConcurrencyError(
                f"cycle {cycle.id} is {found}, not at version {cycle.version}: "
                "reload it and decide again"
            )
        new_version = cycle.version + 1
        entity = self._entity(cycle, new_version, float(row.get("inserted_at", 0.0)))
        if not self.tables.replace(STATE, entity, row.etag):
            raise ConcurrencyError(
                f"cycle {cycle.id} changed while version {cycle.version} was being saved: "
                "reload it and decide again"
            )
        if not cycle.is_active:
            lock = self.tables.get(STATE, pk(LOCK, cycle.model), ROW)
            if lock is not None and lock["cycle_id"] == cycle.id:
                # closed_at first: a crash before the lock goes keeps the cooldown correct,
                # and the next create_cycle drops the lock of a closed cycle.
                self._record_close(cycle)
                self.tables.delete(STATE, pk(LOCK, cycle.model), ROW, lock.etag)
        cycle.version = new_version

    @staticmethod
    def _entity(cycle: Cycle, version: int, inserted_at: float) -> Entity:
        body = cycle.to_json()
        body["version"] = version
        entity: Entity = {
            "PartitionKey": pk(CYCLE, cycle.id),
            "RowKey": ROW,
            "id": cycle.id,
            "model": cycle.model,
            "state": cycle.state.value,
            "active": cycle.is_active,
            "job_name": cycle.job_name,
            "created_at": _ts(cycle.created_at),
            "inserted_at": inserted_at,
            "version": version,
        }
        put_text(entity, "body", json.dumps(body, separators=(",", ":"), ensure_ascii=False))
        return entity

    @staticmethod
    def _cycle(row: Row) -> Cycle:
        data = json.loads(get_text(row.props, "body") or "{}")
        data["version"] = int(row["version"])  # the property is authoritative
        return Cycle.from_json(data)

    def get_cycle(self, cycle_id: str) -> Cycle | None:
        row = self.tables.get(STATE, pk(CYCLE, cycle_id), ROW)
        return self._cycle(row) if row else None

    def active_cycle(self, model: str) -> Cycle | None:
        lock = self.tables.get(STATE, pk(LOCK, model), ROW)
        if lock is None:
            return None
        cycle = self.get_cycle(str(lock["cycle_id"]))
        return cycle if cycle is not None and cycle.is_active else None

    def _cycles(self, conditions: list[str]) -> list[Cycle]:
        """Newest first: by ``created_at``, then by when the entity was inserted."""
        rows = self.tables.query(STATE, " and ".join([_kind_range(CYCLE), *conditions]))
        rows.sort(key=lambda r: (float(r["created_at"]), float(r.get("inserted_at", 0.0))))
        return [self._cycle(r) for r in reversed(rows)]

    def find_cycle_by_job(self, job_name: str) -> Cycle | None:
        found = self._cycles([f"job_name eq {odata(job_name)}"])
        return found[0] if found else None

    def list_cycles(self, model: str | None = None, active_only: bool = False) -> list[Cycle]:
        conditions = []
        if model is not None:
            conditions.append(f"model eq {odata(model)}")
        if active_only:
            conditions.append("active eq true")
        return self._cycles(conditions)

    def last_closed_at(self, model: str) -> datetime | None:
        row = self.tables.get(STATE, pk(CLOSED, model), ROW)
        return _dt(row["closed_at"]) if row else None

    # -- pending signals ----------------------------------------------------------------

    def _signals(self, model: str, extra: str = "") -> list[Row]:
        condition = f"PartitionKey eq {odata(pk(SIGNAL, model))}" + extra
        return self.tables.query(STATE, condition, select=["RowKey", "key"])

    def add_signal(self, model: str, key: str, at: datetime) -> int:
        self.tables.insert(
            STATE,
            {
                "PartitionKey": pk(SIGNAL, model),
                "RowKey": table_key(key),
                "model": model,
                "key": key,
                "at": _ts(at),
            },
        )
        return len(self._signals(model))

    def count_signals(self, model: str, since: datetime) -> int:
        return len(self._signals(model, f" and at ge {odata(_ts(since))}"))

    def clear_signals(self, model: str, source: str | None = None) -> int:
        model_pk = pk(SIGNAL, model)
        cleared = 0
        for row in self._signals(model):
            if source is None or str(row["key"]).startswith(source):
                self.tables.delete(STATE, model_pk, str(row["RowKey"]))
                cleared += 1
        return cleared
