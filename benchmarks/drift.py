"""Drift computation: ``embedded.drift`` against Evidently's data drift report, same data.

Data: ``ref_rows`` reference rows and ``cur_rows`` current rows of 20 numeric features (normal,
log-normal, uniform, exponential, gamma, Poisson counts, bimodal; five shifted by a quarter of
a standard deviation and three rescaled in the current window) and 5 categorical ones (3 to 30
categories, Zipf-like; one re-weighted, one with a category the reference never saw).

``embedded.drift`` summarises the reference once (``summarize`` -> ``BaselineSketch``) and
then checks each window against the sketch (``compare``); the sketch is reused by every check.
Evidently (0.7, ``Report`` + ``ValueDrift``) reads the full reference on every run. Both are
timed per check; the sketch's one-time cost is reported separately. Inputs are prepared
before timing in each tool's natural form: columns of Python values for ``compare`` (what the
monitor reads from its telemetry), a pandas DataFrame for Evidently.

Where the two compute the same statistic the values are compared:

- normalised Wasserstein: Evidently computes W1(reference, current) / std(reference) on the
  full reference; ``embedded.drift`` the same formula with the sketch's 1,000 evenly spaced
  order statistics standing in for the reference. The exact formula (full reference) is also
  computed here, to separate "same definition" (must agree within 1e-6) from "sketch error";
- Jensen-Shannon and PSI, categorical: same categories, same proportions; Evidently's JS uses
  the natural logarithm and ours base 2 (distance_2 = distance_e / sqrt(ln 2)); Evidently's
  PSI replaces empty categories by a small value where ours floors every proportion at 1e-4;
- Jensen-Shannon and PSI, numeric: different bins by design (Evidently: Sturges equal-width
  bins over reference+current; ``embedded.drift``: the reference's deciles, fixed in the
  sketch). The formulas are checked on Evidently's own bins; the values themselves differ;
- chi-square: Evidently's ``chisquare`` is a goodness-of-fit test of the current counts against
  the reference proportions, ours a test of homogeneity of the two count vectors (2 x k
  contingency table): both p-values are reported, they are not expected to agree.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import math
import os
import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import single_core, summary
from embedded.drift import BaselineSketch, DriftReport, Thresholds, compare, jensen_shannon, psi
from embedded.drift import summarize as summarize_baseline

NUMERIC = 20
CATEGORICAL = 5
REF_ROWS, CUR_ROWS = 1_000_000, 200_000
QUICK_REF_ROWS, QUICK_CUR_ROWS = 20_000, 5_000
TARGET_RATIO = 10.0
TOLERANCE = 1e-6
JS_E_TO_2 = 1.0 / math.sqrt(math.log(2.0))  # Jensen-Shannon distance: natural log -> base 2
CATEGORY_COUNTS = (3, 5, 8, 12, 30)

Array = npt.NDArray[Any]


# -- data ---------------------------------------------------------------------------------------


def _numeric(rng: np.random.Generator, i: int, n: int, *, drift: bool) -> Array:
    kind = i % 7
    shift = 0.25 if drift and i < 5 else 0.0  # in units of the feature's std
    scale = 1.3 if drift and 5 <= i < 8 else 1.0
    if kind == 0:
        x = rng.normal(10.0 * i, 1.0 + i % 3, n)
    elif kind == 1:
        x = rng.lognormal(1.0, 0.5, n)
    elif kind == 2:
        x = rng.uniform(-5.0, 5.0, n)
    elif kind == 3:
        x = rng.exponential(2.0, n)
    elif kind == 4:
        x = rng.gamma(2.0, 3.0, n)
    elif kind == 5:
        x = rng.poisson(30.0, n).astype(np.float64)
    else:
        x = np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(3.0, 1.0, n))
    if scale != 1.0:
        x = x.mean() + (x - x.mean()) * scale
    if shift:
        x = x + shift * float(np.std(x))
    return np.asarray(x, dtype=np.float64)


def _categorical(rng: np.random.Generator, j: int, n: int, *, drift: bool) -> Array:
    k = CATEGORY_COUNTS[j % len(CATEGORY_COUNTS)]
    names = [f"c{j}_{c:02d}" for c in range(k)]
    weights = 1.0 / np.arange(1, k + 1) ** 1.1
    if drift and j == 0:
        weights = weights[::-1].copy()  # re-weighted: rare categories become common
    if drift and j == 1:
        names.append(f"c{j}_new")  # a category the reference never saw: 2% of the window
        weights = np.append(weights / weights.sum() * 0.98, 0.02)
    p = weights / weights.sum()
    return np.asarray(names, dtype=object)[rng.choice(len(names), size=n, p=p)]


def feature_names(
    numeric: int = NUMERIC, categorical: int = CATEGORICAL
) -> tuple[list[str], list[str]]:
    return [f"num_{i:02d}" for i in range(numeric)], [f"cat_{j}" for j in range(categorical)]


def make_data(
    ref_rows: int,
    cur_rows: int,
    *,
    numeric: int = NUMERIC,
    categorical: int = CATEGORICAL,
    seed: int = 20260101,
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Reference and current columns (numpy arrays); drift as the module docstring says."""
    rng = np.random.default_rng(seed)
    num, cat = feature_names(numeric, categorical)
    ref: dict[str, Array] = {}
    cur: dict[str, Array] = {}
    for i, name in enumerate(num):
        ref[name] = _numeric(rng, i, ref_rows, drift=False)
        cur[name] = _numeric(rng, i, cur_rows, drift=True)
    for j, name in enumerate(cat):
        ref[name] = _categorical(rng, j, ref_rows, drift=False)
        cur[name] = _categorical(rng, j, cur_rows, drift=True)
    return ref, cur


