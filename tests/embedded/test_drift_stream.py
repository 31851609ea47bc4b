"""Drift from row chunks (embedded.drift.stream) and the Parquet, CSV and JSONL readers.

Small inputs give exactly the in-memory result; larger ones (past the exact rows, through the
quantile summaries) stay within the summaries' bounded error of it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedded.drift import (
    BaselineSketch,
    NumericSketch,
    compare,
    compare_stream,
    quantiles,
    summarize,
    summarize_stream,
)
from embedded.drift.readers import Skipped, collector_jsonl_chunks, csv_chunks, parquet_chunks


def data(rows: int, seed: int, shift: float = 0.0) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10 + shift, 0.5, rows)
    age = rng.integers(18, 90, rows).astype(float)
    age[rng.random(rows) < 0.05] = np.nan  # some missing
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.4, 0.3, 0.2, 0.1])
    return {
        "income": [float(v) for v in income],
        "age": [None if np.isnan(v) else float(v) for v in age],
        "region": [str(v) for v in region],
    }


def chunked(columns: dict[str, list[Any]], size: int) -> list[dict[str, list[Any]]]:
    rows = len(next(iter(columns.values())))
    return [{k: v[i : i + size] for k, v in columns.items()} for i in range(0, rows, size)]


def within(values: np.ndarray, found: np.ndarray, probs: np.ndarray, error: float) -> None:
    """Each found value is a quantile of ``values`` at its prob, give or take ``error``."""
    ordered = np.sort(values)
    below = np.searchsorted(ordered, found, side="left") / len(values)
    upto = np.searchsorted(ordered, found, side="right") / len(values)
    assert len(found) == len(probs)
    assert np.all(below - error <= probs) and np.all(probs <= upto + error)


@pytest.mark.parametrize("size", [3, 100, 3000])
def test_small_data_in_chunks_gives_exactly_the_in_memory_result(size: int) -> None:
    reference, current = data(3000, 1), data(2500, 2, shift=0.3)
    in_memory = summarize(reference)
    streamed = summarize_stream(chunked(reference, size))
    assert streamed.to_json() | {"created_at": ""} == in_memory.to_json() | {"created_at": ""}
    report = compare(in_memory, current)
    assert compare_stream(in_memory, chunked(current, size)).to_json() == report.to_json()
    assert report.drifted  # the shift is found both ways


def test_large_data_streamed_stays_close_to_the_in_memory_result() -> None:
    """Past exact_rows: counts, means and std exact; quantile-based figures within 1 %."""
    reference, current = data(60_000, 3), data(30_000, 4, shift=0.05)
    exact = summarize(reference)
    streamed = summarize_stream(chunked(reference, 4096), exact_rows=1000, points=256)
    assert streamed.n == exact.n == 60_000
    for name, sketch in exact.features.items():
        other = streamed.features[name]
        if isinstance(sketch, NumericSketch):
            assert isinstance(other, NumericSketch)
            assert other.n == sketch.n and other.mean == pytest.approx(sketch.mean, rel=1e-9)
            assert other.std == pytest.approx(sketch.std, rel=1e-9)
            values = np.asarray([v for v in reference[name] if v is not None])
            # each streamed decile edge sits within the summaries' rank error (15 chunks: at
            # most 4 levels, so 5/256) of the true decile (ties: anywhere in the tied run)
            within(values, np.asarray(other.edges), np.arange(1, 10) / 10, 5 / 256)
            assert sum(other.counts) == sketch.n
            # and each of the 1,000 order statistics
            wanted = (np.arange(len(other.sample)) + 0.5) / len(other.sample)
            within(values, np.asarray(other.sample), wanted, 5 / 256)
        else:
            assert other == sketch  # category counts are exact
    in_memory = compare(exact, current).to_json()
    streamed_report = compare_stream(exact, chunked(current, 4096), exact_rows=1000, points=256)
    for got, want in zip(streamed_report.to_json()["features"], in_memory["features"], strict=True):
        assert (got["n"], got["missing"], got["breaches"]) == (
            want["n"],
            want["missing"],
            want["breaches"],
        )
        for metric in ("jensen_shannon", "psi", "chi2_pvalue", "mean"):
            if metric in want["statistics"]:
                assert got["statistics"][metric] == pytest.approx(
                    want["statistics"][metric], abs=1e-6
                )
        if "normalized_wasserstein" in want["statistics"]:
            assert got["statistics"]["normalized_wasserstein"] == pytest.approx(
                want["statistics"]["normalized_wasserstein"], abs=0.01
            )


def test_quantile_summaries_keep_their_rank_error_bound() -> None:
    rng = np.random.default_rng(5)
    values = rng.standard_cauchy((40_000, 3))
    values[rng.random(values.shape) < 0.1] = np.nan
    stream = quantiles.Stream(3, points=128)
    for start in range(0, 40_000, 1000):
        stream.add(values[start : start + 1000].copy())
    for j in range(3):
        column = values[:, j][np.isfinite(values[:, j])]
        points, weights = stream.column(j)
        assert weights.sum() == pytest.approx(len(column))
        probs = np.linspace(0.01, 0.99, 50)
        found = quantiles.weighted_order_statistics(points, weights, probs)
        ranks = np.searchsorted(np.sort(column), found, side="right") / len(column)
        levels = 6  # 40 chunks: at most log2(40) + 1 summaries
        assert np.max(np.abs(ranks - probs)) <= (levels + 1) / 128


def test_parquet_reader_gives_the_in_memory_result(tmp_path: Path) -> None:
    reference = data(3000, 6)
    path = tmp_path / "ref.parquet"
    pq.write_table(pa.table(reference), path, row_group_size=500)
    chunks = list(parquet_chunks(path, rows=700))
    assert [len(c["income"]) for c in chunks] == [700, 700, 700, 700, 200]
    assert isinstance(chunks[0]["age"], np.ndarray) and np.isnan(chunks[0]["age"]).any()
    streamed = summarize_stream(parquet_chunks(path, rows=700))
    assert streamed.to_json()["features"] == summarize(reference).to_json()["features"]


def test_csv_reader_gives_the_in_memory_result(tmp_path: Path) -> None:
    reference = data(2000, 7)
    path = tmp_path / "ref.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(reference)
        for row in zip(*reference.values(), strict=True):
            writer.writerow(["" if v is None else v for v in row])
    chunks = list(csv_chunks([path], rows=300))
    assert len(chunks) == 7 and chunks[0]["region"][:1] == [reference["region"][0]]
    from embedded.drift import read_csv_columns

    in_memory = summarize(read_csv_columns([path]), source="x")
    streamed = summarize_stream(csv_chunks([path], rows=300), source="x")
    assert streamed.to_json()["features"] == in_memory.to_json()["features"]


def test_collector_jsonl_rows_are_read_and_bad_lines_skipped_and_counted() -> None:
    def line(rows: Any) -> str:
        return json.dumps({"specversion": "1.0", "time": "2026-01-01T00:00:00Z", "data": rows})

    text = "\n".join(
        [
            line([{"income": 1.0, "region": "north"}, {"income": 2.0, "region": "south"}]),
            "not json",
            line("not rows"),
            line([{"income": 3.0, "region": "east"}, 42]),
            "",
            line([{"income": 4.0}]),
        ]
    )
    skipped = Skipped()
    chunks = list(collector_jsonl_chunks([io.StringIO(text)], rows=3, skipped=skipped))
    assert chunks == [
        {"income": [1.0, 2.0, 3.0], "region": ["north", "south", "east"]},
        {"income": [4.0]},
    ]
    assert (skipped.lines, skipped.rows) == (2, 1)
    baseline = summarize({"income": [1.0, 2.0, 3.0, 4.0], "region": ["a"] * 4})
    assert isinstance(baseline, BaselineSketch)
    report = compare_stream(baseline, collector_jsonl_chunks([io.StringIO(text)], rows=3))
    income = report.features[0]
    assert (income.feature, income.n, income.missing) == ("income", 4, 0)


def test_the_baseline_command_reads_parquet_and_jsonl_in_chunks(tmp_path: Path) -> None:
    from embedded.drift.cli import main

    reference = data(1500, 8)
    parquet = tmp_path / "ref.parquet"
    pq.write_table(pa.table(reference), parquet)
    jsonl = tmp_path / "collected.jsonl"
    rows = [
        dict(zip(reference, values, strict=True))
        for values in zip(*reference.values(), strict=True)
    ]
    jsonl.write_text("\n".join(json.dumps({"data": rows[i : i + 50]}) for i in range(0, 1500, 50)))
    expected = summarize(reference, exclude=["label"]).to_json()["features"]
    for path in (parquet, jsonl):
        out = tmp_path / f"{path.suffix[1:]}.json"
        assert main(["baseline", str(path), "--out", str(out)]) == 0
        assert BaselineSketch.load(out).to_json()["features"] == expected
