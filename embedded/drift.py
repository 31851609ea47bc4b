"""The local data-drift monitor: production inputs of an endpoint against the training baseline.

Statistics per feature (the names Azure ML model monitoring uses):

- numeric: ``normalized_wasserstein`` (Wasserstein-1 distance between the baseline and the
  window, divided by the baseline's standard deviation, so 0.1 means "moved by a tenth of a
  standard deviation"; a constant baseline divides by 1), ``jensen_shannon`` (distance, base
  2, over the baseline's decile bins) and ``psi`` (population stability index over the same
  bins, proportions floored at 1e-4);
- categorical: ``jensen_shannon`` and ``psi`` over category proportions (categories of both
  sides; PSI floored as above) and ``chi2_pvalue`` (Pearson's chi-square test of homogeneity
  of the baseline and window counts; drift when the p-value is *below* the threshold).

The baseline is summarised once into a small JSON sketch (numeric: decile bin edges and
counts, up to 1,000 evenly spaced order statistics, mean and std; categorical: counts), so a
check never rescans the training data. A check reads the endpoint's logged inputs for a
window, computes every statistic vectorised with numpy/scipy and, on a breach, POSTs an Azure
Monitor common-alert-schema alert (log search V2 shape) to the service; ``Resolved`` follows
when a later window is clean. Default thresholds follow Azure ML: normalised Wasserstein 0.1
for numeric features, Jensen-Shannon 0.1 for categorical ones; other statistics are reported
and only breach when a threshold is given for them.

Sampling noise shrinks like 1/sqrt(n): with unchanged data, the normalised Wasserstein distance
of a 300-row window is about 0.07 on average (and exceeds 0.1 in some windows), of a 2,000-row
window about 0.03. Hence ``min_samples`` defaults to 1,000 rows: a smaller window gives no
verdict rather than a false alarm.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import math
import sys
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from embedded.endpoint import telemetry_path
from embedded.estimate_monitor import EstimateReport, EstimateSignal
from embedded.events import SUBSCRIPTION, WORKSPACE_ID, Poster, urllib_post, utc_iso
from embedded.files import read_json, write_json_atomic
from embedded.telemetry import TelemetryStore

log = logging.getLogger("embedded.drift")

SKETCH_SCHEMA = "autopilot.drift-baseline/v1"
BINS = 10
SAMPLE_POINTS = 1000
PSI_FLOOR = 1e-4
MISSING = "<missing>"
NUMERIC_METRICS = ("normalized_wasserstein", "jensen_shannon", "psi")
CATEGORICAL_METRICS = ("jensen_shannon", "psi", "chi2_pvalue")
LOWER_BREACHES = frozenset({"chi2_pvalue"})  # drift when the value is below the threshold

FloatArray = npt.NDArray[np.float64]


# -- baseline sketch ------------------------------------------------------------------------


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


# -- statistics -----------------------------------------------------------------------------


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


def categorical_statistics(sketch: CategoricalSketch, values: Sequence[str]) -> dict[str, float]:
    from scipy.stats import chi2_contingency

    names, counts = np.unique(np.asarray(values, dtype=object), return_counts=True)
    current_counts = {str(k): int(c) for k, c in zip(names, counts, strict=True)}
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


# -- alerts ---------------------------------------------------------------------------------


def iso_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H"
    if seconds % 60 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"


def alert_rule_id(rule: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/local/providers/"
        f"microsoft.insights/scheduledqueryrules/{rule}"
    )


def alert_payload(
    *,
    rule: str,
    model: str,
    endpoint: str,
    report: DriftReport,
    condition: Literal["Fired", "Resolved"],
    alert_id: str,
    fired_at: datetime,
    window_start: datetime,
    window_end: datetime,
    severity: str = "Sev2",
    resolved_at: datetime | None = None,
) -> dict[str, Any]:
    """An Azure Monitor common-alert-schema alert in the log search V2 shape.

    ``condition.allOf`` has one entry per (feature, statistic) with a threshold: the breached
    ones when Fired, all of them (now under their thresholds) when Resolved.
    """
    target = f"{WORKSPACE_ID}/onlineEndpoints/{endpoint}"
    all_of = []
    for feature in report.features:
        for metric, threshold in feature.thresholds.items():
            if metric not in feature.statistics:
                continue
            if condition == "Fired" and metric not in feature.breaches:
                continue
            all_of.append(
                {
                    "searchQuery": (
                        f"AutopilotEndpointInputs | where Endpoint == '{endpoint}' "
                        f"| summarize {metric}({feature.feature}) against baseline"
                    ),
                    "metricMeasureColumn": metric,
                    "targetResourceTypes": (
                        "['Microsoft.MachineLearningServices/workspaces/onlineEndpoints']"
                    ),
                    "operator": "LessThan" if metric in LOWER_BREACHES else "GreaterThan",
                    "threshold": str(threshold),
                    "timeAggregation": "Maximum",
                    "dimensions": [
                        {"name": "feature", "value": feature.feature},
                        {"name": "featureType", "value": feature.kind},
                        {"name": "statistic", "value": metric},
                    ],
                    "metricValue": round(feature.statistics[metric], 6),
                    "failingPeriods": {
                        "numberOfEvaluationPeriods": 1,
                        "minFailingPeriodsToAlert": 1,
                    },
                    "linkToSearchResultsUI": "",
                    "linkToFilteredSearchResultsUI": "",
                    "linkToSearchResultsAPI": "",
                    "linkToFilteredSearchResultsAPI": "",
                }
            )
    drifted = report.drifted_features
    essentials: dict[str, Any] = {
        "alertId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/"
        f"{alert_id}",
        "alertRule": rule,
        "alertRuleId": alert_rule_id(rule),
        "severity": severity,
        "signalType": "Log",
        "monitorCondition": condition,
        "monitoringService": "Log Analytics",
        "alertTargetIDs": [target],
        "configurationItems": [endpoint],
        "originAlertId": alert_id,
        "firedDateTime": utc_iso(fired_at),
        "description": (
            f"Data drift on model {model} (endpoint {endpoint}): "
            + (", ".join(drifted) if drifted else "no feature over its threshold")
        ),
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == "Resolved":
        essentials["resolvedDateTime"] = utc_iso(resolved_at or window_end)
    window = (window_end - window_start).total_seconds()
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": essentials,
            "alertContext": {
                "properties": {
                    "model": model,
                    "endpoint": endpoint,
                    "rows": str(report.n),
                    "evidence": json.dumps(report.to_json(), sort_keys=True),
                },
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": iso_duration(window),
                    "allOf": all_of,
                    "windowStartTime": utc_iso(window_start),
                    "windowEndTime": utc_iso(window_end),
                },
            },
            "customProperties": {
                "model": model,
                "endpoint": endpoint,
                "driftedFeatures": ",".join(drifted),
                "rows": str(report.n),
                "source": "autopilot-embedded-drift-monitor",
            },
        },
    }


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """The outcome of one check: the report and what was sent (if anything)."""

    report: DriftReport
    action: Literal["fired", "resolved", "none", "insufficient-data"]
    alert: dict[str, Any] | None = None
    delivered: bool | None = None
    status: int | None = None
    error: str = ""
    estimate: EstimateReport | None = None  # the label-free estimate of the same window


class DriftMonitor:
    """Checks an endpoint's logged inputs against a baseline and alerts like Azure Monitor.

    The alert is stateful: ``Fired`` once when a window drifts, ``Resolved`` once when a later
    window is clean (with the same alert id); nothing is sent in between. A delivery that fails
    leaves the state unchanged, so the next check sends it again. State lives in
    ``data_dir/drift/<rule>.json``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        model: str,
        endpoint: str,
        baseline: BaselineSketch,
        alert_url: str | None = None,
        key: str = "",
        thresholds: Thresholds | None = None,
        window_s: float = 3600.0,
        min_samples: int = 1000,
        deployment: str | None = None,
        severity: str = "Sev2",
        rule: str | None = None,
        post: Poster | None = None,
        timeout_s: float = 10.0,
        estimate: EstimateSignal | None = None,
    ) -> None:
        self.estimate = estimate
        self.data_dir = data_dir.resolve()
        self.model = model
        self.endpoint = endpoint
        self.baseline = baseline
        self.alert_url = alert_url
        self._key = key
        self.thresholds = thresholds or Thresholds()
        self.window_s = window_s
        self.min_samples = min_samples
        self.deployment = deployment
        self.severity = severity
        self.rule = rule or f"autopilot-drift-{model}"
        self._post = post or urllib_post
        self._timeout_s = timeout_s
        self._store = TelemetryStore(telemetry_path(self.data_dir))
        self._state_path = self.data_dir / "drift" / f"{self.rule}.json"
        self._lock = threading.Lock()

    def _state(self) -> dict[str, Any]:
        try:
            state = read_json(self._state_path)
        except (FileNotFoundError, ValueError):
            return {"condition": "Resolved"}
        return state if isinstance(state, dict) else {"condition": "Resolved"}

    def _save_state(self, state: dict[str, Any]) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._state_path, state)

    @property
    def firing(self) -> bool:
        return self._state().get("condition") == "Fired"

    def evaluate(self, start: datetime, end: datetime) -> DriftReport:
        rows = self._store.inputs(
            self.endpoint, start.timestamp(), end.timestamp(), deployment=self.deployment
        )
        columns = rows_to_columns(rows, self.baseline.features)
        return compare(self.baseline, columns, self.thresholds, min_samples=self.min_samples)

    def _send(self, payload: dict[str, Any]) -> tuple[bool, int | None, str]:
        if not self.alert_url:
            return True, None, ""
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "x-functions-key": self._key}
        try:
            status = self._post(self.alert_url, body, headers, self._timeout_s)
        except OSError as exc:
            log.warning("drift alert %s not delivered: %s", self.rule, exc)
            return False, None, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return True, status, ""
        log.warning("drift alert %s not delivered: HTTP %s", self.rule, status)
        return False, status, f"HTTP {status}"

    def check(self, end: datetime | None = None, start: datetime | None = None) -> DriftCheck:
        """Check the window ending at ``end`` (default now); fire or resolve as needed; with an
        ``estimate`` signal, report the label-free estimate of the same window too."""
        end = end or datetime.now(UTC)
        start = start or end - timedelta(seconds=self.window_s)
        result = self._check_drift(end, start)
        if self.estimate is None:
            return result
        return dataclasses.replace(result, estimate=self.estimate.evaluate(start, end))

    def _check_drift(self, end: datetime, start: datetime) -> DriftCheck:
        with self._lock:
            report = self.evaluate(start, end)
            if not report.enough_data:
                return DriftCheck(report, "insufficient-data")
            state = self._state()
            firing = state.get("condition") == "Fired"
            if report.drifted == firing:
                return DriftCheck(report, "none")
            if report.drifted:
                alert_id = str(uuid.uuid4())
                payload = alert_payload(
                    rule=self.rule,
                    model=self.model,
                    endpoint=self.endpoint,
                    report=report,
                    condition="Fired",
                    alert_id=alert_id,
                    fired_at=end,
                    window_start=start,
                    window_end=end,
                    severity=self.severity,
                )
                delivered, status, error = self._send(payload)
                if delivered:
                    self._save_state(
                        {"condition": "Fired", "alertId": alert_id, "firedDateTime": utc_iso(end)}
                    )
                return DriftCheck(report, "fired", payload, delivered, status, error)
            alert_id = str(state.get("alertId") or uuid.uuid4())
            fired_raw = state.get("firedDateTime")
            fired_at = (
                datetime.fromisoformat(fired_raw.replace("Z", "+00:00")) if fired_raw else end
            )
            payload = alert_payload(
                rule=self.rule,
                model=self.model,
                endpoint=self.endpoint,
                report=report,
                condition="Resolved",
                alert_id=alert_id,
                fired_at=fired_at,
                window_start=start,
                window_end=end,
                severity=self.severity,
                resolved_at=end,
            )
            delivered, status, error = self._send(payload)
            if delivered:
                self._save_state(
                    {"condition": "Resolved", "alertId": alert_id, "resolvedDateTime": utc_iso(end)}
                )
            return DriftCheck(report, "resolved", payload, delivered, status, error)

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Check every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                result = self.check()
                log.info(
                    "drift check %s: %s (%d rows, drifted: %s)",
                    self.rule,
                    result.action,
                    result.report.n,
                    ", ".join(result.report.drifted_features) or "none",
                )
                if result.estimate is not None:
                    log.info("drift check %s: %s", self.rule, result.estimate.summary())
            except Exception:
                log.exception("drift check %s failed", self.rule)
            stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local data-drift monitor.")
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("baseline", help="sketch training CSVs into a baseline JSON")
    base.add_argument("csv", type=Path, nargs="+", help="CSV files or folders of CSV files")
    base.add_argument("--out", type=Path, required=True)
    base.add_argument("--categorical", default="", help="comma-separated categorical columns")
    base.add_argument("--exclude", default="label", help="comma-separated columns to skip")
    watch = sub.add_parser("watch", help="check an endpoint's inputs periodically")
    watch.add_argument("--data-dir", type=Path, required=True, help="the platform's data folder")
    watch.add_argument("--model", required=True)
    watch.add_argument("--endpoint", required=True)
    watch.add_argument("--baseline", type=Path, required=True)
    watch.add_argument("--url", help="alert webhook, e.g. http://127.0.0.1:7071/api/alerts")
    watch.add_argument("--key", default="", help="x-functions-key for --url")
    watch.add_argument("--window", type=float, default=3600.0, help="seconds")
    watch.add_argument("--interval", type=float, default=60.0, help="seconds; 0 = check once")
    watch.add_argument("--min-samples", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from shared import log_escape

    log_escape.install()  # request and alert text cannot forge log lines
    if args.command == "baseline":
        paths: list[Path] = []
        for item in args.csv:
            paths.extend(sorted(item.glob("*.csv")) if item.is_dir() else [item])
        columns = read_csv_columns(paths)
        sketch = summarize(
            columns,
            categorical=[c for c in args.categorical.split(",") if c] or None,
            exclude=[c for c in args.exclude.split(",") if c],
            source=",".join(str(p) for p in paths),
        )
        sketch.save(args.out)
        print(f"baseline of {sketch.n} rows, {len(sketch.features)} features -> {args.out}")
        return 0
    monitor = DriftMonitor(
        args.data_dir,
        model=args.model,
        endpoint=args.endpoint,
        baseline=BaselineSketch.load(args.baseline),
        alert_url=args.url,
        key=args.key,
        window_s=args.window,
        min_samples=args.min_samples,
    )
    if args.interval <= 0:
        print(json.dumps(monitor.check().report.to_json(), indent=2))
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        monitor.run(args.interval, threading.Event())
    return 0


if __name__ == "__main__":
    sys.exit(main())