def as_columns(data: dict[str, Array]) -> dict[str, list[Any]]:
    """Columns of Python values, as the drift monitor reads them from its telemetry."""
    return {name: values.tolist() for name, values in data.items()}


# -- embedded.drift ---------------------------------------------------------------------------


def summarize(ref: dict[str, list[Any]], categorical: list[str]) -> BaselineSketch:
    return summarize_baseline(ref, categorical=categorical, source="benchmark")


def check(sketch: BaselineSketch, cur: dict[str, list[Any]]) -> DriftReport:
    return compare(sketch, cur, Thresholds())


# -- Evidently --------------------------------------------------------------------------------


def evidently_module() -> Any | None:
    """Evidently's top-level module, or None when it is not installed. Telemetry is off."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently's own usage telemetry
    os.environ.setdefault("ITERATIVE_DO_NOT_TRACK", "1")  # the library it sends it with
    try:
        return importlib.import_module("evidently")
    except ImportError:
        return None


NUMERIC_METHODS = ("wasserstein", "jensenshannon", "psi")
CATEGORICAL_METHODS = ("jensenshannon", "psi", "chisquare")


class EvidentlyRunner:
    """One Evidently report per check: ``ValueDrift`` per feature and stattest."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        evidently = evidently_module()
        if evidently is None:
            raise RuntimeError(
                "evidently is not installed (pip install -r benchmarks/requirements.txt)"
            )
        self.version = str(evidently.__version__)
        metrics = importlib.import_module("evidently.metrics")
        self._evidently = evidently
        self._metrics = [
            metrics.ValueDrift(column=c, method=m) for c in numeric for m in NUMERIC_METHODS
        ] + [
            metrics.ValueDrift(column=c, method=m) for c in categorical for m in CATEGORICAL_METHODS
        ]
        self._definition = evidently.DataDefinition(
            numerical_columns=numeric, categorical_columns=categorical
        )

    def frame(self, data: dict[str, Array]) -> Any:
        pandas = importlib.import_module("pandas")
        return pandas.DataFrame(data)

    def run(self, ref_frame: Any, cur_frame: Any) -> dict[tuple[str, str], float]:
        ev = self._evidently
        report = ev.Report(self._metrics, include_tests=False)
        with warnings.catch_warnings():
            # scipy's chisquare divides by the zero expected count of a category the
            # reference never saw (p-value 0): expected here, not worth a warning per run
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = report.run(
                ev.Dataset.from_pandas(cur_frame, data_definition=self._definition),
                ev.Dataset.from_pandas(ref_frame, data_definition=self._definition),
            )
        values: dict[tuple[str, str], float] = {}
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            values[(str(config["column"]), str(config["method"]))] = float(metric["value"])
        return values


def _binned(ref: Array, cur: Array, numeric: bool, fill_zeroes: bool) -> tuple[Array, Array]:
    """Evidently's own binning (``get_binned_data``), to check the formulas on equal bins."""
    pandas = importlib.import_module("pandas")
    utils = importlib.import_module("evidently.legacy.calculations.stattests.utils")
    core = importlib.import_module("evidently.legacy.core")
    kind = core.ColumnType.Numerical if numeric else core.ColumnType.Categorical
    r, c = utils.get_binned_data(pandas.Series(ref), pandas.Series(cur), kind, 30, fill_zeroes)
    return np.asarray(r, dtype=float), np.asarray(c, dtype=float)


