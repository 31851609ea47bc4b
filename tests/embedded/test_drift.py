"""Drift statistics against scipy and the reference formulas; the monitor's alerts."""

from __future__ import annotations

import itertools
import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, wasserstein_distance

from embedded.drift import (
    BaselineSketch,
    DriftMonitor,
    Thresholds,
    compare,
    summarize,
)
from embedded.endpoint import telemetry_path
from embedded.telemetry import InputRecord, TelemetryStore
from shared.messages import DriftSignalled, SignalResolved
from shared.normalise import parse_alert
from shared.policy import load_policy
from tests.embedded.conftest import Receiver, load_example

gen = load_example("generate_data")


def _columns(data: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: data[name].tolist() for name in gen.FEATURES}


@pytest.fixture(scope="module")
def baseline() -> BaselineSketch:
    return summarize(_columns(gen.generate(4000, seed=1)), categorical=gen.CATEGORICAL)


def test_numeric_statistics_match_scipy_and_formulas() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0.0, 2.0, 5000)
    cur = rng.normal(0.6, 2.0, 1500)
    sketch = summarize({"x": ref.tolist()})
    feature = compare(sketch, {"x": cur.tolist()}).features[0]
    stats = feature.statistics
    assert feature.kind == "numeric"
    expected_w = wasserstein_distance(ref, cur)
    assert stats["wasserstein"] == pytest.approx(expected_w, abs=0.02)
    assert stats["normalized_wasserstein"] == pytest.approx(expected_w / np.std(ref), abs=0.01)
    # bins: deciles of the reference, right-closed: (-inf, q1], (q1, q2], ..., (q9, inf)
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    bounds = [-np.inf, *edges, np.inf]
    ref_p = np.array([np.mean((ref > lo) & (ref <= hi)) for lo, hi in itertools.pairwise(bounds)])
    cur_p = np.array([np.mean((cur > lo) & (cur <= hi)) for lo, hi in itertools.pairwise(bounds)])
    assert stats["jensen_shannon"] == pytest.approx(jensenshannon(ref_p, cur_p, base=2), abs=1e-9)
    expected_psi = float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p)))
    assert stats["psi"] == pytest.approx(expected_psi, rel=1e-6)
    assert feature.breaches == ("normalized_wasserstein",)  # 0.3 sd > 0.1


def test_discrete_numeric_feature_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.poisson(0.6, 4000), rng.poisson(1.2, 800)
    stats = compare(summarize({"n": ref.tolist()}), {"n": cur.tolist()}).features[0].statistics
    assert stats["wasserstein"] == pytest.approx(wasserstein_distance(ref, cur), abs=0.01)


