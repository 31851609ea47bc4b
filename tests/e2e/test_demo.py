"""The closed loop, end to end, over real HTTP and real subprocesses: each demo scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_ENV

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autopilot.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=DEMO_ENV,
    )


def run_demo(tmp_path: Path, scenario: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = tmp_path / scenario
    done = cli("demo", "--scenario", scenario, "--data-dir", str(data))
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "\naudit trail:" in done.stdout  # the CLI's ``cycles show`` of the demo's cycle
    return demo_outcome(data)


def demo_outcome(data: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    result = json.loads((data / "demo-result.json").read_text())
    audit = json.loads(cli("audit", "list", "--json", "--data-dir", str(data)).stdout)
    verify = cli("audit", "verify", "--data-dir", str(data))
    assert verify.returncode == 0, verify.stdout
    return result, audit


def of_cycle(audit: list[dict[str, Any]], cycle: str, text: str) -> list[dict[str, Any]]:
    return [r for r in audit if r["cycle"] == cycle and text in r["summary"]]


def assert_once_each(
    audit: list[dict[str, Any]], cycle: str, *, registered: bool, rolled_out: bool
) -> None:
    assert len(of_cycle(audit, cycle, "submitted")) == 1  # one job
    assert len(of_cycle(audit, cycle, "-> REGISTERED")) == int(registered)
    assert len(of_cycle(audit, cycle, "-> ROLLING_OUT")) == int(rolled_out)
    started = [r for r in audit if r["summary"] == "retraining cycle started"]
    assert len(started) == 2  # v1 (operator request) and the drift cycle: alerts coalesced
    assert of_cycle(audit, cycle, "coalesced")


def test_improve_promotes_the_retrained_model(improve_demo: Path) -> None:
    result, audit = demo_outcome(improve_demo)
    cycle = result["cycle"]
    assert result["state"] == "PROMOTED"
    assert result["champion"] == "2"
    # no watch period in this demo: v1 is deleted at promotion, leaving only what serves
    assert result["traffic"] == {"credit-risk-v2": 100}
    assert_once_each(audit, cycle, registered=True, rolled_out=True)
    chain = [r["summary"] for r in audit if r["cycle"] == cycle and r["kind"] != "ignored"]
    order = [
        "retraining cycle started",
        "submitted",
        "-> EVALUATING",
        "gate passed",
        "-> REGISTERED",
        "-> ROLLING_OUT",
        "step 1/3",
        "step 2/3",
        "step 3/3",
        "-> PROMOTED",
    ]
    positions = [next(i for i, s in enumerate(chain) if text in s) for text in order]
    assert positions == sorted(positions)
    assert result["client"]["dropped"] == 0


def test_worse_challenger_is_rejected_and_nothing_is_deployed(tmp_path: Path) -> None:
    result, audit = run_demo(tmp_path, "worse")
    cycle = result["cycle"]
    assert result["state"] == "REJECTED"
    assert result["champion"] == "1"
    assert result["traffic"] == {"credit-risk-v1": 100}
    assert_once_each(audit, cycle, registered=False, rolled_out=False)
    rejected = of_cycle(audit, cycle, "-> REJECTED")[0]
    rules = rejected["evidence"]["gate"]["rules"]
    assert any(r["rule"] == "improvement" and not r["passed"] for r in rules)


def test_unhealthy_canary_rolls_back_and_the_champion_keeps_full_traffic(tmp_path: Path) -> None:
    result, audit = run_demo(tmp_path, "unhealthy")
    cycle = result["cycle"]
    assert result["state"] == "ROLLED_BACK"
    assert result["champion"] == "1"
    assert result["traffic"] == {"credit-risk-v1": 100}  # the rolled-back v2 is deleted
    assert_once_each(audit, cycle, registered=True, rolled_out=True)
    rollback = of_cycle(audit, cycle, "-> ROLLED_BACK")[0]
    # the demo's sequential judge: harm shown by the error-rate difference's confidence bound
    assert "the error-rate difference is above" in rollback["reason"]
    # The injected faults answer 5xx; the rollback itself drops no request.
    assert result["client"]["dropped"] == 0


def test_alert_after_promotion_rolls_back_to_the_warm_previous_deployment(
    tmp_path: Path,
) -> None:
    result, audit = run_demo(tmp_path, "alert")
    cycle = result["cycle"]
    assert result["state"] == "ROLLED_BACK"
    assert result["champion"] == "1"  # the previous champion is restored
    assert result["traffic"] == {"credit-risk-v1": 100}  # the rolled-back v2 is deleted
    assert_once_each(audit, cycle, registered=True, rolled_out=True)
    promoted = of_cycle(audit, cycle, "-> PROMOTED")
    rolled_back = of_cycle(audit, cycle, "PROMOTED -> ROLLED_BACK")
    assert len(promoted) == 1 and len(rolled_back) == 1
    assert "watch period" in rolled_back[0]["reason"]
    assert result["client"]["dropped"] == 0


def test_silent_degradation_is_noticed_by_the_estimate_not_by_drift(tmp_path: Path) -> None:
    """No feature drifts; the label-free estimate starts the cycle; the retrained model wins."""
    result, audit = run_demo(tmp_path, "silent")
    cycle = result["cycle"]
    assert result["state"] == "PROMOTED" and result["started_by"] == "estimated_performance"
    assert result["champion"] == "2"
    started = of_cycle(audit, cycle, "retraining cycle started")[0]["evidence"]
    assert started["source"] == "estimated_performance"
    assert started["reference"] - started["estimate"] > 0.03  # the policy's max_drop
    low, high = started["interval"]
    assert low <= started["estimate"] <= high
    sources = {r["evidence"].get("source") for r in audit if r["cycle"] == cycle and r["evidence"]}
    assert "alert" not in sources  # the drift monitor never fired
    seen = result["monitor_estimate"]  # ... but it reported the estimate of its own window
    assert seen is not None and seen["metric"] == "auc" and seen["rows"] > 0
