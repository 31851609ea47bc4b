"""What label-free estimation promises, on rows worked by hand: the isotonic calibration, the
expected confusion matrix and metrics, intervals at the requested level, and refusals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from shared.estimation import (
    Calibrator,
    EstimationError,
    Interval,
    Z,
    estimate,
    expected_auc,
    fit_isotonic,
    realised,
)


def test_pool_adjacent_violators_on_rows_worked_by_hand() -> None:
    cal = fit_isotonic([0.4, 0.1, 0.3, 0.2], [1, 0, 0, 1])
    assert cal.knots.tolist() == [0.1, 0.2, 0.4]
    assert cal.values.tolist() == [0.0, 0.5, 1.0]
    probs = cal(np.array([0.0, 0.1, 0.15, 0.25, 0.3, 0.4, 0.9]))
    assert probs.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_tied_scores_are_pooled_before_fitting() -> None:
    cal = fit_isotonic([0.5, 0.5, 0.5, 0.7], [0, 1, 1, 1])
    assert cal.knots.tolist() == [0.5, 0.7]
    assert cal.values.tolist() == pytest.approx([2 / 3, 1.0])


def test_a_violation_pools_back_over_several_blocks() -> None:
    cal = fit_isotonic([0.1, 0.2, 0.3, 0.4], [0, 1, 1, 0])
    # 0 | 1 | 1 then 0: the last three pool to 2/3, which stays above the first block
    assert cal(np.array([0.1, 0.2, 0.3, 0.4])).tolist() == pytest.approx([0, 2 / 3, 2 / 3, 2 / 3])
    assert cal.knots.tolist() == [0.1, 0.2]


def test_equal_neighbouring_blocks_are_one_step() -> None:
    cal = fit_isotonic([0.1, 0.2, 0.3], [0, 1, 1])
    assert cal.knots.tolist() == [0.1, 0.2] and cal.values.tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("scores", "labels", "problem"),
    [
        ([], [], "reference scores: no rows"),
        ([0.1, math.nan], [0, 1], "reference scores: scores must be finite numbers"),
        ([0.1, 0.2], [0, 1, 1], "reference scores and labels differ in length"),
        ([0.1, 0.2], [0, 2], "reference labels must be 0 or 1"),
        ([0.1, 0.2], [1, 1], "reference labels have one class only; cannot calibrate"),
        ([0.1, 0.2], [0, 0], "reference labels have one class only; cannot calibrate"),
        ([0.1, 0.2], [0, math.inf], "reference labels: scores must be finite numbers"),
    ],
)
def test_reference_data_that_cannot_calibrate_is_refused(
    scores: list[float], labels: list[float], problem: str
) -> None:
    with pytest.raises(EstimationError) as refused:
        fit_isotonic(scores, labels)
    assert str(refused.value) == problem  # the words the CLI and the audit log show


CAL = Calibrator(np.array([0.0, 0.5]), np.array([0.2, 0.9]))


def test_the_expected_confusion_matrix_and_metrics_on_rows_worked_by_hand() -> None:
    # probabilities 0.2, 0.2, 0.9, 0.9; a score of exactly 0.5 predicts 1
    est = estimate(CAL, [0.9, 0.1, 0.5, 0.4], simulations=50)
    assert est.rows == 4 and est.level == 0.95 and est.threshold == 0.5
    assert est.confusion == pytest.approx({"tp": 1.8, "fp": 0.2, "fn": 0.4, "tn": 1.6})
    assert est.metric("accuracy").value == pytest.approx(0.85)
    assert est.metric("f1").value == pytest.approx(3.6 / 4.2)
    assert est.metric("auc").value == pytest.approx(3.38 / (2.2 * 1.8))


def test_a_threshold_moves_the_predicted_positives() -> None:
    est = estimate(CAL, [0.9, 0.1, 0.5, 0.4], threshold=0.95, simulations=20)
    assert est.confusion == pytest.approx({"tp": 0.0, "fp": 0.0, "fn": 2.2, "tn": 1.8})
    assert math.isnan(est.metric("f1").value) is False
    assert est.metric("f1").value == 0.0
    assert est.metric("accuracy").value == pytest.approx(0.45)


def test_no_expected_positives_leave_f1_undefined() -> None:
    zero = Calibrator(np.array([0.0]), np.array([0.0]))
    est = estimate(zero, [0.1, 0.2], threshold=0.9, simulations=20)
    assert math.isnan(est.metric("f1").value)
    assert math.isnan(est.metric("auc").value)
    assert est.metric("accuracy").value == 1.0
    assert est.metric("accuracy").low == est.metric("accuracy").high == 1.0


def test_probabilities_outside_zero_and_one_are_clipped() -> None:
    wild = Calibrator(np.array([0.0, 0.5]), np.array([-0.5, 1.5]))
    est = estimate(wild, [0.1, 0.9], simulations=20)
    assert est.confusion == pytest.approx({"tp": 1.0, "fp": 0.0, "fn": 0.0, "tn": 1.0})


@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_intervals_are_symmetric_at_the_levels_normal_quantile(level: float) -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(400)
    cal = Calibrator(np.array([0.0, 0.3, 0.6]), np.array([0.1, 0.4, 0.8]))
    base = estimate(cal, scores, level=0.9, simulations=200, seed=4)
    est = estimate(cal, scores, level=level, simulations=200, seed=4)
    for name in ("accuracy", "f1", "auc"):
        interval, reference = est.metric(name), base.metric(name)
        assert interval.value - interval.low == pytest.approx(interval.high - interval.value)
        assert interval.high - interval.low > 0
        assert (interval.high - interval.low) / (reference.high - reference.low) == pytest.approx(
            Z[level] / Z[0.9]
        )


def test_the_level_quantiles_are_the_normals() -> None:
    from statistics import NormalDist

    for level, z in Z.items():
        assert z == pytest.approx(NormalDist().inv_cdf((1 + level) / 2), abs=1e-6)


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(EstimationError, match=r"level must be one of \[0.9, 0.95, 0.99\]"):
        estimate(CAL, [0.1], level=0.8)


@pytest.mark.parametrize(
    ("scores", "problem"),
    [
        ([], "production scores: no rows"),
        ([0.1, math.inf], "production scores: scores must be finite numbers"),
    ],
)
def test_unusable_production_scores_are_refused(scores: list[float], problem: str) -> None:
    with pytest.raises(EstimationError) as refused:
        estimate(CAL, scores)
    assert str(refused.value) == problem


@pytest.mark.parametrize(
    ("scores", "labels", "problem"),
    [
        ([], [1], "scores: no rows"),
        ([0.2, math.nan], [0, 1], "scores: scores must be finite numbers"),
        ([0.2, 0.3], [0, math.nan], "labels: scores must be finite numbers"),
        ([0.2, 0.3], [], "labels: no rows"),
    ],
)
def test_realised_metrics_refuse_unusable_rows_naming_them(
    scores: list[float], labels: list[float], problem: str
) -> None:
    with pytest.raises(EstimationError) as refused:
        realised(scores, labels)
    assert str(refused.value) == problem


def test_the_interval_width_is_the_spread_of_simulated_realised_metrics() -> None:
    """Accuracy's spread, simulated by hand from the same draws the estimator documents."""
    scores = np.sort(np.random.default_rng(8).random(300))
    cal = Calibrator(np.array([0.0, 0.5]), np.array([0.3, 0.7]))
    est = estimate(cal, scores, simulations=400, seed=10)
    probs = cal(scores)
    rng = np.random.default_rng(11)
    labels = rng.random((400, scores.size)) < probs
    accuracy = (labels == (scores >= 0.5)).mean(axis=1)
    spread = float(np.std(accuracy))
    interval = est.metric("accuracy")
    assert interval.high - interval.value == pytest.approx(Z[0.95] * spread, rel=1e-9)


