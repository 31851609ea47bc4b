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

Every SDK call runs under :func:`shared.retry.call_with_retry` with the SDK's own retries off.
A conditional write that is retried after a lost response may find its own earlier success
(409/412); each conditional write carries a random ``wtoken`` so that case is recognised as
success, not as losing the race.

Authentication: a connection string, or an endpoint with Microsoft Entra ID
(``DefaultAzureCredential`` by default; needs "Storage Table Data Contributor"). The
``Tables`` plumbing below is shared with ``table_audit``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared import retry as retries
from shared.errors import (
    AlreadyExists,
    ConcurrencyError,
    PermanentError,
    SettingsError,
    TransientError,
)
from shared.model import Cycle
from shared.ports import Claim

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport
    from azure.data.tables import TableClient, TableServiceClient

log = logging.getLogger(__name__)

T = TypeVar("T")

Entity = dict[str, Any]

# Table Storage limits (https://learn.microsoft.com/rest/api/storageservices/
# understanding-the-table-service-data-model): keys up to 1 KiB, string properties up to
# 64 KiB, an entity up to 1 MiB and 252 properties of our own.
MAX_KEY_CHARS = 400  # of base64url, well below 1 KiB in UTF-16
CHUNK_BYTES = 64_000  # UTF-16 bytes per string property (limit 65,536)
MAX_ENTITY_BYTES = 1024 * 1024
MAX_PROPERTIES = 252

# A lock whose cycle never appeared (a crash between the two writes) is removed after this.
LOCK_GRACE_S = 120.0
# Bounded loops for conditional writes that lose races (each loss means someone else won).
RACE_ATTEMPTS = 8
# Entities per query page (the service returns at most 1,000).
PAGE_SIZE = 1000

_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,49}$")


# -- keys, texts and sizes -------------------------------------------------------------------


def table_key(text: str) -> str:
    """A legal, injective PartitionKey/RowKey for any text.

    ``b`` + base64url of the UTF-8 bytes (no padding) while that is short, else ``h`` + the
    sha256 hex digest. Neither form contains a character Table Storage forbids in keys.
    """
    raw = text.encode("utf-8")
    encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    if len(encoded) <= MAX_KEY_CHARS:
        return "b" + encoded
    return "h" + hashlib.sha256(raw).hexdigest()


def odata(value: str | bool | int | float) -> str:
    """An OData literal for a filter. We format our own literals: the SDK's ``parameters``
    substitution turns the numbers 0 and 1 into ``false``/``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("'", "''") + "'"


def _split_utf16(text: str) -> list[str]:
    data = text.encode("utf-16-le")
    parts: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + CHUNK_BYTES, len(data))
        if end < len(data) and 0xD8 <= data[end - 1] <= 0xDB:  # do not split a surrogate pair
            end -= 2
        parts.append(data[start:end].decode("utf-16-le"))
        start = end
    return parts


def put_text(entity: Entity, name: str, text: str | None) -> None:
    """Store ``text`` under ``name``, split over ``name_0``, ``name_1``... when it is long."""
    if text is None or len(text) * 4 <= CHUNK_BYTES:  # 4: the most UTF-16 bytes per character
        entity[name] = text
        return
    parts = _split_utf16(text)
    if len(parts) == 1:
        entity[name] = text
        return
    entity[f"{name}_parts"] = len(parts)
    for i, part in enumerate(parts):
        entity[f"{name}_{i}"] = part


def get_text(entity: Entity, name: str) -> str | None:
    """The text :func:`put_text` stored under ``name``."""
    parts = entity.get(f"{name}_parts")
    if parts is None:
        value = entity.get(name)
        return None if value is None else str(value)
    return "".join(str(entity[f"{name}_{i}"]) for i in range(int(_plain(parts))))


def _plain(value: Any) -> Any:
    """The Python value of a property (the SDK wraps Int64 values in ``EntityProperty``)."""
    return getattr(value, "value", value)


def entity_size(entity: Entity) -> int:
    """Bytes an entity takes in Table Storage, after the service's published formula."""
    size = 4
    count = 0
    for name, value in entity.items():
        if value is None:
            continue
        if name in ("PartitionKey", "RowKey"):
            size += len(str(value).encode("utf-16-le"))
            continue
        count += 1
        size += 8 + len(name) * 2
        if isinstance(value, str):
            size += 4 + len(value.encode("utf-16-le"))
        elif isinstance(value, bytes):
            size += 4 + len(value)
        else:
            size += 8
    return size if count <= MAX_PROPERTIES else MAX_ENTITY_BYTES + 1


