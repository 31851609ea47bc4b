"""Chaos mode of the embedded platform's event emitter, and the reconciler that makes up for it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from autopilot.faults import ChaosEventSink
from tests.integration.serve_proc import ROOT, start_serve

AML = "Microsoft.MachineLearningServices."


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def event(kind: str, n: int) -> dict[str, Any]:
    return {"id": str(n), "eventType": AML + kind, "subject": f"s{n}", "data": {}}


def test_chaos_sink_drops_duplicates_and_reorders() -> None:
    recorder = Recorder()
    sink = ChaosEventSink(
        recorder, seed=3, drop_types={"RunCompleted"}, duplicate_rate=0.5, reorder=True
    )
    for n in range(40):
        sink.emit(event("RunCompleted" if n % 4 == 0 else "RunStatusChanged", n))
    sink.flush()
    ids = [e["id"] for e in recorder.events]
    assert len(sink.dropped) == 10 and all(
        e["eventType"].endswith("RunCompleted") for e in sink.dropped
    )
    assert len(ids) > 30 and len(set(ids)) == 30  # every other event arrived, some twice
    assert ids != sorted(ids, key=int)  # and not in order


@pytest.mark.slow
def test_all_run_events_dropped_the_reconciler_finishes_the_cycle_within_two_intervals(
    tmp_path: Path,
) -> None:
    server = start_serve(
        tmp_path / "d",
        ROOT / "tests" / "data" / "http_policy.yaml",
        env={
            "AUTOPILOT_EMBEDDED_CHAOS": "drop=RunCompleted+RunStatusChanged",
            "AUTOPILOT_RECONCILE_SCHEDULE": "*/2 * * * * *",
        },
    )
    try:
        status, body = server.json(
            "POST", "/api/models/sklearn_regression_model/retrain", {"reason": "chaos drill"}
        )
        assert status == 200
        cycle_id = body["cycle"]["id"]
        job_dir = tmp_path / "d" / "platform" / "jobs" / f"autopilot-{cycle_id}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and '"status":"Completed"' not in _status(job_dir):
            time.sleep(0.1)
        job_done = time.monotonic()
        state = ""
        while time.monotonic() < job_done + 10:
            state = server.json("GET", f"/api/cycles/{cycle_id}")[1]["cycle"]["state"]
            if state != "RETRAINING":
                break
            time.sleep(0.1)
        waited = time.monotonic() - job_done
        records = server.json("GET", "/api/audit")[1]["records"]
    finally:
        server.stop()
    print(
        f"chaos: all run events dropped; reconciler moved the cycle on {waited:.1f}s after "
        f"the job finished (interval 2s) -> {state}"
    )
    assert state != "RETRAINING"
    assert waited <= 2 * 2 + 1  # two reconcile intervals, plus the poll's own granularity
    assert any(r["kind"] == "reconciled" and r["cycle"] == cycle_id for r in records)
    received = [r["summary"] for r in records if r["kind"] == "event_received"]
    assert not any(s.startswith(("RunCompleted", "RunStatusChanged")) for s in received)


def _status(job_dir: Path) -> str:
    path = job_dir / "job.json"
    return path.read_text().replace(" ", "") if path.exists() else ""
