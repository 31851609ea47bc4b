"""Ground truth in the workspace blob datastore (``azureml://datastores/...``), against Azurite."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.adapters.ground_truth_blob import BlobGroundTruth
from shared.errors import TransientError
from shared.ground_truth import GroundTruthReader
from tests.integration.azurite import azurite_blob  # noqa: F401 - session fixture, used by name

T = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)
STORE = "azureml://datastores/workspaceblobstore/paths/"


@pytest.fixture
def container(azurite_blob: str) -> Any:  # noqa: F811 - the imported fixture
    service = BlobServiceClient.from_connection_string(azurite_blob)
    client = service.create_container(f"azureml-blobstore-{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


def reader(container: ContainerClient) -> GroundTruthReader:
    return GroundTruthReader(BlobGroundTruth(container))


def test_one_jsonl_blob_gives_the_windows_rows_and_skips_what_does_not_parse(
    container: Any,
) -> None:
    lines = [
        {"time": T.isoformat(), "score": 0.9, "label": 1},
        {"time": (T + timedelta(minutes=5)).timestamp(), "score": 0.2, "label": 0},
        {"time": (T - timedelta(hours=2)).isoformat(), "score": 0.3, "label": 1},  # too old
        {"time": T.isoformat(), "score": 0.5, "label": 7},  # not a class
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    container.upload_blob("labels/credit.jsonl", text)
    got = reader(container).read(
        STORE + "labels/credit.jsonl", T - timedelta(hours=1), T + timedelta(hours=1), binary=True
    )
    assert (got.scores, got.labels, got.skipped) == ([0.9, 0.2], [1.0, 0.0], 2)


def test_a_folder_reads_every_csv_and_jsonl_blob_under_it(container: Any) -> None:
    container.upload_blob("gt/2026-11-30/a.csv", f"time,score,label\n{T.isoformat()},2.5,3.1\n")
    container.upload_blob(
        "gt/2026-11-30/b.jsonl", json.dumps({"time": T.isoformat(), "score": -1, "label": -1.5})
    )
    container.upload_blob("gt/readme.txt", "time,score,label\nnot labels\n")
    container.upload_blob("other/c.csv", f"time,score,label\n{T.isoformat()},9,9\n")
    got = reader(container).read(STORE + "gt/", T, T + timedelta(seconds=1), binary=False)
    assert sorted(zip(got.scores, got.labels, strict=True)) == [(-1.0, -1.5), (2.5, 3.1)]


def test_a_missing_blob_is_unreadable_and_an_unreachable_store_is_transient(
    container: Any,
) -> None:
    window = (T, T + timedelta(hours=1))
    with pytest.raises(OSError, match="not found"):
        reader(container).read(STORE + "labels/none.csv", *window, binary=True)
    assert reader(container).read(STORE + "empty/", *window, binary=True).labels == []
    down = ContainerClient.from_container_url(
        "http://127.0.0.1:9/devstoreaccount1/gone", retry_total=0, connection_timeout=2
    )
    with pytest.raises(TransientError, match="reading ground truth"):
        reader(down).read(STORE + "gt/", *window, binary=True)


def test_a_check_audits_the_realised_value_from_the_datastore(container: Any) -> None:
    from shared.messages import Reconcile
    from tests.unit.test_lifecycle import bus_of
    from tests.unit.test_performance import labelled_degraded, world_with_champion_reference

    world = world_with_champion_reference(ground_truth=STORE + "labels/credit/")
    world.services.labels = reader(container)
    scores, labels = labelled_degraded(1000)
    at = world.clock.now()
    world.scored.add("credit-ep", "blue", at, scores)
    for half in (0, 1):  # two batch files
        rows = zip(scores[half::2], labels[half::2], strict=True)
        text = "time,score,label\n" + "".join(f"{at.isoformat()},{s},{y}\n" for s, y in rows)
        container.upload_blob(f"labels/credit/batch-{half}.csv", text)
    world.clock.advance(60)
    bus_of(world).handle(Reconcile())
    [note] = [r for r in world.audit.records if "vs realised" in r.summary]
    assert note.evidence["rows"] == 1000
    assert note.evidence["value"] == pytest.approx(
        float(np.round(_auc(scores, labels), 6)), abs=1e-6
    )
    assert STORE + "labels/credit/" in note.reason


def _auc(scores: list[float], labels: list[int]) -> float:
    from shared.estimation import realised

    return realised(scores, labels)["auc"]
