"""What an outside acceptance probe of the service found, each kept as a regression test.

The probe drove ``autopilot serve`` over HTTP with the public samples, real sender SDKs and
hostile requests, and ran the CLI as its help and the README print it.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent

from functions import runtime
from tests.functions.test_worker_indexing import fresh_import  # noqa: F401 - fixture
from tests.reliability.hosting import KEY, WEBHOOK, Hosted, host_on

ROOT = Path(__file__).resolve().parents[2]
BREACH = json.loads((ROOT / "examples/payloads/cloudevents-monitor-breach.json").read_text())[0]


@pytest.fixture
def hosted(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hosted]:
    hosted = host_on("fakes", tmp_path, request)
    yield hosted
    hosted.host.stop()
    runtime.use(None)


def exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: (status, headers, body)."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_line", "status", "named"),
    [
        ("TRACE /api/health HTTP/1.1", 405, "TRACE"),
        ("FOO /api/health HTTP/1.1", 405, "FOO"),
        ("get /api/health HTTP/1.1", 405, "get"),  # methods are case-sensitive
        ("GET /api/health HTTP/2.0", 400, "2.0"),
        ("GET /api/health HTTP/9.9", 400, "9.9"),
    ],
)
def test_an_unknown_method_or_http_version_gets_a_json_4xx_not_a_5xx(
    hosted: Hosted, request_line: str, status: int, named: str
) -> None:
    """http.server answers these 501 / 505 with an HTML page: a 5xx for the sender's input."""
    address = hosted.host.start("127.0.0.1", 0)
    got, headers, body = exchange(address, f"{request_line}\r\nHost: x\r\n\r\n".encode())
    assert got == status
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert named in error


def test_a_protocol_error_never_echoes_a_key_from_the_request_line(hosted: Hosted) -> None:
    address = hosted.host.start("127.0.0.1", 0)
    got, _, body = exchange(address, f"GET /api/cycles?code={KEY} HTTP/7.0\r\n\r\n".encode())
    assert got == 400
    assert KEY not in body.decode()


def test_binary_mode_cloudevents_get_a_400_that_says_to_send_structured_mode(
    hosted: Hosted,
) -> None:
    """The cloudevents SDK's binary mode: attributes in ce-* headers, the body only the data."""
    event = CloudEvent({k: BREACH[k] for k in ("type", "source", "subject", "id")}, BREACH["data"])
    headers, body = to_binary(event)
    status, answer = hosted.call("POST", WEBHOOK, body, dict(headers))
    assert status == 400
    error = json.loads(answer)["error"]
    assert "binary-mode CloudEvents" in error and "structured mode" in error
    assert hosted.world.audit.records == []  # nothing of it was applied

    headers, body = to_structured(event)  # the same event in structured mode is accepted,
    ce_headers = {f"ce-{k}": str(v) for k, v in event.get_attributes().items()}
    status, _ = hosted.call("POST", WEBHOOK, body, {**dict(headers), **ce_headers})
    assert status == 200  # even with ce-* headers a sender may add as well
    assert [r.summary for r in hosted.world.audit.records if r.kind.value == "ignored"] == [
        f"{BREACH['type']} ignored"  # handled: the test policy binds no such monitor
    ]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopilot.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["retrain", "credit-risk"], "the following arguments are required: --reason"),
        (["audit", "list", "--limit", "0"], "argument --limit"),
        (["audit", "list", "--limit", "-1"], "argument --limit"),
        (["audit", "show", "abc"], "argument seq"),
        (["demo", "--scenario", "nope"], "argument --scenario"),
        (["serve", "--port", "abc"], "argument --port"),
        (["nosuch"], "invalid choice"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: list[str], named: str, tmp_path: Path) -> None:
    """argparse prints its usage block first; the README promises errors are one line."""
    result = cli(*args, *(["--data-dir", str(tmp_path)] if args[0] == "audit" else []))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and "--help" in lines[0]


