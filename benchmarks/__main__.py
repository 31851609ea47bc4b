"""``python -m benchmarks``: run the benchmarks, print markdown tables, write JSON.

    .venv/bin/python -m benchmarks                      # everything, full size (~10-15 min)
    .venv/bin/python -m benchmarks --quick              # tiny inputs (~1 min)
    .venv/bin/python -m benchmarks intake drift         # a subset
    .venv/bin/python -m benchmarks estimation           # CBPE: error, coverage, 1M-row speed
    .venv/bin/python -m benchmarks drift-wide           # 1,020 columns from Parquet, streamed
    .venv/bin/python -m benchmarks audit-scale          # audit appends on Azurite, 1-32 writers
    .venv/bin/python -m benchmarks intake --profile benchmarks/profiles   # + pyinstrument

Every baseline runs in the same invocation as what it is compared with.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    cold_start,
    concurrency,
    drift,
    drift_wide,
    estimation,
    intake,
    rollout,
    scaling,
)
from benchmarks.common import ROOT, machine_notes, single_core
from benchmarks.report import render

NAMES = (
    "cold_start",
    "intake",
    "concurrency",
    "drift",
    "drift-wide",
    "estimation",
    "scaling",
    "rollout",
)
DEFAULT_OUT = ROOT / "benchmarks" / "results.json"
DEFAULT_PLOT = ROOT / "docs" / "img" / "benchmark-scaling.png"


def _profile(folder: Path, names: list[str], quick: bool) -> list[str]:
    """pyinstrument text profiles of the intake's SQLite pipeline and of a drift check."""
    if importlib.util.find_spec("pyinstrument") is None:
        print("profiles skipped: pyinstrument is not installed (benchmarks/requirements.txt)")
        return []
    pyinstrument = importlib.import_module("pyinstrument")
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    if "intake" in names:
        profiler = pyinstrument.Profiler(interval=0.0005)

        def profiled(work: Any) -> None:
            profiler.start()
            try:
                work()
            finally:
                profiler.stop()

        intake.run_in_process(store="sqlite", events=1000 if quick else 10_000, profile=profiled)
        written += _write_profile(profiler, folder / "intake_sqlite_live")
    if "drift" in names:
        rows = 5_000 if quick else 200_000
        ref, cur = drift.make_data(rows, rows)
        _, cat = drift.feature_names()
        sketch = drift.summarize(drift.as_columns(ref), cat)
        columns = drift.as_columns(cur)
        drift.check(sketch, columns)  # imports out of the profile
        profiler = pyinstrument.Profiler(interval=0.001)
        with single_core():
            profiler.start()
            drift.check(sketch, columns)
            profiler.stop()
        written += _write_profile(profiler, folder / "drift_compare")
    return written


def _write_profile(profiler: Any, stem: Path) -> list[str]:
    """The call tree and the flat self-time list (where the time is actually spent)."""
    tree = stem.with_name(stem.name + ".tree.txt")
    flat = stem.with_name(stem.name + ".flat.txt")
    tree.write_text(profiler.output_text(unicode=False, color=False))
    flat.write_text(profiler.output_text(unicode=False, color=False, flat=True))
    return [str(tree), str(flat)]


def run(names: list[str], *, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        if name == "cold_start":
            results[name] = cold_start.run(3 if quick else cold_start.RUNS)
        elif name == "intake":
            results[name] = intake.run(quick=quick)
        elif name == "concurrency":
            results[name] = concurrency.run(quick=quick)
        elif name == "drift":
            if quick:
                results[name] = drift.run(
                    ref_rows=drift.QUICK_REF_ROWS,
                    cur_rows=drift.QUICK_CUR_ROWS,
                    repeats=3,
                    evidently_repeats=1,
                )
            else:
                results[name] = drift.run()
        elif name == "drift-wide":
            results["drift_wide"] = drift_wide.run(quick=quick)
        elif name == "estimation":
            if quick:
                results[name] = estimation.run(windows_count=10, speed_rows=50_000, repeats=1)
            else:
                results[name] = estimation.run()
        elif name == "scaling":
            results[name] = scaling.run(scaling.QUICK if quick else scaling.Grid())
        elif name == "rollout":
            results[name] = rollout.run(rollouts=200 if quick else 2000)
        print(f"  {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["audit-scale"]:  # Azurite, its own results key (issue 20)
        from benchmarks import audit_scale

        return audit_scale.main(arguments[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(NAMES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, for a fast look")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help=f"scaling PNG (default {DEFAULT_PLOT} on full runs; none on --quick)",
    )
    parser.add_argument("--profile", type=Path, help="also write pyinstrument profiles here")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    names = list(dict.fromkeys(args.names)) or list(NAMES)

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    machine = machine_notes()
    results = run(names, quick=args.quick)
    document: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "load_avg_at_end": machine_notes()["load_avg_1_5_15"],
        "results": results,
    }
    plot_path = args.plot or (None if args.quick else DEFAULT_PLOT)
    if "scaling" in results and plot_path is not None:
        written = scaling.plot(
            results["scaling"], plot_path, results.get("drift"), results.get("intake")
        )
        document["plot"] = str(written) if written else "skipped: matplotlib is not installed"
    if args.profile:
        document["profiles"] = _profile(args.profile, names, args.quick)
    document["duration_s"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = merge(_previous(args.out), document)
    args.out.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    print(render(document))
    print(f"\nresults: {args.out} (updated: {', '.join(results)})")
    return 0


def _previous(path: Path) -> dict[str, Any] | None:
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return previous if isinstance(previous, dict) else None


def merge(previous: dict[str, Any] | None, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` written over ``previous``: the benchmarks run now replace theirs, every
    other benchmark's results stay; ``runs`` says when and how each one was last measured."""
    run = {
        key: document[key]
        for key in ("started", "quick", "machine", "load_avg_at_end", "duration_s")
        if key in document
    }
    if previous is None or not isinstance(previous.get("results"), dict):
        merged = dict(document)
        merged["runs"] = {name: run for name in document["results"]}
        return merged
    merged = {**previous, **document}
    merged["results"] = {**previous["results"], **document["results"]}
    earlier = previous.get("runs")
    runs = dict(earlier) if isinstance(earlier, dict) else {}
    for name in previous["results"]:  # measured before runs were kept: the old run's notes
        runs.setdefault(
            name,
            {
                key: previous[key]
                for key in ("started", "quick", "machine", "load_avg_at_end", "duration_s")
                if key in previous
            },
        )
    merged["runs"] = {**runs, **{name: run for name in document["results"]}}
    return merged


if __name__ == "__main__":
    sys.exit(main())
