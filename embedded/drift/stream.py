"""Summarise and compare from row chunks: memory set by the chunk size and column count only.

``summarize_stream`` and ``compare_stream`` take an iterable of chunks (a mapping of column
name to that chunk's values, as ``embedded.drift.readers`` yields them from Parquet, CSV or
collector JSONL). Up to ``exact_rows`` rows are kept as they are and handed to the in-memory
``summarize``/``compare``, so a small input gives exactly their result. Beyond that:

- counts (categories, baseline bins, missing values), means and standard deviations are exact
  (streamed; means and variances merged with Chan's formula);
- quantiles (the baseline's decile edges and 1,000 order statistics, the window's
  distribution for the Wasserstein distance) come from ``quantiles`` summaries, whose rank
  error is bounded by ``(levels + 1) / points`` whatever the row count.

Column kinds are decided on the first chunk (Parquet: by its column types; text: numeric if
every present value is a number); a later value that is not a number counts as missing.

Each chunk is worked on as a whole, not column by column: its numeric columns make one
column-major block (float32 when every column is float32, as read: exact, and half the
sorting), sorted once for the quantile summaries; the sorted block then gives the counts in
the baseline bins with one binary search per edge; means and variances are summed over the
block in float64, a group of columns at a time; Parquet's categorical columns are counted by
Arrow (``value_counts``) without making Python strings of every value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from embedded.drift import quantiles
from embedded.drift.readers import ParquetChunk
from embedded.drift.sketch import (
    BINS,
    MISSING,
    SAMPLE_POINTS,
    BaselineSketch,
    CategoricalSketch,
    FeatureSketch,
    FloatArray,
    NumericSketch,
    _is_numeric,
    categorical_values,
    summarize,
)
from embedded.drift.statistics import (
    DriftReport,
    FeatureDrift,
    Thresholds,
    categorical_statistics_from_counts,
    compare,
    numeric_statistics_from_summary,
)

Chunk = Mapping[str, Any]  # column name -> that chunk's values (sequence or numpy array)
EXACT_ROWS = 4096
POINTS = 1024
MOMENT_COLUMNS = 128  # columns cast to float64 at a time for the moments (8 MB at 8,192 rows)


def floats(values: Any) -> FloatArray:
    """A column's values as floats, NaN where missing or not a number (never raises)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    raw = values if isinstance(values, list | tuple | np.ndarray) else list(values)
    try:
        out = np.asarray(raw, dtype=np.float64)
        if out.ndim == 1:
            return out
    except (TypeError, ValueError):
        pass
    out = np.empty(len(raw), dtype=np.float64)
    for i, value in enumerate(raw):
        try:
            out[i] = float(value) if value is not None and value != "" else math.nan
        except (TypeError, ValueError):
            out[i] = math.nan
    return out


def _rows(chunk: Chunk) -> int:
    if isinstance(chunk, ParquetChunk):
        return chunk.rows
    return max((len(v) for v in chunk.values()), default=0)


def _block(chunk: Chunk, names: Sequence[str], rows: int) -> quantiles.Floats:
    """The numeric columns of a chunk as one rows x k block (column-major, a new array;
    float32 if every column is float32, else float64; NaN where missing)."""
    if isinstance(chunk, ParquetChunk) and set(names) <= set(chunk.floats):
        if tuple(names) == chunk.floats:
            return chunk.block.copy(order="F")
        return np.asfortranarray(chunk.block[:, chunk.positions(names)])
    columns = [chunk.get(name) for name in names]
    single = all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in columns)
    dtype = np.float32 if single and columns else np.float64
    block = np.full((rows, len(names)), np.nan, dtype=dtype, order="F")
    for j, values in enumerate(columns):
        if values is None or not len(values):
            continue
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            block[: len(values), j] = values  # cast in place, no intermediate copy
        else:
            block[: len(values), j] = floats(values)
    return block


