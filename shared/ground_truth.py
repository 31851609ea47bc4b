"""Labels that arrived later: realised performance for a window, to set against the estimate.

A ``ground_truth`` file (CSV with a header, or JSONL) has one row per scored request row that
got its label: ``time`` (ISO 8601 or epoch seconds), ``score`` (the positive-class score
served; for a regression model the prediction) and ``label`` (0 or 1; for a regression model
the true value). It is a local file, or on Azure a path in the workspace blob datastore,
``azureml://datastores/workspaceblobstore/paths/<file, or folder ending in />``
(``shared.adapters.ground_truth_blob``). The path comes from the policy, never from an event;
rows that do not parse are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Labelled:
    scores: list[float]
    labels: list[float]
    skipped: int


def _moment(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    try:
        return _moment(float(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse(text: str, *, is_csv: bool) -> list[dict[str, Any]]:
    """Rows of a CSV (with a header) or JSONL text; a line that is not an object is ``{}``."""
    if is_csv:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                row = {}
            out.append(row if isinstance(row, dict) else {})
    return out


def _rows(path: Path) -> list[dict[str, Any]]:
    return parse(
        path.read_text(encoding="utf-8", errors="replace"), is_csv=path.suffix.lower() == ".csv"
    )


def read_window(path: Path, start: datetime, end: datetime, *, binary: bool = True) -> Labelled:
    """Scores and labels of the rows with ``start <= time < end`` (``binary``: labels 0 or 1;
    otherwise any finite target value)."""
    return select(_rows(path), start, end, binary=binary, where=str(path))


def select(
    rows: Iterable[dict[str, Any]], start: datetime, end: datetime, *, binary: bool, where: str
) -> Labelled:
    """The rows of a ground-truth source inside the window; the others skipped and counted."""
    scores: list[float] = []
    labels: list[float] = []
    skipped = 0
    for row in rows:
        at = _moment(row.get("time"))
        try:
            score = float(row.get("score", "nan"))
            label = float(row.get("label", "nan"))
        except (TypeError, ValueError, OverflowError):
            skipped += 1
            continue
        fine = math.isfinite(score) and math.isfinite(label)
        if at is None or not fine or (binary and label not in (0.0, 1.0)):
            skipped += 1
            continue
        if start <= at < end:
            scores.append(score)
            labels.append(label)
    if skipped:
        log.warning(
            "ground truth %s: skipped %d row(s) without time, score and label", where, skipped
        )
    return Labelled(scores, labels, skipped)


DATASTORE_URI = re.compile(
    r"^azureml://datastores/(?P<store>[A-Za-z0-9_]{1,255})/paths/(?P<path>.+)$"
)
WORKSPACE_DATASTORE = "workspaceblobstore"


def datastore_path(source: str) -> tuple[str, str] | None:
    """``(datastore, path)`` of an ``azureml://datastores/<name>/paths/<path>`` URI, else None."""
    match = DATASTORE_URI.match(source)
    return (match["store"], match["path"]) if match else None


class LabelReader(Protocol):
    def read(self, path: str, start: datetime, end: datetime, *, binary: bool) -> Labelled: ...


class GroundTruthReader:
    """Reads a policy's ``ground_truth``: a local file, or a datastore path through ``blob``
    (the workspace blob datastore's reader; None where none is configured)."""

    def __init__(self, blob: LabelReader | None = None) -> None:
        self._blob = blob

    @property
    def blob(self) -> LabelReader | None:
        """The datastore reader (None: only local files can be read)."""
        return self._blob

    def read(self, source: str, start: datetime, end: datetime, *, binary: bool) -> Labelled:
        found = datastore_path(source)
        if found is None:
            return read_window(Path(source), start, end, binary=binary)
        if self._blob is None:
            raise OSError(f"{source}: no blob datastore container is configured to read it from")
        return self._blob.read(found[1], start, end, binary=binary)
