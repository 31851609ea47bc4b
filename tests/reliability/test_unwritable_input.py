"""Input JSON that Python reads but cannot write back or store is refused at intake (issue 13).

``1e400`` (read as ``inf``, then written as ``Infinity``), nesting deeper than the limit,
integers past ``int()``'s 4,300 digits, lone surrogates (``"\\ud800"``: valid JSON, not valid
UTF-8) and non-ASCII digits in ``Content-Length``: each is a 4xx naming what is wrong, on the
SQLite and the Table Storage (Azurite) backends. Records stored before (by an older version)
that cannot be written as JSON are served as ``{"id"/"seq", "unrenderable"}`` placeholders by
the API and ``autopilot ... --json``, and the rest of the answer is intact.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot import cli
from composition.wiring import Runtime
from functions import runtime
from shared.envelope import MAX_DEPTH
from shared.model import AuditEntry, AuditKind
from tests import payloads
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)
from tests.integration.test_sqlite_store import new_cycle
from tests.reliability.hosting import KEY, WEBHOOK, Hosted, host_on
from tests.strategies import encode as encode_raw
from tests.strategies import raw


def strict(data: bytes | str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the output: not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.fixture(params=["sqlite", "azurite"])
def hosted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hosted]:
    yield host_on(str(request.param), tmp_path, request)
    runtime.use(None)


@pytest.fixture
def on_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hosted]:
    yield host_on("sqlite", tmp_path, request)
    runtime.use(None)


def alert_with_properties(properties_json: str) -> bytes:
    """A drift alert bound in the policy, its ``alertContext.properties`` written verbatim."""
    alert = payloads.alert()
    alert["data"]["alertContext"]["properties"] = raw(properties_json)
    return encode_raw(alert)


def assert_reads_are_strict(hosted: Hosted) -> None:
    for target in ("/api/cycles", "/api/audit", "/api/models", "/api/audit/verify"):
        status, data = hosted.call("GET", target)
        assert status == 200, (target, data[:200])
        strict(data)
    for cycle in strict(hosted.call("GET", "/api/cycles")[1])["cycles"]:
        status, data = hosted.call("GET", f"/api/cycles/{cycle['id']}")
        assert status == 200
        strict(data)


@pytest.mark.parametrize("number", ["1e400", "-1e309", "1" + "0" * 400])
def test_a_bound_alert_with_a_number_beyond_a_float_is_refused_naming_it(
    on_sqlite: Hosted, number: str
) -> None:
    status, data = on_sqlite.call(
        "POST", "/api/alerts", alert_with_properties(f'{{"x": {number}}}')
    )
    assert status == 400
    assert "$.data.alertContext.properties.x" in strict(data)["error"]
    assert "beyond the range of a float" in strict(data)["error"]
    assert_reads_are_strict(on_sqlite)


def test_the_same_alert_with_finite_numbers_starts_a_cycle_and_reads_stay_strict(
    on_sqlite: Hosted,
) -> None:
    body = alert_with_properties('{"x": 1e308, "y": -0.0, "z": 1e-400, "n": [[[1]]]}')
    status, data = on_sqlite.call("POST", "/api/alerts", body)
    assert status == 200, data
    cycles = strict(on_sqlite.call("GET", "/api/cycles")[1])["cycles"]
    assert len(cycles) == 1
    assert_reads_are_strict(on_sqlite)


def nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "1" + "}" * (depth - 1)


def test_nesting_is_refused_past_the_documented_limit(on_sqlite: Hosted) -> None:
    # nested(d) has d - 1 objects, under body, data and alertContext: d + 2 levels in all
    fits = alert_with_properties(nested(MAX_DEPTH - 2))
    assert on_sqlite.call("POST", "/api/alerts", fits)[0] == 200
    for depth in (MAX_DEPTH - 1, 490, 5000):
        status, data = on_sqlite.call("POST", "/api/alerts", alert_with_properties(nested(depth)))
        assert status == 400, depth
        assert f"nested deeper than {MAX_DEPTH} levels" in strict(data)["error"]
    assert_reads_are_strict(on_sqlite)


JSON_ROUTES = [WEBHOOK, "/api/alerts", "/api/models/credit-risk/retrain"]
JSON_ROUTES += ["/api/models/credit-risk/rollback", "/api/cycles/c1/approve", "/api/cycles/c1/deny"]


@pytest.mark.parametrize("route", JSON_ROUTES)
def test_integers_past_int_parsing_are_4xx_on_every_json_route(hosted: Hosted, route: str) -> None:
    digits = "9" * 4301
    body = f'[{{"id": {digits}}}]' if route == WEBHOOK else f'{{"reason": {digits}}}'
    status, data = hosted.call("POST", route, body.encode())
    assert status == 400, data
    assert "4301 digits" in strict(data)["error"]


def grid_event(**change: str) -> dict[str, Any]:
    event = payloads.model_registered("credit-risk", "7", {"stage": "candidate"})
    event.update(change)
    return event


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([grid_event(id="\ud800")], "$[0].id"),
        ([grid_event(subject="models/credit-risk:\udfff")], "$[0].subject"),
        ([grid_event(eventType="Microsoft.MachineLearningServices.\ud800")], "$[0].eventType"),
        ([payloads.to_cloudevent(grid_event(id="x\udc00"))], "$[0].id"),
        (payloads.alert(alert_id="/alerts/\ud800"), "$.data.essentials.alertId"),
    ],
    ids=["id", "subject", "eventType", "cloudevent-id", "alertId"],
)
def test_lone_surrogates_are_refused_naming_the_field(
    hosted: Hosted, body: Any, field: str
) -> None:
    route = "/api/alerts" if isinstance(body, dict) else WEBHOOK
    status, data = hosted.call("POST", route, json.dumps(body).encode())  # ensure_ascii: \ud800
    assert status == 400, data
    message = strict(data)["error"]
    assert field in message and "lone surrogate" in message
    assert strict(hosted.call("GET", "/api/cycles")[1])["cycles"] == []
    assert_reads_are_strict(hosted)


def test_a_content_length_of_a_non_ascii_digit_is_400_over_http(on_sqlite: Hosted) -> None:
    host, port = on_sqlite.host.start("127.0.0.1", 0)
    try:
        for value in ("\u00b2", "\u00b9", "1\u00b3"):  # '²'.isdigit() is True, int('²') raises
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(  # latin-1: how http.server decodes header bytes
                    f"POST /api/alerts HTTP/1.1\r\nHost: x\r\nx-functions-key: {KEY}\r\n"
                    f"Content-Length: {value}\r\n\r\n".encode("latin-1")
                )
                answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 400 "), (value, answer[:200])
    finally:
        on_sqlite.host.stop()


# -- records stored by an older version ---------------------------------------------------


@pytest.fixture
def poisoned(tmp_path: Path) -> Path:
    """A data folder as an older version left it: a cycle whose stored body holds
    ``Infinity`` (written straight into SQLite), an audit record whose evidence is ``inf``
    and one nested 600 deep (what it accepted), between good ones."""
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore

    store = SqliteStateStore(tmp_path / "state.db")
    store.create_cycle(new_cycle("good", "credit-risk"))
    bad = new_cycle("bad", "fraud")
    bad.trigger = {"properties": {"x": "PLACEHOLDER"}}
    store.create_cycle(bad)
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE cycles SET body = replace(body, '\"PLACEHOLDER\"', 'Infinity')")
    audit = SqliteAuditLog(tmp_path / "audit.db")
    audit.append(AuditEntry(AuditKind.DECISION, "good before", cycle="bad"))
    audit.append(AuditEntry(AuditKind.EVENT_RECEIVED, "inf", cycle="bad", evidence={"x": 1e999}))
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(600):
        deep = {"a": deep}
    audit.append(AuditEntry(AuditKind.EVENT_RECEIVED, "deep", cycle="bad", evidence=deep))
    audit.append(AuditEntry(AuditKind.DECISION, "good after", cycle="bad"))
    return tmp_path


def test_the_api_serves_unrenderable_records_as_placeholders(
    poisoned: Path, request: pytest.FixtureRequest
) -> None:
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore

    hosted = host_on("fakes", poisoned, request)
    try:
        from dataclasses import replace

        services = replace(
            hosted.world.services,
            store=SqliteStateStore(poisoned / "state.db"),
            audit=SqliteAuditLog(poisoned / "audit.db"),
        )
        hosted.runtime = Runtime(services, dict(hosted.runtime.keys))
        cycles = strict(hosted.call("GET", "/api/cycles")[1])["cycles"]
        by_id = {c["id"]: c for c in cycles}
        assert by_id["good"]["state"]  # the good one intact
        assert by_id["bad"] == {
            "id": "bad",
            "unrenderable": "holds a number that is not finite (NaN or Infinity)",
        }
        page = strict(hosted.call("GET", "/api/cycles/bad")[1])
        assert page["cycle"]["unrenderable"]
        assert [r.get("summary") for r in page["audit"]] == [
            "good before",
            None,
            "deep",
            "good after",
        ]
        records = strict(hosted.call("GET", "/api/audit")[1])["records"]
        assert [r["seq"] for r in records] == [1, 2, 3, 4]
        assert "unrenderable" in records[1] and "unrenderable" not in records[0]
        assert records[2]["summary"] == "deep"  # 600 deep is written (no recursive copy)
        assert records[3]["summary"] == "good after"
        assert_reads_are_strict(hosted)
    finally:
        runtime.use(None)


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "list", "--json"],
        ["cycles", "list", "--json"],
        ["cycles", "show", "bad", "--json"],
    ],
)
def test_the_cli_json_output_stays_strict_with_unrenderable_records(
    poisoned: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert cli.main([*argv, "--data-dir", str(poisoned)]) == 0
    out = strict(capsys.readouterr().out)
    text = json.dumps(out)
    assert "unrenderable" in text
    assert ("good" in text) or ("good before" in text)


@pytest.mark.parametrize(
    "change",
    [{"id": "\ud800"}, {"subject": "models/credit-risk:\udfff"}, {"data": {"x": float("inf")}}],
    ids=["id", "subject", "data-inf"],
)
def test_an_event_the_functions_worker_parsed_is_checked_too(
    on_sqlite: Hosted, registered: dict[str, Any], change: dict[str, Any]
) -> None:
    """On Azure the worker hands the trigger the event's JSON text (its ``str`` binding), not
    a body the local host checked: the trigger parses it with the same rules, audits it as
    rejected and returns (no retry), storing nothing from it. ``json.dumps`` writes the lone
    surrogate as a ``\\ud800`` escape and ``inf`` as ``Infinity``, as a sender could."""
    event = {**grid_event(), **change}
    runtime.use(on_sqlite.runtime)
    registered["azureml_events"].get_user_function()(event=json.dumps(event))
    records = strict(on_sqlite.call("GET", "/api/audit")[1])["records"]
    assert [r["kind"] for r in records] == ["rejected"]
    reason = records[0]["reason"]
    assert "lone surrogate" in reason or "Infinity" in reason or "beyond the range" in reason
    assert_reads_are_strict(on_sqlite)