class _Moments:
    """Count, mean and sum of squared deviations per column, merged chunk by chunk."""

    def __init__(self, k: int) -> None:
        self.count = np.zeros(k)
        self.mean = np.zeros(k)
        self.m2 = np.zeros(k)

    def add(self, block: quantiles.Floats, finite: npt.NDArray[np.bool_]) -> None:
        """Merge a block's moments (``finite``: its usable values), in float64, a group of
        columns at a time (temporaries of ``MOMENT_COLUMNS`` columns only)."""
        for start in range(0, block.shape[1], MOMENT_COLUMNS):
            group = slice(start, start + MOMENT_COLUMNS)
            self._add(group, block[:, group], finite[:, group])

    def _add(self, group: slice, block: quantiles.Floats, finite: npt.NDArray[np.bool_]) -> None:
        count = finite.sum(axis=0).astype(np.float64)
        deviations = np.where(finite, block.astype(np.float64), 0.0)
        mean = np.where(count > 0, deviations.sum(axis=0) / np.maximum(count, 1), 0.0)
        deviations -= mean[None, :]
        deviations *= finite
        np.square(deviations, out=deviations)
        m2 = deviations.sum(axis=0)
        del deviations
        held_count, held_mean = self.count[group], self.mean[group]
        total = held_count + count
        delta = mean - held_mean
        share = np.where(total > 0, count / np.maximum(total, 1), 0.0)
        self.m2[group] = self.m2[group] + m2 + delta**2 * held_count * share
        self.mean[group] = held_mean + delta * share
        self.count[group] = total

    @property
    def std(self) -> FloatArray:
        out: FloatArray = np.sqrt(self.m2 / np.maximum(self.count, 1))
        return out