def test_categorical_statistics_match_scipy() -> None:
    rng = np.random.default_rng(2)
    ref = rng.choice(["a", "b", "c"], 3000, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c", "d"], 600, p=[0.3, 0.3, 0.3, 0.1])
    sketch = summarize({"cat": ref.tolist()})
    feature = compare(sketch, {"cat": cur.tolist()}).features[0]
    assert feature.kind == "categorical"
    cats = ["a", "b", "c", "d"]
    ref_n = np.array([np.sum(ref == c) for c in cats], dtype=float)
    cur_n = np.array([np.sum(cur == c) for c in cats], dtype=float)
    stats = feature.statistics
    assert stats["chi2_pvalue"] == pytest.approx(chi2_contingency([ref_n, cur_n]).pvalue)
    expected_js = jensenshannon(ref_n / ref_n.sum(), cur_n / cur_n.sum(), base=2)
    assert stats["jensen_shannon"] == pytest.approx(expected_js, abs=1e-9)
    ref_p = np.maximum(ref_n / ref_n.sum(), 1e-4)
    cur_p = np.maximum(cur_n / cur_n.sum(), 1e-4)
    assert stats["psi"] == pytest.approx(float(np.sum((cur_p - ref_p) * np.log(cur_p / ref_p))))
    assert stats["new_categories"] == 1.0
    assert feature.breaches == ("jensen_shannon",)


def test_identical_data_does_not_drift(baseline: BaselineSketch) -> None:
    report = compare(baseline, _columns(gen.generate(4000, seed=1)))
    assert not report.drifted
    for feature in report.features:
        assert feature.statistics["jensen_shannon"] < 1e-6
        assert abs(feature.statistics["psi"]) < 1e-6
        if feature.kind == "numeric":
            assert feature.statistics["normalized_wasserstein"] < 0.01
        else:
            assert feature.statistics["chi2_pvalue"] == pytest.approx(1.0)


def test_shifted_data_drifts(baseline: BaselineSketch) -> None:
    report = compare(baseline, _columns(gen.generate(500, seed=9, shift=True)), min_samples=200)
    assert report.drifted
    assert {"utilization", "income", "region", "channel"} <= set(report.drifted_features)
    assert "age" not in report.drifted_features  # unchanged by the shift


def test_no_drift_stays_quiet_over_repeated_windows(baseline: BaselineSketch) -> None:
    """Windows of the size the thresholds are meant for (sampling noise ~ 1/sqrt(n))."""
    strict = Thresholds(
        numeric={"normalized_wasserstein": 0.1, "psi": 0.2},
        categorical={"jensen_shannon": 0.1, "psi": 0.2},
    )
    for seed in range(100, 115):
        report = compare(baseline, _columns(gen.generate(2000, seed=seed)), strict)
        assert not report.drifted, (seed, report.drifted_features)


def test_thresholds_are_per_call(baseline: BaselineSketch) -> None:
    window = _columns(gen.generate(300, seed=5))
    everything = Thresholds(numeric={"normalized_wasserstein": 0.0}, categorical={})
    assert compare(baseline, window, everything).drifted
    pvalue = Thresholds(numeric={}, categorical={"chi2_pvalue": 1.01})
    assert set(compare(baseline, window, pvalue).drifted_features) == {"region", "channel"}


def test_sketch_round_trips_as_json(tmp_path: Path, baseline: BaselineSketch) -> None:
    path = tmp_path / "baseline.json"
    baseline.save(path)
    loaded = BaselineSketch.load(path)
    assert loaded.to_json() == baseline.to_json()
    assert path.stat().st_size < 200_000  # a summary, not the data
    window = _columns(gen.generate(500, seed=9, shift=True))

    def by_feature(sketch: BaselineSketch) -> dict[str, Any]:
        return {f.feature: f.to_json() for f in compare(sketch, window).features}

    assert by_feature(loaded) == by_feature(baseline)


def _log(data_dir: Path, rows: list[dict[str, Any]], at: float) -> None:
    TelemetryStore(telemetry_path(data_dir)).append(
        [], [InputRecord("credit-risk", "blue", at + i * 1e-3, row) for i, row in enumerate(rows)]
    )


def _policy(tmp_path: Path) -> Any:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        "models:\n"
        "  credit-risk:\n"
        "    signals: {drift_alerts: [autopilot-drift-credit-risk]}\n"
        "    training: {experiment: credit-risk-retrain, command: ['{python}', 'train.py']}\n"
        "    gate: {primary_metric: auc}\n"
    )
    return load_policy(path)


def check_common_alert_schema(alert: dict[str, Any], condition: str) -> None:
    assert alert["schemaId"] == "azureMonitorCommonAlertSchema"
    essentials = alert["data"]["essentials"]
    for key in (
        "alertId",
        "alertRule",
        "alertRuleId",
        "severity",
        "signalType",
        "monitorCondition",
        "monitoringService",
        "alertTargetIDs",
        "firedDateTime",
        "essentialsVersion",
        "alertContextVersion",
    ):
        assert key in essentials, key
    assert essentials["alertRule"] == "autopilot-drift-credit-risk"
    assert essentials["alertId"].startswith("/subscriptions/")
    assert "/providers/Microsoft.AlertsManagement/alerts/" in essentials["alertId"]
    assert essentials["alertRuleId"].endswith("/scheduledqueryrules/autopilot-drift-credit-risk")
    assert essentials["signalType"] == "Log"
    assert essentials["monitoringService"] == "Log Analytics"
    assert essentials["monitorCondition"] == condition
    assert essentials["severity"] in {"Sev0", "Sev1", "Sev2", "Sev3", "Sev4"}
    assert (essentials["essentialsVersion"], essentials["alertContextVersion"]) == ("1.0", "1.0")
    assert essentials["alertTargetIDs"][0].endswith("/onlineEndpoints/credit-risk")
    assert essentials["firedDateTime"].endswith("Z")
    assert ("resolvedDateTime" in essentials) == (condition == "Resolved")
    context = alert["data"]["alertContext"]
    assert context["conditionType"] == "LogQueryCriteria"
    condition_block = context["condition"]
    assert condition_block["windowSize"].startswith("PT")
    assert condition_block["windowStartTime"] < condition_block["windowEndTime"]
    assert condition_block["allOf"]
    for item in condition_block["allOf"]:
        assert {
            "searchQuery",
            "operator",
            "threshold",
            "timeAggregation",
            "dimensions",
            "metricValue",
            "failingPeriods",
        } <= set(item)
        assert isinstance(item["threshold"], str) and isinstance(item["metricValue"], float)
        dims = {d["name"]: d["value"] for d in item["dimensions"]}
        assert set(dims) == {"feature", "featureType", "statistic"}
    assert all(isinstance(v, str) for v in context["properties"].values())
    evidence = json.loads(context["properties"]["evidence"])
    assert {f["feature"] for f in evidence["features"]} == set(gen.FEATURES)
    assert alert["data"]["customProperties"]["model"] == "credit-risk"
    assert len(json.dumps(alert)) < 256 * 1024


