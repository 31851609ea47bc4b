"""Azure Table Storage plumbing shared by the state store and the audit log.

``Tables`` is a storage account's tables under one name prefix and the few entity operations
we use (point read, paged query, insert-if-absent, replace-if-ETag, upsert, delete), each run
under :func:`shared.retry.call_with_retry` with the SDK's own retries off. A conditional write
that is retried after a lost response may find its own earlier success (409/412); each
conditional write carries a random ``wtoken`` so that case is recognised as success, not as
losing the race.

Keys and texts (``shared.adapters.table_entity``): ``table_key`` escapes any text into a legal
key; ``put_text`` splits long texts over numbered properties; an entity over 1 MiB is refused
with ``PermanentError`` before it is sent.

Proxies: when ``HTTP(S)_PROXY``/``NO_PROXY`` or a CA bundle variable is set, requests reads them
per request as usual; when none is, the client does not scan the environment on every request.

Independent writes (a batch's claims and finishes, one entity each) run ``WRITE_THREADS`` at a
time (:meth:`Tables.each`) on the one client (Azure SDK clients are safe to share between
threads); its connection pool keeps that many connections open.

Authentication: a connection string, or an endpoint with Microsoft Entra ID
(``DefaultAzureCredential`` by default; needs "Storage Table Data Contributor").
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared import retry as retries
from shared.adapters.table_entity import (
    Entity,
    _check_size,
    plain,
)
from shared.errors import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport, RequestsTransport
    from azure.data.tables import TableClient, TableServiceClient

T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R", bound="RequestsTransport")

# Entities per query page (the service returns at most 1,000).
PAGE_SIZE = 1000

# Independent single-entity writes of one call (a batch's claims, finishes) in flight at once,
# and the connections the HTTP pool keeps (requests keeps 10 by default: more threads than
# that would open and drop a connection, a TLS handshake on Azure, per extra request).
WRITE_THREADS = 16

_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,49}$")


def _networking_from_environment() -> bool:
    """Whether proxy or CA-bundle variables are set, which requests then reads per request."""
    import urllib.request

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return bool(urllib.request.getproxies()) or bool(bundle)


def http_transport(kind: type[R] | None = None, **kwargs: Any) -> R:
    """The transport ``Tables`` uses unless given one: a requests session whose pool keeps
    ``WRITE_THREADS`` connections, that reads proxy settings from the environment only when
    some are set (else requests scans every variable on every request: ~1 ms of CPU with
    190 variables set, measured). ``kind`` is a ``RequestsTransport`` subclass (benchmarks
    count requests with one); ``kwargs`` go to its constructor."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.trust_env = _networking_from_environment()
    # As azure-core mounts its own adapter: no retries or redirects below the pipeline.
    adapter = HTTPAdapter(
        pool_maxsize=WRITE_THREADS,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    cls: Any = kind or RequestsTransport
    transport: R = cls(session=session, session_owner=True, **kwargs)
    return transport


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one call of :meth:`Tables.each` gave: its value, or the error it raised."""

    value: T | None = None
    error: Exception | None = None


# -- the plumbing shared with the audit log --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """An entity as read: its properties (keys included) and its ETag."""

    props: Entity
    etag: str

    def __getitem__(self, name: str) -> Any:
        return plain(self.props[name])

    def get(self, name: str, default: Any = None) -> Any:
        return plain(self.props.get(name, default))


@dataclass(frozen=True, slots=True)
class Transaction:
    """What an entity-group transaction did (see :meth:`Tables.transact`)."""

    failed: int | None
    etags: list[str] = field(default_factory=list)


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
        self._pool: ThreadPoolExecutor | None = None
        self._in_pool = threading.local()

    def __repr__(self) -> str:  # never show the account key
        where = self.endpoint or "connection string"
        return f"Tables({where}, prefix={self.prefix!r})"

    # -- clients --

    def _service_client(self) -> TableServiceClient:
        if self._service is None:
            from azure.data.tables import TableServiceClient

            kwargs: dict[str, Any] = {"retry_total": 0}  # ours retry; never nest
            kwargs["transport"] = self._transport or http_transport()
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

    def each(self, items: Sequence[X], work: Callable[[X], T]) -> list[Outcome[T]]:
        """``work(item)`` for every item, ``WRITE_THREADS`` at a time, every one run to its end
        (an error does not stop the others); the outcomes in item order. For independent
        operations only (different entities): their order on the wire is not defined. Runs in
        the caller's thread for one item, or when called from one of these threads."""

        def one(item: X) -> Outcome[T]:
            try:
                return Outcome(value=work(item))
            except Exception as exc:  # kept for the caller, in item order
                return Outcome(error=exc)

        if len(items) <= 1 or getattr(self._in_pool, "active", False):
            return [one(item) for item in items]
        pool = self._worker_pool()

        def in_pool(item: X, context: contextvars.Context) -> Outcome[T]:
            self._in_pool.active = True
            return context.run(one, item)  # the caller's context: its invocation budget

        futures = [pool.submit(in_pool, item, contextvars.copy_context()) for item in items]
        return [future.result() for future in futures]

    def _worker_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="tables")
            return self._pool

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

    def transact(self, name: str, operations: list[tuple[Any, ...]]) -> Transaction:
        """Run ``operations`` (azure-data-tables' ``(verb, entity[, options])`` tuples, all in
        one partition, at most 100, under 4 MiB) as one entity-group transaction: all or none.

        ``failed`` is None when it committed, else the index of the operation whose condition
        failed (409 exists, 412 changed, 404 gone; nothing was applied). ``etags`` are the new
        ETags, in operation order, when the service returned them. The first operation's
        entity gets a ``wtoken``, so a retry after a lost answer knows its own commit.
        """
        from azure.data.tables import TableTransactionError

        table = self.table(name)
        first = {**operations[0][1], "wtoken": uuid.uuid4().hex}
        operations = [(operations[0][0], first, *operations[0][2:]), *operations[1:]]
        for _, entity, *_ in operations:
            _check_size(entity, f"transaction on {name}")
        attempts = 0

        def attempt() -> Transaction:
            nonlocal attempts
            attempts += 1
            try:
                answers = table.submit_transaction(operations)
            except TableTransactionError as exc:
                if exc.status_code in (404, 409, 412):
                    return Transaction(int(exc.index))
                raise
            return Transaction(None, [str(a.get("etag") or "") for a in answers])

        done = self.call(self._retry.write, f"transaction on {name}", attempt)
        if done.failed is not None and attempts > 1 and self._written_by(name, first):
            return Transaction(None)  # our earlier attempt committed; its ETags are unknown
        return done

    def _written_by(self, name: str, entity: Entity) -> bool:
        """After a retried write got 409/412: is the stored entity our own earlier write?"""
        row = self.get(name, entity["PartitionKey"], entity["RowKey"])
        return row is not None and row.get("wtoken") == entity["wtoken"]