def test_the_command_audit_verify_prints_to_keep_runs_as_written(tmp_path: Path) -> None:
    """It printed "`autopilot audit verify --anchor` with it": not on PATH, no anchor, no dir."""
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.model import AuditEntry, AuditKind

    data_dir = tmp_path / "my data"
    data_dir.mkdir()
    log = SqliteAuditLog(data_dir / "audit.db")
    for n in range(3):
        log.append(AuditEntry(AuditKind.DECISION, f"decision {n}"))
    first = cli("audit", "verify", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    printed = first.stdout.splitlines()[-1].strip().removesuffix(")")
    assert printed.startswith(".venv/bin/autopilot audit verify ")

    again = subprocess.run(
        shlex.split(printed), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "anchor 3:" in again.stdout and "matches" in again.stdout

    import sqlite3

    with sqlite3.connect(data_dir / "audit.db") as db:
        db.execute("DELETE FROM audit WHERE seq = 3")  # cut off the end: only the anchor sees it
    cut = subprocess.run(shlex.split(printed), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cut.returncode == 1
    assert "anchored record 3 is gone" in cut.stdout


@pytest.fixture
def refusing_endpoint(tmp_path: Path) -> Iterator[Path]:
    """A scoring endpoint that refuses every body (as the embedded one refuses bad JSON),
    recorded where examples/score.py looks for it; yields the data dir."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            body = b'{"error": "body is not valid JSON"}'
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    Thread(target=server.serve_forever, daemon=True).start()
    endpoints = tmp_path / "platform" / "endpoints"
    endpoints.mkdir(parents=True)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    (endpoints / "credit-risk.json").write_text(json.dumps({"url": url}))
    yield tmp_path
    server.shutdown()
    server.server_close()


def test_score_example_says_when_the_endpoint_refuses_and_exits_1(refusing_endpoint: Path) -> None:
    """It printed nothing and exited 0 when its one request failed."""
    score = [sys.executable, "examples/score.py", "--data-dir", str(refusing_endpoint)]
    one = subprocess.run(score, cwd=ROOT, capture_output=True, text=True)
    assert one.returncode == 1
    assert "HTTP 400" in one.stderr and "body is not valid JSON" in one.stderr
    many = subprocess.run(
        [*score, "--requests", "2", "--interval", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert many.returncode == 1 and "HTTP 400" in many.stdout
    for bad in (["--requests", "0"], ["--body", "/nonexistent/body.json"]):
        refused = subprocess.run([*score, *bad], cwd=ROOT, capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stderr


def test_a_resolved_health_alert_keeps_pending_drift_signals(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A Resolved health alert cleared the model's pending drift signals (and answered
    "resolved: pending drift signals cleared"), so a drift confirmation in progress was lost."""
    from dataclasses import replace

    from tests import payloads
    from tests.fakes import make_policy

    world_policy = make_policy(confirm={"signals": 2, "within": "1h"})
    hosted = host_on("fakes", tmp_path, request)
    hosted.world.services = replace(hosted.world.services, policy=world_policy)
    hosted.runtime = replace(hosted.runtime, services=hosted.world.services)
    try:

        def send(rule: str, condition: str = "Fired") -> Any:
            body = json.dumps(payloads.alert(rule, condition)).encode()
            status, answer = hosted.call("POST", "/api/alerts", body)
            assert status == 200, answer
            return json.loads(answer)

        assert send("credit-drift")["as"] == "drift signal"
        assert hosted.world.store.active_cycle("credit") is None  # 1 of 2 signals
        assert send("credit-endpoint-errors")["as"] == "health alert"
        resolved = send("credit-endpoint-errors", "Resolved")
        assert (
            resolved["result"] == "ignored" and "pending drift signals kept" in resolved["reason"]
        )
        assert send("credit-drift")["as"] == "drift signal"
        assert hosted.world.store.active_cycle("credit") is not None  # 2 of 2: retraining

        assert send("credit-drift", "Resolved")["as"].startswith("resolved")  # drift: cleared
    finally:
        runtime.use(None)


def test_policy_validate_of_a_deeply_nested_yaml_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """PyYAML recursed until RecursionError: a 40-line traceback and exit 1."""
    path = tmp_path / "deep.yaml"
    path.write_text("models: " + "[" * 5000 + "]" * 5000 + "\n")
    result = cli("policy", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr == f"autopilot: {path}: not valid YAML: nested too deeply to read\n"


@pytest.mark.parametrize(
    ("setting", "data_dir", "named"),
    [
        ({}, "a-file", "is a file, not a folder"),
        ({}, "a-file/sub", "is a file, not a folder"),
        ({"AUTOPILOT_RECONCILE_SCHEDULE": "nonsense"}, "data", "NCRONTAB 'nonsense'"),
        ({"WEBSITE_TIME_ZONE": "Mars/Base"}, "data", "WEBSITE_TIME_ZONE 'Mars/Base'"),
        ({"HOST": "::1"}, "data", "check --host"),  # it said "choose another --port"
        ({"HOST": "256.1.1.1"}, "data", "check --host"),
        ({"HOST": ""}, "data", "check --host"),  # it listened on every interface
        ({"HOST": " "}, "data", "check --host"),
    ],
)
def test_serve_refuses_a_bad_data_dir_or_setting_in_one_line_before_binding(
    tmp_path: Path, setting: dict[str, str], data_dir: str, named: str
) -> None:
    """Each was a traceback and exit 1 (a data dir that is a file: after binding the port)."""
    serve = [sys.executable, "-m", "autopilot.cli", "serve", "--port", "0", "--policy"]
    serve.append("examples/policy.yaml")
    import os

    (tmp_path / "a-file").write_text("not a folder")
    setting = dict(setting)
    host = setting.pop("HOST", "127.0.0.1")
    result = subprocess.run(
        [
            *serve,
            "--data-dir",
            str(tmp_path / data_dir),
            "--host",
            host,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AUTOPILOT_FUNCTION_KEYS": "", **setting},
    )
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("autopilot: ") and named in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written


SAMPLE_OUTCOMES = {  # public sample (as Azure sends it) -> what the example policy makes of it
    "eventgrid_schema_DatasetDriftDetected.json": "ignored",  # its monitor is bound to no model
    "eventgrid_schema_ModelDeployed.json": "ignored",
    "eventgrid_schema_ModelRegistered.json": "ignored",  # registered elsewhere
    "eventgrid_schema_RunCompleted.json": "ignored",  # not one of our jobs
    "eventgrid_schema_RunStatusChanged.json": "ignored",
    "cloudevents-monitor-breach.json": "action",  # bound monitor: a training job starts
    "eventgrid-datadrift-v1.json": "action",
    "eventgrid-monitor-breach.json": "action",
}


@pytest.mark.usefixtures("fresh_import")
@pytest.mark.parametrize("name", sorted(SAMPLE_OUTCOMES))
def test_each_sample_handed_over_as_the_worker_hands_it_has_its_outcome(name: str) -> None:
    """Through the Functions worker library itself: its index of function_app, its decoding
    of the JSON the host sends for the event (``str`` parameter), the function it registered."""
    from azure_functions_runtime.bindings import meta

    from composition.wiring import Runtime
    from shared.policy import load_policy
    from tests.conftest import KEYS
    from tests.fakes import make_world
    from tests.functions import worker_protos as protos
    from tests.functions.test_worker_indexing import index_as_the_worker_does
    from tests.payloads import SAMPLES

    if name.startswith("eventgrid_"):
        path = SAMPLES / "eventgrid" / name
    else:
        path = ROOT / "examples" / "payloads" / name
    _, registry = index_as_the_worker_does()
    info = next(f for f in registry._functions.values() if f.name == "azureml_events")
    ((arg, binding),) = info.input_types.items()
    world = make_world(load_policy(ROOT / "examples/policy.yaml"))
    runtime.use(Runtime(world.services, dict(KEYS)))
    try:
        (event,) = json.loads(path.read_text())
        value = meta.from_incoming_proto(
            binding.binding_name,
            protos.ParameterBinding(arg, protos.TypedData(json=json.dumps(event))),
            pytype=binding.pytype,
            trigger_metadata={},
            function_name=info.name,
        )
        assert info.func(**{arg: value}) is None
    finally:
        runtime.use(None)
    last = world.audit.records[-1]
    assert last.kind.value == SAMPLE_OUTCOMES[name], last.summary
    assert bool(world.platform.jobs) == (SAMPLE_OUTCOMES[name] == "action")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/?code=SECRET-KEY-123",
        "http://operator:SECRET-KEY-123@127.0.0.1:1",
        "http://127.0.0.1:1/#code=SECRET-KEY-123",
        "ftp://127.0.0.1:1/?code=SECRET-KEY-123",
    ],
)
def test_a_url_carrying_a_key_is_refused_without_echoing_it(url: str, tmp_path: Path) -> None:
    """It echoed the URL, key and all, in 'cannot reach the service at ...' (CLI output
    often ends up in CI logs), and appended API paths after the query string."""
    for command in (["retrain", "credit-risk"], ["rollback", "credit-risk"]):
        result = cli(*command, "--reason", "x", "--url", url, "--key", "k")
        assert result.returncode == 2
        assert "SECRET-KEY-123" not in result.stdout + result.stderr
        assert result.stderr.startswith("autopilot: --url must be")
    replay = cli("replay", "examples/payloads/alert-drift-fired.json", "--url", url, "--key", "k")
    assert replay.returncode == 2 and "SECRET-KEY-123" not in replay.stdout + replay.stderr


def test_outside_text_in_cli_output_cannot_act_on_the_terminal(tmp_path: Path) -> None:
    """An event subject with ESC [2J (clear screen), an OSC title and a carriage return was
    printed raw by `audit list`: whoever can deliver an event could rewrite an operator's
    screen. Escaped for people; --json still carries the exact text."""
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.model import AuditEntry, AuditKind

    hostile = "models/x:1\x1b[2J\x1b]0;PWNED\x07\rFAKE LINE\u202eRTL"
    log = SqliteAuditLog(tmp_path / "audit.db")
    log.append(AuditEntry(AuditKind.EVENT_RECEIVED, f"ModelRegistered {hostile}", reason=hostile))
    shown = subprocess.run(
        [sys.executable, "-m", "autopilot.cli", "audit", "list", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    for raw in (b"\x1b", b"\x07", b"\r", "\u202e".encode()):
        assert raw not in shown.stdout
    assert b"models/x:1\\u001b[2J" in shown.stdout
    as_json = cli("audit", "list", "--json", "--data-dir", str(tmp_path))
    records = json.loads(as_json.stdout)
    records = records if isinstance(records, list) else records["records"]
    assert records[0]["summary"] == f"ModelRegistered {hostile}"


def test_a_client_that_goes_away_before_its_answer_leaves_no_traceback(
    hosted: Hosted, capfd: pytest.CaptureFixture[str]
) -> None:
    """300 clients that sent half a request and closed left 300 socketserver tracebacks
    (BrokenPipeError, 15 lines each, unescaped) on the service's stderr."""
    import time

    address = hosted.host.start("127.0.0.1", 0)
    idle = [socket.create_connection(address) for _ in range(30)]
    for sock in idle:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
    for sock in idle:
        sock.close()
    time.sleep(1.0)  # the handlers answer into closed sockets
    got, _, body = exchange(address, b"GET /api/health HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert (got, json.loads(body)) == (200, {"status": "ok"})
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
