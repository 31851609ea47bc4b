"""The demo world's drift monitor reports the label-free estimate next to data drift.

Unchanged inputs (no data drift) while the scores bunch up where the model is unsure: the
monitor's check reports no drift and a breached estimate, in its result and its log line.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedded.drift import BaselineSketch, DriftMonitor, summarize
from embedded.endpoint import telemetry_path
from embedded.estimate_monitor import EstimateSignal
from embedded.telemetry import InputRecord, ScoreRecord, TelemetryStore
from shared.estimation import fit_isotonic, realised
from shared.policy import EstimatedPerformance
from tests.embedded.conftest import load_example
from tests.unit.test_performance import degraded_scores, healthy_scores, reference

gen = load_example("generate_data")
SPEC = EstimatedPerformance(metric="auc", max_drop=0.05, min_rows=500)


@pytest.fixture(scope="module")
def baseline() -> BaselineSketch:
    data = gen.generate(4000, seed=1)
    return summarize({n: data[n].tolist() for n in gen.FEATURES}, categorical=gen.CATEGORICAL)


def world(tmp_path: Path, scores: list[float], at: float) -> None:
    """Inputs like the baseline's (no drift) and the scores the endpoint answered with."""
    rows = gen.to_rows(gen.generate(2000, seed=4))
    TelemetryStore(telemetry_path(tmp_path)).append(
        [],
        [InputRecord("credit-risk", "blue", at + i * 1e-3, row) for i, row in enumerate(rows)],
        [ScoreRecord("credit-risk", "blue", at + i * 1e-3, s) for i, s in enumerate(scores)],
    )


def monitor(tmp_path: Path, baseline: BaselineSketch) -> DriftMonitor:
    ref = reference()
    signal = EstimateSignal(
        tmp_path,
        endpoint="credit-risk",
        spec=SPEC,
        fitted=fit_isotonic(ref["scores"], ref["label"]),
        reference=realised(ref["scores"], ref["label"])["auc"],
    )
    return DriftMonitor(
        tmp_path,
        model="credit-risk",
        endpoint="credit-risk",
        baseline=baseline,
        window_s=600,
        min_samples=200,
        estimate=signal,
    )


def test_the_check_reports_a_breached_estimate_while_data_drift_stays_quiet(
    tmp_path: Path, baseline: BaselineSketch
) -> None:
    now = time.time()
    world(tmp_path, degraded_scores(1000), now - 60)
    check = monitor(tmp_path, baseline).check(end=datetime.fromtimestamp(now, UTC))
    assert check.report.enough_data and not check.report.drifted
    assert check.action == "none"
    est = check.estimate
    assert est is not None and est.breached and est.rows == 1000
    assert est.value is not None and est.low is not None and est.high is not None
    assert est.low <= est.value <= est.high
    assert est.reference - est.value > 0.05
    assert "under the reference" in est.summary()
    assert est.to_json()["breached"] is True


def test_healthy_scores_are_within_policy_and_few_rows_give_no_verdict(
    tmp_path: Path, baseline: BaselineSketch
) -> None:
    now = time.time()
    world(tmp_path, healthy_scores(1000), now - 60)
    mon = monitor(tmp_path, baseline)
    est = mon.check(end=datetime.fromtimestamp(now, UTC)).estimate
    assert est is not None and est.enough_data and not est.breached
    assert "within policy" in est.summary()
    early = mon.check(end=datetime.fromtimestamp(now - 59.6, UTC)).estimate  # 400 rows so far
    assert early is not None and not early.enough_data
    assert "scored rows < 500" in early.summary()


def test_the_monitor_loop_logs_the_estimate_like_the_drift_result(
    tmp_path: Path, baseline: BaselineSketch, caplog: Any
) -> None:
    world(tmp_path, degraded_scores(1000), time.time() - 60)
    mon = monitor(tmp_path, baseline)
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="embedded.drift"):
        runner = threading.Thread(target=mon.run, args=(0.05, stop))
        runner.start()
        deadline = time.time() + 20
        while time.time() < deadline and "estimated auc" not in caplog.text:
            time.sleep(0.05)
        stop.set()
        runner.join(10)
    lines = [r.getMessage() for r in caplog.records if r.name == "embedded.drift"]
    assert any("drift check autopilot-drift-credit-risk: none" in line for line in lines)
    assert any("estimated auc" in line and "max_drop 0.05" in line for line in lines)


def test_without_an_estimate_signal_the_check_is_unchanged(
    tmp_path: Path, baseline: BaselineSketch
) -> None:
    world(tmp_path, degraded_scores(1000), time.time() - 60)
    plain = DriftMonitor(
        tmp_path, model="credit-risk", endpoint="credit-risk", baseline=baseline, window_s=600
    )
    assert plain.check().estimate is None
    assert np.isfinite(plain.check().report.n)
