"""What the autopilot CLI prints holds no secret: its errors (stderr) are scrubbed as log lines
are (``autopilot.cli._TerminalSafe``, ``shared.log_scrub``); its data (stdout) was scrubbed
where it was stored, and stays valid JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.serve_proc import ROOT
from tests.integration.test_cli import cli


def test_an_error_that_echoes_an_argument_masks_the_secrets_in_it(tmp_path: Path) -> None:
    """A SAS URL given where a file was expected: the error names the argument, with its
    signature masked; a configured secret in an argument is masked the same way."""
    sas = "https://acct.blob.core.windows.net/c/events.json?sv=2022-11-02&sig=AbCdEf0123456789%3D"
    result = cli("replay", sas)
    assert result.returncode == 2
    assert "AbCdEf0123456789" not in result.stderr + result.stdout
    assert result.stderr.startswith(  # (a path: its // read as /)
        "autopilot: cannot read https:/acct.blob.core.windows.net/c/events.json"
        "?sv=2022-11-02&sig=***"
    )
    secret = "s3cr3t-client-value-0123456789"
    done = subprocess.run(
        [sys.executable, "-m", "autopilot.cli", "replay", str(tmp_path / secret)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AZURE_CLIENT_SECRET": secret},
    )
    assert done.returncode == 2 and secret not in done.stderr + done.stdout
    assert f"autopilot: cannot read {tmp_path}/***" in done.stderr


def test_json_output_of_text_masked_when_stored_stays_valid(tmp_path: Path) -> None:
    """A record whose text was masked when it was stored (``sig=***`` before a quote): the
    JSON the CLI prints parses and holds that text as stored."""
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore
    from shared.model import AuditEntry, AuditKind

    summary = 'download of https://acct.blob.core.windows.net/c/b?sig=***" failed'
    SqliteStateStore(tmp_path / "state.db")
    SqliteAuditLog(tmp_path / "audit.db").append(AuditEntry(AuditKind.ERROR, summary))
    result = cli("audit", "list", "--json", data=tmp_path)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["summary"] for r in records] == [summary]
