"""Ground truth on Azure: labels in the workspace blob datastore, read with azure-storage-blob.

The policy names ``azureml://datastores/workspaceblobstore/paths/<path>``; ``<path>`` is one
CSV or JSONL blob, or a folder (ending in ``/``) whose ``.csv`` / ``.jsonl`` blobs are all read
(labels often arrive as one file per batch). The container is the one of
``AUTOPILOT_COLLECTOR_CONTAINER_URL`` (the same datastore the data collector writes to), read
with the Function App's identity. Blob contents are data: rows that do not parse are skipped
and counted (``shared.ground_truth.select``), blobs over ``MAX_BLOB_BYTES`` are skipped.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from shared.ground_truth import Labelled, parse, select

log = logging.getLogger(__name__)

MAX_BLOB_BYTES = 64 * 1024 * 1024
MAX_BLOBS = 1000  # of a folder, newest names last (batch files are usually named by time)
SUFFIXES = (".csv", ".jsonl")


class BlobGroundTruth:
    """Reads ground-truth rows of a window from blobs of a ``ContainerClient``."""

    def __init__(self, container: Any) -> None:  # azure.storage.blob.ContainerClient
        self._container = container

    def _names(self, path: str) -> list[str]:
        if not path.endswith("/"):
            return [path]
        names = [
            blob.name
            for blob in self._container.list_blobs(name_starts_with=path)
            if blob.name.lower().endswith(SUFFIXES) and blob.size <= MAX_BLOB_BYTES
        ]
        return sorted(names)[-MAX_BLOBS:]

    def read(self, path: str, start: datetime, end: datetime, *, binary: bool) -> Labelled:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        from shared.errors import TransientError

        rows: list[dict[str, Any]] = []
        try:
            for name in self._names(path):
                try:
                    blob = self._container.download_blob(name, max_concurrency=1)
                except ResourceNotFoundError as exc:
                    if name == path:  # the one file the policy names is not there
                        raise OSError(f"ground truth blob {name} not found") from exc
                    continue  # rolled away between list and read
                if blob.size > MAX_BLOB_BYTES:
                    log.warning(
                        "ground truth blob %s is over %d bytes: skipped", name, MAX_BLOB_BYTES
                    )
                    continue
                text = blob.readall().decode("utf-8", errors="replace")
                rows.extend(parse(text, is_csv=name.lower().endswith(".csv")))
        except AzureError as exc:
            raise TransientError(f"reading ground truth {path}: {exc}") from exc
        return select(rows, start, end, binary=binary, where=path)
