"""The embedded platform for real: train.py runs as a job, MLflow registers, the endpoint serves.

One module fixture runs the whole story once (about 25 s on 2 cores): a first model trained on
the original data and made champion; then, side by side, a retrain on shifted data and a
deliberately worse retrain, both scored against that champion on the same held-out rows.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from embedded.events import ListEventSink
from embedded.platform import LocalMLPlatform
from shared.errors import AlreadyExists, NotFound, PermanentError
from shared.model import JobRequest, JobStatus
from tests.embedded.conftest import ROOT, load_example, wait_until
from tests.embedded.test_endpoint import call

pytestmark = pytest.mark.slow

MODEL = "credit-risk"
COMMAND = (
    "{python}",
    "examples/model/train.py",
    "--data-dir",
    "{inputs.data_dir}",
    "--model-name",
    "{inputs.model_name}",
    "--outputs",
    "{outputs}",
    "--window",
    "1500",
)


@dataclass
class Story:
    platform: LocalMLPlatform
    sink: ListEventSink
    champion_before: str | None = None
    challenger_alias: str | None = None
    first: str = ""
    retrained: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def _job(name: str, data_dir: Path, *extra: str) -> JobRequest:
    return JobRequest(
        name=name,
        model=MODEL,
        experiment="credit-risk-retrain",
        command=COMMAND + extra,
        inputs={"data_dir": str(data_dir), "model_name": MODEL},
        tags={"autopilot_cycle": f"cycle-{name}"},
        timeout_s=180,
    )


def _wait(platform: LocalMLPlatform, *names: str) -> None:
    assert wait_until(
        lambda: all(platform.get_job(n).status.is_terminal for n in names), timeout=180
    )
    for name in names:
        info = platform.get_job(name)
        assert info.status is JobStatus.COMPLETED, (name, info.error)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    gen = load_example("generate_data")
    root = tmp_path_factory.mktemp("mlflow-story")
    before, after = root / "data-before", root / "data-after"
    gen.write_csv(before / "batch-0001.csv", gen.generate(1500, seed=1))
    after.mkdir()
    shutil.copy(before / "batch-0001.csv", after / "batch-0001.csv")
    gen.write_csv(after / "batch-0002.csv", gen.generate(1500, seed=2, shift=True))

    sink = ListEventSink()
    platform = LocalMLPlatform(root / "platform", event_sink=sink, code_dir=ROOT)
    story = Story(platform, sink)
    try:
        platform.submit_job(_job("train-1", before))
        _wait(platform, "train-1")
        story.champion_before = platform.champion_version(MODEL, MODEL)
        story.first = platform.register_model(MODEL, "train-1", {"autopilot_cycle": "cycle-1"})
        story.challenger_alias = platform.registry.alias_version(MODEL, "challenger")
        platform.set_champion(MODEL, story.first)

        started = time.monotonic()
        platform.submit_job(_job("train-2", after))
        platform.submit_job(_job("train-worse", before, "--quality", "worse"))
        platform.submit_job(_job("train-proba", before, "--serve-probabilities"))
        _wait(platform, "train-2", "train-worse", "train-proba")
        story.notes["parallel_s"] = time.monotonic() - started
        story.retrained = platform.register_model(MODEL, "train-2", {"autopilot_cycle": "cycle-2"})
        yield story
    finally:
        platform.close()


def test_training_job_registers_a_version_with_lineage(story: Story) -> None:
    platform = story.platform
    assert story.champion_before is None
    assert story.first == "1" and story.retrained == "2"
    assert story.challenger_alias == "1"
    tags = platform.registry.version_tags(MODEL, "1")
    assert tags["autopilot_cycle"] == "cycle-1"
    assert tags["autopilot_job"] == "train-1"
    assert tags["autopilot_experiment"] == "credit-risk-retrain"
    assert len(tags["autopilot_run_id"]) == 32
    assert platform.champion_version(MODEL, None) == "1"
    assert platform.registry.alias_version(MODEL, "challenger") == "2"


def test_registration_is_idempotent_per_job(story: Story) -> None:
    platform = story.platform
    assert platform.register_model(MODEL, "train-1", {"autopilot_cycle": "again"}) == "1"
    assert platform.register_model(MODEL, "train-2", {}) == "2"
    registered = story.sink.of_type("ModelRegistered")
    assert [e["subject"] for e in registered] == [f"models/{MODEL}:1", f"models/{MODEL}:2"]
    data = registered[0]["data"]
    assert data["modelName"] == MODEL and data["modelVersion"] == "1"
    assert data["modelTags"]["autopilot_cycle"] == "cycle-1"
    assert set(data) == {"modelName", "modelVersion", "modelTags", "modelProperties"}


def test_registration_needs_a_completed_job_with_a_model(story: Story) -> None:
    platform = story.platform
    with pytest.raises(NotFound):
        platform.register_model(MODEL, "no-such-job", {})
    platform.submit_job(
        JobRequest(name="no-model", model=MODEL, experiment="x", command=("{python}", "-c", "0"))
    )
    _wait(platform, "no-model")
    with pytest.raises(PermanentError, match="no MLflow run"):
        platform.register_model(MODEL, "no-model", {})
    with pytest.raises(NotFound):
        platform.set_champion(MODEL, "99")


def test_first_evaluation_has_no_champion(story: Story) -> None:
    doc = story.platform.get_evaluation("train-1")
    assert doc["schema"] == "autopilot.evaluation/v1"
    assert doc["model"] == MODEL and doc["task"] == "binary_classification"
    assert doc["champion"] is None
    assert doc["n"] == 450
    assert set(doc["challenger"]["metrics"]) == {"auc", "accuracy", "log_loss"}
    assert doc["challenger"]["metrics"]["auc"] > 0.7
    examples = doc["examples"]
    assert "champion_score" not in examples
    assert len(examples["label"]) == len(examples["challenger_score"]) == doc["n"]
    assert len(examples["segments"]["region"]) == doc["n"]


def test_retrained_model_beats_the_champion_on_recent_data(story: Story) -> None:
    doc = story.platform.get_evaluation("train-2")
    assert doc["champion"]["version"] == "1"
    new, old = doc["challenger"]["metrics"], doc["champion"]["metrics"]
    assert new["auc"] > old["auc"] + 0.05
    assert new["log_loss"] < old["log_loss"]
    assert len(doc["examples"]["champion_score"]) == doc["n"] == len(doc["examples"]["label"])


def test_worse_quality_challenger_loses(story: Story) -> None:
    doc = story.platform.get_evaluation("train-worse")
    assert doc["champion"]["version"] == "1"
    assert doc["challenger"]["metrics"]["auc"] < doc["champion"]["metrics"]["auc"] - 0.02


def test_deployments_serve_registered_models(story: Story) -> None:
    platform = story.platform
    gen = load_example("generate_data")
    url = platform.ensure_endpoint(MODEL)
    assert platform.ensure_endpoint(MODEL) == url
    platform.create_deployment(MODEL, "blue", MODEL, "1")
    platform.create_deployment(MODEL, "green", MODEL, "2")
    with pytest.raises(AlreadyExists):
        platform.create_deployment(MODEL, "green", MODEL, "2")
    with pytest.raises(NotFound):
        platform.create_deployment(MODEL, "red", MODEL, "42")
    platform.set_traffic(MODEL, {"blue": 50, "green": 50})
    rows = gen.to_rows(gen.generate(5, seed=11))
    rows[0]["age"] = 40  # ints are fine where the model was trained on floats
    seen: Counter[str] = Counter()
    for _ in range(40):
        status, body, _ = call(url, "/score", {"rows": rows})
        assert status == 200, body
        assert len(body["predictions"]) == 5 and set(body["predictions"]) <= {0, 1}
        seen[body["deployment"]] += 1
    assert set(seen) == {"blue", "green"}
    # JSON numbers without a fraction are fine for float features
    whole = [{**row, "income": 40, "age": 30, "late_payments": 1} for row in rows]
    assert call(url, "/score", {"rows": whole})[0] == 200
    # rows the model cannot take are the client's fault (400), not the deployment's (5xx)
    status, body, _ = call(url, "/score", {"rows": [{"income": 1.0}]})
    assert status == 400 and "bad input" in body["error"]


def test_a_model_serving_probabilities_fills_the_scored_input_log(story: Story) -> None:
    """``--serve-probabilities``: the endpoint answers [p0, p1] and records p1 per live row."""
    from embedded.metrics import LocalScoredLog

    platform = story.platform
    version = platform.register_model(MODEL, "train-proba", {"autopilot_cycle": "cycle-p"})
    url = platform.ensure_endpoint(MODEL)
    platform.create_deployment(MODEL, "proba", MODEL, version)
    gen = load_example("generate_data")
    rows = gen.to_rows(gen.generate(5, seed=12))
    since = datetime.now(UTC)
    status, body, _ = call(
        url, "/score", {"rows": rows}, headers={"azureml-model-deployment": "proba"}
    )
    assert status == 200, body
    pairs = body["predictions"]
    assert len(pairs) == 5 and all(len(p) == 2 and abs(sum(p) - 1) < 1e-9 for p in pairs)
    log = LocalScoredLog(platform.data_dir)
    deadline = time.monotonic() + 10
    scores: list[float] = []
    while time.monotonic() < deadline and len(scores) < 5:  # the endpoint flushes every 0.5 s
        time.sleep(0.2)
        scores = log.scores(MODEL, "proba", since - timedelta(seconds=1), datetime.now(UTC), 100)
    assert scores == [p[1] for p in pairs]
