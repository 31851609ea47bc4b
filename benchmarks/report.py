"""The results as markdown tables (printed by ``python -m benchmarks``, pasted into docs)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import fmt_number, fmt_seconds, markdown_table
from benchmarks.report_drift import drift_table, drift_wide_table


def _yes(flag: Any) -> str:
    return "yes" if flag else "**no**"


def cold_start_table(r: dict[str, Any]) -> str:
    rows = []
    for name, v in r["variants"].items():
        t, p = v["import_and_index_s"], v["process_s"]
        rows.append(
            [
                name,
                fmt_seconds(t["median"]),
                fmt_seconds(t["p90"]),
                fmt_seconds(p["median"]),
                f"{v['peak_rss_mb']['median']:.0f} MiB",
                str(v["modules"]),
            ]
        )
    head = ["variant", "import+index median", "p90", "whole process median", "peak RSS", "modules"]
    note = (
        f"{r['runs']} fresh interpreters each, interleaved. Eager/app ratio "
        f"{r['ratio_eager_over_app']:.1f}x (target >= {r['targets']['ratio']:.0f}x, median <= "
        f"{r['targets']['median_s']} s): targets met: {_yes(r['meets_targets'])}"
    )
    return markdown_table(head, rows) + "\n\n" + note


def _intake_row(name: str, v: dict[str, Any]) -> list[str]:
    """One variant of the intake benchmark as a table row."""
    if "per_event_s" in v:
        lat = v["per_event_s"]
        p50, p99 = lat.get("median", math.nan), lat.get("p99", math.nan)
        cpu_rate = v["events_per_cpu_s"]
        note = f"validate {fmt_seconds(v['validate_per_event_s'])}/event; " + (
            f"{v['cycles_started']} cycles started" if v.get("cycles_started") else "no cycles"
        )
    elif "single_event_latency_s" in v:
        p50 = v["per_event_amortised_s"]["median"]
        p99 = v["per_event_amortised_s"]["p99"]
        cpu_rate = v["events_per_server_cpu_s"]
        single, batch = v["single_event_latency_s"], v["batch_latency_s"]
        note = (
            f"batch of {v['batch_size']}: {fmt_seconds(batch['median'])} median, "
            f"{fmt_seconds(batch['p99'])} p99; one-event POST "
            f"{fmt_seconds(single['median'])} median, {fmt_seconds(single['p99'])} p99"
        )
    else:
        p50 = p99 = math.nan
        cpu_rate = v["events_per_cpu_s"]
        note = f"{v['bytes_per_event']:.0f} bytes/event"
    return [
        name,
        fmt_number(v["events"]),
        fmt_number(v["events_per_s"]),
        fmt_number(cpu_rate),
        fmt_seconds(p50),
        fmt_seconds(p99),
        note,
    ]


def intake_table(r: dict[str, Any]) -> str:
    rows = [_intake_row(name, v) for name, v in r["variants"].items()]
    head = ["variant", "events", "events/s", "events/CPU-s", "p50/event", "p99/event", "notes"]
    ops = r.get("store_operations") or {}
    op_rows = [
        [name, fmt_seconds(v["median"]), fmt_seconds(v["p99"]), fmt_seconds(v["mean"])]
        for name, v in ops.items()
        if isinstance(v, dict)
    ]
    text = markdown_table(head, rows)
    text += (
        f"\n\nBatches of {r['workload']['batch_size']}, {r['workload']['models']} models; the "
        f"SQLite store and audit log take {r['store_share_of_cpu']:.0%} of the in-process CPU "
        f"per event. Targets (>= {r['targets']['events_per_s']:,.0f} events/s, p99 < "
        f"{fmt_seconds(r['targets']['p99_s'])}) met: {_yes(r['meets_targets'])}"
    )
    if "batched_events_per_s" in r:
        text += (
            f"\n\nBatched (POST /api/events, group commit) against per event (the Event Grid "
            f"trigger's path), SQLite, same run: {r['batched_events_per_s']:,.0f} vs "
            f"{r['per_event_events_per_s']:,.0f} events/s; in-memory baseline "
            f"{r['memory_events_per_s']:,.0f} events/s (batched and in-memory: the median of "
            f"{_runs(r, 'batched')} and {_runs(r, 'memory')} events/s, runs taken in turn). "
            f"Batched targets (>= "
            f"{r['targets']['events_per_s']:,.0f} events/s, >= 0.5x the in-memory baseline, "
            f"p99 < {fmt_seconds(r['targets']['p99_s'])} per event) met: "
            f"{_yes(r['batched_meets_targets'])}"
        )
    if op_rows:
        text += "\n\nStore operations (SQLite, one call each):\n\n"
        text += markdown_table(["operation", "median", "p99", "mean"], op_rows)
    return text + _table_storage(r.get("table_storage") or {})


def _runs(r: dict[str, Any], which: str) -> str:
    name = {
        "batched": "in-process sqlite live, batched (group commit)",
        "memory": "in-process memory live (baseline)",
    }[which]
    runs = r["variants"][name].get("runs_events_per_s", [])
    return ", ".join(f"{x:,.0f}" for x in runs) or "one run"


def _table_storage(t: dict[str, Any]) -> str:
    """Trigger against webhook on Table Storage (Azurite): invocations and round trips."""
    if "skipped" in t or not t:
        return f"\n\nTable Storage round trips: {t.get('skipped', 'not measured')}"
    rows = [
        [
            name,
            fmt_number(v["events"]),
            fmt_number(v["invocations_per_10k_events"]),
            f"{v['round_trips_per_event']:.2f}",
            ", ".join(f"{k} {n}" for k, n in v["by_request"].items()),
        ]
        for name, v in t.items()
        if isinstance(v, dict)
    ]
    head = ["path", "events", "invocations / 10,000 events", "round trips / event", "requests"]
    text = f"\n\nTable Storage (Azurite {t.get('azurite', '')}), requests counted on the wire:\n\n"
    return text + markdown_table(head, rows)


def scaling_table(r: dict[str, Any]) -> str:
    parts = []
    rows = [
        [
            k,
            fmt_number(v["events_per_s"]),
            fmt_number(v["events_per_cpu_s"]),
            fmt_seconds(v["per_event_median_s"]),
            fmt_seconds(v["per_event_p99_s"]),
            fmt_seconds(v["validate_per_event_s"]),
        ]
        for k, v in r["intake_by_batch_size"].items()
    ]
    head = ["events/s", "events/CPU-s", "p50/event", "p99/event", "batch validation/event"]
    parts.append(markdown_table(["batch size", *head], rows))
    rows = [
        [
            k,
            fmt_number(v["events_per_s"]),
            fmt_number(v["events_per_cpu_s"]),
            fmt_seconds(v["per_event_median_s"]),
            fmt_seconds(v["per_event_p99_s"]),
            fmt_seconds(v["validate_per_event_s"]),
        ]
        for k, v in r["intake_by_models"].items()
    ]
    parts.append(markdown_table(["models", *head], rows))
    drift_rows = [
        ["compare", f"{int(k):,} current rows x 25", fmt_seconds(v["wall_s"]), _ns(v)]
        for k, v in r["drift_compare_by_current_rows"].items()
    ]
    drift_rows += [
        ["compare", f"{int(k)} features x rows", fmt_seconds(v["wall_s"]), _ns(v)]
        for k, v in r["drift_compare_by_features"].items()
    ]
    drift_rows += [
        ["summarize", f"{int(k):,} reference rows x 25", fmt_seconds(v["wall_s"]), _ns(v)]
        for k, v in r["drift_summarize_by_reference_rows"].items()
    ]
    drift_rows += [
        [
            "Evidently",
            f"{int(k):,} current + {5 * int(k):,} reference x 25",
            fmt_seconds(v["wall_s"]),
            "-",
        ]
        for k, v in (r.get("evidently_by_current_rows") or {}).items()
    ]
    parts.append(markdown_table(["drift", "size", "wall", "per value"], drift_rows))
    return "\n\n".join(parts)


def concurrency_table(r: dict[str, Any]) -> str:
    lat = r["latency_s"]
    outcomes = ", ".join(f"{k}: {n}" for k, n in r["outcomes"].items())
    rows = [
        [
            str(r["connections"]),
            str(r["answered"]),
            outcomes,
            fmt_seconds(lat["median"]),
            fmt_seconds(lat["p99"]),
            fmt_seconds(r["wall_s"]),
        ]
    ]
    head = ["connections at once", "answered", "outcomes", "median", "p99", "whole burst"]
    note = (
        "Each connection sends one request (half GET /api/health, half a one-event Event Grid "
        "POST) and reads the answer; 'reset', 'refused', 'timeout' count dropped connections."
    )
    return markdown_table(head, rows) + "\n\n" + note


def estimation_table(r: dict[str, Any]) -> str:
    """CBPE against realised performance, its interval's coverage, and speed (vs NannyML)."""
    acc = r["accuracy"]
    rows = [
        [
            name,
            f"{acc['mae'][name]:.4f}",
            f"{acc['max_abs_error'][name]:.4f}",
            f"{acc['coverage_95'][name]:.0%}",
            f"{acc['mean_interval_width'][name]:.4f}",
            "{:.3f}-{:.3f}".format(*acc["realised_range"][name]),
        ]
        for name in ("accuracy", "auc")
    ]
    head = ["metric", "MAE", "max error", "95% interval coverage", "mean width", "realised range"]
    parts = [
        f"{acc['windows']} shifted windows of {acc['rows_per_window']:,} rows, reference "
        f"{r['reference_rows']:,} rows; calibration: {r['calibration']}; "
        f"interval: {r['interval']}.",
        markdown_table(head, rows),
    ]
    speed = r["speed"]
    nanny = r.get("nannyml", {})
    line = (
        f"Estimating {speed['rows']:,} rows: {speed['ours_s']['median']:.3f} s (median, one core)"
    )
    if "skipped" in nanny:
        line += f"; NannyML: {nanny['skipped']}."
    else:
        line += (
            f"; NannyML {nanny['version']} CBPE: {nanny['speed_s']['median']:.3f} s "
            f"({nanny['speedup']:.1f}x ours). Agreement on the same windows (max / mean "
            f"absolute difference): accuracy {nanny['max_abs_difference']['accuracy']:.4f} / "
            f"{nanny['mean_abs_difference']['accuracy']:.4f}, AUC "
            f"{nanny['max_abs_difference']['auc']:.4f} / {nanny['mean_abs_difference']['auc']:.4f}."
        )
    parts.append(line)
    if "dle" in r:
        parts.append(dle_table(r["dle"]))
    return "\n\n".join(parts)