def _check_size(entity: Entity, what: str) -> None:
    size = entity_size(entity)
    if size > MAX_ENTITY_BYTES:
        raise PermanentError(
            f"{what}: the entity takes {size} bytes (or too many properties); Table Storage "
            f"holds at most {MAX_ENTITY_BYTES} bytes and {MAX_PROPERTIES} properties per entity"
        )


def _ts(value: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the state store needs UTC-aware")
    return value.timestamp()


def _dt(value: Any) -> datetime:
    return datetime.fromtimestamp(float(_plain(value)), UTC)


# -- the plumbing shared with the audit log --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """An entity as read: its properties (keys included) and its ETag."""

    props: Entity
    etag: str

    def __getitem__(self, name: str) -> Any:
        return _plain(self.props[name])

    def get(self, name: str, default: Any = None) -> Any:
        return _plain(self.props.get(name, default))


class Tables:
    """A storage account's tables under one name prefix, and the few operations we use.

    The ``azure.data.tables`` client is built (and the tables created) on first use, so
    constructing an adapter costs nothing and needs no network.
    """

    def __init__(
        self,
        connection_string: str | None,
        *,
        endpoint: str | None,
        credential: TokenCredential | None,
        table_prefix: str,
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicies = retries.DEFAULT_POLICIES,
    ) -> None:
        if bool(connection_string) == bool(endpoint):
            raise SettingsError(
                "Table Storage needs a connection string or an endpoint (not both, not neither)"
            )
        if not _TABLE_PREFIX.match(table_prefix):
            raise SettingsError(
                f"table prefix {table_prefix!r} must start with a letter and hold only letters "
                "and digits (at most 50)"
            )
        self._connection_string = connection_string
        self.endpoint = endpoint
        self.prefix = table_prefix
        self._credential = credential
        self._transport = transport
        self._retry = retry
        self._service: TableServiceClient | None = None
        self._clients: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the account key
        where = self.endpoint or "connection string"
        return f"Tables({where}, prefix={self.prefix!r})"

    # -- clients --

    def _service_client(self) -> TableServiceClient:
        if self._service is None:
            from azure.data.tables import TableServiceClient

            kwargs: dict[str, Any] = {"retry_total": 0}  # ours retry; never nest
            if self._transport is not None:
                kwargs["transport"] = self._transport
            if self._connection_string:
                self._service = TableServiceClient.from_connection_string(
                    self._connection_string, **kwargs
                )
            else:
                credential = self._credential
                if credential is None:
                    from azure.identity import DefaultAzureCredential

                    credential = DefaultAzureCredential()
                self._service = TableServiceClient(
                    str(self.endpoint), credential=credential, **kwargs
                )
        return self._service

    def table(self, name: str) -> TableClient:
        """The client of ``<prefix><name>``, creating the table on first use."""
        client = self._clients.get(name)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                service = self._service_client()
                client = self.call(
                    self._retry.write,
                    f"create table {self.prefix}{name}",
                    service.create_table_if_not_exists,
                    f"{self.prefix}{name}",
                )
                self._clients[name] = client
        return client

    def call(self, policy: retries.RetryPolicy, what: str, fn: Callable[..., T], *args: Any) -> T:
        return retries.call_with_retry(policy, fn, *args, what=what)

    # -- entity operations --

    def get(self, name: str, pk: str, rk: str) -> Row | None:
        table = self.table(name)

        def attempt() -> Row | None:
            try:
                entity = table.get_entity(pk, rk)
            except ResourceNotFoundError:
                return None
            return Row(dict(entity), str(entity.metadata["etag"]))

        return self.call(self._retry.read, f"read {name} entity", attempt)

    def query(self, name: str, query_filter: str, select: list[str] | None = None) -> list[Row]:
        """Every entity matching ``query_filter`` (all of them for ""), in key order."""
        return list(self.scan(name, query_filter, select))

    def scan(self, name: str, query_filter: str, select: list[str] | None = None) -> Iterator[Row]:
        """Like :meth:`query`, page by page (each page read under the retry policy)."""
        table = self.table(name)
        token: Any = None
        while True:

            def page(token: Any = token) -> tuple[list[Row], Any]:
                if query_filter:
                    items: Any = table.query_entities(
                        query_filter, select=select, results_per_page=PAGE_SIZE
                    )
                else:
                    items = table.list_entities(select=select, results_per_page=PAGE_SIZE)
                pages = items.by_page(continuation_token=token)
                entities: Any = next(pages, [])
                rows = [Row(dict(e), str(e.metadata.get("etag", ""))) for e in entities]
                return rows, pages.continuation_token

            rows, token = self.call(self._retry.read, f"query {name}", page)
            yield from rows
            if not token:
                return

    def insert(self, name: str, entity: Entity) -> bool:
        """Insert if absent. False when the key is taken (by someone else)."""
        table = self.table(name)
        entity = {**entity, "wtoken": uuid.uuid4().hex}
        _check_size(entity, f"insert into {name}")
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                table.create_entity(entity)
            except ResourceExistsError:
                return False
            return True

        if self.call(self._retry.write, f"insert into {name}", attempt):
            return True
        return attempts > 1 and self._written_by(name, entity)

    def replace(self, name: str, entity: Entity, etag: str) -> bool:
        """Replace the entity if its ETag is still ``etag``. False when it changed or is gone."""
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        table = self.table(name)
        entity = {**entity, "wtoken": uuid.uuid4().hex}
        _check_size(entity, f"update {name}")
        attempts = 0

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return False
            return True

        if self.call(self._retry.write, f"update {name}", attempt):
            return True
        return attempts > 1 and self._written_by(name, entity)

    def upsert(self, name: str, entity: Entity) -> None:
        """Insert or replace, unconditionally (idempotent)."""
        from azure.data.tables import UpdateMode

        table = self.table(name)
        _check_size(entity, f"upsert into {name}")
        self.call(
            self._retry.write,
            f"upsert into {name}",
            table.upsert_entity,
            entity,
            UpdateMode.REPLACE,
        )

    def delete(self, name: str, pk: str, rk: str, etag: str | None = None) -> bool:
        """Delete (only while the ETag is ``etag``, when given). False when the ETag is stale;
        an entity that is already gone counts as deleted."""
        from azure.core import MatchConditions

        table = self.table(name)

        def attempt() -> bool:
            try:
                if etag is None:
                    table.delete_entity(pk, rk)
                else:
                    table.delete_entity(
                        pk, rk, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
            except ResourceModifiedError:
                return False
            return True

        return self.call(self._retry.write, f"delete {name} entity", attempt)

    def _written_by(self, name: str, entity: Entity) -> bool:
        """After a retried write got 409/412: is the stored entity our own earlier write?"""
        row = self.get(name, entity["PartitionKey"], entity["RowKey"])
        return row is not None and row.get("wtoken") == entity["wtoken"]


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
    # claims and finishes stay one conditional write per key here.
    def claim_deliveries(
        self, keys: Sequence[str], now: datetime, lease_s: float, owner: str = ""
    ) -> list[Claim]:
        return [self.claim_delivery(key, now, lease_s, owner) for key in keys]

    def finish_deliveries(self, keys: Sequence[str], now: datetime) -> None:
        for key in keys:
            self.finish_delivery(key, now)

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
