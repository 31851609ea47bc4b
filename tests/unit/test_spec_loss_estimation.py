"""What direct loss estimation (DLE) promises, on rows worked by hand: the bins of the
prediction and their loss moments, the estimated MAE and RMSE with their intervals, the
realised loss, the evidence the audit log keeps, and the refusals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from shared.estimation import Calibrator, Estimate, EstimationError
from shared.loss_estimation import (
    MAX_BINS,
    MIN_BIN_ROWS,
    LossEstimate,
    LossModel,
    estimate_loss,
    estimate_with,
    fit_loss_model,
    realised_loss,
)


def two_bins() -> LossModel:
    """200 rows, so two bins split at the median prediction, 0.75: below it the prediction
    misses by 0 or 2 (half each), from it on by 3."""
    predictions = [0.0] * 50 + [0.5] * 50 + [1.0] * 50 + [2.0] * 50
    targets = [0.0] * 50 + [2.5] * 50 + [4.0] * 50 + [-1.0] * 50
    return fit_loss_model(predictions, targets)


def test_each_bin_keeps_the_mean_and_sample_variance_of_its_rows_losses() -> None:
    model = two_bins()
    assert model.edges.tolist() == [0.75]
    assert model.abs_mean.tolist() == [1.0, 3.0]
    # 100 rows of |e| 0 or 2: population variance 1, sample variance 100/99
    assert model.abs_var.tolist() == pytest.approx([100 / 99, 0.0])
    assert model.sq_mean.tolist() == [2.0, 9.0]
    assert model.sq_var.tolist() == pytest.approx([4.0 * 100 / 99, 0.0])


@pytest.mark.parametrize(
    ("rows", "bins"),
    [
        (60, 1),
        (2 * MIN_BIN_ROWS - 1, 1),
        (2 * MIN_BIN_ROWS, 2),
        (10 * MIN_BIN_ROWS + 50, 10),
        (MAX_BINS * MIN_BIN_ROWS, MAX_BINS),
        ((MAX_BINS + 50) * MIN_BIN_ROWS, MAX_BINS),
    ],
)
def test_bins_hold_at_least_min_bin_rows_and_number_at_most_max_bins(rows: int, bins: int) -> None:
    predictions = np.arange(rows, dtype=np.float64)
    model = fit_loss_model(predictions, predictions + 1.0)
    assert model.abs_mean.size == bins and model.edges.size == bins - 1
    counts = np.bincount(model.bins(predictions), minlength=bins)
    assert counts.min() >= min(rows, MIN_BIN_ROWS) - 1 and counts.sum() == rows


def test_a_prediction_on_an_edge_belongs_to_the_bin_above() -> None:
    model = two_bins()
    assert model.bins(np.array([0.749, 0.75, 0.751])).tolist() == [0, 1, 1]


def test_ties_piled_onto_an_edge_never_leave_a_bin_with_fewer_than_two_rows() -> None:
    predictions = np.array([0.0] * 150 + [1.0] * 49 + [5.0])
    model = fit_loss_model(predictions, predictions + np.linspace(0, 1, 200))
    counts = np.bincount(model.bins(predictions), minlength=model.abs_mean.size)
    assert counts.min() >= 2
    assert np.isfinite(model.abs_var).all() and np.isfinite(model.sq_var).all()


def test_one_bin_of_one_distinct_prediction_is_a_single_bin() -> None:
    model = fit_loss_model([1.0] * 80, [0.0, 2.0] * 40)
    assert model.edges.size == 0 and model.abs_mean.tolist() == [1.0]
    assert model.abs_var.tolist() == [0.0]  # every |e| is 1


@pytest.mark.parametrize(("rows", "fits"), [(59, False), (60, True)])
def test_a_reference_needs_sixty_rows(rows: int, fits: bool) -> None:
    predictions = np.linspace(0, 1, rows)
    if fits:
        assert fit_loss_model(predictions, predictions).abs_mean.size == 1
    else:
        with pytest.raises(EstimationError) as refused:
            fit_loss_model(predictions, predictions)
        assert str(refused.value) == f"reference: {rows} rows; at least 60 needed for a loss model"


@pytest.mark.parametrize(
    ("predictions", "targets", "problem"),
    [
        ([1.0] * 80, [1.0] * 70, "reference predictions and targets differ in length"),
        ([], [], "reference predictions: no rows"),
        ([1.0] * 80, [math.inf] * 80, "reference targets: scores must be finite numbers"),
    ],
)
def test_a_reference_that_cannot_fit_is_refused_in_words(
    predictions: list[float], targets: list[float], problem: str
) -> None:
    with pytest.raises(EstimationError) as refused:
        fit_loss_model(predictions, targets)
    assert str(refused.value) == problem


def test_the_estimate_weights_each_bins_loss_by_its_rows_in_the_window() -> None:
    """3 rows in the low bin and 1 in the high: MAE (3*1 + 3)/4, MSE (3*2 + 9)/4, and the
    standard error of a mean of independent rows, sqrt(sum var) / n, at the level's z."""
    est = estimate_loss(two_bins(), [0.1, 0.2, 0.3, 1.5])
    assert isinstance(est, LossEstimate)
    assert (est.rows, est.level) == (4, 0.95)
    mae, rmse = est.metric("mae"), est.metric("rmse")
    assert mae.value == pytest.approx(1.5)
    mae_se = math.sqrt(3 * 100 / 99) / 4
    assert mae.low == pytest.approx(1.5 - 1.959964 * mae_se)
    assert mae.high == pytest.approx(1.5 + 1.959964 * mae_se)
    mse, mse_se = 15 / 4, math.sqrt(3 * 4.0 * 100 / 99) / 4
    assert rmse.value == pytest.approx(math.sqrt(mse))
    assert rmse.low == pytest.approx(math.sqrt(mse - 1.959964 * mse_se))
    assert rmse.high == pytest.approx(math.sqrt(mse + 1.959964 * mse_se))


