"""Per-example metrics, paired bootstrap confidence intervals and slice metrics for the gate.

Champion and challenger were scored on the same held-out rows, so the bootstrap resamples row
indices once per replicate and scores both models on the same resample (paired): the interval
is of the *difference*, which is much tighter than comparing two separate intervals.
Vectorised with numpy: B replicates x n rows at once. Imported only when the gate needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
EPS = 1e-15


def _auc(labels: Array, scores: Array) -> Array:
    """ROC AUC per row of (B, n) arrays via the rank-sum (Mann-Whitney U) formula, ties averaged."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=-1)
    n = scores.shape[-1]
    positives = labels.sum(axis=-1)
    negatives = n - positives
    rank_sum = (ranks * labels).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)
    return np.asarray(auc, dtype=np.float64)


def _accuracy(labels: Array, scores: Array) -> Array:
    return np.asarray(((scores >= 0.5) == (labels >= 0.5)).mean(axis=-1), dtype=np.float64)


def _log_loss(labels: Array, scores: Array) -> Array:
    p = np.clip(scores, EPS, 1 - EPS)
    return np.asarray(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(axis=-1))


def _brier(labels: Array, scores: Array) -> Array:
    return np.asarray(((scores - labels) ** 2).mean(axis=-1), dtype=np.float64)


def _rmse(labels: Array, preds: Array) -> Array:
    return np.asarray(np.sqrt(((preds - labels) ** 2).mean(axis=-1)), dtype=np.float64)


def _mae(labels: Array, preds: Array) -> Array:
    return np.asarray(np.abs(preds - labels).mean(axis=-1), dtype=np.float64)


METRICS: dict[str, Callable[[Array, Array], Array]] = {
    "auc": _auc,
    "roc_auc": _auc,
    "accuracy": _accuracy,
    "log_loss": _log_loss,
    "brier": _brier,
    "rmse": _rmse,
    "mae": _mae,
}


def metric(name: str, labels: Array, scores: Array) -> float:
    fn = METRICS[name]
    return float(fn(labels[None, :], scores[None, :])[0])


@dataclass(frozen=True, slots=True)
class Bootstrap:
    estimate: float  # challenger - champion, direction-adjusted (positive = better)
    low: float
    high: float
    level: float
    samples: int
    seed: int
    histogram: tuple[tuple[float, ...], tuple[int, ...]]  # bin edges, counts (for plots)


def _histogram(diffs: Array) -> tuple[NDArray[np.int64], Array]:
    """30 bins over the differences' range; differences equal up to rounding (a range of a few
    ulps numpy cannot cut into 30 finite bins) get numpy's unit-wide range for one value."""
    try:
        return np.histogram(diffs, bins=30)
    except ValueError:
        middle = (float(diffs.min()) + float(diffs.max())) / 2
        return np.histogram(diffs, bins=30, range=(middle - 0.5, middle + 0.5))


def paired_bootstrap(
    name: str,
    labels: Array,
    challenger: Array,
    champion: Array,
    *,
    sign: float,
    level: float,
    samples: int,
    seed: int,
    chunk: int = 250,
) -> Bootstrap:
    """Percentile CI of sign*(metric(challenger) - metric(champion)) over paired resamples."""
    fn = METRICS[name]
    n = labels.shape[0]
    rng = np.random.default_rng(seed)
    diffs = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(size, n))
        y = labels[idx]
        diffs[start : start + size] = sign * (fn(y, challenger[idx]) - fn(y, champion[idx]))
    diffs = diffs[np.isfinite(diffs)]
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha]) if diffs.size else (np.nan, np.nan)
    counts, edges = _histogram(diffs) if diffs.size else (np.array([]), np.array([]))
    estimate = sign * (metric(name, labels, challenger) - metric(name, labels, champion))
    return Bootstrap(
        estimate,
        float(low),
        float(high),
        level,
        int(diffs.size),
        seed,
        (tuple(float(e) for e in edges), tuple(int(c) for c in counts)),
    )