def dle_table(r: dict[str, Any]) -> str:
    """DLE against realised MAE/RMSE, its interval's coverage, speed and NannyML's DLE."""
    acc = r["accuracy"]
    rows = [
        [
            name,
            f"{acc['mae'][name]:.4f}",
            f"{acc['mean_relative_error'][name]:.1%}",
            f"{acc['max_relative_error'][name]:.1%}",
            f"{acc['coverage_95'][name]:.0%}",
            "{:.3f}-{:.3f}".format(*acc["realised_range"][name]),
        ]
        for name in ("mae", "rmse")
    ]
    head = [
        "estimated",
        "MAE of the estimate",
        "mean relative error",
        "max relative error",
        "95% interval coverage",
        "realised range",
    ]
    parts = [
        f"Regression (DLE): {acc['windows']} shifted windows of {acc['rows_per_window']:,} rows, "
        f"reference {r['reference_rows']:,} rows; loss model: {r['loss_model']}; "
        f"interval: {r['interval']}.",
        markdown_table(head, rows),
    ]
    speed = r["speed"]
    nanny = r.get("nannyml", {})
    line = (
        f"Estimating {speed['rows']:,} rows: {speed['ours_s']['median']:.3f} s (median, one core)"
    )
    if "skipped" in nanny:
        line += f"; NannyML: {nanny['skipped']}."
    else:
        line += (
            f"; NannyML {nanny['version']} DLE: {nanny['speed_s']['median']:.3f} s "
            f"({nanny['speedup']:.0f}x ours). Agreement on the same windows (max / mean relative "
            f"difference): MAE {nanny['max_relative_difference']['mae']:.2%} / "
            f"{nanny['mean_relative_difference']['mae']:.2%}, RMSE "
            f"{nanny['max_relative_difference']['rmse']:.2%} / "
            f"{nanny['mean_relative_difference']['rmse']:.2%}; NannyML's own mean relative "
            f"error against realised: MAE {nanny['their_mean_relative_error']['mae']:.1%}, "
            f"RMSE {nanny['their_mean_relative_error']['rmse']:.1%}."
        )
    parts.append(line)
    return "\n\n".join(parts)


