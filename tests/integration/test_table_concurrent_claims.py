"""A batch's claims on Table Storage go several at a time (``Tables.each``); they must answer
exactly as claiming the keys one after another does, and a claim that fails must still give
back every key the batch took, including keys claimed after the failing one (Azurite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import RequestsTransport

from shared import budget as budgets
from shared import retry as retries
from shared.adapters.table_store import DELIVERY, ROW, STATE, TableStateStore, pk
from shared.adapters.tables import WRITE_THREADS, http_transport
from shared.errors import TransientError
from shared.ports import Claim
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LEASE_S = 300.0
NO_WAIT = retries.RetryPolicy(attempts=2, initial_s=0.0, max_interval_s=0.0, total_s=10.0)


class OutageTransport(RequestsTransport):  # type: ignore[misc]  # untyped SDK base
    """Refuses, before sending, every request whose body names one of the ``down``
    partitions (the service never sees it), as an outage of those partitions would."""

    down: tuple[str, ...] = ()

    def send(self, request: Any, **kwargs: Any) -> Any:
        body = request.body if isinstance(request.body, bytes | str) else b""
        text = body.decode() if isinstance(body, bytes) else body
        if any(partition in text for partition in self.down):
            raise ServiceRequestError("connection refused")
        return super().send(request, **kwargs)


def _store(connection: str, transport: Any = None) -> TableStateStore:
    prefix = "conc" + uuid.uuid4().hex[:10]
    policies = retries.RetryPolicies(read=NO_WAIT, write=NO_WAIT)
    return TableStateStore(connection, table_prefix=prefix, transport=transport, retry=policies)


def _prepare(store: TableStateStore, keys: list[str]) -> None:
    """Key i is: 0 absent, 1 done, 2 held by another worker, 3 held with an expired lease."""
    for i, key in enumerate(keys):
        if i % 4 == 1:
            store.finish_delivery(key, NOW - timedelta(hours=1))
        elif i % 4 == 2:
            store.claim_delivery(key, NOW - timedelta(seconds=10), LEASE_S, owner="other")
        elif i % 4 == 3:
            store.claim_delivery(key, NOW - timedelta(hours=1), LEASE_S, owner="other")


def _batch(keys: list[str]) -> list[str]:
    """The keys in a shuffled order, with some listed twice (a repeat sees its first claim)."""
    return keys[1::2] + keys[::2] + keys[:8]


def _row(store: TableStateStore, key: str) -> dict[str, Any] | None:
    row = store.tables.get(STATE, pk(DELIVERY, key), ROW)
    return None if row is None else {"status": row["status"], "owner": row.get("owner")}


def test_a_concurrent_claim_batch_answers_as_claims_made_one_by_one(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    keys = [f"event-{i}" for i in range(48)]
    one_by_one, together = _store(azurite), _store(azurite)
    _prepare(one_by_one, keys)
    _prepare(together, keys)
    batch = _batch(keys)

    expected = [one_by_one.claim_delivery(key, NOW, LEASE_S, "me") for key in batch]
    claims = together.claim_deliveries(batch, NOW, LEASE_S, "me")

    assert claims == expected
    kinds = {Claim.NEW: 0, Claim.DUPLICATE: 1, Claim.IN_PROGRESS: 2, Claim.RETRY: 3}
    first = {key: claim for key, claim in reversed(list(zip(batch, claims, strict=True)))}
    assert all(kinds[first[key]] == i % 4 for i, key in enumerate(keys))
    # A key listed again is claimed after its first claim: taken (or held) means in progress.
    repeats = claims[len(keys) :]
    assert repeats == [Claim.DUPLICATE if i % 4 == 1 else Claim.IN_PROGRESS for i in range(8)]
    assert [_row(together, key) for key in keys] == [_row(one_by_one, key) for key in keys]


def test_a_claim_failing_in_a_concurrent_batch_gives_back_every_key_taken(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    keys = [f"event-{i}" for i in range(48)]
    transport = OutageTransport()
    store = _store(azurite, transport)
    _prepare(store, keys)
    before = {key: _row(store, key) for key in keys}
    transport.down = (pk(DELIVERY, keys[8]),)  # an absent key early in the batch

    with pytest.raises(TransientError):
        store.claim_deliveries(keys, NOW, LEASE_S, "me")

    # The new keys taken (before and after the failing one) are gone again; the expired ones
    # taken over are released too; done and held keys are as they were.
    after = {key: _row(store, key) for key in keys}
    for i, key in enumerate(keys):
        if i % 4 in (0, 3):
            assert after[key] is None, key
        else:
            assert after[key] == before[key], key
    transport.down = ()
    claims = store.claim_deliveries(keys, NOW, LEASE_S, "me")  # the redelivery is served
    assert [c for i, c in enumerate(claims) if i % 4 in (0, 3)] == [Claim.NEW] * 24


def test_a_concurrent_batch_reuses_its_pooled_connections(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    transport: RequestsTransport = http_transport()
    store = _store(azurite, transport)
    keys = [f"event-{i}" for i in range(4 * WRITE_THREADS)]
    for _ in range(3):
        store.claim_deliveries(keys, NOW, LEASE_S, "me")
        store.finish_deliveries(keys, NOW)
    pools = transport.session.get_adapter(azurite.split("TableEndpoint=")[1]).poolmanager.pools
    opened = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118 - it cannot iterate
    assert 1 <= opened <= WRITE_THREADS


def test_each_keeps_item_order_errors_and_the_invocations_budget(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    tables = _store(azurite).tables
    items = list(range(4 * WRITE_THREADS))
    seen_budgets: set[int] = set()

    def work(i: int) -> int:
        seen_budgets.add(id(budgets.current()))
        if i % 7 == 3:
            raise TransientError(f"item {i}")
        # A call from one of the pool's threads runs inline (a full pool cannot deadlock).
        return sum(o.value or 0 for o in tables.each([i, i], lambda j: j))

    with budgets.invocation_budget() as budget:
        outcomes = tables.each(items, work)

    assert [o.value for o in outcomes] == [None if i % 7 == 3 else 2 * i for i in items]
    assert [str(o.error) if o.error else None for o in outcomes] == [
        f"item {i}" if i % 7 == 3 else None for i in items
    ]
    assert seen_budgets == {id(budget)}  # retries in the threads draw on the caller's budget
