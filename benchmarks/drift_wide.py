"""Drift over wide data, streamed: ``embedded.drift.stream`` from Parquet in row chunks.

Data: ``ref_rows`` reference and ``cur_rows`` current rows of 1,000 numeric (float32 in the
file) and 20 categorical columns, generated chunk by chunk into Parquet files in a temporary
folder (removed afterwards) with the distributions of ``benchmarks.drift`` (a few columns
shifted, rescaled or re-weighted in the current data).

Measured in a fresh child process (so its peak RSS is the check's alone, imports included):
``summarize_stream`` over the reference file, then ``compare_stream`` over the current file;
wall and CPU time (all threads: the Parquet reader decodes one chunk ahead in a thread) and
the load average before and after, since the machine may be shared. Generating the files is
not part of the timed figure (``generate_s`` is reported on its own). Run again at a fifth of
the rows: the same peak RSS shows that memory does not grow with the row count.

Evidently (``benchmarks.drift.EvidentlyRunner``: ``ValueDrift`` per column and statistic, in
memory) runs on a ladder of slices (``EVIDENTLY_SLICES``: 1,000 x 250 rows of 102, 255, 510
and all 1,020 columns, then more rows), each in a child process capped at
``EVIDENTLY_SLICE_CAP_S`` (10 minutes) and at what is left of the ladder's budget; the ladder
stops at the first slice not finished. In the same child, ``embedded.drift`` checks the same
slice (sketch made once with ``summarize_stream``, then ``compare_stream`` over the slice's
arrays in memory, the code path of the full run) for the per-check ratio; both wall and CPU
time are reported.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NUMERIC, CATEGORICAL = 1000, 20
REF_ROWS, CUR_ROWS = 500_000, 100_000
QUICK_REF_ROWS, QUICK_CUR_ROWS = 20_000, 5_000
CHUNK_ROWS = 8_192
TARGET_SECONDS, TARGET_RSS_MB = 120.0, 1536.0
EVIDENTLY_BUDGET_S = 1800.0  # the whole ladder
EVIDENTLY_SLICE_CAP_S = 600.0  # one slice: "the largest slice it finishes within 10 minutes"
# (numeric, categorical, reference rows, current rows), smallest first
EVIDENTLY_SLICES = (
    (100, 2, 1_000, 250),
    (250, 5, 1_000, 250),
    (500, 10, 1_000, 250),
    (NUMERIC, CATEGORICAL, 1_000, 250),
    (NUMERIC, CATEGORICAL, 5_000, 1_000),
    (NUMERIC, CATEGORICAL, 20_000, 5_000),
    (NUMERIC, CATEGORICAL, 100_000, 20_000),
)
QUICK_EVIDENTLY_SLICES = ((10, 2, 1_000, 250), (40, 4, 1_000, 250))


def generate(
    folder: Path,
    ref_rows: int,
    cur_rows: int,
    seed: int = 20260101,
    columns: tuple[int, int] = (NUMERIC, CATEGORICAL),
) -> dict[str, Path]:
    """Write ``ref.parquet`` and ``cur.parquet`` chunk by chunk (memory: one chunk)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.drift import make_data

    paths = {"ref": folder / "ref.parquet", "cur": folder / "cur.parquet"}
    writers: dict[str, Any] = {}
    done = {"ref": 0, "cur": 0}
    wanted = {"ref": ref_rows, "cur": cur_rows}
    chunk = 0
    while done["ref"] < ref_rows or done["cur"] < cur_rows:
        sizes = {side: max(min(CHUNK_ROWS, wanted[side] - done[side]), 0) for side in wanted}
        with warnings.catch_warnings():  # statistics of a side already complete (0 rows)
            warnings.simplefilter("ignore", RuntimeWarning)
            ref, cur = make_data(
                sizes["ref"],
                sizes["cur"],
                numeric=columns[0],
                categorical=columns[1],
                seed=seed + chunk,
            )
        for side, data in (("ref", ref), ("cur", cur)):
            if sizes[side] <= 0:
                continue
            table = pa.table(
                {
                    name: (
                        pa.array(values.astype(np.float32))
                        if values.dtype.kind == "f"
                        else pa.array(values.tolist(), pa.string())
                    )
                    for name, values in data.items()
                }
            )
            if side not in writers:
                writers[side] = pq.ParquetWriter(paths[side], table.schema, compression="none")
            writers[side].write_table(table)
            done[side] += sizes[side]
        chunk += 1
    for writer in writers.values():
        writer.close()
    return paths


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def measure(ref: Path, cur: Path) -> dict[str, Any]:
    """Summarise ``ref`` and compare ``cur``, streamed; run in a child process."""
    load_before = _load()
    t0 = time.perf_counter()
    from embedded.drift.readers import parquet_chunks
    from embedded.drift.stream import compare_stream, summarize_stream

    imports = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    sketch = summarize_stream(parquet_chunks(ref, CHUNK_ROWS), source=str(ref.name))
    summarize_s, summarize_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    report = compare_stream(sketch, parquet_chunks(cur, CHUNK_ROWS))
    compare_s, compare_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "import_s": imports,
        "summarize_s": summarize_s,
        "compare_s": compare_s,
        "seconds": summarize_s + compare_s,
        "summarize_cpu_s": summarize_cpu,
        "compare_cpu_s": compare_cpu,
        "cpu_seconds": summarize_cpu + compare_cpu,
        "load_avg_before": load_before,
        "load_avg_after": _load(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ref_rows": sketch.n,
        "cur_rows": report.n,
        "features": len(report.features),
        "drifted_features": len(report.drifted_features),
        "sketch_json_bytes": len(json.dumps(sketch.to_json())),
    }


