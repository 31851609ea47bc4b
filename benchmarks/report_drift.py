"""Markdown tables of the drift benchmarks (``drift``, ``drift-wide``) for docs/benchmarks.md."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import fmt_seconds, markdown_table

__all__ = ["agreement_table", "drift_table", "drift_wide_table"]


def _yes(flag: Any) -> str:
    return "yes" if flag else "**no**"


def drift_wide_table(r: dict[str, Any]) -> str:
    """Streamed drift over wide Parquet data: time, CPU, load, peak RSS; Evidently's ladder."""
    rows = []
    for label, key in (("all rows", "full"), ("a fifth of the rows", "fifth_rows")):
        m = r.get(key, {})
        if "seconds" not in m:
            rows.append([label, "failed", "", "", "", ""])
            continue
        load = m.get("load_avg_before", [math.nan])[0], m.get("load_avg_after", [math.nan])[0]
        rows.append(
            [
                f"{label}: {m['ref_rows']:,} x {m['cur_rows']:,}",
                f"{m['summarize_s']:.1f} + {m['compare_s']:.1f} = {m['seconds']:.1f} s",
                f"{m['summarize_cpu_s']:.1f} + {m['compare_cpu_s']:.1f} = {m['cpu_seconds']:.1f} s",
                f"{load[0]:.1f} / {load[1]:.1f}",
                f"{m['peak_rss_mb']:.0f} MB",
                str(m["drifted_features"]),
            ]
        )
    table = markdown_table(
        [
            "rows (reference x current)",
            "summarise + compare (wall)",
            "CPU",
            "load avg (1 min) before / after",
            "peak RSS",
            "drifted",
        ],
        rows,
    )
    note = _evidently_ladder(r.get("evidently", {}))
    targets = r.get("targets", {})
    return (
        f"{r['numeric_features']:,} numeric + {r['categorical_features']} categorical columns, "
        f"Parquet {r['parquet_mb']:.0f} MB (generated in {r['generate_s']:.0f} s, not timed), "
        f"chunks of {r['chunk_rows']:,} rows; targets <= {targets.get('seconds', 0):.0f} s, "
        f"peak RSS <= {targets.get('peak_rss_mb', 0):.0f} MB.\n\n{table}\n\n{note}"
    )


def _evidently_ladder(ev: dict[str, Any]) -> str:
    """Evidently's slices, each against ours on the same slice."""
    if "skipped" in ev:
        note = f"Evidently: {ev['skipped']}"
    else:
        ladder = []
        for s in ev.get("slices", []):
            what = (
                f"{s['numeric'] + s['categorical']:,} columns, "
                f"{s['ref_rows']:,} x {s['cur_rows']:,} rows"
            )
            if s.get("finished"):
                ladder.append(
                    [
                        what,
                        f"{s['evidently_s']:.1f} s (CPU {s['evidently_cpu_s']:.1f} s)",
                        f"{s['ours_compare_s']:.3f} s (CPU {s['ours_compare_cpu_s']:.3f} s)",
                        f"{s['ratio']:.0f}x (CPU {s['cpu_ratio']:.0f}x)",
                        f"{s['load_avg_before'][0]:.1f}",
                    ]
                )
            else:
                ladder.append([what, f"not finished in {s['cap_s']:.0f} s", "", "", ""])
        note = (
            f"Evidently ladder (each slice capped at {ev.get('slice_cap_s', 0):.0f} s, "
            f"the ladder at {ev.get('budget_s', 0):.0f} s):\n\n"
            + markdown_table(
                [
                    "slice",
                    "Evidently per check",
                    "embedded.drift compare_stream per check",
                    "ratio",
                    "load avg",
                ],
                ladder,
            )
        )
    return note


def drift_table(r: dict[str, Any]) -> str:
    ours = r["ours"]
    rows = [
        [
            "embedded.drift compare (sketch reused)",
            fmt_seconds(ours["compare_per_check_s"]["median"]),
            fmt_seconds(ours["compare_per_check_cpu_s"]["median"]),
            f"{ours.get('compare_peak_mib', math.nan):.0f} MiB",
            f"first use (imports) {fmt_seconds(ours['first_use_import_s'])}",
        ],
        [
            "embedded.drift summarize (once per baseline)",
            fmt_seconds(ours["summarize_once_s"]),
            fmt_seconds(ours["summarize_once_cpu_s"]),
            f"{ours.get('summarize_peak_mib', math.nan):.0f} MiB",
            f"sketch {ours['sketch_json_bytes'] / 1024:.0f} KiB as JSON",
        ],
    ]
    ev = r["evidently"]
    if "skipped" in ev:
        rows.append(["Evidently", "-", "-", "-", f"skipped: {ev['skipped']}"])
    else:
        rows.append(
            [
                f"Evidently {ev['version']} report ({ev['metrics']} ValueDrift)",
                fmt_seconds(ev["run_per_check_s"]["median"]),
                fmt_seconds(ev["run_per_check_cpu_s"]["median"]),
                f"{ev.get('run_peak_mib', math.nan):.0f} MiB",
                f"first use (imports) {fmt_seconds(ev['first_use_import_s'])}",
            ]
        )
    head = ["tool", "per check (wall)", "CPU", "peak (tracemalloc)", "notes"]
    text = markdown_table(head, rows)
    text += (
        f"\n\n{r['ref_rows']:,} reference rows, {r['cur_rows']:,} current rows, "
        f"{r['numeric_features']} numeric + {r['categorical_features']} categorical features."
    )
    if "ratio_per_check" in r:
        text += (
            f" Evidently/ours per check: {r['ratio_per_check']:.1f}x wall, "
            f"{r['ratio_per_check_cpu']:.1f}x CPU; 10 checks including the one-time sketch: "
            f"{r['ratio_10_checks_incl_sketch']:.1f}x (target >= {r['target_ratio']:.0f}x "
            f"per check: {_yes(r['meets_target'])})."
        )
    agreement = r.get("agreement")
    if agreement:
        text += "\n\n" + agreement_table(agreement)
    return text


def agreement_table(a: dict[str, Any]) -> str:
    """One row per statistic kind: how far ours and Evidently's are, and why."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in a["rows"]:
        kind = "numeric" if row["feature"].startswith("num_") else "categorical"
        groups.setdefault((row["statistic"], kind), []).append(row)
    rows = []
    for (statistic, kind), items in groups.items():
        checks = [i["definition_check"] for i in items if not math.isnan(i["definition_check"])]
        diffs = [i["difference"] for i in items]
        rows.append(
            [
                f"{statistic} ({kind})",
                str(len(items)),
                f"{max(checks):.1e}" if checks else "n/a",
                f"{max(diffs):.2g}",
                str(sum(1 for d in diffs if d <= 1e-6)),
                items[0]["why"],
            ]
        )
    head = [
        "statistic",
        "features",
        "max |diff|, same definition",
        "max |ours - Evidently|",
        "equal within 1e-6",
        "why values differ",
    ]
    text = markdown_table(head, rows)
    text += (
        f"\n\nDrifted (ours, default thresholds): {', '.join(a['drifted_features_ours'])}. "
        "Drifted (Evidently, its default stattests and thresholds): "
        f"{', '.join(a['drifted_features_evidently_default_stattests'])}."
    )
    return text