@pytest.mark.parametrize(
    ("threshold", "scores"),
    [
        (0.5, [0.5] * 40 + [0.2] * 30 + [0.8] * 30),  # rows exactly at the cut predict positive
        (0.95, np.random.default_rng(3).random(200).tolist()),  # few predicted positives
        (0.5, np.random.default_rng(4).random(200).tolist()),
    ],
    ids=["at-the-threshold", "high-threshold", "spread"],
)
def test_every_metrics_interval_is_the_spread_of_its_realised_value_over_the_draws(
    threshold: float, scores: list[float]
) -> None:
    """Each interval is z times the standard deviation of the metric realised (``realised``,
    the ground-truth formula) on each simulated draw of the labels, y ~ Bernoulli(p)."""
    cal = Calibrator(np.array([0.0, 0.3, 0.6]), np.array([0.1, 0.5, 0.8]))
    est = estimate(cal, scores, threshold=threshold, simulations=60, seed=20)
    s = np.sort(np.asarray(scores))
    draws = np.random.default_rng(21).random((60, s.size)) < cal(s)
    per_draw = [realised(s, draw, threshold) for draw in draws]
    for name in ("accuracy", "f1", "auc"):
        values = np.array([d[name] for d in per_draw])
        spread = float(np.nanstd(values)) if np.isfinite(values).any() else 0.0
        interval = est.metric(name)
        assert interval.high - interval.value == pytest.approx(Z[0.95] * spread, abs=1e-12), name
        assert interval.value - interval.low == pytest.approx(Z[0.95] * spread, abs=1e-12), name