def _in_chunks(data: dict[str, Any], rows: int) -> Iterator[dict[str, Any]]:
    total = len(next(iter(data.values())))
    for start in range(0, total, rows):
        yield {name: values[start : start + rows] for name, values in data.items()}


def evidently_slice(numeric: int, categorical: int, ref_rows: int, cur_rows: int) -> None:
    """Child: ours then Evidently on one slice, in memory; prints a JSON line after each."""
    from benchmarks import drift
    from embedded.drift.stream import compare_stream, summarize_stream

    num, cat = drift.feature_names(numeric, categorical)
    ref, cur = drift.make_data(ref_rows, cur_rows, numeric=numeric, categorical=categorical)
    sketch = summarize_stream(_in_chunks(ref, CHUNK_ROWS), categorical=cat)
    compare_stream(sketch, _in_chunks(cur, CHUNK_ROWS))  # first use: imports
    t0, c0 = time.perf_counter(), time.process_time()
    compare_stream(sketch, _in_chunks(cur, CHUNK_ROWS))
    ours = {
        "ours_compare_s": time.perf_counter() - t0,
        "ours_compare_cpu_s": time.process_time() - c0,
    }
    print(json.dumps(ours), flush=True)
    runner = drift.EvidentlyRunner(num, cat)
    ref_frame, cur_frame = runner.frame(ref), runner.frame(cur)
    load_before = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    values = runner.run(ref_frame, cur_frame)
    evidently = {
        "evidently_s": time.perf_counter() - t0,
        "evidently_cpu_s": time.process_time() - c0,
        "metrics": len(values),
        "load_avg_before": load_before,
        "load_avg_after": _load(),
        "evidently_version": runner.version,
    }
    print(json.dumps(evidently), flush=True)


def _child(args: list[str], timeout: float) -> tuple[list[dict[str, Any]], bool]:
    """JSON lines a child printed, and whether it finished within ``timeout``."""
    command = [sys.executable, "-m", "benchmarks.drift_wide", *args]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
            finished = proc.returncode == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            finished = False
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return lines, finished


