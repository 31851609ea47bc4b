"""Direct loss estimation (DLE) against synthetic regression data whose targets are known.

The task: ``x ~ N(shift, spread)``, target ``y = 2x + noise`` with noise sd ``0.2 + 0.6|x|``
(heteroscedastic), and a biased model ``2x + 0.25x**2``; the prediction identifies x, so under
covariate shift the loss given the prediction holds and DLE should track the realised loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.estimation import EstimationError
from shared.loss_estimation import estimate_loss, fit_loss_model, realised_loss

TOLERANCE = 0.05  # relative: |estimated - realised| / realised, per window
WINDOW_ROWS = 3000


def rows(rng: np.random.Generator, n: int, shift: float, spread: float) -> tuple[Any, Any]:
    """Predictions and targets of ``n`` rows."""
    x = rng.normal(shift, spread, n)
    targets = 2 * x + rng.normal(0, 1, n) * (0.2 + 0.6 * np.abs(x))
    return 2 * x + 0.25 * x**2, targets


@pytest.fixture(scope="module")
def model() -> Any:
    return fit_loss_model(*rows(np.random.default_rng(1), 20_000, 0.0, 1.0))


def test_the_estimate_tracks_realised_mae_and_rmse_over_shifted_windows(model: Any) -> None:
    rng = np.random.default_rng(5)
    covered = {"mae": 0, "rmse": 0}
    errors: dict[str, list[float]] = {"mae": [], "rmse": []}
    realised_values = []
    # inside the reference's range (beyond it the edge bins stand in: see the next test)
    for shift, spread in zip(rng.uniform(-0.8, 0.8, 20), rng.uniform(0.3, 1.2, 20), strict=True):
        predictions, targets = rows(rng, WINDOW_ROWS, float(shift), float(spread))
        est = estimate_loss(model, predictions)
        truth = realised_loss(predictions, targets)
        realised_values.append(truth["mae"])
        for name in errors:
            interval = est.metric(name)
            errors[name].append(abs(interval.value - truth[name]) / truth[name])
            covered[name] += interval.low <= truth[name] <= interval.high
    assert max(realised_values) > 2 * min(realised_values)  # the windows really differ
    for name in errors:
        assert max(errors[name]) < TOLERANCE, (name, errors[name])
        assert covered[name] >= 16, (name, covered)  # 95% intervals: at least 16 of 20


def test_beyond_the_reference_the_edge_bins_underestimate_a_loss_that_keeps_growing(
    model: Any,
) -> None:
    """A stated limit: with many rows past the reference's tails, the estimate comes out low."""
    predictions, targets = rows(np.random.default_rng(5), 20_000, -1.1, 1.2)
    est, truth = (
        estimate_loss(model, predictions).metric("rmse").value,
        realised_loss(predictions, targets)["rmse"],
    )
    assert 0.85 * truth < est < truth


def test_a_shift_into_the_noisy_region_raises_the_estimate(model: Any) -> None:
    rng = np.random.default_rng(9)
    calm = estimate_loss(model, rows(rng, WINDOW_ROWS, 0.0, 0.3)[0]).metric("mae").value
    noisy = estimate_loss(model, rows(rng, WINDOW_ROWS, 1.5, 0.3)[0]).metric("mae").value
    assert noisy > 2 * calm


def test_intervals_narrow_with_more_rows(model: Any) -> None:
    rng = np.random.default_rng(3)
    small = estimate_loss(model, rows(rng, 300, 0.5, 1.0)[0]).metric("rmse")
    large = estimate_loss(model, rows(rng, 30_000, 0.5, 1.0)[0]).metric("rmse")
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert small.low <= small.value <= small.high


def test_tied_reference_predictions_still_fit() -> None:
    rng = np.random.default_rng(2)
    predictions = np.round(rng.normal(0, 1, 5000))  # a handful of distinct values
    model = fit_loss_model(predictions, predictions + rng.normal(0, 1, 5000))
    assert np.isfinite(model.abs_mean).all() and np.isfinite(model.sq_var).all()
    value = estimate_loss(model, np.round(rng.normal(0, 1, 2000))).metric("mae").value
    assert 0.7 < value < 0.9  # E|N(0, 1)| = 0.80


@pytest.mark.parametrize(
    ("predictions", "targets", "message"),
    [
        ([1.0] * 10, [1.0] * 10, "at least 60"),
        ([1.0, float("nan")] * 40, [1.0] * 80, "finite"),
        ([1.0] * 80, [1.0] * 70, "differ in length"),
    ],
)
def test_a_reference_that_cannot_fit_says_why(
    predictions: list[float], targets: list[float], message: str
) -> None:
    with pytest.raises(EstimationError, match=message):
        fit_loss_model(predictions, targets)
