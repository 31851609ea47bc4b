"""The command line of the drift monitor: ``python -m embedded.drift baseline|watch``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from embedded.drift.monitor import DriftMonitor
from embedded.drift.readers import collector_jsonl_chunks, csv_chunks, parquet_chunks
from embedded.drift.sketch import BaselineSketch, read_csv_columns, summarize
from embedded.drift.stream import Chunk, summarize_stream


def _chunks(paths: list[Path]) -> Iterator[Chunk]:
    """Row chunks of every file, by its kind (.parquet, .jsonl, else CSV)."""
    for path in paths:
        if path.suffix == ".parquet":
            yield from parquet_chunks(path)
        elif path.suffix == ".jsonl":
            yield from collector_jsonl_chunks([path])
        else:
            yield from csv_chunks([path])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embedded.drift", description="Local data-drift monitor."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser(
        "baseline", help="sketch training data (CSV, Parquet or collector JSONL) into JSON"
    )
    base.add_argument(
        "csv",
        type=Path,
        nargs="+",
        help="CSV files or folders of CSV files; .parquet and .jsonl files are read in row "
        "chunks (memory independent of their length)",
    )
    base.add_argument("--out", type=Path, required=True)
    base.add_argument("--categorical", default="", help="comma-separated categorical columns")
    base.add_argument("--exclude", default="label", help="comma-separated columns to skip")
    watch = sub.add_parser("watch", help="check an endpoint's inputs periodically")
    watch.add_argument("--data-dir", type=Path, required=True, help="the platform's data folder")
    watch.add_argument("--model", required=True)
    watch.add_argument("--endpoint", required=True)
    watch.add_argument("--baseline", type=Path, required=True)
    watch.add_argument("--url", help="alert webhook, e.g. http://127.0.0.1:7071/api/alerts")
    watch.add_argument("--key", default="", help="x-functions-key for --url")
    watch.add_argument("--window", type=float, default=3600.0, help="seconds")
    watch.add_argument("--interval", type=float, default=60.0, help="seconds; 0 = check once")
    watch.add_argument("--min-samples", type=int, default=1000)
    return parser


def _baseline(args: argparse.Namespace) -> int:
    """Sketch the training data into a baseline JSON file."""
    paths: list[Path] = []
    for item in args.csv:
        paths.extend(sorted(item.glob("*.csv")) if item.is_dir() else [item])
    categorical = [c for c in args.categorical.split(",") if c] or None
    exclude = [c for c in args.exclude.split(",") if c]
    source = ",".join(str(p) for p in paths)
    if any(p.suffix in (".parquet", ".jsonl") for p in paths):
        sketch = summarize_stream(
            _chunks(paths), categorical=categorical, exclude=exclude, source=source
        )
    else:
        sketch = summarize(
            read_csv_columns(paths), categorical=categorical, exclude=exclude, source=source
        )
    sketch.save(args.out)
    print(f"baseline of {sketch.n} rows, {len(sketch.features)} features -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from shared import log_escape

    log_escape.install()  # request and alert text cannot forge log lines
    if args.command == "baseline":
        return _baseline(args)
    monitor = DriftMonitor(
        args.data_dir,
        model=args.model,
        endpoint=args.endpoint,
        baseline=BaselineSketch.load(args.baseline),
        alert_url=args.url,
        key=args.key,
        window_s=args.window,
        min_samples=args.min_samples,
    )
    if args.interval <= 0:
        print(json.dumps(monitor.check().report.to_json(), indent=2))
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        monitor.run(args.interval, threading.Event())
    return 0