def _evidently(
    budget_s: float,
    slices: tuple[tuple[int, int, int, int], ...],
    cap_s: float = EVIDENTLY_SLICE_CAP_S,
) -> dict[str, Any]:
    from benchmarks.drift import evidently_module

    if evidently_module() is None:
        return {"skipped": "evidently is not installed: pip install -r benchmarks/requirements.txt"}
    deadline = time.monotonic() + budget_s
    tried: list[dict[str, Any]] = []
    largest: dict[str, Any] | None = None
    for numeric, categorical, ref_rows, cur_rows in slices:
        left = min(deadline - time.monotonic(), cap_s)
        if left <= 5:
            break
        args = ["--evidently-slice", *(str(v) for v in (numeric, categorical, ref_rows, cur_rows))]
        started = time.perf_counter()
        lines, finished = _child(args, left)
        merged: dict[str, Any] = {
            "numeric": numeric,
            "categorical": categorical,
            "ref_rows": ref_rows,
            "cur_rows": cur_rows,
            "cap_s": left,
            "child_wall_s": time.perf_counter() - started,
        }
        for line in lines:
            merged |= line
        merged["finished"] = finished and "evidently_s" in merged
        tried.append(merged)
        if not merged["finished"]:
            break
        merged["ratio"] = merged["evidently_s"] / merged["ours_compare_s"]
        merged["cpu_ratio"] = merged["evidently_cpu_s"] / merged["ours_compare_cpu_s"]
        largest = merged
    return {
        "budget_s": budget_s,
        "slice_cap_s": cap_s,
        "slices": tried,
        "largest_finished": largest,
    }


def run(
    *,
    quick: bool = False,
    evidently_budget_s: float = EVIDENTLY_BUDGET_S,
    rows: tuple[int, int] | None = None,
    columns: tuple[int, int] = (NUMERIC, CATEGORICAL),
    evidently_slices: tuple[tuple[int, int, int, int], ...] | None = None,
) -> dict[str, Any]:
    """Generate, measure at full and a fifth of the rows, then Evidently within its budget."""
    default = (QUICK_REF_ROWS, QUICK_CUR_ROWS) if quick else (REF_ROWS, CUR_ROWS)
    ref_rows, cur_rows = rows or default
    folder = Path(tempfile.mkdtemp(prefix="drift-wide-"))
    try:
        t0 = time.perf_counter()
        paths = generate(folder, ref_rows, cur_rows, columns=columns)
        generate_s = time.perf_counter() - t0
        file_mb = sum(p.stat().st_size for p in paths.values()) / 2**20
        full, ok = _child(["--measure", str(paths["ref"]), str(paths["cur"])], 3600)
        fifth = folder / "fifth"
        fifth.mkdir()
        small_paths = generate(fifth, ref_rows // 5, cur_rows // 5, columns=columns)
        small, _ = _child(["--measure", str(small_paths["ref"]), str(small_paths["cur"])], 3600)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {
        "ref_rows": ref_rows,
        "cur_rows": cur_rows,
        "numeric_features": columns[0],
        "categorical_features": columns[1],
        "chunk_rows": CHUNK_ROWS,
        "generate_s": generate_s,
        "parquet_mb": file_mb,
        "targets": {"seconds": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "full": full[0] if ok and full else {"error": "the measuring process failed"},
        "fifth_rows": small[0] if small else {"error": "the measuring process failed"},
    }
    if ok and full:
        result["seconds"] = full[0]["seconds"]
        result["peak_rss_mb"] = full[0]["peak_rss_mb"]
    slices = evidently_slices or (QUICK_EVIDENTLY_SLICES if quick else EVIDENTLY_SLICES)
    budget = min(evidently_budget_s, 120.0) if quick else evidently_budget_s
    result["evidently"] = _evidently(budget, slices)
    return result


def main(argv: list[str]) -> int:
    if argv[:1] == ["--measure"]:
        print(json.dumps(measure(Path(argv[1]), Path(argv[2]))), flush=True)
        return 0
    if argv[:1] == ["--evidently-slice"]:
        evidently_slice(*(int(v) for v in argv[1:5]))
        return 0
    print(json.dumps(run(quick="--quick" in argv), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
