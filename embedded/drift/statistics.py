"""The drift statistics of a window against the baseline sketch, and the report they make."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from embedded.drift.sketch import (
    MISSING,
    BaselineSketch,
    CategoricalSketch,
    FloatArray,
    NumericSketch,
    categorical_values,
    numeric_values,
)

PSI_FLOOR = 1e-4
NUMERIC_METRICS = ("normalized_wasserstein", "jensen_shannon", "psi")
CATEGORICAL_METRICS = ("jensen_shannon", "psi", "chi2_pvalue")
LOWER_BREACHES = frozenset({"chi2_pvalue"})  # drift when the value is below the threshold


def psi(expected: FloatArray, actual: FloatArray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of two proportion vectors (floored to avoid log 0)."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(p: FloatArray, q: FloatArray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two proportion vectors."""
    from scipy.spatial.distance import jensenshannon

    value = float(jensenshannon(p, q, base=2.0))
    return 0.0 if math.isnan(value) else value


def numeric_statistics(sketch: NumericSketch, x: FloatArray) -> dict[str, float]:
    from scipy.stats import wasserstein_distance

    edges = np.asarray(sketch.edges, dtype=float)
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    current = counts / counts.sum()
    reference = sketch.proportions()
    distance = float(wasserstein_distance(np.asarray(sketch.sample, dtype=float), x))
    scale = sketch.std if sketch.std > 0 else 1.0
    return {
        "normalized_wasserstein": distance / scale,
        "wasserstein": distance,
        "jensen_shannon": jensen_shannon(reference, current),
        "psi": psi(reference, current),
        "mean": float(np.mean(x)),
        "baseline_mean": sketch.mean,
    }


def numeric_statistics_from_summary(
    sketch: NumericSketch,
    bin_counts: npt.NDArray[np.int64],
    values: FloatArray,
    weights: FloatArray,
    mean: float,
) -> dict[str, float]:
    """``numeric_statistics`` of a window known by its counts in the baseline bins, a
    weighted quantile summary of its values and its mean (``embedded.drift.stream``)."""
    from scipy.stats import wasserstein_distance

    current = bin_counts / bin_counts.sum()
    reference = sketch.proportions()
    distance = float(
        wasserstein_distance(np.asarray(sketch.sample, dtype=float), values, None, weights)
    )
    scale = sketch.std if sketch.std > 0 else 1.0
    return {
        "normalized_wasserstein": distance / scale,
        "wasserstein": distance,
        "jensen_shannon": jensen_shannon(reference, current),
        "psi": psi(reference, current),
        "mean": mean,
        "baseline_mean": sketch.mean,
    }


def categorical_statistics(sketch: CategoricalSketch, values: Sequence[str]) -> dict[str, float]:
    names, counts = np.unique(np.asarray(values, dtype=object), return_counts=True)
    current_counts = {str(k): int(c) for k, c in zip(names, counts, strict=True)}
    return categorical_statistics_from_counts(sketch, current_counts)


def categorical_statistics_from_counts(
    sketch: CategoricalSketch, current_counts: Mapping[str, int]
) -> dict[str, float]:
    """The categorical statistics of a window given as its category counts."""
    from scipy.stats import chi2_contingency

    categories = sorted(set(sketch.counts) | set(current_counts))
    ref = np.array([sketch.counts.get(c, 0) for c in categories], dtype=float)
    cur = np.array([current_counts.get(c, 0) for c in categories], dtype=float)
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    p_value = 1.0 if table.shape[1] < 2 else float(chi2_contingency(table).pvalue)
    return {
        "jensen_shannon": jensen_shannon(ref / ref.sum(), cur / cur.sum()),
        "psi": psi(ref / ref.sum(), cur / cur.sum()),
        "chi2_pvalue": p_value,
        "new_categories": float(sum(1 for c in current_counts if c not in sketch.counts)),
    }


def _default_numeric() -> Mapping[str, float]:
    return MappingProxyType({"normalized_wasserstein": 0.1})


def _default_categorical() -> Mapping[str, float]:
    return MappingProxyType({"jensen_shannon": 0.1})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per statistic, the value beyond which a feature drifts (below, for ``chi2_pvalue``).
    Statistics without a threshold are reported but never breach."""

    numeric: Mapping[str, float] = field(default_factory=_default_numeric)
    categorical: Mapping[str, float] = field(default_factory=_default_categorical)

    def for_kind(self, kind: str) -> Mapping[str, float]:
        return self.numeric if kind == "numeric" else self.categorical

    @staticmethod
    def breached(metric: str, value: float, threshold: float) -> bool:
        return value < threshold if metric in LOWER_BREACHES else value > threshold


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    feature: str
    kind: str
    n: int
    missing: int
    statistics: Mapping[str, float]
    thresholds: Mapping[str, float]
    breaches: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "n": self.n,
            "missing": self.missing,
            "statistics": {k: round(v, 6) for k, v in self.statistics.items()},
            "thresholds": dict(self.thresholds),
            "breaches": list(self.breaches),
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    n: int
    min_samples: int
    features: tuple[FeatureDrift, ...]

    @property
    def enough_data(self) -> bool:
        return self.n >= self.min_samples

    @property
    def drifted(self) -> bool:
        return self.enough_data and any(f.breaches for f in self.features)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.breaches]

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "min_samples": self.min_samples,
            "enough_data": self.enough_data,
            "drifted": self.drifted,
            "features": [f.to_json() for f in self.features],
        }


def compare(
    baseline: BaselineSketch,
    columns: Mapping[str, Sequence[Any]],
    thresholds: Thresholds | None = None,
    *,
    min_samples: int = 1,
) -> DriftReport:
    """Every statistic of every baseline feature for the window given as ``columns``."""
    thresholds = thresholds or Thresholds()
    features: list[FeatureDrift] = []
    n = max((len(v) for v in columns.values()), default=0)
    for name, sketch in baseline.features.items():
        raw = list(columns.get(name, ()))
        limits = thresholds.for_kind(sketch.kind)
        if isinstance(sketch, NumericSketch):
            x, missing = numeric_values(raw)
            stats = numeric_statistics(sketch, x) if len(x) else {}
            count = len(x)
        else:
            values = categorical_values(raw)
            stats = categorical_statistics(sketch, values) if values else {}
            count, missing = len(values), values.count(MISSING)
        breaches = tuple(
            metric
            for metric, limit in limits.items()
            if metric in stats and Thresholds.breached(metric, stats[metric], limit)
        )
        features.append(
            FeatureDrift(name, sketch.kind, count, missing, stats, dict(limits), breaches)
        )
    return DriftReport(n, min_samples, tuple(features))