def _ns(v: dict[str, float]) -> str:
    return f"{v['per_value_s'] * 1e9:.0f} ns"


def rollout_table(result: dict[str, Any]) -> str:
    """Per scenario and judge: rollbacks, passes, time to decision, requests to the new one."""
    lines = [
        f"{result['rollouts_per_scenario']} simulated steps per scenario; "
        f"settings {result['settings']}",
        "",
        "| scenario | judge | rolled back | passed | no decision by max_bake | "
        "median / p90 decision (s) | requests to new (mean) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for scenario, judges in result["scenarios"].items():
        for judge, row in judges.items():
            lines.append(
                f"| {scenario} | {judge} | {row['rollback_rate']:.1%} | {row['pass_rate']:.1%} "
                f"| {row.get('no_decision_by_max_bake', 0.0):.1%} | "
                f"{row['median_decision_s']:.0f} / {row['p90_decision_s']:.0f} | "
                f"{row['requests_to_new_mean']:.0f} |"
            )
    lines.append("")
    lines.append(
        f"median time to decision on healthy steps, sequential over threshold: "
        f"{result['median_decision_ratio']:.2f}"
    )
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    """Every table of a results document, with the machine notes first."""
    machine = results["machine"]
    out = [
        f"# Benchmarks ({'quick' if results['quick'] else 'full'} run, {results['started']}, "
        f"{results['duration_s']:.0f} s)",
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs (allowed {machine['cpus_allowed']}), "
        f"{machine['memory_gib']} GiB; load average at start {machine['load_avg_1_5_15']}; "
        f"Python {machine['python']}, SQLite {machine['sqlite']}; {machine['platform']}",
    ]
    titles = {
        "cold_start": ("Cold start", cold_start_table),
        "intake": ("Intake", intake_table),
        "concurrency": ("Concurrent connections", concurrency_table),
        "drift": ("Drift computation", drift_table),
        "drift_wide": ("Drift over wide data, streamed", drift_wide_table),
        "estimation": ("Performance estimation (CBPE)", estimation_table),
        "scaling": ("Scaling", scaling_table),
        "rollout": ("Canary judges", rollout_table),
    }
    for key, (title, fn) in titles.items():
        if key in results["results"]:
            out.append(f"## {title}\n\n{fn(results['results'][key])}")
    if results.get("plot"):
        out.append(f"Plot: {results['plot']}")
    if results.get("profiles"):
        out.append("Profiles: " + ", ".join(results["profiles"]))
    return "\n\n".join(out)