def test_monitor_fires_once_then_resolves(
    tmp_path: Path, baseline: BaselineSketch, receiver: Receiver
) -> None:
    now = time.time()
    _log(tmp_path, gen.to_rows(gen.generate(400, seed=3, shift=True)), now - 1800)  # 30 min ago
    _log(tmp_path, gen.to_rows(gen.generate(2000, seed=4)), now - 300)  # 5 min ago
    monitor = DriftMonitor(
        tmp_path,
        model="credit-risk",
        endpoint="credit-risk",
        baseline=baseline,
        alert_url=receiver.url + "/api/alerts",
        key="k-drift",
        window_s=600,
        min_samples=200,
    )
    policy = _policy(tmp_path)
    at = datetime.fromtimestamp(now, UTC)
    early = at - timedelta(minutes=25)  # window [35 min ago, 25 min ago): the shifted rows

    receiver.statuses = [503]  # first delivery fails: the state stays, the next check resends
    failed = monitor.check(end=early)
    assert (failed.action, failed.delivered, failed.status) == ("fired", False, 503)
    assert not monitor.firing

    fired = monitor.check(end=early)
    assert (fired.action, fired.delivered) == ("fired", True) and monitor.firing
    assert fired.alert is not None
    check_common_alert_schema(fired.alert, "Fired")
    assert {"utilization", "region"} <= set(fired.report.drifted_features)
    breached = {
        d["value"]
        for i in fired.alert["data"]["alertContext"]["condition"]["allOf"]
        for d in i["dimensions"]
        if d["name"] == "feature"
    }
    assert breached == set(fired.report.drifted_features)
    headers, body = receiver.received[-1]
    assert headers["x-functions-key"] == "k-drift" and body == fired.alert
    message = parse_alert(fired.alert, policy)  # the service reads it as a drift signal
    assert isinstance(message, DriftSignalled) and message.model == "credit-risk"

    assert monitor.check(end=early).action == "none"  # still drifting: no second alert
    assert len(receiver.received) == 2

    resolved = monitor.check(end=at)  # window [10 min ago, now): clean rows
    assert resolved.action == "resolved" and not monitor.firing
    assert resolved.alert is not None
    check_common_alert_schema(resolved.alert, "Resolved")
    fired_ids = fired.alert["data"]["essentials"]["alertId"]
    assert resolved.alert["data"]["essentials"]["alertId"] == fired_ids
    assert isinstance(parse_alert(resolved.alert, policy), SignalResolved)
    assert monitor.check(end=at).action == "none"

    empty = monitor.check(end=at - timedelta(minutes=15))  # no rows in that window
    assert empty.action == "insufficient-data" and empty.report.n == 0
    assert len(receiver.received) == 3


def test_numeric_values_skip_missing() -> None:
    sketch = summarize({"x": [1.0, 2.0, 3.0, 4.0]})
    feature = compare(sketch, {"x": [1.0, None, "", "abc", 2.0, math.nan]}).features[0]
    assert (feature.n, feature.missing) == (2, 4)


def test_the_silent_batch_keeps_every_feature_distribution() -> None:
    """``generate_data --silent`` re-pairs the same values: per feature, nothing drifts."""
    gen = load_example("generate_data")
    plain, silent = gen.generate(2000, seed=5), gen.generate(2000, seed=5, silent=True)
    for name in gen.FEATURES:
        assert sorted(plain[name].tolist()) == sorted(silent[name].tolist()), name
    assert plain["label"].tolist() != silent["label"].tolist()
