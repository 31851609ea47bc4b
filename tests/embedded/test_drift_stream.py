"""Drift from row chunks (embedded.drift.stream) and the Parquet, CSV and JSONL readers.

Small inputs give exactly the in-memory result; larger ones (past the exact rows, through the
quantile summaries) stay within the summaries' bounded error of it.
"""

from __future__ import annotations

import csv
import io
import json
import threading
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


def wide(rows: int, seed: int, shift: float = 0.0) -> dict[str, Any]:
    """Wide-data columns as the drift-wide benchmark writes them: float32 numbers (some
    integer-valued, so ties sit on bin edges; some missing), a float64 and an integer code,
    text categories with nulls and empty strings."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for j in range(12):
        values = rng.normal(j + shift, 1 + j / 4, rows)
        if j % 3 == 0:
            values = np.round(values)  # heavy ties
        values[rng.random(rows) < 0.03] = np.nan
        columns[f"x{j}"] = values.astype(np.float32)
    columns["wide64"] = rng.lognormal(shift, 0.5, rows)
    columns["code"] = rng.integers(1, 4, rows)
    labels = np.asarray(["north", "south", "", None], dtype=object)
    columns["region"] = labels[rng.choice(4, rows, p=[0.5, 0.3, 0.1, 0.1])].tolist()
    return columns


def in_memory_columns(columns: dict[str, Any]) -> dict[str, list[Any]]:
    """The same columns as Python values (NaN: None), for the exact in-memory functions."""
    out: dict[str, list[Any]] = {}
    for name, values in columns.items():
        if isinstance(values, np.ndarray):
            out[name] = [None if v != v else v for v in values.tolist()]
        else:
            out[name] = list(values)
    return out


def test_wide_parquet_streamed_matches_the_exact_in_memory_computation(tmp_path: Path) -> None:
    """The whole-chunk path (float32 block, bins from the sorted block, Arrow counts) against
    ``summarize``/``compare`` on the same values: counts, bins, means, std and the bin-based
    statistics exact; quantile-based figures within the summaries' rank error."""
    reference, current = wide(20_000, 11), wide(8_000, 12, shift=0.2)
    paths = {}
    for side, columns in (("ref", reference), ("cur", current)):
        paths[side] = tmp_path / f"{side}.parquet"
        pq.write_table(pa.table(columns), paths[side], row_group_size=3000)
    # past 500 rows: streamed (1,024 points; 14 chunks make at most 4 levels)
    kinds: dict[str, Any] = {"categorical": ["code", "region"], "exclude": ["x3"]}
    streamed = summarize_stream(parquet_chunks(paths["ref"], rows=1500), exact_rows=500, **kinds)
    exact = summarize(in_memory_columns(reference), **kinds)
    assert "x3" not in streamed.features  # the other float columns: taken from the block
    assert streamed.features["code"] == exact.features["code"]  # "1", not "1.0"
    assert streamed.features["region"] == exact.features["region"]  # None and "": missing
    for name, sketch in exact.features.items():
        if not isinstance(sketch, NumericSketch):
            continue
        other = streamed.features[name]
        assert isinstance(other, NumericSketch)
        assert other.n == sketch.n and other.mean == pytest.approx(sketch.mean, rel=1e-9)
        assert other.std == pytest.approx(sketch.std, rel=1e-9)
        values = np.asarray(reference[name], dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(sketch.edges) == 9:
            within(values, np.asarray(other.edges), np.arange(1, 10) / 10, 5 / 1024)
        else:  # tied deciles merged: the same few integers
            assert other.edges == sketch.edges
        within(values, np.asarray(other.sample), (np.arange(1000) + 0.5) / 1000, 5 / 1024)
    report = compare_stream(streamed, parquet_chunks(paths["cur"], rows=1500), exact_rows=500)
    wanted = compare(streamed, in_memory_columns(current))
    assert report.n == wanted.n == 8_000
    for got, want in zip(report.features, wanted.features, strict=True):
        assert (got.feature, got.n, got.missing) == (want.feature, want.n, want.missing)
        for metric in ("jensen_shannon", "psi", "chi2_pvalue", "mean", "new_categories"):
            if metric in want.statistics:  # from exact counts in the same baseline bins
                assert got.statistics[metric] == pytest.approx(want.statistics[metric], abs=1e-9)
        if "normalized_wasserstein" in want.statistics:
            assert got.statistics["normalized_wasserstein"] == pytest.approx(
                want.statistics["normalized_wasserstein"], rel=0.05, abs=0.005
            )
    assert report.drifted_features == wanted.drifted_features


def test_parquet_chunks_prefetch_raises_the_readers_error_and_stops_when_closed(
    tmp_path: Path,
) -> None:
    with pytest.raises(OSError):
        next(parquet_chunks(tmp_path / "missing.parquet"))
    path = tmp_path / "ref.parquet"
    pq.write_table(pa.table(wide(5000, 13)), path, row_group_size=500)
    chunks = parquet_chunks(path, rows=500)
    first = next(chunks)
    wanted = pa.table(wide(5000, 13))["x1"].to_numpy()[:500]
    assert first.rows == 500 and np.array_equal(first["x1"], wanted, equal_nan=True)
    chunks.close()  # stops the worker before the file's other nine chunks
    assert not [t for t in threading.enumerate() if t.name == "parquet-prefetch"]


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