@pytest.mark.parametrize(("level", "z"), [(0.9, 1.6448536), (0.99, 2.5758293)])
def test_the_interval_is_at_the_requested_level(level: float, z: float) -> None:
    est = estimate_loss(two_bins(), [0.1, 0.2, 0.3, 1.5], level=level)
    mae = est.metric("mae")
    assert est.level == level
    assert mae.high - mae.value == pytest.approx(z * math.sqrt(3 * 100 / 99) / 4)


def test_an_interval_never_reaches_below_zero_loss() -> None:
    model = fit_loss_model([0.0] * 100, [0.0] * 98 + [50.0, -50.0])
    est = estimate_loss(model, [0.0])
    assert est.metric("mae").low == 0.0 and est.metric("rmse").low == 0.0
    assert est.metric("mae").high > est.metric("mae").value > 0


def test_an_unknown_level_and_unusable_predictions_are_refused() -> None:
    with pytest.raises(EstimationError) as refused:
        estimate_loss(two_bins(), [0.1], level=0.8)
    assert str(refused.value) == "level must be one of [0.9, 0.95, 0.99]"
    with pytest.raises(EstimationError) as refused:
        estimate_loss(two_bins(), [])
    assert str(refused.value) == "production predictions: no rows"


def test_the_evidence_names_the_method_and_every_interval() -> None:
    est = estimate_loss(two_bins(), [0.1, 0.2, 0.3, 1.5])
    evidence = est.evidence()
    assert evidence["rows"] == 4 and evidence["level"] == 0.95 and evidence["method"] == "dle"
    assert evidence["mae"] == est.metric("mae").as_dict()
    assert evidence["rmse"] == est.metric("rmse").as_dict()
    assert set(evidence) == {"rows", "level", "method", "mae", "rmse"}


def test_the_realised_loss_on_rows_worked_by_hand() -> None:
    assert realised_loss([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 2.0, 4.0]) == {
        "mae": 0.75,
        "rmse": math.sqrt(5 / 4),
    }
    with pytest.raises(EstimationError) as refused:
        realised_loss([1.0, 2.0], [1.0])
    assert str(refused.value) == "predictions and targets differ in length"
    with pytest.raises(EstimationError) as refused:
        realised_loss([], [])
    assert str(refused.value) == "predictions: no rows"
    with pytest.raises(EstimationError) as refused:
        realised_loss([1.0], [math.nan])
    assert str(refused.value) == "targets: scores must be finite numbers"


def test_a_calibration_estimates_classification_and_a_loss_model_regression() -> None:
    cal = Calibrator(np.array([0.0, 0.5]), np.array([0.2, 0.9]))
    scores: Any = [0.9, 0.1, 0.6, 0.4]
    cbpe = estimate_with(cal, scores, threshold=0.65)
    assert isinstance(cbpe, Estimate) and cbpe.threshold == 0.65
    assert cbpe.confusion["tp"] == pytest.approx(0.9)  # only 0.9 reaches the 0.65 cut
    default = estimate_with(cal, scores)
    assert isinstance(default, Estimate) and default.threshold == 0.5
    dle = estimate_with(two_bins(), [0.1, 0.2, 0.3, 1.5])
    assert isinstance(dle, LossEstimate)
    assert dle.metric("mae") == estimate_loss(two_bins(), [0.1, 0.2, 0.3, 1.5]).metric("mae")


def test_a_bin_of_two_rows_is_kept_with_its_sample_variance() -> None:
    """Two rows below the median edge: enough for a variance (2 rows is the least a bin may
    hold); |e| of 0 and 2 has sample variance 2."""
    predictions = [0.0, 0.0] + [1.0] * 198
    targets = [0.0, 2.0] + [1.0] * 198
    model = fit_loss_model(predictions, targets)
    assert model.edges.tolist() == [1.0]
    assert model.abs_mean.tolist() == [1.0, 0.0]
    assert model.abs_var.tolist() == [2.0, 0.0]


def test_a_nearly_empty_middle_bin_merges_into_the_bin_below_it() -> None:
    """400 rows, edges at the quartiles 0.75 and 2 (unique): one row between them, so the
    edge above that row goes and the row joins the bin below it."""
    predictions = [0.0] * 100 + [1.0] + [2.0] * 299
    model = fit_loss_model(predictions, predictions)
    assert model.edges.tolist() == [0.75]


def test_an_empty_first_bin_among_several_loses_only_its_own_edge() -> None:
    predictions = np.concatenate([np.zeros(250), np.linspace(1.0, 2.0, 150)])
    model = fit_loss_model(predictions, predictions)
    assert model.edges.tolist() == [float(np.quantile(predictions, 0.75))]
