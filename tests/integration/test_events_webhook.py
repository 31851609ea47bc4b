"""``POST /api/events``, the batched Event Grid webhook, over real HTTP against ``autopilot serve``.

Sent the way Event Grid and real senders send: azure-eventgrid's publisher client (Event Grid
schema and CloudEvents batches) and the ``cloudevents`` SDK (one structured-mode event), with
the function key in the URL (``?code=``) as a WebHook subscription carries it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent as AzureCloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient
from cloudevents.v1.conversion import to_structured
from cloudevents.v1.http import CloudEvent

from tests import payloads
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)
from tests.integration.serve_proc import KEY, ROOT, Served, start_serve

pytestmark = pytest.mark.slow
POLICY = ROOT / "tests" / "data" / "http_policy.yaml"
EVENTS = "/api/events"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_serve(tmp_path_factory.mktemp("webhook"), POLICY)
    yield server
    server.stop()


def audit(server: Served, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body = server.json("GET", f"/api/audit?{query}")
    assert status == 200
    return list(body["records"])


def ignored_runs(server: Served, prefix: str) -> list[str]:
    """The run names of ``prefix`` that the service audited (foreign runs are ignored)."""
    records = audit(server, kind="ignored", limit="1000")
    return sorted(r["caused_by"] for r in records if prefix in (r["caused_by"] or ""))


def publisher(server: Served) -> EventGridPublisherClient:
    return EventGridPublisherClient(f"{server.url}{EVENTS}?code={KEY}", AzureKeyCredential("x"))


def test_event_grid_schema_validation_handshake(served: Served) -> None:
    request = payloads.sample("eventgrid/SubscriptionValidationEvent_request.json")
    status, answer = served.json(
        "POST",
        f"{EVENTS}?code={KEY}",
        request,
        key=None,
        headers={"aeg-event-type": "SubscriptionValidation"},
    )
    assert status == 200
    assert answer == payloads.sample("eventgrid/SubscriptionValidationEvent_response.json")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("eventgrid.azure.net", "eventgrid.azure.net"), ("evil.example.com", "eventgrid.azure.net")],
)
def test_cloudevents_abuse_protection_handshake(served: Served, origin: str, allowed: str) -> None:
    status, headers, _ = served.request(
        "OPTIONS", f"{EVENTS}?code={KEY}", key=None, headers={"WebHook-Request-Origin": origin}
    )
    assert status == 200
    assert headers.get("WebHook-Allowed-Origin") == allowed
    assert "POST" in headers.get("Allow", "")


@pytest.mark.parametrize("method", ["POST", "OPTIONS"])
def test_without_the_function_key_nothing_is_answered(served: Served, method: str) -> None:
    status, headers, _ = served.request(
        method, EVENTS, [], key=None, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert status == 401
    assert "WebHook-Allowed-Origin" not in headers


def test_an_event_grid_schema_batch_from_the_publisher_client_is_applied_whole(
    served: Served,
) -> None:
    prefix = f"eg-{uuid.uuid4().hex[:8]}-"
    events = [payloads.run_event(f"{prefix}{i}", "Running") for i in range(300)]
    publisher(served).send(
        [
            EventGridEvent(
                subject=e["subject"],
                event_type=e["eventType"],
                data=e["data"],
                data_version="2",
                topic=e.get("topic"),
            )
            for e in events
        ]
    )
    assert len(ignored_runs(served, prefix)) == 300


def test_a_cloudevents_batch_from_the_publisher_client_and_a_single_structured_event(
    served: Served,
) -> None:
    prefix = f"ce-{uuid.uuid4().hex[:8]}-"
    clouds = [
        payloads.to_cloudevent(payloads.run_event(f"{prefix}{i}", "Running")) for i in range(50)
    ]
    publisher(served).send(
        [
            AzureCloudEvent(
                source=c["source"], type=c["type"], subject=c["subject"], data=c["data"]
            )
            for c in clouds
        ]
    )
    single = payloads.to_cloudevent(payloads.run_event(f"{prefix}single", "Running"))
    headers, body = to_structured(
        CloudEvent({k: v for k, v in single.items() if k != "data"}, single["data"])
    )
    status, _, _ = served.request("POST", EVENTS, raw=body, headers=dict(headers))
    assert status == 200
    assert len(ignored_runs(served, prefix)) == 51


def test_a_batch_with_one_bad_event_is_refused_whole_and_nothing_is_applied(
    served: Served,
) -> None:
    prefix = f"bad-{uuid.uuid4().hex[:8]}-"
    batch = [payloads.run_event(f"{prefix}{i}", "Running") for i in range(10)]
    bad = payloads.model_registered("m", "1", {})
    bad["data"]["modelTags"] = ["wrong", "type"]
    batch.insert(7, bad)
    with pytest.raises(HttpResponseError) as raised:
        publisher(served).send(batch)
    assert raised.value.status_code == 400
    status, body = served.json("POST", EVENTS, batch)
    assert status == 400
    assert "event [7]" in body["error"] and "modelTags" in body["error"]
    assert ignored_runs(served, prefix) == []
    assert audit(served, kind="rejected")[-1]["reason"] == body["error"]


def test_size_limits_5000_events_and_1024_kb(served: Served) -> None:
    prefix = f"big-{uuid.uuid4().hex[:8]}-"
    tiny = [
        {"id": f"{prefix}{i}", "eventType": "x", "subject": "s", "data": {}} for i in range(5001)
    ]
    status, body = served.json("POST", EVENTS, tiny)
    assert status == 400 and "5001 events; at most 5000" in body["error"]
    events = [payloads.run_event(f"{prefix}{i}", "Running") for i in range(3000)]
    status, _, _ = served.request("POST", EVENTS, raw=json.dumps(events).encode())
    assert status == 413  # 3,000 Azure ML events are over 1,024 KB
    assert ignored_runs(served, prefix) == []


def test_a_redelivered_batch_acts_once_per_event(served: Served) -> None:
    prefix = f"dup-{uuid.uuid4().hex[:8]}-"
    batch = [payloads.run_event(f"{prefix}{i}", "Running") for i in range(20)]
    assert served.json("POST", EVENTS, batch) == (
        200,
        {"processed": 20, "duplicate": 0, "failed": 0},
    )
    assert served.json("POST", EVENTS, [*batch[5:], batch[0]]) == (
        200,
        {"processed": 0, "duplicate": 16, "failed": 0},
    )
    records = [r for r in audit(served, limit="1000") if prefix in (r["caused_by"] or "")]
    assert len([r for r in records if r["summary"].startswith("duplicate delivery")]) == 16
    assert len(ignored_runs(served, prefix)) == 20 + 16  # duplicates are audited as ignored


def test_raw_json_text_of_the_batch_in_either_schema_is_accepted(served: Served) -> None:
    """Content types Event Grid uses: application/json and application/cloudevents-batch+json."""
    prefix = f"raw-{uuid.uuid4().hex[:8]}-"
    eg = [payloads.run_event(f"{prefix}eg", "Running")]
    ce = [payloads.to_cloudevent(payloads.run_event(f"{prefix}ce", "Running"))]
    assert served.request("POST", EVENTS, raw=json.dumps(eg).encode())[0] == 200
    headers = {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"}
    assert served.request("POST", EVENTS, raw=json.dumps(ce).encode(), headers=headers)[0] == 200
    assert len(ignored_runs(served, prefix)) == 2


def deliver_until_acknowledged(server: Served, batch: list[dict[str, Any]]) -> int:
    """POST the batch as Event Grid does: again after a 503, until it is acknowledged."""
    answer = b""
    for attempt in range(60):
        status, _, answer = server.request("POST", EVENTS, raw=json.dumps(batch).encode())
        if status != 503:
            assert status == 200, answer
            return attempt
        time.sleep(0.5)
    raise AssertionError(f"the batch was never acknowledged: {answer!r}")


@pytest.mark.parametrize("store", ["sqlite", "table"])
def test_two_processes_receiving_overlapping_batches_at_once_act_once_per_event(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    env: dict[str, str] = {}
    if store == "table":
        azurite = request.getfixturevalue("azurite")
        env = {"AUTOPILOT_STORE": "table", "AUTOPILOT_TABLE_CONNECTION_STRING": azurite}
    data = tmp_path / "shared-data"
    first, second = start_serve(data, POLICY, env=env), start_serve(data, POLICY, env=env)
    try:
        prefix = f"overlap-{uuid.uuid4().hex[:8]}-"
        # Foreign runs: each handled event leaves one "ignored" record (a drift event would
        # start a job, which the embedded platform takes ~20 s to start here: the overlapping
        # batches would only wait longer; tests/reliability/test_group_commit.py counts jobs).
        events = [payloads.run_event(f"{prefix}{i}", "Running") for i in range(120)]
        batches = [events[:80], events[40:], events[20:100], events]
        barrier = threading.Barrier(len(batches))
        retries: list[int] = []

        def post(server: Served, batch: list[dict[str, Any]]) -> None:
            barrier.wait()
            retries.append(deliver_until_acknowledged(server, batch))

        threads = [
            threading.Thread(target=post, args=(server, batch))
            for server, batch in zip((first, second) * 2, batches, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = audit(first, limit="1000")
        ignored = [
            r
            for r in records
            if prefix in (r["caused_by"] or "") and not r["summary"].startswith("duplicate")
        ]
        assert len(ignored) == 120  # each foreign run handled once, whatever delivered it
        assert len({r["caused_by"] for r in ignored}) == 120
        print(f"4 overlapping batches over 2 processes ({store}): retries {sorted(retries)}")
    finally:
        first.stop()
        second.stop()
