"""Label-free performance estimation for binary classifiers (CBPE).

Confidence-based performance estimation: fit an isotonic calibration (pool-adjacent-violators)
of the model's scores on a reference set with known labels, then, on unlabeled production
scores, take the calibrated probability ``p_i`` of each row as the chance its label is 1. The
expected confusion matrix follows (``TP = sum p_i [s_i >= t]`` ...), and with it accuracy and
F1; the expected ROC AUC is the area under the curve whose cumulative weights are ``p`` and
``1 - p`` in score order.

Each estimate has an interval for sampling error: the spread of the realised metric when each
label is drawn as Bernoulli(``p_i``), from ``simulations`` draws over at most ``max_rows``
rows (scaled by sqrt(rows used / rows) when subsampled). It assumes the calibration holds
under the shift (covariate shift only); it does not cover calibration error.

Pure numpy, vectorised; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Metric = Literal["accuracy", "f1", "auc"]
METRICS: tuple[Metric, ...] = ("accuracy", "f1", "auc")
Z = {0.9: 1.6448536, 0.95: 1.9599640, 0.99: 2.5758293}

FloatArray = NDArray[np.float64]


class EstimationError(ValueError):
    """The data cannot support an estimate (empty, one class only, non-finite scores)."""


@dataclass(frozen=True, slots=True)
class Calibrator:
    """Isotonic map from score to P(label = 1): a non-decreasing step function."""

    knots: FloatArray  # increasing scores (block starts)
    values: FloatArray  # calibrated probability from each knot on

    def __call__(self, scores: FloatArray) -> FloatArray:
        index = np.searchsorted(self.knots, scores, side="right") - 1  # at most the last knot
        probs: FloatArray = self.values[np.maximum(index, 0)]
        return probs


def _finite(name: str, values: Any) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise EstimationError(f"{name}: no rows")
    if not np.isfinite(array).all():
        raise EstimationError(f"{name}: scores must be finite numbers")
    return array


def fit_isotonic(scores: Any, labels: Any) -> Calibrator:
    """Pool-adjacent-violators on the reference set (ties in score pooled first)."""
    s = _finite("reference scores", scores)
    y = _finite("reference labels", labels)
    if s.shape != y.shape:
        raise EstimationError("reference scores and labels differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise EstimationError("reference labels must be 0 or 1")
    if y.min() == y.max():
        raise EstimationError("reference labels have one class only; cannot calibrate")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    knots, start = np.unique(s, return_index=True)
    counts = np.diff(np.append(start, len(s))).astype(np.float64)
    sums = np.add.reduceat(y, start)
    # PAV over the tie groups: a stack of blocks (mean, weight, first knot index).
    means: list[float] = []
    weights: list[float] = []
    firsts: list[int] = []
    for i, (total, n) in enumerate(zip(sums.tolist(), counts.tolist(), strict=True)):
        mean, weight, first = total / n, n, i
        while means and means[-1] >= mean:
            w = weights.pop()
            mean = (means.pop() * w + mean * weight) / (w + weight)
            weight += w
            first = firsts.pop()
        means.append(mean)
        weights.append(weight)
        firsts.append(first)
    return Calibrator(knots[np.asarray(firsts)], np.asarray(means, dtype=np.float64))


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {
            "value": round(self.value, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """Expected performance on ``rows`` unlabeled rows, with intervals at ``level``."""

    rows: int
    level: float
    threshold: float
    confusion: dict[str, float]  # expected tp, fp, fn, tn
    metrics: dict[str, Interval]

    def metric(self, name: str) -> Interval:
        return self.metrics[name]

    def evidence(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "level": self.level,
            "threshold": self.threshold,
            "confusion": {k: round(v, 3) for k, v in self.confusion.items()},
            **{name: interval.as_dict() for name, interval in self.metrics.items()},
        }


def _average_ranks(scores: FloatArray) -> FloatArray:
    """1-based ranks with ties given their average rank (as Mann-Whitney needs)."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    _, start, counts = np.unique(ordered, return_index=True, return_counts=True)
    average = start + (counts + 1) / 2.0
    ranks = np.empty_like(scores)
    ranks[order] = np.repeat(average, counts)
    return ranks