def agreement(
    report: DriftReport,
    evidently: dict[tuple[str, str], float],
    ref: dict[str, Array],
    cur: dict[str, Array],
) -> dict[str, Any]:
    """Per feature and statistic: ours, Evidently's, and the check where definitions match."""
    rows: list[dict[str, Any]] = []
    for feature in report.features:
        name, numeric = feature.feature, feature.kind == "numeric"
        if numeric:
            rows.append(_wasserstein_row(name, feature.statistics, evidently, ref, cur))
        rows += _binned_rows(name, numeric, feature.statistics, evidently, ref, cur)
        if not numeric:
            rows.append(
                {
                    "feature": name,
                    "statistic": "chi2_pvalue",
                    "ours": feature.statistics["chi2_pvalue"],
                    "evidently": evidently[(name, "chisquare")],
                    "same_definition": "no: homogeneity (ours) vs goodness of fit (Evidently)",
                    "definition_check": math.nan,
                    "difference": abs(
                        feature.statistics["chi2_pvalue"] - evidently[(name, "chisquare")]
                    ),
                    "why": "different tests",
                }
            )
    checked = [r["definition_check"] for r in rows if not math.isnan(r["definition_check"])]
    identical = [r for r in rows if r["difference"] <= TOLERANCE]
    ev_drifted = sorted(
        {c for (c, m), v in evidently.items() if m == "wasserstein" and v >= 0.1}
        | {
            c
            for (c, m), v in evidently.items()
            if m == "jensenshannon" and c.startswith("cat_") and v >= 0.1
        }
    )
    return {
        "rows": rows,
        "max_definition_check": max(checked) if checked else math.nan,
        "definitions_agree_within_tolerance": bool(checked) and max(checked) <= TOLERANCE,
        "values_identical_within_tolerance": len(identical),
        "values_compared": len(rows),
        "drifted_features_ours": sorted(report.drifted_features),
        "drifted_features_evidently_default_stattests": ev_drifted,
    }


def _wasserstein_row(
    name: str,
    stats: Mapping[str, float],
    evidently: dict[tuple[str, str], float],
    ref: dict[str, Array],
    cur: dict[str, Array],
) -> dict[str, Any]:
    """Normalised Wasserstein: ours (from the sketch) and the exact formula vs Evidently."""
    from scipy.stats import wasserstein_distance

    exact = float(wasserstein_distance(ref[name], cur[name])) / max(float(np.std(ref[name])), 0.001)
    ev = evidently[(name, "wasserstein")]
    return {
        "feature": name,
        "statistic": "normalized_wasserstein",
        "ours": stats["normalized_wasserstein"],
        "evidently": ev,
        "same_definition": "exact formula on the full reference",
        "definition_check": abs(exact - ev),
        "difference": abs(stats["normalized_wasserstein"] - ev),
        "why": "ours reads the sketch's 1,000 order statistics, not the full reference",
    }


def _binned_rows(
    name: str,
    numeric: bool,
    stats: Mapping[str, float],
    evidently: dict[tuple[str, str], float],
    ref: dict[str, Array],
    cur: dict[str, Array],
) -> list[dict[str, Any]]:
    """Jensen-Shannon and PSI: ours, and our formula on Evidently's bins vs Evidently."""
    rows = []
    for method, key in (("jensenshannon", "jensen_shannon"), ("psi", "psi")):
        ev = evidently[(name, method)]
        r, c = _binned(ref[name], cur[name], numeric, fill_zeroes=method == "psi")
        if method == "jensenshannon":
            ours_formula = jensen_shannon(r, c)
            ev_in_ours = ev * JS_E_TO_2
        else:
            ours_formula = psi(r, c, floor=0.0)
            ev_in_ours = ev
        why = (
            "bins: Evidently Sturges equal-width over both samples; ours reference deciles"
            if numeric
            else (
                "log base: Evidently natural, ours 2 (compared after converting)"
                if method == "jensenshannon"
                else "empty/rare categories: Evidently replaces zeros, ours floors at 1e-4"
            )
        )
        rows.append(
            {
                "feature": name,
                "statistic": key,
                "ours": stats[key],
                "evidently": ev_in_ours,
                "same_definition": "our formula on Evidently's bins",
                "definition_check": abs(ours_formula - ev_in_ours),
                "difference": abs(stats[key] - ev_in_ours),
                "why": why,
            }
        )
    return rows


# -- the benchmark ------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, Any], Any]:
    """Wall and CPU seconds of ``repeats`` calls (median etc.), and the last result."""
    wall: list[float] = []
    cpu: list[float] = []
    result: Any = None
    for _ in range(repeats):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall": summary(wall), "cpu": summary(cpu)}, result


