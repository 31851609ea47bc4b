"""A batch delivered on Table Storage whose claims fail part way (an outage) leaves no claim
held: the redelivery is processed at once, as on SQLite (where the transaction rolls back),
not refused with 503 until the leases the failed attempt took have expired (300 s).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import RequestsTransport

from composition.bootstrap import bootstrap
from composition.delivery import BatchOutcome, deliver_batch, validate_batch
from shared import retry as retries
from shared.adapters.table_audit import TableAuditLog
from shared.adapters.table_store import DELIVERY, TableStateStore, pk
from shared.errors import TransientError
from shared.messagebus import Services
from tests import payloads
from tests.fakes import FakeMetrics, FakePlatform, FakePublisher, make_policy
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)


class OutageTransport(RequestsTransport):  # type: ignore[misc]
    """Refuses, before sending, every request that writes the entity of partition ``down``
    (the service never sees it), as a storage outage of that partition would."""

    down: str = ""

    def send(self, request: Any, **kwargs: Any) -> Any:
        body = request.body if isinstance(request.body, bytes | str) else b""
        text = body.decode() if isinstance(body, bytes) else body
        if self.down and self.down in text:
            raise ServiceRequestError("connection refused")
        return super().send(request, **kwargs)


def test_a_batch_whose_claims_fail_part_way_leaves_no_claim_held(
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    no_wait = retries.RetryPolicy(attempts=2, initial_s=0.0, max_interval_s=0.0, total_s=10.0)
    policies = retries.RetryPolicies(read=no_wait, write=no_wait)
    transport = OutageTransport()
    prefix = "claims" + uuid.uuid4().hex[:10]
    svc = Services(
        store=TableStateStore(azurite, table_prefix=prefix, transport=transport, retry=policies),
        audit=TableAuditLog(azurite, table_prefix=prefix),
        platform=FakePlatform(),
        metrics=FakeMetrics(),
        publisher=FakePublisher(),
        policy=make_policy(),
    )
    events = [payloads.run_event(f"run-{i}", "Running") for i in range(6)]
    batch = validate_batch(events, svc.policy)
    svc.store.get_cycle("none")  # the tables exist
    transport.down = pk(DELIVERY, batch[3].envelope.dedup_key)  # the 4th claim cannot be made
    with pytest.raises(TransientError):
        deliver_batch(bootstrap(svc), batch)
    transport.down = ""  # storage is back; Event Grid redelivers the batch
    assert deliver_batch(bootstrap(svc), batch) == BatchOutcome(processed=6)
    ignored = svc.audit.query(kind="ignored", limit=100)
    assert sorted(r.caused_by or "" for r in ignored) == sorted(b.envelope.dedup_key for b in batch)
