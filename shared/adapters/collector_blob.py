"""The scored-input log on Azure: Azure ML's model data collector output in Blob storage.

The collector writes to the workspace blob datastore (``workspaceblobstore``) under
``modelDataCollector/{endpoint}/{deployment}/{collection}/{yyyy}/{MM}/{dd}/{HH}/{instance}.jsonl``
(hourly rolling, the default). Each line is one logged call: a CloudEvents-shaped object whose
``time`` is when it was logged and whose ``data`` is the list of rows (a DataFrame's records).
The scores come from the ``model_outputs`` collection: per row, a probability (or a regression
model's prediction), a one-field record, a record's ``score_field``, or ``[p0, p1]`` (the last
is the positive class). Integers are class labels, not scores, and are skipped.

The blob contents are data written by the scoring script: a line that is not such an object, or
a row without a finite (float) score, is skipped and counted in the log, never trusted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "modelDataCollector"
OUTPUTS = "model_outputs"
MAX_BLOB_BYTES = 64 * 1024 * 1024  # one hourly file of one instance; larger ones are skipped


def _hours(start: datetime, end: datetime) -> Iterator[datetime]:
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def score_of(row: Any, score_field: str) -> float | None:
    """The positive-class score (or regression prediction) of one collected output row, or
    None if it has none."""
    value: Any = row
    if isinstance(row, dict):
        if score_field in row:
            value = row[score_field]
        elif len(row) == 1:
            value = next(iter(row.values()))
        else:
            return None
    if isinstance(value, list) and len(value) == 2:
        value = value[1]
    if not isinstance(value, float):  # an int (or bool) is a class label, not a score
        return None
    score = float(value)
    return score if math.isfinite(score) else None


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class CollectorScoredLog:
    """``ScoredLog`` over a ``ContainerClient`` of the workspace blob datastore."""

    def __init__(
        self,
        container: Any,  # azure.storage.blob.ContainerClient
        *,
        prefix: str = PREFIX,
        collection: str = OUTPUTS,
        score_field: str = "score",
    ) -> None:
        self._container = container
        self._prefix = prefix.strip("/")
        self._collection = collection
        self._score_field = score_field

    def _deployments(self, endpoint: str) -> list[str]:
        folder = f"{self._prefix}/{endpoint}/"
        return [
            item.name[len(folder) :].strip("/")
            for item in self._container.walk_blobs(name_starts_with=folder, delimiter="/")
            if item.name.endswith("/")
        ]

    def scores(
        self, endpoint: str, deployment: str | None, start: datetime, end: datetime, limit: int
    ) -> list[float]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from shared.errors import TransientError

        found: list[tuple[datetime, int, float]] = []
        skipped = 0
        try:
            deployments = [deployment] if deployment else self._deployments(endpoint)
            for dep in deployments:
                base = f"{self._prefix}/{endpoint}/{dep}/{self._collection}"
                for hour in _hours(start, end):
                    folder = f"{base}/{hour:%Y/%m/%d/%H}/"
                    for blob in self._container.list_blobs(name_starts_with=folder):
                        if not blob.name.endswith(".jsonl") or blob.size > MAX_BLOB_BYTES:
                            skipped += 1
                            continue
                        try:
                            text = self._container.download_blob(blob.name).readall()
                        except ResourceNotFoundError:  # rolled away between list and read
                            continue
                        skipped += self._parse(text, start, end, found)
        except AzureError as exc:
            raise TransientError(f"reading collected model outputs of {endpoint}: {exc}") from exc
        if skipped:
            log.warning(
                "%s: skipped %d collected line(s)/row(s) without a score", endpoint, skipped
            )
        found.sort(key=lambda item: (item[0], item[1]))
        return [score for _, _, score in found[-limit:]] if limit > 0 else []

    def _parse(
        self, text: bytes, start: datetime, end: datetime, found: list[tuple[datetime, int, float]]
    ) -> int:
        skipped = 0
        for line in text.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            at = _time(event.get("time")) if isinstance(event, dict) else None
            rows = event.get("data") if isinstance(event, dict) else None
            if at is None or not isinstance(rows, list):
                skipped += 1
                continue
            if not start <= at < end:
                continue
            for row in rows:
                score = score_of(row, self._score_field)
                if score is None:
                    skipped += 1
                else:
                    found.append((at, len(found), score))
        return skipped