class _Exact:
    """The first rows, kept as they are until there are more than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[Chunk] | None = []
        self.rows = 0

    def add(self, chunk: Chunk, rows: int) -> list[Chunk]:
        """The chunks to stream now: none while kept; all kept ones once over the limit."""
        if self.chunks is None:
            return [chunk]
        self.chunks.append(chunk)  # as given: readers hand out a new chunk each time
        self.rows += rows
        if self.rows <= self.limit:
            return []
        kept, self.chunks = self.chunks, None
        return kept

    def columns(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for chunk in self.chunks or []:
            rows = _rows(chunk)
            for name, values in chunk.items():
                column = values.tolist() if isinstance(values, np.ndarray) else list(values)
                if isinstance(values, np.ndarray) and values.dtype.kind == "f":
                    column = [None if v != v else v for v in column]  # NaN: missing
                out.setdefault(name, []).extend(column)
                out[name].extend([None] * (rows - len(values)))
        return out


def _chunks_with_first(chunks: Iterable[Chunk]) -> tuple[Chunk | None, Iterator[Chunk]]:
    iterator = iter(chunks)
    first = next(iterator, None)
    return first, iterator


def _kinds(
    first: Chunk, categorical: Iterable[str] | None, exclude: Iterable[str]
) -> tuple[list[str], list[str]]:
    skip = set(exclude)
    chosen = set(categorical) if categorical is not None else None
    numeric: list[str] = []
    categories: list[str] = []
    for name in first:
        if name in skip:
            continue
        if chosen is not None:
            is_categorical = name in chosen
        elif isinstance(first, ParquetChunk) and name in first.arrow:
            # the column's distinct values decide it as all its values would
            is_categorical = not _is_numeric(first.arrow[name].unique().to_pylist())
        else:
            values = first[name]
            numbers = isinstance(values, np.ndarray) and values.dtype.kind in "fiu"
            is_categorical = not numbers and not _is_numeric(list(values))
        (categories if is_categorical else numeric).append(name)
    return numeric, categories


def summarize_stream(
    chunks: Iterable[Chunk],
    *,
    categorical: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    bins: int = BINS,
    source: str = "",
    exact_rows: int = EXACT_ROWS,
    points: int = POINTS,
) -> BaselineSketch:
    """``summarize`` over row chunks: the same sketch, in memory bounded by the chunk size."""
    first, rest = _chunks_with_first(chunks)
    if first is None:
        return BaselineSketch(MappingProxyType({}), 0, source=source)
    numeric, categories = _kinds(first, categorical, exclude)
    exact = _Exact(exact_rows)
    stream = quantiles.Stream(len(numeric), points)
    moments = _Moments(len(numeric))
    counts: dict[str, Counter[str]] = {name: Counter() for name in categories}
    n = 0
    for incoming in _prepend(first, rest):
        n += _rows(incoming)
        for chunk in exact.add(incoming, _rows(incoming)):
            rows = _rows(chunk)
            for name in categories:
                _count(counts[name], chunk, name, rows)
            if numeric:
                block = _block(chunk, numeric, rows)
                finite = np.isfinite(block)
                moments.add(block, finite)
                stream.add(block, finite)
    if exact.chunks is not None:
        columns = exact.columns()
        return summarize(
            {k: v for k, v in columns.items() if k in set(numeric) | set(categories)},
            categorical=categories,
            bins=bins,
            source=source,
        )
    features: dict[str, FeatureSketch] = {}
    for name in first:
        if name in categories:
            table = {k: int(counts[name][k]) for k in sorted(counts[name])}
            features[name] = CategoricalSketch(MappingProxyType(table), sum(table.values()))
        elif name in numeric:
            j = numeric.index(name)
            sketch = _numeric_sketch(stream, moments, j, bins)
            if sketch is None:
                raise ValueError(f"numeric feature {name!r} needs at least one value")
            features[name] = sketch
    return BaselineSketch(MappingProxyType(features), n, source=source)


def _prepend(first: Chunk, rest: Iterator[Chunk]) -> Iterator[Chunk]:
    yield first
    yield from rest


def _count(counter: Counter[str], chunk: Chunk, name: str, rows: int) -> None:
    """Add a chunk's categorical column to its counts (Parquet: counted by Arrow)."""
    arrow = chunk.arrow.get(name) if isinstance(chunk, ParquetChunk) else None
    if arrow is not None and len(arrow) == rows:
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            found = pc.value_counts(arrow)
        except pa.ArrowNotImplementedError:  # a type Arrow cannot count: as Python values
            found = None
        if found is not None:
            values = found.field("values").to_pylist()
            for value, count in zip(values, found.field("counts").to_pylist(), strict=True):
                counter[MISSING if value is None or value == "" else str(value)] += count
            return
    counter.update(categorical_values(_column(chunk, name, rows)))


def _column(chunk: Chunk, name: str, rows: int) -> Sequence[Any]:
    values = chunk.get(name)
    if values is None:
        return [None] * rows
    values = list(values) if not isinstance(values, list) else values
    return values + [None] * (rows - len(values)) if len(values) < rows else values


def _numeric_sketch(
    stream: quantiles.Stream, moments: _Moments, j: int, bins: int
) -> NumericSketch | None:
    values, weights = stream.column(j)
    if len(values) == 0:
        return None
    n = int(moments.count[j])
    edges = np.unique(quantiles.weighted_quantiles(values, weights, np.arange(1, bins) / bins))
    bin_weights = np.bincount(
        np.searchsorted(edges, values, side="left"), weights=weights, minlength=len(edges) + 1
    )
    counts = quantiles.integer_counts(bin_weights * (n / weights.sum()))
    count_points = min(n, SAMPLE_POINTS)
    probs = (np.arange(count_points) + 0.5) / count_points
    sample = quantiles.weighted_order_statistics(values, weights, probs)
    return NumericSketch(
        tuple(edges.tolist()),
        tuple(counts.tolist()),
        tuple(sample.tolist()),
        float(moments.mean[j]),
        float(moments.std[j]),
        n,
    )


