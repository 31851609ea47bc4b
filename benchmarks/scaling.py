"""Scaling: how intake cost grows with batch size and models in the policy, and how drift cost
grows with rows and features. Writes a PNG (matplotlib, optional) for ``docs/``."""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import drift, intake
from benchmarks.common import single_core


@dataclass(frozen=True, slots=True)
class Grid:
    batch_sizes: tuple[int, ...] = (1, 10, 100, 1000, 5000)
    batch_events: int = 5000
    models: tuple[int, ...] = (1, 10, 100, 1000)
    model_events: int = 3000
    cur_rows: tuple[int, ...] = (10_000, 50_000, 200_000, 1_000_000)
    compare_ref_rows: int = 100_000  # the sketch's size does not depend on it
    features: tuple[int, ...] = (5, 25, 100)
    feature_rows: int = 50_000
    ref_rows: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    evidently_cur_rows: tuple[int, ...] = (10_000, 50_000)  # reference = 5 x current
    warmup_events: int = 200


QUICK = Grid(
    batch_sizes=(1, 10, 100),
    batch_events=300,
    models=(1, 10, 100),
    model_events=300,
    cur_rows=(1_000, 5_000),
    compare_ref_rows=5_000,
    features=(5, 25),
    feature_rows=2_000,
    ref_rows=(2_000, 10_000),
    evidently_cur_rows=(),
)
TINY = Grid(
    batch_sizes=(1, 20),
    batch_events=40,
    models=(1, 5),
    model_events=40,
    cur_rows=(300, 600),
    compare_ref_rows=500,
    features=(5,),
    feature_rows=300,
    ref_rows=(500,),
    evidently_cur_rows=(),
    warmup_events=10,
)


