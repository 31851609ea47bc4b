"""Reading Azure ML's model data collector output from Blob storage, against Azurite."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.adapters.collector_blob import CollectorScoredLog, score_of
from tests.integration.azurite import azurite_blob  # noqa: F401 - session fixture, used by name

T = datetime(2026, 11, 30, 9, 30, tzinfo=UTC)


def line(at: datetime, rows: list[Any], kind: str = "outputs") -> str:
    """One collected call, in the collector's documented shape."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/subscriptions/s/resourceGroups/g/providers/"
            "Microsoft.MachineLearningServices/workspaces/w/onlineEndpoints/ep/deployments/d",
            "type": f"azureml.inference.{kind}",
            "datacontenttype": "application/json",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": rows,
            "correlationid": str(uuid.uuid4()),
            "modelversion": "default",
            "collectdatatype": "pandas.core.frame.DataFrame",
            "agent": "monitoring-sdk/1.0.0",
        }
    )


def put(
    container: ContainerClient, dep: str, collection: str, at: datetime, lines: list[str]
) -> None:
    name = f"modelDataCollector/ep/{dep}/{collection}/{at:%Y/%m/%d/%H}/{uuid.uuid4()}.jsonl"
    container.upload_blob(name, "\n".join(lines) + "\n")


@pytest.fixture
def container(azurite_blob: str) -> Any:  # noqa: F811 - the imported fixture
    service = BlobServiceClient.from_connection_string(azurite_blob)
    client = service.create_container(f"azureml-blobstore-{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


def test_scores_of_one_deployment_in_the_window_across_hourly_folders(container: Any) -> None:
    put(container, "blue", "model_outputs", T, [line(T, [{"score": 0.2}, {"score": 0.9}])])
    later = T + timedelta(hours=1)
    put(container, "blue", "model_outputs", later, [line(later, [0.4, [0.3, 0.7]])])
    put(container, "blue", "model_inputs", T, [line(T, [{"income": 1.0}], "inputs")])
    put(container, "green", "model_outputs", T, [line(T, [{"score": 0.5}])])
    too_old = T - timedelta(hours=3)
    put(container, "blue", "model_outputs", too_old, [line(too_old, [{"score": 0.1}])])
    log = CollectorScoredLog(container)
    scores = log.scores("ep", "blue", T - timedelta(minutes=5), T + timedelta(hours=2), 100)
    assert scores == [0.2, 0.9, 0.4, 0.7]
    both = log.scores("ep", None, T - timedelta(minutes=5), T + timedelta(hours=2), 100)
    assert sorted(both) == [0.2, 0.4, 0.5, 0.7, 0.9]
    newest = log.scores("ep", "blue", T - timedelta(minutes=5), T + timedelta(hours=2), 2)
    assert newest == [0.4, 0.7]


def test_lines_and_rows_without_a_score_are_skipped_not_trusted(container: Any) -> None:
    lines = [
        "not json",
        json.dumps({"time": "yesterday", "data": [0.5]}),
        json.dumps(["a", "list"]),
        line(T, [{"score": 1e400}, {"score": "0.3"}, {"a": 1, "b": 2}, 7, True, {"score": 0.6}]),
    ]
    put(container, "blue", "model_outputs", T, lines)
    scores = CollectorScoredLog(container).scores("ep", "blue", T, T + timedelta(minutes=1), 10)
    assert scores == [0.6]


def test_a_missing_endpoint_has_no_scores(container: Any) -> None:
    assert CollectorScoredLog(container).scores("nope", None, T, T + timedelta(hours=1), 10) == []


@pytest.mark.parametrize(
    ("row", "score"),
    [
        (0.25, 0.25),
        ({"score": 0.5}, 0.5),
        ({"prob": 0.1}, 0.1),
        ([0.8, 0.2], 0.2),
        (1.5, 1.5),  # a regression model's prediction (DLE)
        (float("inf"), None),
        (1, None),  # a class label
        (True, None),
        ({"score": 0.5, "label": 1}, 0.5),
    ],
)
def test_score_of_reads_the_documented_row_shapes(row: Any, score: float | None) -> None:
    assert score_of(row, "score") == score
