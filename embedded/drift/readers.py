"""Row chunks from Parquet, CSV and Azure ML data collector JSONL, for ``embedded.drift.stream``.

Each reader yields ``{column: values}`` for at most ``rows`` rows at a time, so memory is set
by the chunk, never by the file. Parquet numeric columns come as numpy arrays (nulls as NaN),
other columns as lists; CSV values come as text, as ``read_csv_columns`` reads them. A Parquet
chunk (``ParquetChunk``) also holds its floating-point columns as one column-major 2-D block
(one ``to_tensor`` call for all of them) and its other columns as Arrow arrays, which
``embedded.drift.stream`` uses directly instead of column by column.

The collector (``modelDataCollector/.../*.jsonl``, see ``shared.adapters.collector_blob``)
writes one logged call per line: an object whose ``data`` is the list of rows of that call.
A line that is not such an object, and a row that is not an object, are skipped and counted:
the file is data written by the scoring script, never trusted.
"""

from __future__ import annotations

import csv
import json
import logging
import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

CHUNK_ROWS = 8_192


@dataclass(frozen=True, eq=False)
class ParquetChunk(Mapping[str, Any]):
    """One Parquet record batch as ``{column: values}``. Floating-point columns are views of
    ``block`` (rows x len(floats), column-major, nulls as NaN); integer columns numpy arrays
    (nulls as NaN); other columns ``arrow`` arrays, read as Python lists on first access."""

    names: tuple[str, ...]
    floats: tuple[str, ...]
    block: npt.NDArray[np.floating] = field(repr=False)
    arrays: Mapping[str, Any] = field(repr=False)  # integer columns as numpy arrays
    arrow: Mapping[str, Any] = field(repr=False)  # other columns as pyarrow arrays
    _lists: dict[str, list[Any]] = field(default_factory=dict, repr=False)
    _where: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._where.update((name, j) for j, name in enumerate(self.floats))

    @property
    def rows(self) -> int:
        return int(self.block.shape[0])

    def positions(self, names: Sequence[str]) -> list[int]:
        """Where each of ``names`` (floating-point columns) is in ``block``."""
        return [self._where[name] for name in names]

    def __getitem__(self, name: str) -> Any:
        if name in self.arrays:
            return self.arrays[name]
        if name in self.arrow:
            if name not in self._lists:
                self._lists[name] = self.arrow[name].to_pylist()
            return self._lists[name]
        if name in self._where:
            return self.block[:, self._where[name]]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)


def parquet_chunks(
    path: Path,
    rows: int = CHUNK_ROWS,
    columns: Sequence[str] | None = None,
    *,
    prefetch: bool = True,
) -> Generator[ParquetChunk, None, None]:
    """A Parquet file, ``rows`` rows at a time (pyarrow record batches). With ``prefetch``
    the next chunk is decoded in a thread while the caller works on this one (Arrow and
    numpy release the GIL: a second core decodes; memory: one chunk more)."""
    chunks = _parquet_chunks(path, rows, columns)
    return _prefetched(chunks) if prefetch else chunks


def _parquet_chunks(
    path: Path, rows: int, columns: Sequence[str] | None
) -> Generator[ParquetChunk, None, None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # pre_buffer off: a wide row group is not read ahead whole (about 100 MB less at 1,000
    # columns x 16,384 rows); memory is then about one decoded row group and one chunk.
    with pq.ParquetFile(path, pre_buffer=False) as handle:
        for batch in handle.iter_batches(batch_size=rows, columns=columns):
            names = tuple(batch.schema.names)
            floats = tuple(n for n in names if pa.types.is_floating(batch.schema.field(n).type))
            if floats:  # all floating columns at once; mixed widths become float64
                tensor = batch.select(list(floats)).to_tensor(null_to_nan=True, row_major=False)
                block = np.asarray(tensor.to_numpy())
            else:
                block = np.empty((batch.num_rows, 0), dtype=np.float64)  # carries the rows
            arrays: dict[str, Any] = {}
            arrow: dict[str, Any] = {}
            for name, column in zip(names, batch.columns, strict=True):
                if pa.types.is_integer(column.type):
                    arrays[name] = column.to_numpy(zero_copy_only=False)  # nulls: NaN
                elif name not in floats:
                    arrow[name] = column
            yield ParquetChunk(names, floats, block, arrays, arrow)


def _prefetched(chunks: Generator[ParquetChunk, None, None]) -> Generator[ParquetChunk, None, None]:
    """``chunks``, each produced in a worker thread while the previous one is in use. An
    error in the worker is raised here; closing this generator stops the worker."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for chunk in chunks:
                if not put(("chunk", chunk)):
                    return
            put(("end", None))
        except BaseException as error:  # handed to the consumer, raised there
            put(("error", error))
        finally:
            chunks.close()  # the file, in the thread that read it

    worker = threading.Thread(target=work, name="parquet-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def csv_chunks(paths: Iterable[Path], rows: int = CHUNK_ROWS) -> Iterator[dict[str, list[str]]]:
    """CSV files (one header each), ``rows`` rows at a time, values as text."""
    for path in paths:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                continue
            block: list[list[str]] = []
            for record in reader:
                block.append(record)
                if len(block) >= rows:
                    yield _columns_of(header, block)
                    block = []
            if block:
                yield _columns_of(header, block)


def _columns_of(header: list[str], block: list[list[str]]) -> dict[str, list[str]]:
    width = len(header)
    padded = [r[:width] + [""] * (width - len(r)) for r in block]
    return {name: [r[j] for r in padded] for j, name in enumerate(header)}


@dataclass
class Skipped:
    """What a JSONL read skipped: lines that were not logged calls, rows that were not rows."""

    lines: int = 0
    rows: int = 0


def collector_jsonl_chunks(
    sources: Iterable[Path | IO[str]],
    rows: int = CHUNK_ROWS,
    skipped: Skipped | None = None,
) -> Iterator[dict[str, list[Any]]]:
    """Rows of data collector JSONL files (or open text streams), ``rows`` at a time."""
    skipped = skipped if skipped is not None else Skipped()
    block: list[dict[str, Any]] = []
    for source in sources:
        for line in _lines(source):
            for row in _rows_of(line, skipped):
                block.append(row)
                if len(block) >= rows:
                    yield _records_to_columns(block)
                    block = []
    if block:
        yield _records_to_columns(block)
    if skipped.lines or skipped.rows:
        log.warning("collector JSONL: skipped %d lines, %d rows", skipped.lines, skipped.rows)


def _lines(source: Path | IO[str]) -> Iterator[str]:
    if isinstance(source, Path):
        with source.open(encoding="utf-8") as handle:
            yield from handle
    else:
        yield from source


def _rows_of(line: str, skipped: Skipped) -> list[dict[str, Any]]:
    if not line.strip():
        return []
    try:
        record = json.loads(line)
    except ValueError:
        skipped.lines += 1
        return []
    data = record.get("data") if isinstance(record, dict) else None
    if isinstance(data, dict):  # one row logged on its own
        data = [data]
    if not isinstance(data, list):
        skipped.lines += 1
        return []
    out = [row for row in data if isinstance(row, dict)]
    skipped.rows += len(data) - len(out)
    return out


def _records_to_columns(block: list[dict[str, Any]]) -> dict[str, list[Any]]:
    names: dict[str, None] = {}
    for row in block:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name) for row in block] for name in names}