def _split(features: int) -> tuple[int, int]:
    """Numeric and categorical counts in the 4:1 proportion of the main drift benchmark."""
    categorical = max(1, features // 5)
    return features - categorical, categorical


def _compare_seconds(ref_rows: int, cur_rows: int, features: int) -> dict[str, float]:
    numeric, categorical = _split(features)
    ref, cur = drift.make_data(ref_rows, cur_rows, numeric=numeric, categorical=categorical)
    _, cat = drift.feature_names(numeric, categorical)
    sketch = drift.summarize(drift.as_columns(ref), cat)
    columns = drift.as_columns(cur)
    best = float("inf")
    cpu = float("inf")
    with single_core():
        for _ in range(2):
            c0, t0 = time.process_time(), time.perf_counter()
            drift.check(sketch, columns)
            best = min(best, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
    return {"wall_s": best, "cpu_s": cpu, "per_value_s": best / (cur_rows * features)}


def _summarize_seconds(ref_rows: int, features: int = 25) -> dict[str, float]:
    numeric, categorical = _split(features)
    ref, _ = drift.make_data(ref_rows, 10, numeric=numeric, categorical=categorical)
    _, cat = drift.feature_names(numeric, categorical)
    columns = drift.as_columns(ref)
    with single_core():
        c0, t0 = time.process_time(), time.perf_counter()
        drift.summarize(columns, cat)
        wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": time.process_time() - c0,
        "per_value_s": wall / (ref_rows * features),
    }


def _evidently_seconds(cur_rows: int, features: int = 25) -> dict[str, float]:
    numeric, categorical = _split(features)
    num, cat = drift.feature_names(numeric, categorical)
    ref, cur = drift.make_data(5 * cur_rows, cur_rows, numeric=numeric, categorical=categorical)
    runner = drift.EvidentlyRunner(num, cat)
    ref_frame, cur_frame = runner.frame(ref), runner.frame(cur)
    with single_core():
        c0, t0 = time.process_time(), time.perf_counter()
        runner.run(ref_frame, cur_frame)
        return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def _intake_point(**kwargs: Any) -> dict[str, Any]:
    result = intake.run_in_process(store="sqlite", **kwargs)
    return {
        "events": result["events"],
        "events_per_s": result["events_per_s"],
        "events_per_cpu_s": result["events_per_cpu_s"],
        "per_event_median_s": result["per_event_s"]["median"],
        "per_event_p99_s": result["per_event_s"]["p99"],
        "validate_per_event_s": result["validate_per_event_s"],
    }


def run(grid: Grid | None = None) -> dict[str, Any]:
    grid = grid or Grid()
    importlib.import_module("scipy.stats")  # before single_core() limits the BLAS threads
    batch = {
        str(b): _intake_point(
            events=max(grid.batch_events, b),
            batch_size=b,
            models=10,
            warmup_events=grid.warmup_events,
        )
        for b in grid.batch_sizes
    }
    models = {
        str(m): _intake_point(
            events=grid.model_events,
            batch_size=100,
            models=m,
            warmup_events=grid.warmup_events,
        )
        for m in grid.models
    }
    rows = {str(n): _compare_seconds(grid.compare_ref_rows, n, 25) for n in grid.cur_rows}
    features = {
        str(f): _compare_seconds(grid.feature_rows, grid.feature_rows, f) for f in grid.features
    }
    ref_rows = {str(n): _summarize_seconds(n) for n in grid.ref_rows}
    evidently: dict[str, Any] = {}
    if grid.evidently_cur_rows and importlib.util.find_spec("evidently") is not None:
        evidently = {str(n): _evidently_seconds(n) for n in grid.evidently_cur_rows}
    return {
        "intake_by_batch_size": batch,
        "intake_by_models": models,
        "drift_compare_by_current_rows": rows,
        "drift_compare_by_features": features,
        "drift_summarize_by_reference_rows": ref_rows,
        "evidently_by_current_rows": evidently,
        "notes": {
            "intake": "in process, SQLite store and audit log, live mode, one core",
            "drift_rows": "25 features (20 numeric, 5 categorical); sketch reused",
            "drift_features": f"{grid.feature_rows} current rows, 4:1 numeric:categorical",
            "evidently": "reference = 5 x current rows, 25 features, 3 stattests per feature",
        },
    }


def plot(
    result: dict[str, Any],
    path: Path,
    drift_result: dict[str, Any] | None = None,
    intake_result: dict[str, Any] | None = None,
) -> Path | None:
    """Six panels as a PNG; None (nothing written) when matplotlib is not installed.

    ``drift_result`` adds the main drift benchmark's point, ``intake_result`` the per-kind
    latency of the main intake benchmark (SQLite, live)."""
    if importlib.util.find_spec("matplotlib") is None:
        return None
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))

    _panel_intake_throughput(axes[0][0], result)
    _panel_intake_latency(axes[0][1], result)
    _panel_intake_by_kind(axes[0][2], intake_result)
    _panel_drift_rows(axes[1][0], result, drift_result)
    _panel_drift_features(axes[1][1], result)
    _panel_sketch(axes[1][2], result)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _xy(data: dict[str, Any], key: str, scale: float = 1.0) -> tuple[list[int], list[float]]:
    return [int(k) for k in data], [data[k][key] * scale for k in data]


def _panel_intake_throughput(ax: Any, result: dict[str, Any]) -> None:
    """Intake events/s vs batch size."""
    by_batch = result["intake_by_batch_size"]
    ax.plot(*_xy(by_batch, "events_per_cpu_s"), "o-", label="events per CPU-second")
    ax.plot(*_xy(by_batch, "events_per_s"), "s--", label="events per second (wall)")
    ax.axhline(intake.TARGET_EVENTS_PER_S, color="grey", ls=":", label="target 5,000/s")
    ax.set_xscale("log")
    ax.set_xlabel("events per Event Grid batch (10 models)")
    ax.set_ylabel("events / s")
    ax.set_ylim(bottom=0)
    ax.set_title("Intake throughput vs batch size")
    ax.legend(fontsize=8, loc="lower right")


