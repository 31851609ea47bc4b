"""Over real HTTP against ``autopilot serve`` started on a free loopback port."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import payloads
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)
from tests.integration.serve_proc import KEY, ROOT, Served, start_serve

pytestmark = pytest.mark.slow
POLICY = ROOT / "tests" / "data" / "http_policy.yaml"
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=azureml_events"
SAMPLE_FILES = sorted(
    p.relative_to(payloads.SAMPLES).as_posix()
    for p in payloads.SAMPLES.rglob("*.json")
    if "response" not in p.name
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_serve(tmp_path_factory.mktemp("serve"), POLICY)
    yield server
    server.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Served]:
    server = start_serve(tmp_path / "data", POLICY)
    yield server
    server.stop()


def audit(server: Served, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body = server.json("GET", f"/api/audit?{query}")
    assert status == 200
    return list(body["records"])


def cycles(server: Served) -> list[dict[str, Any]]:
    status, body = server.json("GET", "/api/cycles")
    assert status == 200
    return list(body["cycles"])


def jobs_submitted(server: Served) -> list[dict[str, Any]]:
    return [
        r
        for r in audit(server, kind="action")
        if "job" in r["summary"] and "submitted" in r["summary"]
    ]


def fresh_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = copy.deepcopy(events)
    for event in events:
        event["id"] = str(uuid.uuid4())
    return events


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_each_public_sample_is_accepted(served: Served, name: str) -> None:
    body = payloads.sample(name)
    if name.startswith("alerts/"):
        body["data"]["essentials"]["alertId"] = str(uuid.uuid4())
        status, _ = served.json("POST", "/api/alerts", body)
    elif "SubscriptionValidation" in name:
        status, answer = served.json(
            "POST", WEBHOOK, body, headers={"aeg-event-type": "SubscriptionValidation"}
        )
        assert answer == payloads.sample("eventgrid/SubscriptionValidationEvent_response.json")
    else:
        status, _ = served.json("POST", WEBHOOK, fresh_ids(body))
        cloud = [payloads.to_cloudevent(e) for e in fresh_ids(body)]
        assert served.json("POST", WEBHOOK, cloud)[0] == 200
    assert status == 200


def test_cloudevents_abuse_protection_handshake(served: Served) -> None:
    status, headers, _ = served.request(
        "OPTIONS", WEBHOOK, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert status == 200
    assert headers.get("WebHook-Allowed-Origin") == "eventgrid.azure.net"


def test_a_100_event_batch_is_handled_whole(served: Served) -> None:
    batch = [payloads.run_event(f"foreign-run-{i}", "Running") for i in range(100)]
    status, _ = served.json("POST", WEBHOOK, batch)
    assert status == 200
    ours = [r for r in audit(served, kind="ignored") if "foreign-run-" in (r["caused_by"] or "")]
    assert len(ours) == 100


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"id": "x"}', "must be a JSON array"),
        (b"[]", "empty array"),
        (
            json.dumps([{"id": "1", "eventType": "x", "subject": "s"}]).encode(),
            "missing field 'data'",
        ),
        (
            json.dumps([{"id": 5, "eventType": "x", "subject": "s", "data": {}}]).encode(),
            "'id' must be a string",
        ),
        (b'[{"id": "1", "id": "2"}]', "duplicate JSON key"),
        (b"\xff\xfe[]", "UTF-8"),
    ],
)
def test_malformed_deliveries_get_a_clear_400_and_nothing_is_applied(
    served: Served, raw: bytes, message: str
) -> None:
    before = len(cycles(served))
    status, _, body = served.request("POST", WEBHOOK, raw=raw)
    assert status == 400
    assert message in json.loads(body)["error"]
    assert len(cycles(served)) == before
    assert audit(served, kind="rejected")[-1]["reason"].endswith(json.loads(body)["error"][-20:])


def test_a_batch_with_one_bad_event_is_refused_whole(served: Served) -> None:
    good = payloads.sample("eventgrid/eventgrid_schema_DatasetDriftDetected.json")[0]
    good = {**good, "id": str(uuid.uuid4())}
    bad = payloads.model_registered("m", "1", {})
    bad["data"]["modelTags"] = ["wrong", "type"]
    before = len(audit(served))
    status, body = served.json("POST", WEBHOOK, [good, bad])
    assert status == 400
    assert "event [1]" in body["error"] and "modelTags" in body["error"]
    records = audit(served)[before:]
    assert [r["kind"] for r in records] == ["rejected"]


def test_oversized_body_is_refused_with_413(served: Served) -> None:
    status, _, _ = served.request("POST", WEBHOOK, raw=b"[" + b" " * 1_100_000 + b"]")
    assert status == 413
    status, _, _ = served.request("POST", "/api/alerts", raw=b"{" + b" " * 1_100_000 + b"}")
    assert status == 413


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/cycles"),
        ("GET", "/api/cycles/x"),
        ("GET", "/api/audit"),
        ("POST", "/api/cycles/x/approve"),
        ("POST", "/api/cycles/x/deny"),
        ("POST", "/api/alerts"),
        ("POST", WEBHOOK),
    ],
)
def test_missing_or_wrong_key_is_401(
    served: Served, method: str, path: str, key: str | None
) -> None:
    status, _, body = served.request(method, path, {}, key=key)
    assert status == 401
    assert b"wrong-key" not in body


def test_health_needs_no_key_and_code_query_parameter_works(served: Served) -> None:
    assert served.request("GET", "/api/health", key=None)[0] == 200
    assert served.request("GET", f"/api/cycles?code={KEY}", key=None)[0] == 200


def test_the_same_event_delivered_twice_acts_once(fresh: Served) -> None:
    drift = payloads.sample("eventgrid/eventgrid_schema_DatasetDriftDetected.json")
    assert fresh.json("POST", WEBHOOK, drift)[0] == 200
    assert fresh.json("POST", WEBHOOK, drift)[0] == 200
    assert len(cycles(fresh)) == 1
    assert len(jobs_submitted(fresh)) == 1
    assert any(r["summary"].startswith("duplicate delivery") for r in audit(fresh))


def test_two_service_processes_receiving_the_same_event_at_once_act_once(tmp_path: Path) -> None:
    data = tmp_path / "shared-data"
    first, second = start_serve(data, POLICY), start_serve(data, POLICY)
    try:
        drift = json.dumps(payloads.sample("eventgrid/eventgrid_schema_DatasetDriftDetected.json"))
        barrier = threading.Barrier(8)
        results: list[int] = []

        def deliver(server: Served) -> None:
            barrier.wait()
            results.append(server.request("POST", WEBHOOK, raw=drift.encode())[0])

        threads = [threading.Thread(target=deliver, args=(s,)) for s in (first, second) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # One worker processes it; the others are told to retry (503 + Retry-After) while
        # it holds the lease, or see a duplicate (200) once it has finished.
        assert set(results) <= {200, 503} and 200 in results
        redelivered = first.request("POST", WEBHOOK, raw=drift.encode())
        assert redelivered[0] == 200  # Event Grid's retry after the first worker finished
        assert len(cycles(first)) == 1
        assert len(jobs_submitted(first)) == 1
        print(
            f"8 concurrent deliveries over 2 processes -> statuses {sorted(results)}, "
            f"{len(cycles(first))} cycle, {len(jobs_submitted(first))} job"
        )
    finally:
        first.stop()
        second.stop()


def test_two_service_processes_on_table_storage_act_once(
    tmp_path: Path,
    azurite: str,  # noqa: F811 - the imported fixture
) -> None:
    """The same, with AUTOPILOT_STORE=table: state and audit in Table Storage (Azurite)."""
    env = {"AUTOPILOT_STORE": "table", "AUTOPILOT_TABLE_CONNECTION_STRING": azurite}
    data = tmp_path / "shared-data"
    first, second = start_serve(data, POLICY, env=env), start_serve(data, POLICY, env=env)
    try:
        drift = json.dumps(payloads.sample("eventgrid/eventgrid_schema_DatasetDriftDetected.json"))
        barrier = threading.Barrier(6)
        results: list[int] = []

        def deliver(server: Served) -> None:
            barrier.wait()
            results.append(server.request("POST", WEBHOOK, raw=drift.encode())[0])

        threads = [threading.Thread(target=deliver, args=(s,)) for s in (first, second) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(results) <= {200, 503} and 200 in results
        assert first.request("POST", WEBHOOK, raw=drift.encode())[0] == 200
        assert len(cycles(first)) == 1 and len(cycles(second)) == 1
        assert len(jobs_submitted(second)) == 1
        assert not (data / "state.db").exists() and not (data / "audit.db").exists()
        status, body = first.json("GET", "/api/audit?limit=1000")
        assert status == 200 and body["records"]
        print(
            f"table storage: 6 concurrent deliveries over 2 processes -> {sorted(results)}, "
            f"{len(cycles(first))} cycle, {len(jobs_submitted(first))} job, "
            f"{len(body['records'])} audit records"
        )
    finally:
        first.stop()
        second.stop()


def test_editing_a_stored_audit_record_makes_verify_exit_1_and_name_it(fresh: Served) -> None:
    fresh.json("POST", WEBHOOK, payloads.sample("eventgrid/eventgrid_schema_ModelDeployed.json"))
    fresh.stop()
    cli = [sys.executable, "-m", "autopilot.cli"]
    ok = subprocess.run(
        [*cli, "audit", "verify", "--data-dir", str(fresh.data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    import sqlite3

    with sqlite3.connect(fresh.data_dir / "audit.db") as db:
        db.execute("UPDATE audit SET summary = 'nothing to see' WHERE seq = 1")
    bad = subprocess.run(
        [*cli, "audit", "verify", "--data-dir", str(fresh.data_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 1
    assert "record 1" in bad.stdout


def test_serve_generates_a_key_when_none_is_configured_and_prints_it_once(tmp_path: Path) -> None:
    server = start_serve(tmp_path / "d", POLICY, keys=None)
    try:
        time.sleep(0.2)
        printed = server.log.read_text()
        key = json.loads((tmp_path / "d" / "function_keys.json").read_text())["local"]
        assert key in printed
        assert server.request("GET", "/api/cycles", key=key)[0] == 200
    finally:
        server.stop()
    again = start_serve(tmp_path / "d", POLICY, keys=None)
    try:
        assert key not in again.log.read_text()
    finally:
        again.stop()


def test_keys_never_reach_logs_audit_records_or_error_messages(served: Served) -> None:
    wrong = "wrong-key-SECRET-9f8e7d6c5b4a"
    bodies = [
        served.request("GET", "/api/cycles", key=wrong)[2],
        served.request("GET", f"/api/audit?code={wrong}", key=None)[2],
        served.request("POST", f"{WEBHOOK}&code={KEY}", raw=b"{broken", key=None)[2],
        served.request("POST", "/api/alerts", raw=b"{broken")[2],
        served.request("GET", f"/api/cycles?code={KEY}", key=None)[2],
    ]
    for body in bodies:
        assert KEY.encode() not in body and wrong.encode() not in body
    import sqlite3

    log_text = served.log.read_text()
    with sqlite3.connect(served.data_dir / "audit.db") as db:
        audit_text = "\n".join(str(row) for row in db.execute("SELECT * FROM audit"))
    for secret in (KEY, wrong):
        assert secret not in log_text
        assert secret not in audit_text
    assert "code=" not in log_text  # request lines are logged without their query string


def test_a_single_cloudevent_object_without_batching_is_accepted(served: Served) -> None:
    event = payloads.to_cloudevent(payloads.run_event("solo-run", "Running"))
    assert served.json("POST", WEBHOOK, event)[0] == 200
    ours = [r for r in audit(served, kind="ignored") if "solo-run" in (r["caused_by"] or "")]
    assert len(ours) == 1
