"""Every benchmark function on tiny inputs: they run and return what the report reads.

The benchmarks themselves are not part of the test run (``python -m benchmarks``); this only
keeps them working. The Evidently comparison is skipped when Evidently is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks import cold_start, concurrency, drift, drift_wide, intake, scaling
from benchmarks.__main__ import main
from benchmarks.common import markdown_table, percentile
from benchmarks.report import render

HAS_EVIDENTLY = importlib.util.find_spec("evidently") is not None


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert markdown_table(["a", "b"], [["1", "22"]]).splitlines()[1] == "|---|----|"


def test_cold_start_reports_both_variants() -> None:
    result = cold_start.run(1, warmup=False)
    app = result["variants"]["function_app"]
    eager = result["variants"]["eager azure.ai.ml (baseline)"]
    assert app["functions"] >= 4 and not app["azure_ai_ml_loaded"]
    assert eager["azure_ai_ml_loaded"]
    assert app["import_and_index_s"]["median"] > 0 and app["peak_rss_mb"]["median"] > 0
    assert result["ratio_eager_over_app"] > 1


def test_event_stream_is_realistic_and_reproducible() -> None:
    a, b = intake.EventStream(3), intake.EventStream(3)
    first = a.batch(50)
    assert first == b.batch(50)
    assert all(e["eventType"].startswith(intake.AML) for e in first)
    assert a.counts["duplicate"] > 0  # storms are mostly redeliveries


def test_intake_variants_on_tiny_batches() -> None:
    result = intake.run(events=60, http_events=40, quick=True)
    variants = result["variants"]
    live = variants["in-process sqlite live"]
    assert live["events"] == 60 and live["events_per_s"] > 0
    assert set(live["outcomes"]) <= {"processed", "duplicate", "failed"}
    assert live["per_event_s"]["p99"] >= live["per_event_s"]["median"] > 0
    http = variants["http serve sqlite observe"]
    assert http["events"] == 40 and http["single_event_latency_s"]["median"] > 0
    assert "audit append" in result["store_operations"]
    assert isinstance(result["store_share_of_cpu"], float)
    batched = variants["in-process sqlite live, batched (group commit)"]
    assert batched["events"] == 60 and batched["per_batch_s"]["median"] > 0
    assert sum(batched["outcomes"].values()) == 60
    assert result["batched_events_per_s"] == batched["events_per_s"] > 0
    assert result["memory_events_per_s"] > 0
    for median in (batched, variants["in-process memory live (baseline)"]):
        runs = median["runs_events_per_s"]  # runs in turn; the median run is reported
        assert len(runs) == intake.ROUNDS and sorted(runs)[len(runs) // 2] == median["events_per_s"]


def test_drift_wide_on_tiny_parquet_files() -> None:
    result = drift_wide.run(rows=(6000, 2000), columns=(40, 3), evidently_budget_s=0)
    full, fifth = result["full"], result["fifth_rows"]
    assert (full["ref_rows"], full["cur_rows"], full["features"]) == (6000, 2000, 43)
    assert fifth["ref_rows"] == 1200 and result["peak_rss_mb"] == full["peak_rss_mb"] > 0
    assert result["seconds"] == full["summarize_s"] + full["compare_s"]
    assert full["cpu_seconds"] > 0 and len(full["load_avg_before"]) == 3
    assert result["evidently"].get("largest_finished") is None  # no budget (or no Evidently)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside Evidently's dependencies
def test_drift_wide_evidently_slice_times_both_tools_on_the_same_slice() -> None:
    if not HAS_EVIDENTLY:
        pytest.skip("evidently is not installed (benchmarks/requirements.txt)")
    result = drift_wide._evidently(300.0, ((4, 1, 1000, 250),), cap_s=300.0)
    (done,) = result["slices"]
    assert done["finished"] and result["largest_finished"] is done
    assert done["metrics"] == 4 * 3 + 1 * 3  # ValueDrift per column and statistic
    assert done["ratio"] == done["evidently_s"] / done["ours_compare_s"] > 0
    assert done["evidently_cpu_s"] > 0 and done["ours_compare_cpu_s"] > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside Evidently's dependencies
@pytest.mark.parametrize("with_evidently", [False, pytest.param(True, id="evidently")])
def test_drift_on_tiny_data(with_evidently: bool) -> None:
    if with_evidently and not HAS_EVIDENTLY:
        pytest.skip("evidently is not installed (benchmarks/requirements.txt)")
    result = drift.run(
        ref_rows=3000,
        cur_rows=1500,
        numeric=3,
        categorical=2,
        repeats=1,
        evidently_repeats=1,
        with_evidently=with_evidently,
        memory=False,
        warmup=False,
    )
    assert result["ours"]["compare_per_check_s"]["median"] > 0
    assert "num_00" in result["ours"]["drifted_features"]  # shifted by a quarter std
    if with_evidently:
        agreement = result["agreement"]
        assert agreement["definitions_agree_within_tolerance"], agreement
        assert result["ratio_per_check"] > 0
    else:
        assert "skipped" in result["evidently"]


def test_concurrency_burst_on_a_few_connections() -> None:
    result = concurrency.run(connections=20)
    assert result["connections"] == 20 and sum(result["outcomes"].values()) == 20
    assert result["outcomes"].get("200") == 20 and result["latency_s"]["max"] > 0
    from benchmarks.report import concurrency_table

    assert "| 20 " in concurrency_table(result)


def test_scaling_and_plot(tmp_path: Path) -> None:
    result = scaling.run(scaling.TINY)
    assert set(result["intake_by_batch_size"]) == {"1", "20"}
    assert result["drift_compare_by_current_rows"]["600"]["wall_s"] > 0
    written = scaling.plot(result, tmp_path / "scaling.png")
    if importlib.util.find_spec("matplotlib") is not None:
        assert written is not None and written.stat().st_size > 1000


def test_command_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nonsense"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_command_prints_tables_and_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(scaling, "QUICK", scaling.TINY)
    out = tmp_path / "results.json"
    assert main(["scaling", "--quick", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["quick"] and "scaling" in document["results"]
    assert document["machine"]["cpus"] >= 1
    printed = capsys.readouterr().out
    assert "## Scaling" in printed and "| batch size |" in printed
    assert render(document) in printed


def test_estimation_on_tiny_data(tmp_path: Path) -> None:
    from benchmarks import estimation

    out = tmp_path / "results.json"
    earlier = {"started": "2026-01-01T00:00:00+00:00", "quick": False, "machine": {"cpus": 2}}
    out.write_text(json.dumps({**earlier, "results": {"drift": {"kept": True}}}))
    assert main(["estimation", "--quick", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["results"]["drift"] == {"kept": True}  # other benchmarks' figures stay
    assert document["runs"]["drift"]["started"] == earlier["started"]
    assert document["runs"]["estimation"]["quick"] is True
    result = document["results"]["estimation"]
    assert result["accuracy"]["windows"] == 10
    assert 0 <= result["accuracy"]["mae"]["auc"] < 0.05
    assert result["speed"]["rows"] == 50_000 and result["speed"]["ours_s"]["median"] > 0
    assert "## Performance estimation (CBPE)" in render(
        {**document, "results": {"estimation": result}}
    )
    assert estimation.THRESHOLD == 0.25
    dle = result["dle"]["accuracy"]
    assert dle["windows"] == 10 and dle["mean_relative_error"]["mae"] < 0.05
    assert "Regression (DLE)" in render({**document, "results": {"estimation": result}})


@pytest.mark.skipif(
    importlib.util.find_spec("nannyml") is None, reason="nannyml is a benchmark-only dependency"
)
def test_estimation_agrees_with_nannyml_where_defined_alike() -> None:
    from benchmarks import estimation

    result = estimation.run(windows_count=3, window_rows=2000, speed_rows=20_000, repeats=1)
    nanny = result["nannyml"]
    assert max(nanny["max_abs_difference"].values()) < 0.01
    assert nanny["speed_s"]["median"] > 0
    theirs = result["dle"]["nannyml"]  # same information (the prediction), another loss model
    assert max(theirs["max_relative_difference"].values()) < 0.02


def test_rollout_judges_on_a_few_simulated_steps() -> None:
    from benchmarks import rollout

    result = rollout.run(rollouts=40)
    assert set(result["false_rollback_rate"]) == {"threshold", "fixed_mw", "sequential"}
    assert set(result["missed_harm_rate"]) == {"errors +1 pp", "errors +3 pp", "p95 +20%"}
    assert result["median_decision_ratio"] > 0
    assert "| healthy | sequential |" in render(
        {
            "machine": {k: "" for k in ("cpu", "cpus", "cpus_allowed", "memory_gib")}
            | {"load_avg_1_5_15": "", "python": "", "sqlite": "", "platform": ""},
            "quick": True,
            "started": "",
            "duration_s": 0.0,
            "results": {"rollout": result},
        }
    )
