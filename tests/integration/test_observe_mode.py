"""Observe mode on the embedded platform: decisions audited as dry runs, no platform change."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests import payloads
from tests.integration.serve_proc import ROOT, start_serve

pytestmark = pytest.mark.slow
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=azureml_events"


def test_observe_mode_changes_nothing_yet_leaves_a_complete_audit_trail(tmp_path: Path) -> None:
    server = start_serve(tmp_path / "d", ROOT / "tests" / "data" / "observe_policy.yaml")
    try:
        alert = payloads.sample("alerts/common_schema_metric_alert_full.json")
        alert["data"]["essentials"].update(monitorCondition="Fired", alertId=str(uuid.uuid4()))
        assert server.json("POST", "/api/alerts", alert)[0] == 200
        drift = payloads.sample("eventgrid/eventgrid_schema_DatasetDriftDetected.json")
        assert server.json("POST", WEBHOOK, drift)[0] == 200
        _, body = server.json("GET", "/api/audit")
        records = body["records"]
        assert server.json("GET", "/api/cycles")[1]["cycles"] == []
    finally:
        server.stop()
    dry = [r for r in records if r["evidence"].get("dry_run")]
    assert len(dry) == 2
    assert all(r["summary"] == "dry run: would start a retraining cycle" for r in dry)
    assert all(r["evidence"]["would_create_cycle"] for r in dry)
    assert [r["kind"] for r in records].count("event_received") == 2
    jobs = tmp_path / "d" / "platform" / "jobs"
    assert not jobs.exists() or not any(jobs.iterdir())  # no job ran