def test_subsampled_rows_are_drawn_from_every_row_and_scaled() -> None:
    scores = np.random.default_rng(5).random(4000)
    cal = Calibrator(np.array([0.0, 0.5]), np.array([0.3, 0.7]))
    full = estimate(cal, scores, simulations=300, max_rows=4000, seed=2)
    sub = estimate(cal, scores, simulations=300, max_rows=1000, seed=2)
    for name in ("accuracy", "f1", "auc"):
        assert sub.metric(name).value == full.metric(name).value
        full_width = full.metric(name).high - full.metric(name).low
        sub_width = sub.metric(name).high - sub.metric(name).low
        assert sub_width == pytest.approx(full_width, rel=0.25)


def test_evidence_rounds_for_the_audit_log() -> None:
    est = estimate(CAL, [0.9, 0.1, 0.5, 0.4], simulations=50)
    ev = est.evidence()
    assert ev["rows"] == 4 and ev["level"] == 0.95 and ev["threshold"] == 0.5
    assert ev["confusion"] == {"tp": 1.8, "fp": 0.2, "fn": 0.4, "tn": 1.6}
    assert ev["accuracy"]["value"] == 0.85
    assert set(ev["auc"]) == {"value", "low", "high"}
    assert ev["f1"]["value"] == round(3.6 / 4.2, 6)


@pytest.mark.parametrize(
    ("scores", "labels"),
    [
        ([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]),
        ([0.3, 0.3, 0.3, 0.9], [0, 1, 1, 0]),
        ([0.2, 0.6, 0.6, 0.1, 0.9], [0, 1, 0, 1, 1]),
    ],
)
def test_expected_auc_with_certain_labels_is_the_realised_auc(
    scores: list[float], labels: list[float]
) -> None:
    s, y = np.array(scores), np.array(labels, dtype=np.float64)
    assert expected_auc(s, y) == pytest.approx(realised(s, y)["auc"])
    order = np.argsort(s)
    assert expected_auc(s[order], y[order], ascending=True) == pytest.approx(realised(s, y)["auc"])


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_expected_auc_of_one_expected_class_is_undefined(p: float) -> None:
    assert math.isnan(expected_auc(np.array([0.1, 0.2]), np.array([p, p])))


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        (
            [0.9, 0.5, 0.4, 0.2, 0.5],
            [1, 0, 1, 0, 1],
            {"accuracy": 0.6, "f1": 2 * 2 / (2 * 2 + 1 + 1), "auc": 4.5 / 6},
        ),
        ([0.1, 0.2], [0, 0], {"accuracy": 1.0, "f1": math.nan, "auc": math.nan}),
        ([0.7, 0.8], [1, 1], {"accuracy": 1.0, "f1": 1.0, "auc": math.nan}),
    ],
)
def test_realised_metrics_on_rows_worked_by_hand(
    scores: list[float], labels: list[int], expected: dict[str, float]
) -> None:
    got = realised(scores, labels)
    for name, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(value), name


@pytest.mark.parametrize(
    ("scores", "labels", "f1"),
    [
        ([0.9, 0.2, 0.1], [1, 1, 1], 2 / 4),  # tp 1, fp 0, fn 2: 2tp + fp == fn
        ([0.9, 0.8, 0.7, 0.6, 0.1], [1, 0, 0, 0, 1], 2 / 6),  # tp 1, fp 3, fn 1: 2tp + fn == fp
    ],
)
def test_realised_f1_is_defined_whenever_anything_is_positive(
    scores: list[float], labels: list[int], f1: float
) -> None:
    assert realised(scores, labels)["f1"] == pytest.approx(f1)


def test_estimates_are_audited_rounded_to_six_places_and_counts_to_three() -> None:
    interval = Interval(0.12345678, 0.0123456789, 0.98765432)
    assert interval.as_dict() == {"value": 0.123457, "low": 0.012346, "high": 0.987654}
    cal = Calibrator(np.array([0.0, 0.5]), np.array([0.12345, 0.87654]))
    est = estimate(cal, [0.9, 0.1, 0.5, 0.4, 0.45, 0.7, 0.05], simulations=20)
    confusion = est.evidence()["confusion"]
    assert confusion == {k: round(v, 3) for k, v in est.confusion.items()}
    assert any(round(v, 3) != round(v, 4) for v in est.confusion.values())


def test_realised_uses_the_threshold() -> None:
    got: dict[str, Any] = realised([0.6, 0.7], [0, 1], threshold=0.65)
    assert got["accuracy"] == 1.0 and got["f1"] == 1.0
