"""Secrets stay out of training jobs and out of everything stored or served; text from outside
cannot forge a log line.

Part one runs ``autopilot serve`` as a real process whose environment holds a function key, a
storage connection string and a client secret. A drift alert starts a real training job (a
subprocess) that dumps its environment, echoes secrets to stderr and fails; its stderr becomes
the cycle's failure reason. Part two sends events and alerts whose ids, subjects and rule names
carry line breaks, escape sequences and a lone surrogate, to the same process (its stderr) and
to the functions in this process (caplog).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import log_escape
from tests import payloads
from tests.conftest import KEYS
from tests.fakes import World
from tests.integration.serve_proc import KEY, Served, start_serve

ACCOUNT_KEY = "QWNjb3VudEtleVNlY3JldA+/0123456789abcdefXYZ=="
CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=leakacct;AccountKey={ACCOUNT_KEY};"
    "EndpointSuffix=core.windows.net"
)
SERVICE_ENV = {
    "AUTOPILOT_TABLE_CONNECTION_STRING": CONNECTION,
    "AZURE_CLIENT_SECRET": "client-secret-value-0042",
    "DATA_LAKE_TOKEN": "lake-token-passed-through-77",  # the policy passes this one through
}
SECRETS = [KEY, CONNECTION, ACCOUNT_KEY, *SERVICE_ENV.values()]

# The job: dump the environment it got, print it to stderr, echo the secrets it can find, fail.
LEAKY_JOB = (
    "import json, os, pathlib, sys\n"
    "env = dict(os.environ)\n"
    "(pathlib.Path(sys.argv[1]) / 'env.json').write_text(json.dumps(env))\n"
    "for name, value in sorted(env.items()):\n"
    "    print(f'{name}={value}', file=sys.stderr)\n"
    "for name in ('AUTOPILOT_FUNCTION_KEYS', 'AUTOPILOT_TABLE_CONNECTION_STRING',\n"
    "             'AZURE_CLIENT_SECRET', 'DATA_LAKE_TOKEN'):\n"
    "    print(f'{name} is {os.environ.get(name, \"(not set)\")}', file=sys.stderr)\n"
    "sys.exit('training failed')\n"
)
POLICY = {
    "version": 1,
    "defaults": {"cooldown": "1h"},
    "models": {
        "leaky": {
            "signals": {"drift_alerts": ["leaky-drift"]},
            "training": {
                "experiment": "leaky",
                "command": ["{python}", "-c", LEAKY_JOB, "{outputs}"],
                "environment": ["DATA_LAKE_TOKEN"],
                "timeout": "2m",
            },
            "gate": {"primary_metric": "auc"},
        }
    },
}

# Text that would begin a fake log line if written raw, after each kind of line break.
BREAKS = {
    "LF": "\n",
    "CR": "\r",
    "CRLF": "\r\n",
    "LS": "\u2028",
    "PS": "\u2029",
    "NEL": "\x85",
    "VT": "\x0b",
    "ESC": "\x1b[2K\r",
    "SUR": "\ud800",
}
REFUSED = {"SUR"}  # refused at intake (400): a lone surrogate cannot be stored
FAKE = " 2026-01-01 00:00:00,000 ERROR autopilot.host forged by an event"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ ")


def forged(label: str, where: str) -> str:
    return f"FORGED-{label}-{where}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("secrets")
    policy = folder / "policy.json"  # YAML is a superset of JSON
    policy.write_text(json.dumps(POLICY))
    server = start_serve(folder / "data", policy, env=SERVICE_ENV)
    yield server
    server.stop()


def wait_for_failed_cycle(server: Served, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = server.json("GET", "/api/cycles?model=leaky")
        assert status == 200
        done = [c for c in body["cycles"] if c["state"] == "FAILED"]
        if done:
            return dict(done[0])
        time.sleep(0.2)
    raise AssertionError(f"no failed cycle within {timeout}s: {body}")


def stored_text(data_dir: Path) -> dict[str, str]:
    """Every stored row and file the service wrote, raw."""
    texts: dict[str, str] = {}
    for name in ("audit.db", "state.db"):
        with sqlite3.connect(data_dir / name) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            texts[name] = "\n".join(
                repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
            )
    for path in [data_dir / "outbox.jsonl", *(data_dir / "platform" / "jobs").glob("*/job.json")]:
        if path.exists():
            texts[str(path.relative_to(data_dir))] = path.read_text()
    return texts


def test_a_failing_job_that_prints_its_environment_leaks_no_secret_anywhere(
    served: Served,
) -> None:
    status, _ = served.json("POST", "/api/alerts", payloads.alert("leaky-drift"))
    assert status == 200
    cycle = wait_for_failed_cycle(served)

    # the job ran without the service's secrets, with what the policy passes through
    job_dir = served.data_dir / "platform" / "jobs" / cycle["job_name"]
    env = json.loads((job_dir / "outputs" / "env.json").read_text())
    for name in (
        "AUTOPILOT_FUNCTION_KEYS",
        "AUTOPILOT_TABLE_CONNECTION_STRING",
        "AZURE_CLIENT_SECRET",
    ):
        assert name not in env
    assert env["DATA_LAKE_TOKEN"] == SERVICE_ENV["DATA_LAKE_TOKEN"]

    # its stderr became the reason, with the passed-through secret it echoed masked
    reason = cycle["reason"]
    assert "exit code 1" in reason and "training failed" in reason
    assert "DATA_LAKE_TOKEN is ***" in reason
    assert "AUTOPILOT_FUNCTION_KEYS is (not set)" in reason

    routes = [
        "/api/cycles",
        f"/api/cycles/{cycle['id']}",
        "/api/audit?limit=1000",
        f"/api/audit?cycle={cycle['id']}",
        "/api/models",
    ]
    served_texts = {f"GET {route}": served.request("GET", route)[2].decode() for route in routes}
    assert "DATA_LAKE_TOKEN is ***" in served_texts[f"GET /api/cycles/{cycle['id']}"]
    everything = {**served_texts, **stored_text(served.data_dir), "log": served.log.read_text()}
    for where, text in everything.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret reached {where}"
            assert json.dumps(secret)[1:-1] not in text, f"a secret reached {where}"
    size = sum(len(t) for t in everything.values())
    print(f"secrets: {len(everything)} stored/served texts ({size:,} chars), 0 of {len(SECRETS)}")


def test_ids_subjects_and_rule_names_cannot_forge_lines_in_the_serve_log(served: Served) -> None:
    answered: dict[str, int] = {}
    for label, brk in BREAKS.items():
        event = payloads.run_event(f"run-{label}", "Running")
        event["id"] = f"id-{label}{brk}{forged(label, 'id')}{FAKE}"
        event["subject"] = f"experiments/x/runs/r-{label}{brk}{forged(label, 'subject')}{FAKE}"
        webhook = "/runtime/webhooks/eventgrid?functionName=azureml_events"
        answered[label] = served.request("POST", webhook, [event])[0]
        alert = payloads.alert(f"rule-{label}{brk}{forged(label, 'rule')}{FAKE}")
        # a lone surrogate cannot be stored as UTF-8: intake refuses it (400) before logging it
        expected = 400 if label in REFUSED else 200
        assert served.request("POST", "/api/alerts", alert)[0] == expected
        assert answered[label] == expected
    time.sleep(0.5)  # let the log lines of the last requests be written
    text = served.log.read_bytes().decode("utf-8")  # strict: no lone surrogate was written
    assert "\x1b" not in text and "\ud800" not in text
    lines = text.splitlines()  # splits on every line break a viewer honours (\r, U+2028, ...)
    carrying = [line for line in lines if "FORGED-" in line]
    for line in lines:
        assert not line.lstrip().startswith("FORGED-"), f"a forged line: {line!r}"
    for line in carrying:
        assert RECORD_START.match(line), f"injected text outside a record's line: {line!r}"
    for label in set(BREAKS) - REFUSED:  # each id and rule name was logged, on its own line
        assert any(forged(label, "rule") in line for line in carrying), label
        assert any(forged(label, "id") in line for line in carrying), label
    escaped = "\n".join(carrying)
    print(f"log forging: {len(lines)} serve log lines, {len(carrying)} carry injected text")
    for shown in ("\\n", "\\r", "\\u2028", "\\u2029", "\\x85", "\\x0b", "\\x1b[2K"):
        assert shown in escaped


def test_every_log_record_is_one_line_whatever_the_functions_are_given(
    registered: dict[str, Any], world: World, caplog: pytest.LogCaptureFixture
) -> None:
    import azure.functions as func

    log_escape.install()
    caplog.set_level(logging.INFO)
    for label, brk in BREAKS.items():
        event = payloads.run_event(f"run-{label}", "Running")
        event["id"] = f"id-{label}{brk}{forged(label, 'id')}{FAKE}"
        event["subject"] = f"experiments/x/runs/r{brk}{forged(label, 'subject')}"
        # the worker hands the trigger the event's JSON text (its str binding)
        registered["azureml_events"].get_user_function()(event=json.dumps(event))
        alert = payloads.alert(f"rule-{label}{brk}{forged(label, 'rule')}{FAKE}")
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/alerts",
            headers={"x-functions-key": KEYS["ops-team"]},
            params={},
            body=json.dumps(alert).encode(),
        )
        registered["receive_alert"].get_user_function()(req=request)
    ours = [r for r in caplog.records if "FORGED-" in r.getMessage()]
    assert {r.name for r in ours} >= {"functions.azureml_events", "functions.alerts"}
    for label in set(BREAKS) - REFUSED:
        assert any(forged(label, "id") in r.getMessage() for r in ours)
        assert any(forged(label, "rule") in r.getMessage() for r in ours)
    for record in caplog.records:
        assert len(record.getMessage().splitlines()) <= 1, record.getMessage()
    lines = caplog.text.splitlines()
    assert len(lines) == len(caplog.records)  # one line per record, none forged
    assert not any(line.lstrip().startswith("FORGED-") for line in lines)


class Boom(Exception):
    pass


def test_formatting_and_exceptions_still_work_escaped(caplog: pytest.LogCaptureFixture) -> None:
    log_escape.install()
    log = logging.getLogger("handlers.some_module")  # a child of one of our packages
    caplog.set_level(logging.INFO)
    log.info("%d of %s done (100%%)", 3, "job\nFORGED-arg")
    log.info("plain 100% text, no args")
    log.info("%(id)s by name", {"id": "x\u2028FORGED-map"})
    log.info("wrong arg count %s %s", "only one")  # a malformed call is logged, not raised
    try:
        try:
            raise KeyError("inner\nFORGED-cause")
        except KeyError as inner:
            raise Boom(f"event {uuid.uuid4()}\r\nFORGED-exc") from inner
    except Boom:
        log.exception("handling %s failed", "ev\x1b[31mFORGED-exc-arg")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == [
        "3 of job\\nFORGED-arg done (100%)",
        "plain 100% text, no args",
        "x\\u2028FORGED-map by name",
    ]
    assert "wrong arg count" in messages[3]
    assert messages[4] == "handling ev\\x1b[31mFORGED-exc-arg failed"
    text = caplog.text
    assert "Traceback (most recent call last):" in text  # the traceback keeps its lines
    assert "The above exception was the direct cause" in text
    assert "\\r\\nFORGED-exc" in text and "inner\\nFORGED-cause" in text
    assert not any(line.lstrip().startswith("FORGED-") for line in text.splitlines())
    assert "\x1b" not in text
    # other libraries' records are left as they are
    other = logging.getLogger("somelib")
    other.warning("two\nlines")
    assert caplog.records[-1].getMessage() == "two\nlines"


@pytest.mark.parametrize("how", ["job error", "evaluation error", "alert evidence"])
def test_platform_text_is_scrubbed_where_it_enters_the_cycle_and_the_audit_log(how: str) -> None:
    """Whatever adapter reports it (embedded, Azure ML), platform text is scrubbed on entry."""
    from dataclasses import asdict

    from composition.bootstrap import bootstrap
    from composition.delivery import deliver_alert, deliver_azureml
    from shared.envelope import envelope_from_dict
    from shared.model import JobStatus
    from shared.redact import Redactor
    from tests.fakes import make_world

    world = make_world()
    world.services.redactor = Redactor.from_env(
        {"AUTOPILOT_FUNCTION_KEYS": f"ops={KEY}", **SERVICE_ENV}
    )
    leak = f"token {SERVICE_ENV['AZURE_CLIENT_SECRET']} conn {CONNECTION} key {KEY}"
    alert = payloads.alert()
    if how == "alert evidence":  # e.g. a log search alert quoting a line that held a secret
        alert["data"]["alertContext"]["properties"] = {"query_result": leak}
    deliver_alert(bootstrap(world.services), alert)
    (cycle,) = world.store.list_cycles()
    job = cycle.job_name
    assert job is not None
    event = payloads.run_event(job, "Failed", tags={"autopilot_cycle": cycle.id})
    if how == "job error":
        world.platform.finish(job, JobStatus.FAILED, f"exit code 1: {leak}")
    elif how == "evaluation error":
        world.platform.finish(job)  # completed, but its evaluation says ...
        world.platform.evaluations[job] = {"schema": leak}
        event = payloads.run_event(job, "Completed", tags={"autopilot_cycle": cycle.id})
    else:
        world.platform.finish(job, JobStatus.FAILED, "failed")
    deliver_azureml(bootstrap(world.services), envelope_from_dict(event))
    cycle = world.store.must(cycle.id)
    assert cycle.state.value in ("FAILED", "REJECTED")
    stored = json.dumps(
        [cycle.to_json(), [asdict(r) for r in world.audit.records], world.publisher.published],
        default=str,
    )
    assert "***" in stored  # the leaking text did arrive, masked
    for secret in SECRETS:
        assert secret not in stored


def test_importing_the_function_app_turns_escaping_on_as_the_azure_worker_does() -> None:
    """The Functions worker imports ``function_app`` and installs its own handler: nothing
    else of ours runs first, so the import alone must make our records safe."""
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "handler = logging.StreamHandler(sys.stdout)\n"
        "logging.getLogger().addHandler(handler)\n"
        "import function_app\n"
        "log = logging.getLogger('functions.azureml_events')\n"
        "log.warning('event %s', 'a\\nFORGED-x\\u2028y')\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["event a\\nFORGED-x\\u2028y"]
