"""Small helpers shared by the benchmarks: percentiles, CPU pinning, machine notes, tables."""

from __future__ import annotations

import importlib
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, p99, min, max and mean of ``values`` (seconds stay seconds)."""
    return {
        "n": float(len(values)),
        "median": statistics.median(values) if values else math.nan,
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "mean": statistics.fmean(values) if values else math.nan,
    }


def available_cpus() -> set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set()


@contextmanager
def pinned(cpu: int | None) -> Iterator[int | None]:
    """Run the block on one CPU (``cpu``, or the last one allowed) and restore the mask after.

    Yields the CPU actually used, or None where affinity cannot be set.
    """
    allowed = available_cpus()
    if not allowed:
        yield None
        return
    chosen = cpu if cpu in allowed else max(allowed)
    os.sched_setaffinity(0, {chosen})
    try:
        yield chosen
    finally:
        os.sched_setaffinity(0, allowed)


@contextmanager
def single_core(cpu: int | None = 0) -> Iterator[dict[str, Any]]:
    """One CPU and one BLAS/OpenMP thread (threadpoolctl, when installed) for the block, so
    a tool's time is its one-core cost and CPU time is not inflated by spinning BLAS threads.
    Libraries loaded after entry are not limited: import them first."""
    info: dict[str, Any] = {"cpu": None, "blas_threads_limited": False}
    with pinned(cpu) as used:
        info["cpu"] = used
        try:
            threadpoolctl = importlib.import_module("threadpoolctl")
        except ImportError:
            yield info
            return
        with threadpoolctl.threadpool_limits(limits=1):
            info["blas_threads_limited"] = True
            yield info


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process, from /proc (Linux); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)


def machine_notes() -> dict[str, Any]:
    """What a reader needs to judge the numbers: CPU, cores, load, Python, key packages."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (math.nan, math.nan, math.nan)
    mem_gib = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    import sqlite3

    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "cpus_allowed": sorted(available_cpus()),
        "memory_gib": round(mem_gib, 1),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
    }


def fmt_seconds(value: float) -> str:
    """A duration for a table: µs, ms or s with three significant digits."""
    if math.isnan(value):
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.3g} µs"
    if value < 1.0:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def fmt_number(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (so it pastes straight into docs/benchmarks.md)."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    return "\n".join(lines)