def expected_auc(scores: FloatArray, probs: FloatArray, *, ascending: bool = False) -> float:
    """Area under the ROC curve built from expected positives ``p`` and negatives ``1 - p``.

    Mann-Whitney form over tie groups: each group's expected positives outrank the expected
    negatives of every lower group and half of its own. ``ascending=True``: already sorted.
    """
    total_pos = float(probs.sum())
    total_neg = probs.size - total_pos
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    if not ascending:
        order = np.argsort(scores)
        scores, probs = scores[order], probs[order]
    starts = np.flatnonzero(np.diff(scores)) + 1
    if starts.size == scores.size - 1:  # no ties: every row is its own group
        pos, neg = probs, 1.0 - probs
    else:
        starts = np.concatenate(([0], starts))
        pos = np.add.reduceat(probs, starts)
        neg = np.diff(np.append(starts, scores.size)) - pos
    below = np.cumsum(neg) - neg
    return float(np.dot(pos, below + 0.5 * neg) / (total_pos * total_neg))


def _simulated(
    scores: FloatArray, probs: FloatArray, threshold: float, simulations: int, seed: int
) -> dict[str, FloatArray]:
    """Realised metrics for ``simulations`` label draws y ~ Bernoulli(p): shape (simulations,)."""
    rng = np.random.default_rng(seed)
    labels = rng.random((simulations, probs.size)) < probs  # (B, n) bool
    predicted = scores >= threshold
    tp = (labels & predicted).sum(axis=1).astype(np.float64)
    positives = labels.sum(axis=1).astype(np.float64)
    fp = predicted.sum() - tp
    fn = positives - tp
    n = float(probs.size)
    tn = n - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        ranks = _average_ranks(scores)
        negatives = n - positives
        rank_sum = labels.astype(np.float64) @ ranks
        auc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    return {"accuracy": (tp + tn) / n, "f1": f1, "auc": auc}


def estimate(
    calibrator: Calibrator,
    scores: Any,
    *,
    threshold: float = 0.5,
    level: float = 0.95,
    simulations: int = 100,
    max_rows: int = 5_000,
    seed: int = 0,
) -> Estimate:
    """Expected confusion matrix, accuracy, F1 and AUC of unlabeled ``scores``, with intervals."""
    if level not in Z:
        raise EstimationError(f"level must be one of {sorted(Z)}")
    s = np.sort(_finite("production scores", scores))  # one sort serves every metric
    p = np.clip(calibrator(s), 0.0, 1.0)
    cut = int(np.searchsorted(s, threshold, side="left"))  # rows from here predict 1
    tp = float(p[cut:].sum())
    fn = float(p[:cut].sum())
    fp = (s.size - cut) - tp
    tn = cut - fn
    n = s.size
    points = {
        "accuracy": (tp + tn) / n,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else float("nan"),
        "auc": expected_auc(s, p, ascending=True),
    }
    rng = np.random.default_rng(seed)
    use = rng.integers(0, n, size=max_rows) if n > max_rows else np.arange(n)
    draws = _simulated(s[use], p[use], threshold, simulations, seed + 1)
    scale = float(np.sqrt(use.size / n))
    z = Z[level]
    metrics: dict[str, Interval] = {}
    for name in METRICS:
        spread = float(np.nanstd(draws[name])) * scale if np.isfinite(draws[name]).any() else 0.0
        value = points[name]
        metrics[name] = Interval(value, value - z * spread, value + z * spread)
    confusion = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return Estimate(n, level, threshold, confusion, metrics)


def realised(scores: Any, labels: Any, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, F1 and AUC with known labels (for ground truth and tests)."""
    s = _finite("scores", scores)
    y = _finite("labels", labels).astype(bool)
    predicted = s >= threshold
    tp = float((predicted & y).sum())
    fp = float((predicted & ~y).sum())
    fn = float((~predicted & y).sum())
    positives, negatives = float(y.sum()), float((~y).sum())
    ranks = _average_ranks(s)
    auc = (
        (ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives)
        if positives and negatives
        else float("nan")
    )
    return {
        "accuracy": float((predicted == y).mean()),
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else float("nan"),
        "auc": float(auc),
    }
