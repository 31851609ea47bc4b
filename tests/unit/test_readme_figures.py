"""The README's intake figures are the ones the last recorded benchmark run wrote
(``benchmarks/results.json``): a re-run that changes them shows here until the README says so."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _events_per_s(value: float) -> str:
    return f"{value:,.0f} events/s"


def _micros(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs"


def test_the_readme_quotes_the_recorded_intake_run() -> None:
    intake = json.loads((ROOT / "benchmarks" / "results.json").read_text())["results"]["intake"]
    batched = intake["variants"]["in-process sqlite live, batched (group commit)"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    runs = len(batched["runs_events_per_s"])
    assert runs == 3
    assert (
        f"batched through `POST /api/events` {_events_per_s(intake['batched_events_per_s'])} "
        f"in the median of three runs (p99 {_micros(batched['per_event_s']['p99'])};"
    ) in readme
    per_event = intake["variants"]["in-process sqlite live"]["per_event_s"]["p99"]
    assert (
        f"per event {intake['per_event_events_per_s']:,.0f} events/s (p99 {_p99(per_event)})"
    ) in readme
    if intake["batched_meets_targets"]:
        said = "the 5,000/s target is met in this run"
    elif max(batched["runs_events_per_s"]) >= 5000:
        said = "the 5,000/s target is met only by the fastest run"
    else:
        said = "the 5,000/s target is not met"
    assert said in readme


def _p99(seconds: float) -> str:
    return _micros(seconds) if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"
