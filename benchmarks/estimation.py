"""Label-free performance estimation (``shared.estimation``): accuracy, coverage, speed.

Synthetic binary task with known labels: ``x ~ N(shift, spread)``, ``P(y=1|x) =
sigmoid(1.5x - 0.3)`` (covariate shift only, so the calibration learnt on the reference holds),
and the model's score is ``P(y=1|x)**2`` (monotone, not calibrated). The reference is 20,000
rows at ``shift=0, spread=1``; 50 windows of 5,000 rows move shift and spread, some into the
region where the model cannot separate the classes. NannyML's CBPE runs on the same reference
and windows when it is installed (``benchmarks/requirements.txt``).

Regression (DLE, ``shared.loss_estimation``): ``x ~ N(shift, spread)``, target ``2x + noise``
with noise sd ``0.2 + 0.6|x|``, a biased model ``2x + 0.25x**2``; the reference is 20,000 rows
at ``shift=0, spread=1``, 50 windows of 5,000 rows move shift and spread. NannyML's DLE (a
LightGBM model of the loss) gets the same information ours has: the prediction as its only
feature (plus the prediction it always adds).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import time
from typing import Any

import numpy as np

from benchmarks.common import single_core, summary
from shared.estimation import estimate, fit_isotonic, realised
from shared.loss_estimation import estimate_loss, fit_loss_model, realised_loss

REF_ROWS = 20_000
WINDOWS = 50
WINDOW_ROWS = 5_000
SPEED_ROWS = 1_000_000
THRESHOLD = 0.25  # score >= 0.25 predicts 1 (the score is P(y=1)**2: this is P >= 0.5)


def make_rows(
    rng: np.random.Generator, n: int, shift: float, spread: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Scores and labels of ``n`` rows."""
    x = rng.normal(shift, spread, n)
    truth = 1.0 / (1.0 + np.exp(-(1.5 * x - 0.3)))
    labels = (rng.random(n) < truth).astype(np.int64)
    return truth**2, labels


def windows(seed: int = 7, count: int = WINDOWS, rows: int = WINDOW_ROWS) -> list[Any]:
    rng = np.random.default_rng(seed)
    out = []
    for shift, spread in zip(
        rng.uniform(-1.5, 1.5, count), rng.uniform(0.15, 1.5, count), strict=True
    ):
        scores, labels = make_rows(rng, rows, float(shift), float(spread))
        out.append((float(shift), float(spread), scores, labels))
    return out


def accuracy_of_estimates(windows_: list[Any], calibrator: Any) -> dict[str, Any]:
    """MAE of estimated vs realised accuracy and AUC, and how often the interval covered it."""
    errors: dict[str, list[float]] = {"accuracy": [], "auc": []}
    covered: dict[str, int] = {"accuracy": 0, "auc": 0}
    widths: dict[str, list[float]] = {"accuracy": [], "auc": []}
    per_window = []
    for i, (shift, spread, scores, labels) in enumerate(windows_):
        est = estimate(calibrator, scores, threshold=THRESHOLD, seed=i)
        truth = realised(scores, labels, THRESHOLD)
        row: dict[str, Any] = {"shift": round(shift, 3), "spread": round(spread, 3)}
        for name in errors:
            interval = est.metric(name)
            errors[name].append(abs(interval.value - truth[name]))
            covered[name] += interval.low <= truth[name] <= interval.high
            widths[name].append(interval.high - interval.low)
            row[name] = {"estimated": interval.value, "realised": truth[name]}
        per_window.append(row)
    return {
        "windows": len(windows_),
        "rows_per_window": len(windows_[0][2]) if windows_ else 0,
        "mae": {k: float(np.mean(v)) for k, v in errors.items()},
        "max_abs_error": {k: float(np.max(v)) for k, v in errors.items()},
        "coverage_95": {k: v / len(windows_) for k, v in covered.items()},
        "mean_interval_width": {k: float(np.mean(v)) for k, v in widths.items()},
        "realised_range": {
            k: [
                min(w[k]["realised"] for w in per_window),
                max(w[k]["realised"] for w in per_window),
            ]
            for k in errors
        },
    }


def nannyml_module() -> Any | None:
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML's usage telemetry
    if importlib.util.find_spec("nannyml") is None:
        return None
    return importlib.import_module("nannyml")


class NannyCBPE:
    """NannyML's CBPE fitted on the reference; one chunk per analysed window."""

    def __init__(self, ref_scores: Any, ref_labels: Any) -> None:
        import pandas as pd

        nml = nannyml_module()
        assert nml is not None
        self.version = str(nml.__version__)
        self._pd = pd
        self._nml = nml
        self._reference = self.frame(ref_scores, ref_labels)
        self._fitted: dict[int, Any] = {}

    def frame(self, scores: Any, labels: Any | None = None) -> Any:
        data = {"score": scores, "pred": (scores >= THRESHOLD).astype(np.int64)}
        if labels is not None:
            data["label"] = labels
        return self._pd.DataFrame(data)

    def estimate(self, scores: Any) -> dict[str, float]:
        rows = len(scores)
        cbpe = self._fitted.get(rows)
        if cbpe is None:  # chunk size = the window, so the analysis is one chunk
            cbpe = self._nml.CBPE(
                y_pred_proba="score",
                y_pred="pred",
                y_true="label",
                metrics=["roc_auc", "accuracy"],
                problem_type="classification_binary",
                chunk_size=rows,
            )
            cbpe.fit(self._reference)
            self._fitted[rows] = cbpe
        result = cbpe.estimate(self.frame(scores)).filter(period="analysis").to_df()
        values = {}
        for ours, theirs in (("auc", "roc_auc"), ("accuracy", "accuracy")):
            values[ours] = float(result[(theirs, "value")].iloc[0])
        return values