class _BinCounts:
    """Exact counts of each numeric column's values in its baseline bins."""

    def __init__(self, edges: Sequence[npt.NDArray[np.float64]]) -> None:
        self.edges = list(edges)
        self.counts = [np.zeros(len(e) + 1, dtype=np.int64) for e in self.edges]

    def add_sorted(self, block: quantiles.Floats, finite: npt.NDArray[np.intp]) -> None:
        """Count a block whose columns are sorted, the first ``finite[j]`` values of column
        j usable: bin counts are differences of the positions of the edges."""
        for j, edges in enumerate(self.edges):
            column = block[: finite[j], j]
            upto = np.searchsorted(column, edges, side="right")  # values <= each edge
            self.counts[j] += np.diff(upto, prepend=0, append=finite[j])


def compare_stream(
    baseline: BaselineSketch,
    chunks: Iterable[Chunk],
    thresholds: Thresholds | None = None,
    *,
    min_samples: int = 1,
    exact_rows: int = EXACT_ROWS,
    points: int = POINTS,
) -> DriftReport:
    """``compare`` over row chunks of the window: the same report, in bounded memory."""
    thresholds = thresholds or Thresholds()
    numeric = [k for k, s in baseline.features.items() if isinstance(s, NumericSketch)]
    categories = [k for k, s in baseline.features.items() if isinstance(s, CategoricalSketch)]
    sketches = baseline.features
    bins = _BinCounts([np.asarray(_numeric(sketches[k]).edges, dtype=float) for k in numeric])
    stream = quantiles.Stream(len(numeric), points)
    moments = _Moments(len(numeric))
    counts: dict[str, Counter[str]] = {name: Counter() for name in categories}
    present: set[str] = set()
    exact = _Exact(exact_rows)
    n = 0
    for incoming in chunks:
        n += _rows(incoming)
        present.update(incoming)
        for chunk in exact.add(incoming, _rows(incoming)):
            rows = _rows(chunk)
            for name in categories:
                if name in chunk:
                    _count(counts[name], chunk, name, rows)
            if numeric:
                block = _block(chunk, numeric, rows)
                finite = np.isfinite(block)
                moments.add(block, finite)
                stream.add(block, finite)  # sorts the block: missing values last
                bins.add_sorted(block, finite.sum(axis=0))
    if exact.chunks is not None:
        return compare(baseline, exact.columns(), thresholds, min_samples=min_samples)
    seen = _Seen(n, present, numeric, moments, bins, stream, counts)
    features = tuple(_feature(name, sketch, thresholds, seen) for name, sketch in sketches.items())
    return DriftReport(n, min_samples, features)


@dataclass(frozen=True)
class _Seen:
    """What the window's chunks added up to: rows, columns present and the running summaries."""

    n: int
    present: set[str]
    numeric: list[str]
    moments: _Moments
    bins: _BinCounts
    stream: quantiles.Stream
    counts: dict[str, Counter[str]]


def _feature(name: str, sketch: FeatureSketch, thresholds: Thresholds, seen: _Seen) -> FeatureDrift:
    """One feature's drift from the window's summaries, as ``compare`` reports it."""
    limits = thresholds.for_kind(sketch.kind)
    stats: dict[str, float] = {}
    if isinstance(sketch, NumericSketch):
        j = seen.numeric.index(name)
        count = int(seen.moments.count[j]) if name in seen.present else 0
        missing = seen.n - count if name in seen.present else 0
        if count:
            values, weights = seen.stream.column(j)
            stats = numeric_statistics_from_summary(
                sketch, seen.bins.counts[j], values, weights, float(seen.moments.mean[j])
            )
    else:
        table = seen.counts[name]
        count, missing = sum(table.values()), table.get(MISSING, 0)
        stats = categorical_statistics_from_counts(sketch, dict(table)) if count else {}
    breaches = tuple(
        metric
        for metric, limit in limits.items()
        if metric in stats and Thresholds.breached(metric, stats[metric], limit)
    )
    return FeatureDrift(name, sketch.kind, count, missing, stats, dict(limits), breaches)


def _numeric(sketch: FeatureSketch) -> NumericSketch:
    assert isinstance(sketch, NumericSketch)
    return sketch
