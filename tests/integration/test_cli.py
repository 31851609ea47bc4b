"""The autopilot CLI as a user runs it: output, exit codes (0 ok, 1 check failed, 2 bad input)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import payloads
from tests.integration.serve_proc import KEY, ROOT, Served, start_serve

POLICY = ROOT / "tests" / "data" / "http_policy.yaml"


def cli(*args: str, data: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--data-dir", str(data)] if data else []
    return subprocess.run(
        [sys.executable, "-m", "autopilot.cli", *args, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_policy_validate(tmp_path: Path) -> None:
    ok = cli("policy", "validate", str(ROOT / "examples" / "policy.yaml"))
    assert ok.returncode == 0 and "valid, 1 model(s)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m:\n    training: {experiment: x, command: [a]}\n    gate: {}\n")
    result = cli("policy", "validate", str(bad))
    assert result.returncode == 2
    assert result.stderr == (
        f"autopilot: {bad}:4: model 'm': field 'gate.primary_metric': is required but missing\n"
    )


EXAMPLE = (ROOT / "examples" / "policy.yaml").read_text()


def _line(text: str) -> int:
    return EXAMPLE.splitlines().index(text) + 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"--model-name", "{inputs.model_name}"',
            '"--model-name", "{inputs.modelname}"',
            "{file}:{training}: model 'credit-risk': field 'training': command uses "
            "{{inputs.modelname}} but 'inputs' has no 'modelname' (inputs: data_dir; "
            "built in: model_name, champion_version)",
        ),
        (
            '"examples/model/train.py"',
            '"examples/model/trian.py"',
            "{file}:{command}: model 'credit-risk': field 'training.command[1]': training "
            "script 'examples/model/trian.py' does not exist (relative paths are resolved from "
            "{root}, where autopilot runs)",
        ),
        (
            "      within: 10m         # ... within this window before retraining starts",
            "      within: 10m\n      query: AmlModelMonitorSignal | count",
            "{file}:{query}: model 'credit-risk': field 'confirm.query': needs a Log Analytics "
            "workspace: set AUTOPILOT_LOG_WORKSPACE_ID (the service refuses to start without it)",
        ),
        (
            "    cooldown: 2m",
            "    cooldown: 2m\n    cooldown: 1h",
            "{file}:{dup}: not valid YAML: found duplicate key 'cooldown' (first on line "
            "{cooldown}); YAML would silently keep only the last",
        ),
        (
            "    cooldown: 2m",
            "    cooldwn: 2m",
            "{file}:{cooldown}: model 'credit-risk': field 'cooldwn': is not a known field; "
            "did you mean 'cooldown'?",
        ),
    ],
)
def test_policy_validate_refuses_what_would_fail_later(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    """Each refusal is one line naming file:line, model and field (exit 2)."""
    assert old in EXAMPLE
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE.replace(old, new))
    result = cli("policy", "validate", str(path))
    lines = {
        "file": path,
        "root": ROOT,
        "training": _line("    training:"),
        "command": _line(
            '      command: ["{python}", "examples/model/train.py", "--data-dir", '
            '"{inputs.data_dir}",'
        ),
        "query": _line(
            "      within: 10m         # ... within this window before retraining starts"
        )
        + 1,
        "cooldown": _line("    cooldown: 2m"),
        "dup": _line("    cooldown: 2m") + 1,
    }
    assert result.returncode == 2
    assert result.stderr == f"autopilot: {message.format(**lines)}\n"


def test_policy_validate_refuses_a_policy_without_models(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nmodels: {}\n")
    result = cli("policy", "validate", str(path))
    assert result.returncode == 2
    assert result.stderr == (
        f"autopilot: {path}:2: field 'models': names no model; add at least one under 'models'\n"
    )


def test_bad_usage_exits_2_and_names_the_commands() -> None:
    missing = cli("audit")
    assert missing.returncode == 2
    expected = "choose a command: list, show, verify, anchor (see autopilot audit --help)"
    assert expected in missing.stderr
    assert "audit_cmd" not in missing.stderr
    assert "choose a command: list, show" in cli("cycles").stderr
    assert cli("audit", "show", "not-a-number").returncode == 2


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["demo"],
        ["replay"],
        ["audit", "list"],
        ["audit", "show"],
        ["audit", "verify"],
        ["cycles", "list"],
        ["cycles", "show"],
        ["policy", "validate"],
        ["approve"],
        ["deny"],
        ["retrain"],
        ["rollback"],
    ],
)
def test_help_describes_every_option_and_gives_examples(command: list[str]) -> None:
    from autopilot.cli import build_parser

    parser = build_parser()
    sub: Any = parser
    for word in command:
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[
            word
        ]
    for action in sub._actions:
        assert action.help, f"{' '.join(command)}: {action.option_strings or action.dest}"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            assert f"(default: {action.default})" in action.help, action.option_strings
    shown = cli(*command, "--help")
    assert shown.returncode == 0
    assert "examples:\n  .venv/bin/autopilot " + " ".join(command) in shown.stdout
    if command == ["serve"]:
        assert "(default: 7071)" in shown.stdout


NO_SERVICE = "needs the running service: none is running for data dir {d} (no live {d}/serve.json)"


@pytest.mark.parametrize(
    "command",
    [
        ["retrain", "credit-risk", "--reason", "x"],
        ["rollback", "credit-risk", "--reason", "x"],
        ["replay", "examples/payloads/alert-drift-fired.json"],
    ],
)
def test_commands_that_start_work_refuse_without_a_running_service(
    tmp_path: Path, command: list[str]
) -> None:
    """Never run the work inside the short-lived CLI process (its exit would orphan it)."""
    data = tmp_path / "d"
    result = cli(*command, data=data)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert NO_SERVICE.format(d=data) in result.stderr
    assert f"start `.venv/bin/autopilot serve --data-dir {data}` first, or pass --url URL" in (
        result.stderr
    )
    assert not (data / "state.db").exists()


def test_a_stale_serve_marker_is_not_a_running_service(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "serve.json").write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 999999}))
    result = cli("retrain", "credit-risk", "--reason", "x", data=data)
    assert result.returncode == 2 and NO_SERVICE.format(d=data) in result.stderr


def test_read_commands_refuse_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    typo = tmp_path / "autopliot"
    for command in (["audit", "list"], ["audit", "verify"], ["cycles", "list"]):
        result = cli(*command, data=typo)
        assert result.returncode == 2
        assert result.stderr == (
            f"autopilot: data dir {typo} does not exist; pass the --data-dir that "
            "`autopilot serve` uses\n"
        )
    assert not typo.exists()
    result = cli("audit", "list", data=tmp_path)
    assert result.returncode == 2 and "holds no autopilot data (audit.db is missing)" in (
        result.stderr
    )
    assert not (tmp_path / "audit.db").exists()


def _awaiting_approval(data: Path, model: str) -> str:
    from datetime import UTC, datetime

    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore
    from shared.model import Cycle, CycleState

    now = datetime.now(UTC)
    cycle = Cycle("c-1", model, CycleState.AWAITING_APPROVAL, now, now, job_name="autopilot-c-1")
    SqliteStateStore(data / "state.db").create_cycle(cycle)
    SqliteAuditLog(data / "audit.db")
    return cycle.id


def test_approve_in_process_refuses_before_changing_anything(tmp_path: Path) -> None:
    """Without --policy the example policy is used; a cycle of a model it does not name is
    refused in one line (exit 2) and stays untouched: never half applied."""
    data = tmp_path / "d"
    cycle = _awaiting_approval(data, "sklearn_regression_model")
    result = cli("approve", cycle, "--reason", "looks good", data=data)
    assert result.returncode == 2
    assert result.stderr == (
        "autopilot: cycle c-1 is for model 'sklearn_regression_model', which policy "
        "examples/policy.yaml does not name; pass --policy with the policy its service runs "
        "(nothing was changed)\n"
    )
    shown = json.loads(cli("cycles", "show", cycle, "--json", data=data).stdout)
    assert shown["cycle"]["state"] == "AWAITING_APPROVAL"
    assert shown["audit"] == []
    denied = cli("deny", cycle, "--reason", "no", "--policy", str(POLICY), data=data)
    assert denied.returncode == 0, denied.stderr
    assert denied.stdout.startswith("denied cycle c-1; cycle c-1 is REJECTED (denied by cli:")
    assert "(in-process: no service running for this data dir)" in denied.stdout
    typo = tmp_path / "dd"
    result = cli("approve", cycle, "--reason", "x", "--policy", str(POLICY), data=typo)
    assert result.returncode == 2
    assert result.stderr == (
        f"autopilot: data dir {typo} holds no autopilot data (no state.db) and no service runs "
        "there; pass the --data-dir that `autopilot serve` uses\n"
    )
    assert not typo.exists()


def test_audit_list_refuses_unknown_kinds_and_takes_durations(tmp_path: Path) -> None:
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.model import AuditEntry, AuditKind

    data = tmp_path / "d"
    SqliteAuditLog(data / "audit.db").append(AuditEntry(AuditKind.DECISION, "just now"))
    typo = cli("audit", "list", "--kind", "decisions", data=data)
    assert typo.returncode == 2
    assert typo.stderr == (
        "autopilot: --kind 'decisions' is not an audit kind; choose one of event_received, "
        "decision, action, error, ignored, rejected, reconciled\n"
    )
    recent = json.loads(cli("audit", "list", "--since", "15m", "--json", data=data).stdout)
    assert [r["summary"] for r in recent] == ["just now"]
    future = "2999-01-01T00:00:00+00:00"
    assert json.loads(cli("audit", "list", "--since", future, "--json", data=data).stdout) == []
    bad = cli("audit", "list", "--since", "lately", data=data)
    assert bad.returncode == 2 and "--since takes a duration (15m, 2h, 1d)" in bad.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    service = start_serve(tmp_path_factory.mktemp("serve") / "d", POLICY)
    yield service
    service.stop()


def cli_env(*args: str, data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopilot.cli", *args, "--data-dir", str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def _closed(served: Served, cycle_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body = served.json("GET", f"/api/cycles/{cycle_id}")
        if body["cycle"]["state"] not in ACTIVE:
            return str(body["cycle"]["state"])
        time.sleep(0.2)
    raise AssertionError(f"cycle {cycle_id} did not close")


ACTIVE = {"TRIGGERED", "RETRAINING", "EVALUATING", "AWAITING_APPROVAL", "REGISTERED", "ROLLING_OUT"}


def test_each_retrain_request_starts_its_own_cycle(served: Served) -> None:
    """The event key was constant per actor (`api:<actor>`): after the first manual cycle
    closed, every later retrain answered with that old cycle and started nothing."""
    ids = []
    for _ in range(3):
        status, body = served.json(
            "POST", "/api/models/sklearn_regression_model/retrain", {"reason": "again"}
        )
        assert status == 200 and body["outcome"] == "started"
        ids.append(body["cycle"]["id"])
        assert _closed(served, ids[-1]) == "FAILED"  # this policy's job writes no evaluation
    assert len(set(ids)) == 3


def test_a_retried_request_with_the_same_idempotency_key_acts_once(served: Served) -> None:
    headers = {"Idempotency-Key": "ticket-4711"}
    route = "/api/models/sklearn_regression_model/retrain"
    status, _, raw = served.request("POST", route, {"reason": "r"}, headers=headers)
    first = json.loads(raw)
    assert status == 200 and first["outcome"] == "started"
    _closed(served, first["cycle"]["id"])
    status, _, raw = served.request("POST", route, {"reason": "r"}, headers=headers)
    again = json.loads(raw)
    assert status == 200 and again["outcome"] == "already handled"
    assert again["cycle"]["id"] == first["cycle"]["id"]
    bad = served.request("POST", route, {"reason": "r"}, headers={"Idempotency-Key": "a b"})
    assert bad[0] == 400 and b"Idempotency-Key must be 1 to 128" in bad[2]


def test_operator_commands_over_http_say_what_happened(served: Served) -> None:
    env = {"AUTOPILOT_KEY": KEY}
    url = ["--url", served.url]
    data = served.data_dir
    started = cli_env(
        "retrain", "sklearn_regression_model", "--reason", "q", *url, data=data, env=env
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(
        "retrain sklearn_regression_model: started a new cycle; cycle "
    )
    assert f"(via {served.url})" in started.stdout
    as_json = cli_env(
        "retrain", "sklearn_regression_model", "--reason", "q", "--json", *url, data=data, env=env
    )
    body = json.loads(as_json.stdout)
    assert body["outcome"] in ("started", "coalesced") and body["cycle"]["model"]
    _closed(served, body["cycle"]["id"])
    refused = cli_env(
        "rollback", "sklearn_regression_model", "--reason", "x", *url, data=data, env=env
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("autopilot: rollback sklearn_regression_model refused: ")
    assert "nothing to roll back" in refused.stderr
    wrong = cli_env(
        "retrain",
        "sklearn_regression_model",
        "--reason",
        "x",
        *url,
        data=data,
        env={"AUTOPILOT_KEY": "nope"},
    )
    assert wrong.returncode == 2
    assert "the service refused the function key (401); pass --key KEY" in wrong.stderr


def test_replay_says_what_the_service_did(served: Served, tmp_path: Path) -> None:
    env = {"AUTOPILOT_KEY": KEY}
    alert = json.loads((ROOT / "examples" / "payloads" / "alert-unbound-fired.json").read_text())
    alert["data"]["essentials"]["alertRule"] = "nobody-binds-this"
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alert))
    unbound = cli_env("replay", str(path), "--url", served.url, data=served.data_dir, env=env)
    assert unbound.returncode == 0, unbound.stderr
    assert "  ignored: no binding for alert rule 'nobody-binds-this': no model in the policy " in (
        unbound.stdout
    )
    sample = payloads.SAMPLES / "eventgrid" / "eventgrid_schema_ModelDeployed.json"
    replayed = cli_env("replay", str(sample), "--url", served.url, data=served.data_dir, env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"delivered 1 event(s) from {sample} to {served.url}")
    assert "ModelDeployed ignored — deployments are driven by rollouts; recorded only" in (
        replayed.stdout
    )
    again = cli_env("replay", str(sample), "--url", served.url, data=served.data_dir, env=env)
    assert "duplicate delivery" in again.stdout


def test_replay_refuses_malformed_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    result = cli("replay", str(junk), data=tmp_path / "d")
    assert result.returncode == 2
    assert "expected an Event Grid" in result.stderr


def test_verify_with_an_anchor_catches_a_log_cut_back_or_rewritten(tmp_path: Path) -> None:
    """The chain alone cannot show records removed from its end; the head a verify printed
    earlier, given back as --anchor, can."""
    import sqlite3

    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.model import AuditEntry, AuditKind

    data = tmp_path / "d"
    log = SqliteAuditLog(data / "audit.db")
    for n in range(5):
        log.append(AuditEntry(AuditKind.DECISION, f"decision {n}"))
    first = cli("audit", "verify", data=data)
    assert first.returncode == 0 and "5 records verified" in first.stdout
    head = json.loads(cli("audit", "verify", "--json", data=data).stdout)["head"]
    anchor = f"{head['seq']}:{head['hash']}"
    assert anchor in first.stdout
    log.append(AuditEntry(AuditKind.DECISION, "later"))
    later = cli("audit", "verify", "--anchor", anchor, data=data)
    assert later.returncode == 0 and "anchor 5 matches" in later.stdout

    with sqlite3.connect(data / "audit.db") as db:  # cut the last two records off
        db.execute("DELETE FROM audit WHERE seq >= 5")
    db.close()
    assert cli("audit", "verify", data=data).returncode == 0  # the chain alone looks fine
    cut = cli("audit", "verify", "--anchor", anchor, data=data)
    assert cut.returncode == 1
    assert "anchored record 5 is gone: the log was cut back to 4" in cut.stdout
    assert cli("audit", "verify", "--anchor", "5:nothex", data=data).returncode == 2


def test_serve_registers_itself_in_the_data_dir_while_it_runs(tmp_path: Path) -> None:
    """`autopilot serve` writes serve.json (URL, pid) once bound and removes it on exit."""
    import signal

    server = start_serve(tmp_path / "d", POLICY)
    marker = tmp_path / "d" / "serve.json"
    try:
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(marker.read_text()) == {"url": server.url, "pid": server.proc.pid}
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(20)
    finally:
        server.stop()
    assert not marker.exists()


def test_the_demo_look_further_lines_work_as_written(tmp_path: Path) -> None:
    """They said a bare `autopilot`, which is not on PATH after set-up."""
    import shlex

    printed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from autopilot.demo import tool_command as t; "
            "print(t('autopilot')); print(t('mlflow'))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    if Path(sys.executable).parent == ROOT / ".venv" / "bin":
        assert printed == [".venv/bin/autopilot", ".venv/bin/mlflow"]
    data = tmp_path / "d"
    from shared.adapters.sqlite_audit import SqliteAuditLog

    SqliteAuditLog(data / "audit.db")
    line = f"{printed[0]} audit verify --data-dir {data}"
    done = subprocess.run(shlex.split(line), cwd=ROOT, capture_output=True, text=True, env={})
    assert done.returncode == 0 and "audit chain intact: 0 records verified" in done.stdout
    assert (
        subprocess.run(
            [*shlex.split(printed[1]), "--version"], cwd=ROOT, capture_output=True, env={}
        ).returncode
        == 0
    )
