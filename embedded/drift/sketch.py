"""The baseline sketch: the training data summarised once into a small JSON document.

Numeric features keep decile bin edges and counts, up to 1,000 evenly spaced order statistics,
mean and std; categorical features keep their counts. A check never rescans the training data.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from embedded.events import utc_iso
from embedded.files import read_json, write_json_atomic

SKETCH_SCHEMA = "autopilot.drift-baseline/v1"
BINS = 10
SAMPLE_POINTS = 1000
MISSING = "<missing>"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class NumericSketch:
    edges: tuple[float, ...]  # interior bin edges; bins are (-inf, e1], (e1, e2], ..., (ek, inf)
    counts: tuple[int, ...]  # len(edges) + 1
    sample: tuple[float, ...]  # evenly spaced order statistics (an equal-weight summary)
    mean: float
    std: float
    n: int
    kind: Literal["numeric"] = "numeric"

    def proportions(self) -> FloatArray:
        counts = np.asarray(self.counts, dtype=np.float64)
        out: FloatArray = counts / counts.sum()
        return out


@dataclass(frozen=True, slots=True)
class CategoricalSketch:
    counts: Mapping[str, int]
    n: int
    kind: Literal["categorical"] = "categorical"


FeatureSketch = NumericSketch | CategoricalSketch


@dataclass(frozen=True, slots=True)
class BaselineSketch:
    """The training data, summarised once. Saved as JSON, loaded for every check."""

    features: Mapping[str, FeatureSketch]
    n: int
    created_at: str = field(default_factory=utc_iso)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for name, sketch in self.features.items():
            if isinstance(sketch, NumericSketch):
                features[name] = {
                    "kind": "numeric",
                    "edges": list(sketch.edges),
                    "counts": list(sketch.counts),
                    "sample": list(sketch.sample),
                    "mean": sketch.mean,
                    "std": sketch.std,
                    "n": sketch.n,
                }
            else:
                features[name] = {
                    "kind": "categorical",
                    "counts": dict(sketch.counts),
                    "n": sketch.n,
                }
        return {
            "schema": SKETCH_SCHEMA,
            "n": self.n,
            "created_at": self.created_at,
            "source": self.source,
            "features": features,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaselineSketch:
        if data.get("schema") != SKETCH_SCHEMA:
            raise ValueError(f"not a drift baseline sketch (schema {data.get('schema')!r})")
        features: dict[str, FeatureSketch] = {}
        for name, spec in data["features"].items():
            if spec["kind"] == "numeric":
                features[name] = NumericSketch(
                    tuple(float(v) for v in spec["edges"]),
                    tuple(int(v) for v in spec["counts"]),
                    tuple(float(v) for v in spec["sample"]),
                    float(spec["mean"]),
                    float(spec["std"]),
                    int(spec["n"]),
                )
            else:
                counts = {str(k): int(v) for k, v in spec["counts"].items()}
                features[name] = CategoricalSketch(MappingProxyType(counts), int(spec["n"]))
        return cls(
            MappingProxyType(features),
            int(data["n"]),
            str(data.get("created_at", "")),
            str(data.get("source", "")),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> BaselineSketch:
        return cls.from_json(read_json(path))


def numeric_values(values: Iterable[Any]) -> tuple[FloatArray, int]:
    """Finite floats of ``values`` and how many were missing or not numbers."""
    raw = values if isinstance(values, np.ndarray | list | tuple) else list(values)
    out: FloatArray | None = None
    try:  # vectorised: numbers, numeric strings and None (-> nan) convert in one call
        converted = np.asarray(raw, dtype=float)
        if converted.ndim == 1:
            out = converted
    except (TypeError, ValueError):  # "", words, objects: one value at a time
        pass
    if out is None:
        out = np.empty(len(raw), dtype=float)
        for i, value in enumerate(raw):
            try:
                out[i] = float(value) if value is not None and value != "" else math.nan
            except (TypeError, ValueError):
                out[i] = math.nan
    finite = out[np.isfinite(out)]
    return finite, len(raw) - len(finite)


def categorical_values(values: Iterable[Any]) -> list[str]:
    return [MISSING if v is None or v == "" else str(v) for v in values]


def _is_numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return False
    finite, _ = numeric_values(present)
    return len(finite) == len(present)


def summarize_numeric(values: Iterable[Any], bins: int = BINS) -> NumericSketch:
    x, _ = numeric_values(values)
    if len(x) == 0:
        raise ValueError("a numeric feature needs at least one value")
    edges = np.unique(np.quantile(x, np.arange(1, bins) / bins))
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1)
    points = min(len(x), SAMPLE_POINTS)
    sample = np.quantile(x, (np.arange(points) + 0.5) / points, method="inverted_cdf")
    return NumericSketch(
        tuple(float(e) for e in edges),
        tuple(int(c) for c in counts),
        tuple(float(s) for s in sample),
        float(np.mean(x)),
        float(np.std(x)),
        len(x),
    )


def summarize_categorical(values: Iterable[Any]) -> CategoricalSketch:
    names, counts = np.unique(
        np.asarray(categorical_values(values), dtype=object), return_counts=True
    )
    table = {str(k): int(c) for k, c in zip(names, counts, strict=True)}
    return CategoricalSketch(MappingProxyType(table), int(counts.sum()))


def summarize(
    columns: Mapping[str, Sequence[Any]],
    *,
    categorical: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    bins: int = BINS,
    source: str = "",
) -> BaselineSketch:
    """Sketch the training data given as columns. ``categorical`` names the categorical
    features (default: those whose values are not all numbers); ``exclude`` skips columns
    such as the label."""
    skip = set(exclude)
    chosen = set(categorical) if categorical is not None else None
    features: dict[str, FeatureSketch] = {}
    n = 0
    for name, values in columns.items():
        if name in skip:
            continue
        values = list(values)
        n = max(n, len(values))
        is_categorical = name in chosen if chosen is not None else not _is_numeric(values)
        features[name] = (
            summarize_categorical(values) if is_categorical else summarize_numeric(values, bins)
        )
    return BaselineSketch(MappingProxyType(features), n, source=source)


def read_csv_columns(paths: Iterable[Path]) -> dict[str, list[str]]:
    columns: dict[str, list[str]] = {}
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    columns.setdefault(key, []).append(value)
    return columns


def rows_to_columns(
    rows: Iterable[Mapping[str, Any]], names: Iterable[str]
) -> dict[str, list[Any]]:
    wanted = list(names)
    columns: dict[str, list[Any]] = {name: [] for name in wanted}
    for row in rows:
        for name in wanted:
            columns[name].append(row.get(name))
    return columns
