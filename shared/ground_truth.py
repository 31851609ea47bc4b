"""Labels that arrived later: realised performance for a window, to set against the estimate.

A ``ground_truth`` file (CSV with a header, or JSONL) has one row per scored request row that
got its label: ``time`` (ISO 8601 or epoch seconds), ``score`` (the positive-class score served)
and ``label`` (0 or 1). The path comes from the policy, never from an event; rows that do not
parse are skipped and counted.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Labelled:
    scores: list[float]
    labels: list[int]
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


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            return list(csv.DictReader(handle))
        out: list[dict[str, Any]] = []
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    row = {}
                out.append(row if isinstance(row, dict) else {})
        return out


def read_window(path: Path, start: datetime, end: datetime) -> Labelled:
    """Scores and labels of the rows with ``start <= time < end``."""
    scores: list[float] = []
    labels: list[int] = []
    skipped = 0
    for row in _rows(path):
        at = _moment(row.get("time"))
        try:
            score = float(row.get("score", "nan"))
            label = int(float(row.get("label", "nan")))
        except (TypeError, ValueError, OverflowError):
            skipped += 1
            continue
        if at is None or not math.isfinite(score) or label not in (0, 1):
            skipped += 1
            continue
        if start <= at < end:
            scores.append(score)
            labels.append(label)
    if skipped:
        log.warning(
            "ground truth %s: skipped %d row(s) without time, score and label", path, skipped
        )
    return Labelled(scores, labels, skipped)
