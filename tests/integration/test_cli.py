"""The autopilot CLI as a user runs it: output, exit codes (0 ok, 1 check failed, 2 bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import payloads
from tests.integration.serve_proc import ROOT

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
    assert "model 'm': field 'gate.primary_metric': Field required" in result.stderr


def test_bad_usage_exits_2() -> None:
    assert cli("cycles").returncode == 2
    assert cli("audit", "show", "not-a-number").returncode == 2


def test_retrain_cycles_audit_and_replay(tmp_path: Path) -> None:
    data = tmp_path / "d"
    started = cli(
        "retrain",
        "sklearn_regression_model",
        "--reason",
        "quarterly refresh",
        "--as",
        "dana",
        "--policy",
        str(POLICY),
        data=data,
    )
    assert started.returncode == 0, started.stderr
    assert "RETRAINING" in started.stdout
    listed = json.loads(cli("cycles", "list", "--json", data=data).stdout)
    assert [c["state"] for c in listed] == ["RETRAINING"]
    table = cli("cycles", "list", data=data).stdout
    assert "CYCLE" in table and listed[0]["id"] in table
    shown = cli("cycles", "show", listed[0]["id"], data=data)
    assert "audit trail:" in shown.stdout and "dana" in shown.stdout
    assert cli("cycles", "show", "nope", data=data).returncode == 2

    sample = payloads.SAMPLES / "eventgrid" / "eventgrid_schema_ModelDeployed.json"
    replayed = cli("replay", str(sample), "--policy", str(POLICY), data=data)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    records = json.loads(cli("audit", "list", "--json", data=data).stdout)
    assert any("ModelDeployed" in r["summary"] for r in records)
    first = cli("audit", "show", "1", data=data)
    assert json.loads(first.stdout)["seq"] == 1
    assert cli("audit", "verify", data=data).returncode == 0
    refused = cli(
        "rollback", "sklearn_regression_model", "--reason", "x", "--policy", str(POLICY), data=data
    )
    assert refused.returncode == 2 and "nothing to roll back" in refused.stderr


def test_replay_refuses_malformed_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": 1}')
    result = cli("replay", str(junk), "--policy", str(POLICY), data=tmp_path / "d")
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
