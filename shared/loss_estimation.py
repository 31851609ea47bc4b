"""Label-free performance estimation for regression models: direct loss estimation (DLE).

A loss model is fitted on the reference (the champion's evaluation: targets and predictions):
the expected absolute and squared error as a function of the prediction, piecewise constant
over quantile bins of the prediction (at least ``MIN_BIN_ROWS`` reference rows per bin). On
unlabeled production predictions, the estimated MAE is the mean of each row's expected absolute
error and the estimated RMSE the square root of the mean expected squared error.

NannyML's DLE fits a gradient-boosted model on the features and the prediction; the scored-input
log holds predictions only, so this loss model sees the prediction alone. It tracks losses that
move with where the predictions lie (covariate shift seen through the model's output); like
CBPE it cannot see a concept change.

Each estimate has an interval for sampling error: each row's loss varies around its bin's mean
with its bin's variance on the reference; the window's mean loss then has variance
``sum(var_i) / n**2`` (normal approximation; for RMSE the interval of the mean squared error,
square-rooted). It does not cover the error of the bin means themselves.

Pure numpy, vectorised; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shared.estimation import (
    Calibrator,
    Estimate,
    EstimationError,
    FloatArray,
    Interval,
    Z,
    _finite,
    estimate,
)

LossMetric = Literal["mae", "rmse"]
LOSS_METRICS: tuple[LossMetric, ...] = ("mae", "rmse")
MIN_BIN_ROWS = 100
MAX_BINS = 200


@dataclass(frozen=True, slots=True)
class LossModel:
    """Expected |error| and error**2 (and their variances) per bin of the prediction."""

    edges: FloatArray  # inner bin edges, increasing (bins - 1 of them)
    abs_mean: FloatArray
    abs_var: FloatArray
    sq_mean: FloatArray
    sq_var: FloatArray

    def bins(self, predictions: FloatArray) -> Any:
        return np.searchsorted(self.edges, predictions, side="right")


def fit_loss_model(predictions: Any, targets: Any) -> LossModel:
    """Quantile bins of the reference predictions, each with its rows' loss moments."""
    p = _finite("reference predictions", predictions)
    y = _finite("reference targets", targets)
    if p.shape != y.shape:
        raise EstimationError("reference predictions and targets differ in length")
    if p.size < 2 * 30:
        raise EstimationError(f"reference: {p.size} rows; at least 60 needed for a loss model")
    count = int(min(MAX_BINS, max(1, p.size // MIN_BIN_ROWS)))
    edges = np.unique(np.quantile(p, np.linspace(0, 1, count + 1)[1:-1]))
    while True:  # ties piled onto an edge can leave a bin (nearly) empty: merge it
        index = np.searchsorted(edges, p, side="right")
        bins = edges.size + 1
        rows = np.bincount(index, minlength=bins).astype(np.float64)
        small = np.flatnonzero(rows < 2)
        if small.size == 0 or edges.size == 0:
            break
        edges = np.delete(edges, min(int(small[0]), edges.size - 1))
    err = np.abs(p - y)
    sq = err**2

    def moments(values: FloatArray) -> tuple[FloatArray, FloatArray]:
        total = np.bincount(index, values, minlength=bins)
        total_sq = np.bincount(index, values**2, minlength=bins)
        mean = total / rows
        var = np.maximum(total_sq / rows - mean**2, 0.0) * rows / np.maximum(rows - 1, 1)
        return mean, var

    abs_mean, abs_var = moments(err)
    sq_mean, sq_var = moments(sq)
    return LossModel(edges, abs_mean, abs_var, sq_mean, sq_var)


@dataclass(frozen=True, slots=True)
class LossEstimate:
    """Expected MAE and RMSE on ``rows`` unlabeled rows, with intervals at ``level``."""

    rows: int
    level: float
    metrics: dict[str, Interval]

    def metric(self, name: str) -> Interval:
        return self.metrics[name]

    def evidence(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "level": self.level,
            "method": "dle",
            **{name: interval.as_dict() for name, interval in self.metrics.items()},
        }


def estimate_loss(model: LossModel, predictions: Any, *, level: float = 0.95) -> LossEstimate:
    """Estimated MAE and RMSE of unlabeled ``predictions``, with intervals."""
    if level not in Z:
        raise EstimationError(f"level must be one of {sorted(Z)}")
    p = _finite("production predictions", predictions)
    index = model.bins(p)
    counts = np.bincount(index, minlength=model.abs_mean.size).astype(np.float64)
    n = float(p.size)
    z = Z[level]
    mae = float(counts @ model.abs_mean) / n
    mae_se = math.sqrt(float(counts @ model.abs_var)) / n
    mse = float(counts @ model.sq_mean) / n
    mse_se = math.sqrt(float(counts @ model.sq_var)) / n
    rmse = math.sqrt(mse)
    metrics = {
        "mae": Interval(mae, max(0.0, mae - z * mae_se), mae + z * mae_se),
        "rmse": Interval(rmse, math.sqrt(max(0.0, mse - z * mse_se)), math.sqrt(mse + z * mse_se)),
    }
    return LossEstimate(p.size, level, metrics)


def realised_loss(predictions: Any, targets: Any) -> dict[str, float]:
    """MAE and RMSE with known targets (for ground truth and tests)."""
    p = _finite("predictions", predictions)
    y = _finite("targets", targets)
    if p.shape != y.shape:
        raise EstimationError("predictions and targets differ in length")
    err = p - y
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}


def estimate_with(
    fitted: Calibrator | LossModel, scores: Any, *, threshold: float = 0.5
) -> Estimate | LossEstimate:
    """CBPE with a calibration, DLE with a loss model (``threshold``: CBPE's decision cut)."""
    if isinstance(fitted, Calibrator):
        return estimate(fitted, scores, threshold=threshold)
    return estimate_loss(fitted, scores)
