"""Trigger against webhook on Azure Table Storage (Azurite): invocations and round trips.

The same event stream (the intake workload, live mode, fake platform) is delivered twice to
``TableStateStore`` + ``TableAuditLog`` on one Azurite server (each variant its own tables):
once as the Event Grid trigger does it (one invocation per event, ``deliver_azureml``) and
once as ``POST /api/events`` does (one invocation per batch, ``deliver_batch``). Every HTTP
request the two adapters send is counted on the wire, by a transport under the SDK's
pipeline, so retries and table creation would show (both are warmed up first). The transport
is the one the adapters build for themselves (``tables.http_transport``: its connection pool,
no proxy scan of the environment per request), so the CPU figures are production's.

Wall and CPU time (this process, all its threads; Azurite's own CPU is not counted) are taken
around the deliveries only, per event; the load average says how loaded the machine was.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any

from azure.core.pipeline.transport import HttpRequest, HttpResponse, RequestsTransport

from benchmarks.intake_workload import EventStream, build_policy
from composition.bootstrap import bootstrap
from composition.delivery import deliver_azureml, deliver_batch, validate_batch
from shared.adapters.table_audit import TableAuditLog
from shared.adapters.table_store import TableStateStore
from shared.adapters.tables import http_transport
from shared.envelope import envelope_from_dict, parse_delivery
from shared.messagebus import Services
from tests.fakes import FakeMetrics, FakePlatform, FakePublisher

# Injected before each request in the latency variants (as benchmarks/audit_scale.py does).
LATENCY_S = 0.005


class CountingTransport(RequestsTransport):  # type: ignore[misc]  # untyped SDK base
    """Counts every request sent, by method and table (entity-group batches as ``$batch``)."""

    def __init__(self, prefix: str = "", delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix
        self.delay_s = delay_s  # waited before each request: a storage account's round trip
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()  # a batch's claims and finishes are sent from threads

    def send(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        path = request.url.split("?", 1)[0].rsplit("/", 1)[-1]
        table = path.split("(", 1)[0].removeprefix(self.prefix) or "/"
        with self._lock:
            self.requests[f"{request.method} {table}"] += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().send(request, **kwargs)  # type: ignore[no-any-return]  # untyped SDK


def _services(
    connection: str, prefix: str, models: int, latency_s: float = 0.0
) -> tuple[Services, CountingTransport]:
    transport = http_transport(CountingTransport, prefix=prefix, delay_s=latency_s)
    store = TableStateStore(connection, table_prefix=prefix, transport=transport)
    audit = TableAuditLog(connection, table_prefix=prefix, transport=transport)
    services = Services(
        store=store,
        audit=audit,
        platform=FakePlatform(),
        metrics=FakeMetrics(),
        publisher=FakePublisher(),
        policy=build_policy(models),
    )
    return services, transport


def _deliver(services: Services, body: bytes, batched: bool) -> int:
    """One delivery; how many function invocations it took."""
    if batched:
        deliver_batch(bootstrap(services), validate_batch(parse_delivery(body), services.policy))
        return 1
    events = parse_delivery(body)
    for index, event in enumerate(events):
        deliver_azureml(bootstrap(services), envelope_from_dict(event, index))
    return len(events)


def measure(
    connection: str,
    *,
    batched: bool,
    events: int,
    batch_size: int,
    models: int = 10,
    latency_s: float = 0.0,
) -> dict[str, Any]:
    prefix = f"bench{'hook' if batched else 'trig'}{batch_size}{time.monotonic_ns() % 10**6}"
    services, transport = _services(connection, prefix, models, latency_s)
    platform = services.platform
    assert isinstance(platform, FakePlatform)
    stream = EventStream(models)
    for _ in range(2):  # warm up: tables created, first cycles
        _deliver(services, json.dumps(stream.batch(20)).encode(), batched)
        stream.note_jobs(platform)
    transport.requests.clear()
    done = invocations = 0
    wall = cpu = 0.0
    while done < events:
        size = min(batch_size, events - done)
        body = json.dumps(stream.batch(size)).encode()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        invocations += _deliver(services, body, batched)
        wall += time.perf_counter() - wall0
        cpu += time.process_time() - cpu0
        stream.note_jobs(platform)
        done += size
    trips = sum(transport.requests.values())
    return {
        "events": done,
        "batch_size": batch_size,
        "latency_injected_ms": latency_s * 1000,
        "invocations": invocations,
        "invocations_per_10k_events": invocations * 10_000 / done,
        "round_trips": trips,
        "round_trips_per_event": trips / done,
        "wall_s": wall,
        "wall_ms_per_event": wall * 1000 / done,
        "cpu_ms_per_event": cpu * 1000 / done,
        "load_average_1min": os.getloadavg()[0],
        "by_request": dict(transport.requests.most_common()),
    }


def run(*, events: int = 1_000, quick: bool = False) -> dict[str, Any]:
    """Trigger (per event) and webhook (batches of 100 and of 1,000) on one Azurite server;
    the webhook again with 5 ms injected before each request (an Azure round trip: Azurite
    on loopback answers in well under that, so its figures show CPU, not waiting)."""
    from tests.integration.azurite import start_azurite

    if quick:
        events = min(events, 300)
    server = start_azurite()
    try:
        conn = server.connection_string
        return {
            "azurite": server.version,
            "trigger (one invocation per event)": measure(
                conn, batched=False, events=events, batch_size=100
            ),
            "webhook, batches of 100": measure(conn, batched=True, events=events, batch_size=100),
            "webhook, batches of 1,000": measure(
                conn, batched=True, events=events, batch_size=1000
            ),
            "webhook, batches of 100, 5 ms per request": measure(
                conn, batched=True, events=events, batch_size=100, latency_s=LATENCY_S
            ),
            "webhook, batches of 1,000, 5 ms per request": measure(
                conn, batched=True, events=events, batch_size=1000, latency_s=LATENCY_S
            ),
        }
    finally:
        server.stop()


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
