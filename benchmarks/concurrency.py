"""Concurrent connections: a burst of N clients connecting to ``autopilot serve`` at once.

Each client opens its own TCP connection at the same moment, sends one request and reads
the whole answer: half ``GET /api/health``, half ``POST`` of a one-event Event Grid delivery
(a run of a job no cycle submitted: deduplicated, audited as ignored). Every connection ends
in exactly one outcome: answered (with its status), reset by the server, refused, or timed
out. Event Grid counts anything but a 2xx within ~30 s as a failed delivery.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import summary

HTTP_KEY = "k-bench-0123456789abcdefghijkl"
EVENTGRID_PATH = "/runtime/webhooks/eventgrid?functionName=azureml_events"
CONNECTIONS = 1000
QUICK_CONNECTIONS = 200


@dataclass
class Burst:
    """What a burst of connections got back."""

    connections: int
    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "reset", "timeout" ...
    latencies: list[float] = field(default_factory=list)  # of answered requests, seconds
    wall_s: float = 0.0

    @property
    def answered(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.isdigit())

    def report(self) -> dict[str, Any]:
        lat = summary(self.latencies)
        return {
            "connections": self.connections,
            "answered": self.answered,
            "outcomes": dict(sorted(self.outcomes.items())),
            "wall_s": self.wall_s,
            "latency_s": {k: lat[k] for k in ("median", "p90", "p99", "max")},
        }


def run_event(n: int) -> bytes:
    """A one-event delivery: a foreign job went Running (no model acts on it)."""
    event = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws",
        "subject": f"experiments/e/runs/burst-{n}",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "eventTime": "2026-01-01T00:00:00Z",
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "experimentId": "e",
            "experimentName": "other-team",
            "runId": f"burst-{n}",
            "runType": "azureml.scriptrun",
            "runTags": {},
            "runProperties": {},
            "runStatus": "Running",
        },
    }
    return json.dumps([event]).encode()


def _request(n: int, host: str, key: str) -> bytes:
    if n % 2:
        return f"GET /api/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    body = run_event(n)
    head = (
        f"POST {EVENTGRID_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\naeg-event-type: Notification\r\n"
        f"x-functions-key: {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _one(
    n: int, host: str, port: int, key: str, start: asyncio.Event, timeout_s: float
) -> tuple[str, float]:
    await start.wait()
    t0 = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_request(n, f"{host}:{port}", key))
            await writer.drain()
            answer = await reader.read()  # Connection: close: read to the end
        status_line = answer.split(b"\r\n", 1)[0].split()
        if len(status_line) < 2 or not status_line[1].isdigit():
            return ("empty" if not answer else "garbled"), 0.0
        return status_line[1].decode(), time.perf_counter() - t0
    except TimeoutError:
        return "timeout", 0.0
    except ConnectionRefusedError:
        return "refused", 0.0
    except (ConnectionResetError, BrokenPipeError):
        return "reset", 0.0
    except OSError as exc:
        return f"error:{type(exc).__name__}", 0.0
    finally:
        if writer is not None:
            writer.close()


async def _burst(url: str, connections: int, key: str, timeout_s: float) -> Burst:
    parsed = urllib.parse.urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(_one(n, host, port, key, start, timeout_s)) for n in range(connections)
    ]
    await asyncio.sleep(0)  # every task is waiting on the start line
    t0 = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    burst = Burst(connections, wall_s=time.perf_counter() - t0)
    for outcome, latency in results:
        burst.outcomes[outcome] += 1
        if outcome.isdigit():
            burst.latencies.append(latency)
    return burst


def burst(url: str, connections: int, *, key: str = HTTP_KEY, timeout_s: float = 30.0) -> Burst:
    """Open ``connections`` connections to ``url`` at once, one request each."""
    return asyncio.run(_burst(url, connections, key, timeout_s))


def run(*, connections: int = CONNECTIONS, quick: bool = False) -> dict[str, Any]:
    """A burst against a fresh ``autopilot serve`` (observe-mode policy, SQLite)."""
    from benchmarks.intake import policy_data
    from tests.integration.serve_proc import start_serve

    if quick:
        connections = min(connections, QUICK_CONNECTIONS)
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(json.dumps(policy_data(10, mode="observe")))  # JSON is YAML
        service = start_serve(Path(tmp) / "data", policy, keys=f"bench={HTTP_KEY}")
        try:
            return burst(service.url, connections).report()
        finally:
            service.stop()