def _peak_mib(fn: Callable[[], Any]) -> float:
    """Peak memory allocated while ``fn`` runs (tracemalloc; numpy reports its buffers)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def _run_evidently(
    result: dict[str, Any],
    data: tuple[dict[str, Array], dict[str, Array]],
    names: tuple[list[str], list[str]],
    ours: tuple[dict[str, Any], dict[str, Any], DriftReport],
    *,
    evidently_repeats: int,
    memory: bool,
    warmup: bool,
) -> None:
    """Evidently on the same data, the ratios to ours and where the statistics agree."""
    if importlib.util.find_spec("evidently") is None:
        result["evidently"] = {
            "skipped": "evidently is not installed: pip install -r benchmarks/requirements.txt"
        }
        return
    (ref_arrays, cur_arrays), (num, cat) = data, names
    summarize_time, compare_time, report = ours
    numeric, categorical = len(num), len(cat)
    t0 = time.perf_counter()
    runner = EvidentlyRunner(num, cat)
    if warmup:  # first use: lazy imports
        small_ref, small_cur = make_data(2000, 500, numeric=numeric, categorical=categorical)
        runner.run(runner.frame(small_ref), runner.frame(small_cur))
    first_use_s = time.perf_counter() - t0
    ref_frame, cur_frame = runner.frame(ref_arrays), runner.frame(cur_arrays)
    with single_core():
        ev_time, ev_values = _timed(lambda: runner.run(ref_frame, cur_frame), evidently_repeats)
    ev_median = ev_time["wall"]["median"]
    ours_median = compare_time["wall"]["median"]
    result["evidently"] = {
        "version": runner.version,
        "first_use_import_s": first_use_s,
        "metrics": len(ev_values),
        "run_per_check_s": ev_time["wall"],
        "run_per_check_cpu_s": ev_time["cpu"],
    }
    if memory:
        result["evidently"]["run_peak_mib"] = _peak_mib(lambda: runner.run(ref_frame, cur_frame))
    result["ratio_per_check"] = ev_median / ours_median if ours_median > 0 else math.inf
    ours_cpu = compare_time["cpu"]["median"]
    result["ratio_per_check_cpu"] = (
        ev_time["cpu"]["median"] / ours_cpu if ours_cpu > 0 else math.inf
    )
    checks = 10
    result["ratio_10_checks_incl_sketch"] = (checks * ev_median) / (
        summarize_time["wall"]["median"] + checks * ours_median
    )
    result["agreement"] = agreement(report, ev_values, ref_arrays, cur_arrays)
    result["target_ratio"] = TARGET_RATIO
    result["meets_target"] = result["ratio_per_check"] >= TARGET_RATIO


def _first_use_s() -> float:
    """First use imports scipy.stats (seconds): a one-time cost, kept out of the per-check
    time."""
    t0 = time.perf_counter()
    tiny_ref, tiny_cur = make_data(200, 50, numeric=1, categorical=1)
    check(summarize(as_columns(tiny_ref), ["cat_0"]), as_columns(tiny_cur))
    return time.perf_counter() - t0


def run(
    *,
    ref_rows: int = REF_ROWS,
    cur_rows: int = CUR_ROWS,
    numeric: int = NUMERIC,
    categorical: int = CATEGORICAL,
    repeats: int = 3,
    evidently_repeats: int = 2,
    with_evidently: bool = True,
    memory: bool = True,
    warmup: bool = True,
) -> dict[str, Any]:
    """Time ``summarize`` (once), ``compare`` (per check) and Evidently (per check)."""
    num, cat = feature_names(numeric, categorical)
    t0 = time.perf_counter()
    ref_arrays, cur_arrays = make_data(ref_rows, cur_rows, numeric=numeric, categorical=categorical)
    ref, cur = as_columns(ref_arrays), as_columns(cur_arrays)
    prepare_s = time.perf_counter() - t0

    first_use_s = _first_use_s() if warmup else 0.0

    with single_core() as core:
        summarize_time, sketch = _timed(lambda: summarize(ref, cat), 1)
        compare_time, report = _timed(lambda: check(sketch, cur), repeats)
    result: dict[str, Any] = {
        "ref_rows": ref_rows,
        "cur_rows": cur_rows,
        "numeric_features": numeric,
        "categorical_features": categorical,
        "prepare_s": prepare_s,
        "single_core": core,
        "ours": {
            "first_use_import_s": first_use_s,
            "summarize_once_s": summarize_time["wall"]["median"],
            "summarize_once_cpu_s": summarize_time["cpu"]["median"],
            "compare_per_check_s": compare_time["wall"],
            "compare_per_check_cpu_s": compare_time["cpu"],
            "sketch_json_bytes": len(json.dumps(sketch.to_json())),
            "drifted_features": report.drifted_features,
        },
    }
    if memory:
        result["ours"]["compare_peak_mib"] = _peak_mib(lambda: check(sketch, cur))
        result["ours"]["summarize_peak_mib"] = _peak_mib(lambda: summarize(ref, cat))

    if not with_evidently:
        result["evidently"] = {"skipped": "not requested"}
        return result
    _run_evidently(
        result,
        (ref_arrays, cur_arrays),
        (num, cat),
        (summarize_time, compare_time, report),
        evidently_repeats=evidently_repeats,
        memory=memory,
        warmup=warmup,
    )
    return result