def make_regression_rows(
    rng: np.random.Generator, n: int, shift: float, spread: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Predictions and targets of ``n`` rows of the regression task."""
    x = rng.normal(shift, spread, n)
    targets = 2 * x + rng.normal(0, 1, n) * (0.2 + 0.6 * np.abs(x))
    return 2 * x + 0.25 * x**2, targets


def regression_windows(seed: int = 8, count: int = WINDOWS, rows: int = WINDOW_ROWS) -> list[Any]:
    rng = np.random.default_rng(seed)
    out = []
    for shift, spread in zip(
        rng.uniform(-1.2, 1.2, count), rng.uniform(0.3, 1.3, count), strict=True
    ):
        predictions, targets = make_regression_rows(rng, rows, float(shift), float(spread))
        out.append((float(shift), float(spread), predictions, targets))
    return out


LOSSES = ("mae", "rmse")


def accuracy_of_loss_estimates(windows_: list[Any], model: Any) -> dict[str, Any]:
    """Relative and absolute error of estimated vs realised MAE and RMSE, and coverage."""
    errors: dict[str, list[float]] = {k: [] for k in LOSSES}
    relative: dict[str, list[float]] = {k: [] for k in LOSSES}
    covered = dict.fromkeys(LOSSES, 0)
    realised_values: dict[str, list[float]] = {k: [] for k in LOSSES}
    for _, _, predictions, targets in windows_:
        est = estimate_loss(model, predictions)
        truth = realised_loss(predictions, targets)
        for name in LOSSES:
            interval = est.metric(name)
            errors[name].append(abs(interval.value - truth[name]))
            relative[name].append(abs(interval.value - truth[name]) / truth[name])
            covered[name] += interval.low <= truth[name] <= interval.high
            realised_values[name].append(truth[name])
    return {
        "windows": len(windows_),
        "rows_per_window": len(windows_[0][2]) if windows_ else 0,
        "mae": {k: float(np.mean(v)) for k, v in errors.items()},
        "mean_relative_error": {k: float(np.mean(v)) for k, v in relative.items()},
        "max_relative_error": {k: float(np.max(v)) for k, v in relative.items()},
        "coverage_95": {k: v / len(windows_) for k, v in covered.items()},
        "realised_range": {k: [min(v), max(v)] for k, v in realised_values.items()},
    }


class NannyDLE:
    """NannyML's DLE fitted on the reference; one chunk per analysed window."""

    def __init__(self, ref_predictions: Any, ref_targets: Any) -> None:
        import pandas as pd

        nml = nannyml_module()
        assert nml is not None
        self.version = str(nml.__version__)
        self._pd = pd
        self._nml = nml
        self._reference = self.frame(ref_predictions, ref_targets)
        self._fitted: dict[int, Any] = {}

    def frame(self, predictions: Any, targets: Any | None = None) -> Any:
        data = {"feature": predictions, "pred": predictions}
        if targets is not None:
            data["target"] = targets
        return self._pd.DataFrame(data)

    def estimate(self, predictions: Any) -> dict[str, float]:
        rows = len(predictions)
        dle = self._fitted.get(rows)
        if dle is None:  # chunk size = the window, so the analysis is one chunk
            dle = self._nml.DLE(
                feature_column_names=["feature"],
                y_pred="pred",
                y_true="target",
                metrics=list(LOSSES),
                chunk_size=rows,
            )
            dle.fit(self._reference)
            self._fitted[rows] = dle
        result = dle.estimate(self.frame(predictions)).filter(period="analysis").to_df()
        return {name: float(result[(name, "value")].iloc[0]) for name in LOSSES}


def run_dle(
    *,
    windows_count: int,
    window_rows: int,
    speed_rows: int,
    repeats: int,
    with_nannyml: bool,
) -> dict[str, Any]:
    """DLE: error and coverage against realised MAE/RMSE, speed, and NannyML's DLE."""
    rng = np.random.default_rng(2)
    ref_predictions, ref_targets = make_regression_rows(rng, REF_ROWS, 0.0, 1.0)
    model = fit_loss_model(ref_predictions, ref_targets)
    analysed = regression_windows(count=windows_count, rows=window_rows)
    result: dict[str, Any] = {
        "reference_rows": REF_ROWS,
        "loss_model": f"{model.abs_mean.size} quantile bins of the prediction",
        "interval": "95%, normal approximation from the bins' loss variances",
        "accuracy": accuracy_of_loss_estimates(analysed, model),
    }
    big, _ = make_regression_rows(np.random.default_rng(4), speed_rows, 0.4, 1.2)
    estimate_loss(model, big[:1000])
    with single_core() as core:
        ours = _time(lambda: estimate_loss(model, big), repeats)
    result["speed"] = {"rows": speed_rows, "single_core": core, "ours_s": ours}
    if not with_nannyml:
        result["nannyml"] = {"skipped": "not requested"}
        return result
    if nannyml_module() is None:
        result["nannyml"] = {
            "skipped": "nannyml is not installed: pip install -r benchmarks/requirements.txt"
        }
        return result
    nanny = NannyDLE(ref_predictions, ref_targets)
    differences: dict[str, list[float]] = {k: [] for k in LOSSES}
    theirs_error: dict[str, list[float]] = {k: [] for k in LOSSES}
    for _, _, predictions, targets in analysed:
        theirs = nanny.estimate(predictions)
        ours_est = estimate_loss(model, predictions)
        truth = realised_loss(predictions, targets)
        for name in LOSSES:
            differences[name].append(abs(ours_est.metric(name).value - theirs[name]) / theirs[name])
            theirs_error[name].append(abs(theirs[name] - truth[name]) / truth[name])
    nanny.estimate(big[:1000])
    with single_core():
        theirs_time = _time(lambda: nanny.estimate(big), max(1, repeats - 1))
    result["nannyml"] = {
        "version": nanny.version,
        "max_relative_difference": {k: float(np.max(v)) for k, v in differences.items()},
        "mean_relative_difference": {k: float(np.mean(v)) for k, v in differences.items()},
        "their_mean_relative_error": {k: float(np.mean(v)) for k, v in theirs_error.items()},
        "speed_s": theirs_time,
        "speedup": theirs_time["median"] / ours["median"],
    }
    return result


def _time(fn: Any, repeats: int) -> dict[str, float]:
    wall = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
    return summary(wall)


def run_cbpe(
    *,
    windows_count: int = WINDOWS,
    window_rows: int = WINDOW_ROWS,
    speed_rows: int = SPEED_ROWS,
    repeats: int = 3,
    with_nannyml: bool = True,
) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    ref_scores, ref_labels = make_rows(rng, REF_ROWS, 0.0, 1.0)
    calibrator = fit_isotonic(ref_scores, ref_labels)
    analysed = windows(count=windows_count, rows=window_rows)
    result: dict[str, Any] = {
        "reference_rows": REF_ROWS,
        "calibration": "isotonic (pool-adjacent-violators) on the reference",
        "interval": "95%, label draws y ~ Bernoulli(calibrated p), 100 draws, <=5,000 rows",
        "accuracy": accuracy_of_estimates(analysed, calibrator),
    }
    big, _ = make_rows(np.random.default_rng(3), speed_rows, 0.4, 1.2)
    estimate(calibrator, big[:1000], threshold=THRESHOLD)  # first use out of the timing
    with single_core() as core:
        ours = _time(lambda: estimate(calibrator, big, threshold=THRESHOLD), repeats)
    result["speed"] = {"rows": speed_rows, "single_core": core, "ours_s": ours}
    if not with_nannyml:
        result["nannyml"] = {"skipped": "not requested"}
        return result
    if nannyml_module() is None:
        result["nannyml"] = {
            "skipped": "nannyml is not installed: pip install -r benchmarks/requirements.txt"
        }
        return result
    nanny = NannyCBPE(ref_scores, ref_labels)
    differences: dict[str, list[float]] = {"auc": [], "accuracy": []}
    for i, (_, _, scores, _) in enumerate(analysed):
        theirs = nanny.estimate(scores)
        ours_est = estimate(calibrator, scores, threshold=THRESHOLD, seed=i)
        for name in differences:
            differences[name].append(abs(ours_est.metric(name).value - theirs[name]))
    nanny.estimate(big[:1000])  # first use out of the timing
    with single_core():
        theirs_time = _time(lambda: nanny.estimate(big), max(1, repeats - 1))
    result["nannyml"] = {
        "version": nanny.version,
        "max_abs_difference": {k: float(np.max(v)) for k, v in differences.items()},
        "mean_abs_difference": {k: float(np.mean(v)) for k, v in differences.items()},
        "speed_s": theirs_time,
        "speedup": theirs_time["median"] / ours["median"],
    }
    return result


def run(
    *,
    windows_count: int = WINDOWS,
    window_rows: int = WINDOW_ROWS,
    speed_rows: int = SPEED_ROWS,
    repeats: int = 3,
    with_nannyml: bool = True,
) -> dict[str, Any]:
    """CBPE (binary classifiers) and, under ``dle``, DLE (regression)."""
    sizes: dict[str, Any] = {
        "windows_count": windows_count,
        "window_rows": window_rows,
        "speed_rows": speed_rows,
        "repeats": repeats,
        "with_nannyml": with_nannyml,
    }
    result = run_cbpe(**sizes)
    result["dle"] = run_dle(**sizes)
    return result
