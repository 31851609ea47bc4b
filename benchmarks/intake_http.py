"""The intake benchmark over HTTP: Event Grid batches POSTed to ``autopilot serve``."""

from __future__ import annotations

import http.client
import json
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import pinned, process_cpu_seconds, summary
from benchmarks.intake_workload import BATCH_SIZE, EventStream, Mix, policy_data

HTTP_KEY = "k-bench-0123456789abcdefghijkl"
EVENTGRID_PATH = "/runtime/webhooks/eventgrid?functionName=azureml_events"


@contextmanager
def served(models: int, folder: Path, *, cpu: int | None = 1) -> Iterator[tuple[Any, int | None]]:
    """``autopilot serve`` in a subprocess, pinned to one CPU, with an observe-mode policy."""
    from tests.integration.serve_proc import start_serve

    policy = folder / "policy.yaml"
    policy.write_text(json.dumps(policy_data(models, mode="observe")))  # JSON is YAML
    with pinned(cpu) as used:  # the child inherits the affinity of this thread
        service = start_serve(folder / "data", policy, keys=f"bench={HTTP_KEY}")
    try:
        yield service, used
    finally:
        service.stop()


class Client:
    """One keep-alive connection, as Event Grid holds one per subscription and instance."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def post(self, body: bytes) -> int:
        headers = {
            "Content-Type": "application/json",
            "aeg-event-type": "Notification",
            "x-functions-key": HTTP_KEY,
        }
        for attempt in (1, 2):
            try:
                self.conn.request("POST", EVENTGRID_PATH, body, headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _post_batches(
    client: Client, stream: EventStream, events: int, batch_size: int, log: Any
) -> list[float]:
    """POST ``events`` events in batches of ``batch_size``; the latency of each batch."""
    latencies: list[float] = []
    sent = 0
    while sent < events:
        size = min(batch_size, events - sent)
        body = json.dumps(stream.batch(size)).encode()
        t0 = time.perf_counter()
        status = client.post(body)
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"a batch of {size} answered {status}; see {log}")
        sent += size
    return latencies


def run_http(
    *,
    events: int,
    batch_size: int = BATCH_SIZE,
    models: int = 10,
    single_events: int = 200,
    warmup_events: int = 200,
    server_cpu: int | None = 1,
    client_cpu: int | None = 0,
) -> dict[str, Any]:
    """Batches POSTed to ``autopilot serve``: events/s (wall and per server CPU-second) and
    per-batch latency; then ``single_events`` one-event deliveries (Event Grid's default
    ``maxEventsPerBatch`` is 1) for the per-event latency over HTTP."""
    stream = EventStream(models, Mix())
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
        served(models, Path(tmp), cpu=server_cpu) as (service, server_cpu_used),
        pinned(client_cpu),
    ):
        client = Client(service.url)
        try:
            _post_batches(client, stream, warmup_events, batch_size, service.log)
            stream.counts.clear()
            cpu0 = process_cpu_seconds(service.proc.pid)
            wall0 = time.perf_counter()
            latencies = _post_batches(client, stream, events, batch_size, service.log)
            wall = time.perf_counter() - wall0
            cpu = process_cpu_seconds(service.proc.pid) - cpu0
            sent = events
            singles = _post_batches(client, stream, single_events, 1, service.log)
        finally:
            client.close()
        batch = summary(latencies)
        single = summary(singles)
        return {
            "events": sent,
            "batch_size": batch_size,
            "models": models,
            "mode": "observe",
            "wall_s": wall,
            "server_cpu_s": cpu,
            "events_per_s": sent / wall if wall else 0.0,
            "events_per_server_cpu_s": sent / cpu if cpu else 0.0,
            "batch_latency_s": {k: batch[k] for k in ("median", "p90", "p99", "max")},
            "per_event_amortised_s": {
                k: batch[k] / batch_size for k in ("median", "p90", "p99", "max")
            },
            "single_event_latency_s": {k: single[k] for k in ("median", "p90", "p99", "max")},
            "single_events": single_events,
            "server_cpu": server_cpu_used,
            "mix": dict(stream.counts),
        }