def _panel_intake_latency(ax: Any, result: dict[str, Any]) -> None:
    """Intake latency vs models in the policy."""
    by_models = result["intake_by_models"]
    ax.plot(*_xy(by_models, "per_event_median_s", 1e3), "o-", label="per event, median")
    ax.plot(*_xy(by_models, "per_event_p99_s", 1e3), "s--", label="per event, p99")
    ax.plot(*_xy(by_models, "validate_per_event_s", 1e3), "^:", label="batch validation per event")
    ax.axhline(intake.TARGET_P99_S * 1e3, color="grey", ls=":", label="p99 target 2 ms")
    ax.set_xscale("log")
    ax.set_xlabel("models in the policy (batches of 100)")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_title("Intake latency vs models in the policy")
    ax.legend(fontsize=8)


def _panel_intake_by_kind(ax: Any, intake_result: dict[str, Any] | None) -> None:
    """Intake latency by kind of event (the main benchmark)."""
    kinds: dict[str, Any] = {}
    if intake_result:
        main = intake_result["variants"].get("in-process sqlite live", {})
        kinds = main.get("per_event_by_kind_s", {})
    if kinds:
        names = list(kinds)
        positions = list(range(len(names)))
        ax.barh(
            [p - 0.2 for p in positions],
            [kinds[n]["median"] * 1e3 for n in names],
            0.4,
            label="median",
        )
        ax.barh(
            [p + 0.2 for p in positions], [kinds[n]["p99"] * 1e3 for n in names], 0.4, label="p99"
        )
        ax.set_yticks(positions, [f"{n} ({int(kinds[n]['n'])})" for n in names], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("ms per event (log)")
        ax.set_title("Intake latency by kind of event (SQLite)")
        ax.legend(fontsize=8)
    else:
        ax.set_axis_off()


def _panel_drift_rows(ax: Any, result: dict[str, Any], drift_result: dict[str, Any] | None) -> None:
    """Drift check time vs current rows, with Evidently."""
    rows = result["drift_compare_by_current_rows"]
    ax.plot(*_xy(rows, "wall_s"), "o-", label="embedded.drift compare (sketch reused)")
    ev = result.get("evidently_by_current_rows") or {}
    ev_points = [(int(k), float(v["wall_s"])) for k, v in ev.items()]
    if drift_result and "run_per_check_s" in drift_result.get("evidently", {}):
        ev_points.append(
            (drift_result["cur_rows"], drift_result["evidently"]["run_per_check_s"]["median"])
        )
    if ev_points:
        ev_points.sort()
        ax.plot(*zip(*ev_points, strict=True), "s--", color="C3", label="Evidently 0.7 report")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("current rows (25 features; Evidently: reference = 5 x current)")
    ax.set_ylabel("seconds per check")
    ax.set_title("Drift check time vs rows")
    ax.legend(fontsize=8)


def _panel_drift_features(ax: Any, result: dict[str, Any]) -> None:
    """Drift check time vs features."""
    feats = result["drift_compare_by_features"]
    ax.plot(*_xy(feats, "wall_s"), "o-")
    ax.set_xlabel("features (4:1 numeric:categorical)")
    ax.set_ylabel("seconds per check")
    ax.set_ylim(bottom=0)
    rows_label = next(iter(result["notes"].get("drift_features", "").split(" ")), "")
    ax.set_title(f"Drift check time vs features ({rows_label} rows)")


def _panel_sketch(ax: Any, result: dict[str, Any]) -> None:
    """Baseline sketch time vs reference rows."""
    refs = result["drift_summarize_by_reference_rows"]
    ax.plot(*_xy(refs, "wall_s"), "o-", color="C2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("reference rows (25 features)")
    ax.set_ylabel("seconds, once per baseline")
    ax.set_title("Baseline sketch (once) vs reference rows")
