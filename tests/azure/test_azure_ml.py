"""AzureMLPlatform through the real azure-ai-ml SDK, answered by a local fake of the REST API.

Every test asserts on what the SDK sent (method, path, api-version, JSON body) and on the
state the fake service ends up holding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml._utils._storage_utils import AzureMLDatastorePathUri
from azure.ai.ml.constants._common import JOB_URI_FORMAT, JOB_URI_REGEX_FORMAT
from azure.ai.ml.exceptions import ValidationException

from composition.bootstrap import bootstrap
from shared.adapters.azure_ml import AzureMLPlatform, job_output_uri, job_status, parse_model_ref
from shared.budget import INVOCATION_BUDGET_S, invocation_budget
from shared.errors import AlreadyExists, InProgress, NotFound, PermanentError, TransientError
from shared.messages import Reconcile, RollBack
from shared.model import Cycle, CycleState, JobRequest, JobStatus
from shared.ports import MLPlatform
from shared.retry import RetryPolicies, RetryPolicy
from shared.rollout_state import RolloutState
from shared.run_status import AZURE_RUN_STATUS
from tests.azure.fake_aml import FakeAzureML
from tests.azure.fake_arm import Drop, FakeAzure, FakeCredential, Reply, arm_error
from tests.fakes import T0, make_world

# azure-ai-ml's schemas trip marshmallow 4 deprecation warnings on every load.
pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

ARM_SCOPE = "https://management.azure.com/.default"
JOB_PUT_API = "2025-01-01-preview"
JOB_GET_API = "2024-01-01-preview"
MODEL_API = "2023-08-01-preview"
ENDPOINT_API = "2022-02-01-preview"
DEPLOYMENT_API = "2023-04-01-preview"
DATASTORE_API = "2024-10-01-preview"

JOB_YAML = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
type: command
command: python train.py --data ${{inputs.training_data}} --lr ${{inputs.learning_rate}}
environment: azureml:train-env:1
compute: azureml:cpu-cluster
tags:
  team: churn
inputs:
  training_data:
    type: uri_folder
    path: azureml:churn-data:1
  learning_rate: 0.1
outputs:
  model:
    type: mlflow_model
  evaluation:
    type: uri_folder
"""

PIPELINE_YAML = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
settings:
  default_compute: azureml:cpu-cluster
inputs:
  training_data:
    type: uri_folder
    path: azureml:churn-data:1
  learning_rate: 0.1
outputs:
  model:
    type: mlflow_model
  evaluation:
    type: uri_folder
jobs:
  train:
    type: command
    command: >-
      python train.py --data ${{inputs.data}} --lr ${{inputs.lr}}
      --model ${{outputs.model}} --eval ${{outputs.evaluation}}
    environment: azureml:train-env:1
    inputs:
      data: ${{parent.inputs.training_data}}
      lr: ${{parent.inputs.learning_rate}}
    outputs:
      model: ${{parent.outputs.model}}
      evaluation: ${{parent.outputs.evaluation}}
"""

DEPLOYMENT_YAML = """\
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: placeholder
endpoint_name: placeholder
model: azureml:placeholder:1
instance_type: Standard_F4s_v2
instance_count: 2
request_settings:
  request_timeout_ms: 3000
"""


@pytest.fixture
def aml(fake: FakeAzure) -> Iterator[FakeAzureML]:
    aml = FakeAzureML(fake)
    yield aml
    aml.finish_operations()  # the SDK's background pollers of held operations end


@pytest.fixture
def platform(aml: FakeAzureML, fake: FakeAzure, credential: FakeCredential) -> AzureMLPlatform:
    return AzureMLPlatform(
        aml.subscription,
        aml.resource_group,
        aml.workspace,
        credential=credential,
        transport=fake.transport(),
    )


@pytest.fixture
def job_file(tmp_path: Path) -> str:
    path = tmp_path / "train.yaml"
    path.write_text(JOB_YAML, encoding="utf-8")
    return str(path)


def request(job_file: str | None, **kw: Any) -> JobRequest:
    values: dict[str, Any] = {
        "name": "autopilot-churn-c1",
        "model": "churn",
        "experiment": "churn-retrain",
        "job_file": job_file,
        "inputs": {"learning_rate": 0.3, "training_data": "azureml:churn-data:7"},
        "tags": {"autopilot_cycle": "c1"},
        "timeout_s": 1800.0,
    }
    values.update(kw)
    return JobRequest(**values)


# -- jobs --


def test_submit_job_checks_the_name_then_puts_the_job(
    platform: AzureMLPlatform,
    aml: FakeAzureML,
    fake: FakeAzure,
    job_file: str,
    credential: FakeCredential,
) -> None:
    info = platform.submit_job(request(job_file, inputs={"learning_rate": 0.3, "bogus": 1}))

    assert info.name == "autopilot-churn-c1"
    assert info.status is JobStatus.QUEUED  # the service answered "Preparing"
    get, put = fake.calls(path="/jobs/")
    assert (get.method, get.api_version) == ("GET", JOB_GET_API)
    assert (put.method, put.api_version) == ("PUT", JOB_PUT_API)
    assert put.path == f"{aml.ws_path}/jobs/autopilot-churn-c1"
    assert put.headers["Authorization"] == "Bearer " + credential.token_for(ARM_SCOPE)
    assert credential.scopes[0] == (ARM_SCOPE,)

    sent = put.json()["properties"]
    assert sent["jobType"] == "Command"
    assert sent["experimentName"] == "churn-retrain"
    assert sent["tags"] == {"team": "churn", "autopilot_cycle": "c1"}
    assert sent["inputs"]["learning_rate"] == {"jobInputType": "literal", "value": "0.3"}
    assert "bogus" not in sent["inputs"]  # only inputs the job declares
    assert sent["limits"] == {"jobLimitsType": "Command", "timeout": "PT30M"}
    assert sent["outputs"]["evaluation"]["uri"] == (
        "azureml://datastores/workspaceblobstore/paths/autopilot/autopilot-churn-c1/evaluation/"
    )
    assert aml.jobs["autopilot-churn-c1"]["properties"]["status"] == "Preparing"


def test_submit_pipeline_job(
    platform: AzureMLPlatform,
    aml: FakeAzureML,
    fake: FakeAzure,
    tmp_path: Path,
    credential: FakeCredential,
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE_YAML, encoding="utf-8")

    info = platform.submit_job(request(str(path)))

    assert info.status is JobStatus.QUEUED
    (component,) = fake.calls("PUT", "/components/azureml_anonymous/versions/")
    assert component.json()["properties"]["isAnonymous"] is True
    (put,) = fake.calls("PUT", "/jobs/")
    assert put.api_version == "2024-01-01-preview"  # pipelines use another api-version
    # Pipeline submit sends the caller's Azure ML token, which the SDK checks first.
    assert put.headers["x-azureml-token"] == credential.token_for("https://ml.azure.com/.default")
    sent = put.json()["properties"]
    assert sent["jobType"] == "Pipeline"
    assert sent["experimentName"] == "churn-retrain"
    assert sent["inputs"]["learning_rate"] == {"jobInputType": "literal", "value": "0.3"}
    assert sent["inputs"]["training_data"]["uri"].endswith("/data/churn-data/versions/7")
    assert sent["outputs"]["evaluation"]["uri"].endswith(
        "/autopilot/autopilot-churn-c1/evaluation/"
    )
    assert "limits" not in sent
    assert sent["jobs"]["train"]["componentId"] == component.path


def test_submit_job_sets_asset_inputs_by_path(
    platform: AzureMLPlatform, aml: FakeAzureML, job_file: str
) -> None:
    platform.submit_job(request(job_file))
    data = aml.jobs["autopilot-churn-c1"]["properties"]["inputs"]["training_data"]
    assert data == {
        "jobInputType": "uri_folder",
        "uri": f"{aml.ws_path}/data/churn-data/versions/7",
    }


def test_submit_job_with_a_taken_name_raises_already_exists_without_putting(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure, job_file: str
) -> None:
    aml.add_job("autopilot-churn-c1", status="Running")
    with pytest.raises(AlreadyExists):
        platform.submit_job(request(job_file))
    assert fake.calls("PUT") == []


def test_submit_job_conflict_from_the_service_is_already_exists(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure, job_file: str
) -> None:
    fake.add(
        "PUT",
        f"{aml.ws_path}/jobs/autopilot-churn-c1",
        arm_error(409, "Conflict", "A job with this name already exists."),
    )
    with pytest.raises(AlreadyExists) as caught:
        platform.submit_job(request(job_file))
    assert "HTTP 409" in str(caught.value)


def test_submit_job_is_not_retried_blindly(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure, job_file: str
) -> None:
    fake.add(
        "PUT",
        f"{aml.ws_path}/jobs/autopilot-churn-c1",
        arm_error(429, "TooManyRequests", "Rate limit exceeded", **{"Retry-After": "7"}),
    )
    with pytest.raises(TransientError) as caught:
        platform.submit_job(request(job_file))
    assert caught.value.retry_after == 7.0
    assert len(fake.calls("PUT")) == 1


def test_submit_job_needs_a_job_file(platform: AzureMLPlatform) -> None:
    with pytest.raises(PermanentError, match="job YAML"):
        platform.submit_job(request(None))


def test_submit_job_with_an_invalid_job_file_is_permanent(
    platform: AzureMLPlatform, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: command\ncommand: 3\ncompute: [1, 2]\nenvironment: {}\n")
    with pytest.raises(PermanentError, match=r"bad\.yaml"):
        platform.submit_job(request(str(bad), inputs={}))


@pytest.mark.parametrize(
    ("azure", "ours"),
    [
        ("NotStarted", JobStatus.QUEUED),
        ("Queued", JobStatus.QUEUED),
        ("Preparing", JobStatus.QUEUED),
        ("Provisioning", JobStatus.QUEUED),
        ("Starting", JobStatus.QUEUED),
        ("Running", JobStatus.RUNNING),
        ("Finalizing", JobStatus.RUNNING),
        ("CancelRequested", JobStatus.RUNNING),
        ("Completed", JobStatus.COMPLETED),
        ("Failed", JobStatus.FAILED),
        ("NotResponding", JobStatus.FAILED),
        ("Canceled", JobStatus.CANCELED),
    ],
)
def test_get_job_maps_azure_statuses(
    platform: AzureMLPlatform, aml: FakeAzureML, azure: str, ours: JobStatus
) -> None:
    aml.add_job("j-1", status=azure, tags={"autopilot_cycle": "c9"})
    info = platform.get_job("j-1")
    assert info.status is ours
    assert info.tags == {"autopilot_cycle": "c9"}
    assert bool(info.error) == (ours in (JobStatus.FAILED, JobStatus.CANCELED))


def test_our_run_statuses_cover_the_sdk_ones() -> None:
    """Every status azure-ai-ml knows is in our table; its terminal ones end a cycle, except
    Paused (a user may resume it; the policy's job timeout bounds it)."""
    from azure.ai.ml.operations._run_history_constants import RunHistoryConstants

    assert set(RunHistoryConstants.ALL_STATUSES) <= set(AZURE_RUN_STATUS)
    ending = {s for s in RunHistoryConstants.TERMINAL_STATUSES if AZURE_RUN_STATUS[s].is_terminal}
    assert ending == set(RunHistoryConstants.TERMINAL_STATUSES) - {"Paused"}
    assert AZURE_RUN_STATUS["NotResponding"] is JobStatus.FAILED
    assert not any(
        AZURE_RUN_STATUS[s].is_terminal for s in RunHistoryConstants.IN_PROGRESS_STATUSES
    )


def test_job_status_of_unknown_strings_is_not_terminal() -> None:
    assert job_status("SomethingNew") is JobStatus.QUEUED
    assert job_status(None) is JobStatus.QUEUED


def test_get_job_missing_is_not_found(platform: AzureMLPlatform) -> None:
    with pytest.raises(NotFound):
        platform.get_job("nope")


def test_get_job_retries_429_honouring_retry_after_then_succeeds(
    platform: AzureMLPlatform,
    aml: FakeAzureML,
    fake: FakeAzure,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = aml.add_job("j-1", status="Running")
    fake.add(
        "GET",
        f"{aml.ws_path}/jobs/j-1",
        arm_error(429, "TooManyRequests", "slow down", **{"Retry-After": "2"}),
        Reply(200, job),
    )
    with caplog.at_level("WARNING", logger="shared.retry"):
        assert platform.get_job("j-1").status is JobStatus.RUNNING
    assert len(fake.calls("GET", "/jobs/j-1")) == 2
    assert "waiting 2.0s" in caplog.text


def test_get_job_retries_500_and_connection_errors(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    job = aml.add_job("j-1", status="Completed")
    fake.add(
        "GET",
        f"{aml.ws_path}/jobs/j-1",
        arm_error(500, "InternalServerError", "oops"),
        Drop(),
        Reply(200, job),
    )
    assert platform.get_job("j-1").status is JobStatus.COMPLETED
    assert len(fake.calls("GET", "/jobs/j-1")) == 3


def test_get_job_500_exhausts_the_read_policy(
    aml: FakeAzureML, fake: FakeAzure, credential: FakeCredential
) -> None:
    policy = RetryPolicy(attempts=3, initial_s=0.1, max_interval_s=1.0, total_s=10.0)
    platform = AzureMLPlatform(
        aml.subscription,
        aml.resource_group,
        aml.workspace,
        credential=credential,
        transport=fake.transport(),
        retry=RetryPolicies(read=policy),
    )
    fake.add("GET", f"{aml.ws_path}/jobs/j-1", arm_error(503, "ServiceUnavailable", "down"))
    with pytest.raises(TransientError, match="get job j-1"):
        platform.get_job("j-1")
    assert len(fake.calls("GET", "/jobs/j-1")) == 3  # the SDK's own retries are off


# -- evaluation --


def _completed_job_with_evaluation(aml: FakeAzureML, name: str = "j-1") -> None:
    aml.add_datastore()
    aml.add_job(
        name,
        outputs={
            "evaluation": {
                "jobOutputType": "uri_folder",
                "mode": "ReadWriteMount",
                "uri": f"azureml://datastores/workspaceblobstore/paths/autopilot/{name}/evaluation/",
            }
        },
    )


def test_get_evaluation_reads_evaluation_json_from_the_output(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    _completed_job_with_evaluation(aml)
    doc = {"schema": "autopilot.evaluation/v1", "n": 1200, "challenger": {"metrics": {"auc": 0.9}}}
    aml.put_blob("azureml", "autopilot/j-1/evaluation/evaluation.json", json.dumps(doc).encode())

    assert platform.get_evaluation("j-1") == doc

    (secrets,) = fake.calls("POST", "/listSecrets")
    assert secrets.api_version == DATASTORE_API
    (blob,) = fake.calls("GET", host=aml.blob_host)
    assert blob.path == "/azureml/autopilot/j-1/evaluation/evaluation.json"
    assert blob.headers["Authorization"].startswith("SharedKey autopilotstore:")


def test_get_evaluation_missing_file_is_not_found(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    _completed_job_with_evaluation(aml)
    with pytest.raises(NotFound, match=r"evaluation\.json"):
        platform.get_evaluation("j-1")


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_get_evaluation_bad_document_is_permanent(
    platform: AzureMLPlatform, aml: FakeAzureML, content: bytes
) -> None:
    _completed_job_with_evaluation(aml)
    aml.put_blob("azureml", "autopilot/j-1/evaluation/evaluation.json", content)
    with pytest.raises(PermanentError, match=r"evaluation\.json"):
        platform.get_evaluation("j-1")


def test_get_evaluation_of_a_missing_job_is_not_found(platform: AzureMLPlatform) -> None:
    with pytest.raises(NotFound):
        platform.get_evaluation("ghost")


# -- models --


def test_register_model_creates_the_next_version_from_the_job_output(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_model_version("churn", "1", {})
    aml.add_model_version("churn", "2", {"autopilot_job": "older-job"})

    version = platform.register_model("churn", "j-3", {"autopilot_cycle": "c3"})

    assert version == "3"
    (put,) = fake.calls("PUT", "/models/")
    assert put.path == f"{aml.ws_path}/models/churn/versions/3"
    assert put.api_version == MODEL_API
    sent = put.json()["properties"]
    # the documented job-output form, built with azure-ai-ml's own format (output root: "")
    assert sent["modelUri"] == JOB_URI_FORMAT.format("j-3", "model", "")
    assert sent["modelUri"] == "azureml://jobs/j-3/outputs/model/paths/"
    assert sent["modelType"] == "mlflow_model"
    assert sent["tags"] == {"autopilot_cycle": "c3", "autopilot_job": "j-3"}
    assert aml.models["churn"]["3"]["properties"]["tags"]["autopilot_job"] == "j-3"


def test_job_output_uri_is_the_form_the_sdk_parses_as_a_job_output() -> None:
    """azure-ai-ml's own parser reads our URI as job j-3's output 'model'; it refuses the
    short form without ``/paths/`` that was sent before."""
    parsed = AzureMLDatastorePathUri(job_output_uri("j-3", "model", "MLmodel"))
    assert (parsed.uri_type, parsed.datastore, parsed.path) == ("Job", "j-3", "model")
    assert re.fullmatch(JOB_URI_REGEX_FORMAT, job_output_uri("j-3", "model", "sub/dir/"))
    with pytest.raises(ValidationException):
        AzureMLDatastorePathUri("azureml://jobs/j-3/outputs/model")


def test_register_model_is_idempotent_per_job(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.page_size = 1  # the match is on the second page (nextLink)
    aml.add_model_version("churn", "1", {})
    aml.add_model_version("churn", "2", {"autopilot_job": "j-2"})

    assert platform.register_model("churn", "j-2", {}) == "2"
    assert fake.calls("PUT") == []
    assert len(fake.calls("GET", r"/models/churn/versions$")) == 2


def test_register_first_version_of_a_new_model(platform: AzureMLPlatform, aml: FakeAzureML) -> None:
    assert platform.register_model("fraud", "j-1", {}) == "1"
    assert set(aml.models["fraud"]) == {"1"}


def test_champion_is_the_model_behind_the_live_deployment(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 90, "green": 10})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "4"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "5"))
    aml.add_model_version("churn", "3", {"autopilot_champion": "true"})

    assert platform.champion_version("churn", "churn-ep") == "4"
    (get,) = fake.calls("GET", "/deployments/blue$")
    assert get.api_version == DEPLOYMENT_API


@pytest.mark.parametrize("traffic", [{}, {"blue": 0}])
def test_champion_falls_back_to_the_tag_without_live_traffic(
    platform: AzureMLPlatform, aml: FakeAzureML, traffic: dict[str, int]
) -> None:
    aml.add_endpoint("churn-ep", traffic)
    if traffic:
        aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_model_version("churn", "1", {})
    aml.add_model_version("churn", "2", {"autopilot_champion": "true"})
    assert platform.champion_version("churn", "churn-ep") == "2"
    assert platform.champion_version("churn", None) == "2"


def test_champion_of_a_model_without_one_is_none(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    aml.add_model_version("churn", "1", {})
    assert platform.champion_version("churn", None) is None
    assert platform.champion_version("never-registered", "missing-ep") is None


def test_set_champion_moves_the_tag(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_model_version("churn", "1", {"autopilot_champion": "true", "owner": "ops"})
    aml.add_model_version("churn", "2", {"autopilot_job": "j-2"})

    platform.set_champion("churn", "2")

    tags = {v: body["properties"]["tags"] for v, body in aml.models["churn"].items()}
    assert tags == {
        "1": {"owner": "ops"},
        "2": {"autopilot_job": "j-2", "autopilot_champion": "true"},
    }
    puts = fake.calls("PUT", "/models/")
    assert [p.path.rsplit("/", 1)[1] for p in puts] == ["2", "1"]  # new champion first
    assert all(p.json()["properties"]["modelUri"] for p in puts)


def test_set_champion_of_a_missing_version_is_not_found(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    aml.add_model_version("churn", "1", {})
    with pytest.raises(NotFound):
        platform.set_champion("churn", "9")


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("azureml:churn:3", ("churn", "3")),
        ("/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/"
         "workspaces/w/models/churn/versions/12", ("churn", "12")),
        ("azureml://registries/reg/models/churn/versions/2", ("churn", "2")),
        ("azureml:churn@latest", None),
        (None, None),
    ],
)  # fmt: skip
def test_parse_model_ref(ref: str | None, parsed: tuple[str, str] | None) -> None:
    assert parse_model_ref(ref) == parsed


# -- deployments and traffic --


def test_create_deployment_puts_and_polls_the_long_running_operation(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.create_polls = 3

    platform.create_deployment("churn-ep", "churn-v5", "churn", "5")

    (put,) = fake.calls("PUT", "/deployments/")
    assert put.api_version == DEPLOYMENT_API
    assert put.path == f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/churn-v5"
    sent = put.json()
    assert sent["properties"]["model"] == aml.model_id("churn", "5")
    assert sent["properties"]["endpointComputeType"] == "Managed"
    assert sent["properties"]["instanceType"] == "Standard_DS3_v2"
    assert sent["sku"]["capacity"] == 1
    assert sent["tags"] == {"autopilot_model": "churn", "autopilot_version": "5"}
    polls = fake.calls("GET", "/mfeOperationsStatus/")
    assert len(polls) == 4  # InProgress x3, then Succeeded
    assert {p.api_version for p in polls} == {DEPLOYMENT_API}
    state = aml.deployments[("churn-ep", "churn-v5")]["properties"]["provisioningState"]
    assert state == "Succeeded"
    assert aml.endpoints["churn-ep"]["properties"]["traffic"] == {"blue": 100}


def test_create_deployment_from_a_template(
    aml: FakeAzureML, fake: FakeAzure, credential: FakeCredential, tmp_path: Path
) -> None:
    template = tmp_path / "deployment.yaml"
    template.write_text(DEPLOYMENT_YAML, encoding="utf-8")
    platform = AzureMLPlatform(
        aml.subscription,
        aml.resource_group,
        aml.workspace,
        credential=credential,
        transport=fake.transport(),
        deployment_template=str(template),
    )
    aml.add_endpoint("churn-ep", {"blue": 100})

    platform.create_deployment("churn-ep", "churn-v6", "churn", "6")

    (put,) = fake.calls("PUT", "/deployments/")
    sent = put.json()
    assert put.path.endswith("/onlineEndpoints/churn-ep/deployments/churn-v6")
    assert sent["properties"]["model"] == aml.model_id("churn", "6")
    assert sent["properties"]["instanceType"] == "Standard_F4s_v2"
    assert sent["properties"]["requestSettings"]["requestTimeout"] == "PT3S"
    assert sent["sku"]["capacity"] == 2


def test_create_deployment_that_exists_raises_already_exists(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "churn-v5", aml.model_id("churn", "5"))
    with pytest.raises(AlreadyExists):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    assert fake.calls("PUT") == []


def test_create_deployment_still_provisioning_is_transient(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "churn-v5", aml.model_id("churn", "5"), state="Creating")
    with pytest.raises(TransientError, match="Creating"):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")


def test_create_deployment_that_fails_provisioning_is_permanent(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.create_outcome = "Failed"
    with pytest.raises(PermanentError, match="create deployment churn-ep/churn-v5"):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    state = aml.deployments[("churn-ep", "churn-v5")]["properties"]["provisioningState"]
    assert state == "Failed"


def test_create_deployment_conflict_from_the_service_is_already_exists(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    fake.add(
        "PUT",
        f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/churn-v5",
        arm_error(409, "Conflict", "Another operation is in progress on the deployment."),
    )
    with pytest.raises(AlreadyExists):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")


def test_create_deployment_on_a_missing_endpoint_is_not_found(platform: AzureMLPlatform) -> None:
    with pytest.raises(NotFound):
        platform.create_deployment("no-such-ep", "churn-v5", "churn", "5")


def test_get_traffic_lists_every_deployment(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    assert platform.get_traffic("churn-ep") == {"blue": 100, "green": 0}
    assert {c.api_version for c in fake.calls("GET", "/onlineEndpoints/")} == {ENDPOINT_API}


def test_set_traffic_updates_the_endpoint_and_reads_it_back(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))

    platform.set_traffic("churn-ep", {"blue": 90, "green": 10})

    (put,) = fake.calls("PUT", "/onlineEndpoints/churn-ep$")
    assert put.api_version == ENDPOINT_API
    assert put.json()["properties"]["traffic"] == {"blue": 90, "green": 10}
    assert len(fake.calls("GET", "/mfeOperationsStatus/")) == 2
    assert aml.endpoints["churn-ep"]["properties"]["traffic"] == {"blue": 90, "green": 10}


def test_set_traffic_that_does_not_take_effect_is_transient(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    aml.apply_endpoint_updates = False
    with pytest.raises(TransientError, match="after setting"):
        platform.set_traffic("churn-ep", {"blue": 50, "green": 50})


@pytest.mark.parametrize("traffic", [{"blue": 90, "green": 20}, {"blue": -10, "green": 110}])
def test_set_traffic_rejects_shares_that_cannot_be_right(
    platform: AzureMLPlatform, traffic: dict[str, int], fake: FakeAzure
) -> None:
    with pytest.raises(PermanentError):
        platform.set_traffic("churn-ep", traffic)
    assert fake.requests == []


def test_set_traffic_retries_a_throttled_update(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    fake.add(
        "PUT",
        f"{aml.ws_path}/onlineEndpoints/churn-ep",
        arm_error(429, "TooManyRequests", "throttled", **{"Retry-After": "1"}),
        aml._put_endpoint,
    )
    platform.set_traffic("churn-ep", {"blue": 0, "green": 100})
    assert len(fake.calls("PUT", "/onlineEndpoints/churn-ep$")) == 2
    assert aml.endpoints["churn-ep"]["properties"]["traffic"] == {"green": 100}
    assert platform.get_traffic("churn-ep") == {"blue": 0, "green": 100}


def test_set_mirror_traffic(platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))

    platform.set_mirror("churn-ep", {"green": 20})

    (put,) = fake.calls("PUT", "/onlineEndpoints/churn-ep$")
    assert put.json()["properties"]["mirrorTraffic"] == {"green": 20}
    assert put.json()["properties"]["traffic"] == {"blue": 100}  # the SDK drops 0% entries
    assert aml.endpoints["churn-ep"]["properties"]["mirrorTraffic"] == {"green": 20}
    with pytest.raises(PermanentError):
        platform.set_mirror("churn-ep", {"green": 60})


def test_delete_deployment_begins_the_delete_without_waiting_for_it(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    aml.hold_deletes = True  # on Azure a deletion takes minutes

    assert platform.delete_deployment("churn-ep", "green") is False  # begun, not waited for

    (delete,) = fake.calls("DELETE")
    assert delete.method == "DELETE"
    assert delete.path == f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/green"
    assert delete.api_version == DEPLOYMENT_API
    assert aml.deployments[("churn-ep", "green")]["properties"]["provisioningState"] == "Deleting"
    # asked again while Azure is still deleting it: not deleted twice
    assert platform.delete_deployment("churn-ep", "green") is False
    assert len(fake.calls("DELETE")) == 1
    aml.release_deletes()
    assert platform.delete_deployment("churn-ep", "green") is True  # gone: done
    assert len(fake.calls("DELETE")) == 1
    assert sorted(aml.deployments) == [("churn-ep", "blue")]


def test_delete_missing_deployment_is_done_without_a_delete(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    assert platform.delete_deployment("churn-ep", "green") is True
    assert fake.calls("DELETE") == []


def test_delete_deployment_404_counts_as_done(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    fake.add(  # gone between the read and the DELETE
        "DELETE",
        f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/green",
        arm_error(404, "NotFound", "Deployment green was not found."),
    )
    assert platform.delete_deployment("churn-ep", "green") is True
    (delete,) = fake.calls("DELETE")
    assert delete.path == f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/green"
    assert delete.api_version == DEPLOYMENT_API


def test_delete_deployment_that_is_busy_is_transient(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"), state="Updating")
    fake.add(
        "DELETE",
        f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/green",
        arm_error(409, "Conflict", "Deployment green is being updated."),
    )
    with pytest.raises(TransientError, match="busy"):
        platform.delete_deployment("churn-ep", "green")
    assert ("churn-ep", "green") in aml.deployments


def test_cleanup_on_azure_begins_the_delete_and_the_next_tick_confirms_it(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    """A canary rolled back through the real SDK: the closing does not wait for Azure to
    delete the candidate; the next reconcile tick sees it gone and audits the deletion."""
    aml.add_endpoint("churn-ep", {"blue": 90, "green": 10})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    aml.add_model_version("churn", "1", {"autopilot_champion": "true"})
    aml.add_model_version("churn", "2", {})
    world = make_world()
    world.services.platform = platform
    stored = {"endpoint": "churn-ep", "deployment": "green", "previous": "blue", "phase": "canary"}
    ro = RolloutState.from_json(stored)
    cycle = Cycle("churn-c1", "churn", CycleState.ROLLING_OUT, T0, T0, rollout=ro)
    assert world.store.create_cycle(cycle) is None
    aml.hold_deletes = True  # Azure takes minutes to delete a deployment

    bootstrap(world.services).handle(RollBack(cycle.id, "canary breach", "test"))

    cycle = world.store.must("churn-c1")
    assert cycle.state is CycleState.ROLLED_BACK
    assert aml.endpoints["churn-ep"]["properties"]["traffic"] == {"blue": 100}
    assert cycle.rollout is not None and cycle.rollout.cleanup == ("green",)
    (delete,) = fake.calls("DELETE")
    assert delete.path == f"{aml.ws_path}/onlineEndpoints/churn-ep/deployments/green"
    assert delete.api_version == DEPLOYMENT_API
    assert world.audit.summaries("action")[-1] == (
        "deletion of deployment green begun on churn-ep; the reconciler confirms it"
    )

    bootstrap(world.services).handle(Reconcile())  # still deleting: nothing changes
    assert len(fake.calls("DELETE")) == 1
    aml.release_deletes()
    bootstrap(world.services).handle(Reconcile())

    cycle = world.store.must("churn-c1")
    assert cycle.rollout is not None and cycle.rollout.cleanup == ()
    assert sorted(aml.deployments) == [("churn-ep", "blue")]
    deleted = [r for r in world.audit.records if r.summary.startswith("deployment green deleted")]
    assert [r.evidence["deployment"] for r in deleted] == ["green"]
    assert len(fake.calls("DELETE")) == 1


def test_client_is_built_lazily(aml: FakeAzureML, fake: FakeAzure) -> None:
    platform: MLPlatform = AzureMLPlatform(
        aml.subscription, aml.resource_group, aml.workspace, transport=fake.transport()
    )
    assert isinstance(platform, AzureMLPlatform)
    assert platform._client is None
    assert platform._credential is None


def test_champion_falls_back_to_the_tag_when_the_live_deployment_is_gone(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})  # traffic names a deployment that is gone
    aml.add_model_version("churn", "2", {"autopilot_champion": "true"})
    assert platform.champion_version("churn", "churn-ep") == "2"


def test_set_traffic_while_the_endpoint_is_busy_is_transient(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    fake.add(
        "PUT",
        f"{aml.ws_path}/onlineEndpoints/churn-ep",
        arm_error(409, "Conflict", "Endpoint churn-ep is being updated."),
    )
    with pytest.raises(TransientError, match="busy"):
        platform.set_traffic("churn-ep", {"blue": 50, "green": 50})
    assert len(fake.calls("PUT")) == 1  # a conflict is not retried in a loop


# -- long-running operations are started, not waited for (Event Grid answers within ~30 s) --


def test_create_deployment_returns_while_azure_provisions_and_a_later_call_checks(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.hold_operations = True  # provisioning takes longer than any invocation may wait

    with invocation_budget() as budget, pytest.raises(InProgress, match="still in progress"):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    assert budget.spent() <= INVOCATION_BUDGET_S
    state = aml.deployments[("churn-ep", "churn-v5")]["properties"]["provisioningState"]
    assert state == "Creating"

    # the reconciler's next tick repeats the call: it checks, it does not PUT again
    with pytest.raises(InProgress, match="still Creating"):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    assert len(fake.calls("PUT", "/deployments/")) == 1

    aml.finish_operations()
    with pytest.raises(AlreadyExists):  # ready: the caller carries on
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    assert len(fake.calls("PUT", "/deployments/")) == 1


def test_create_deployment_while_a_same_named_one_is_being_deleted_waits(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    """A dying deployment of the same name is not 'already exists' (traffic would go to it)."""
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "churn-v5", aml.model_id("churn", "5"), state="Deleting")

    with pytest.raises(InProgress, match="being deleted"):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    assert fake.calls("PUT") == []

    del aml.deployments[("churn-ep", "churn-v5")]  # the deletion finished
    platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
    (put,) = fake.calls("PUT", "/deployments/")
    assert put.json()["properties"]["model"] == aml.model_id("churn", "5")
    state = aml.deployments[("churn-ep", "churn-v5")]["properties"]["provisioningState"]
    assert state == "Succeeded"


@pytest.mark.parametrize("state", ["Updating", "Scaling", "SomethingNew"])
def test_create_deployment_in_any_state_but_succeeded_is_not_ready(
    platform: AzureMLPlatform, aml: FakeAzureML, state: str
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "churn-v5", aml.model_id("churn", "5"), state=state)
    with pytest.raises(InProgress, match=state):
        platform.create_deployment("churn-ep", "churn-v5", "churn", "5")


def test_set_traffic_returns_while_the_endpoint_updates_and_a_later_call_checks(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    aml.hold_operations = True

    with invocation_budget() as budget, pytest.raises(InProgress):
        platform.set_traffic("churn-ep", {"blue": 90, "green": 10})
    assert budget.spent() <= INVOCATION_BUDGET_S
    with pytest.raises(InProgress, match="Updating"):  # still running: no second PUT
        platform.set_traffic("churn-ep", {"blue": 90, "green": 10})
    assert len(fake.calls("PUT", "/onlineEndpoints/churn-ep$")) == 1

    aml.finish_operations()
    platform.set_traffic("churn-ep", {"blue": 90, "green": 10})  # took effect: read back
    assert len(fake.calls("PUT", "/onlineEndpoints/churn-ep$")) == 1
    assert platform.get_traffic("churn-ep") == {"blue": 90, "green": 10}


def test_delete_deployment_returns_while_azure_deletes_and_a_later_call_checks(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.add_deployment("churn-ep", "blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "green", aml.model_id("churn", "2"))
    aml.hold_operations = True

    with invocation_budget() as budget:
        assert platform.delete_deployment("churn-ep", "green") is False  # begun, not waited for
    assert budget.spent() <= INVOCATION_BUDGET_S
    assert platform.delete_deployment("churn-ep", "green") is False  # still being deleted
    assert len(fake.calls("DELETE")) == 1

    aml.finish_operations()
    assert platform.delete_deployment("churn-ep", "green") is True
    assert ("churn-ep", "green") not in aml.deployments
    assert len(fake.calls("DELETE")) == 1


def test_waits_on_operations_share_the_invocation_budget(
    platform: AzureMLPlatform, aml: FakeAzureML
) -> None:
    """Once an invocation's budget is spent, a started operation is not waited for at all."""
    aml.add_endpoint("churn-ep", {"blue": 100})
    aml.hold_operations = True
    with invocation_budget() as budget:
        budget.charge(INVOCATION_BUDGET_S)  # spent on earlier calls of this invocation
        with pytest.raises(InProgress, match="after 0s"):
            platform.create_deployment("churn-ep", "churn-v5", "churn", "5")
        assert budget.spent() < INVOCATION_BUDGET_S + 1.0


# -- deployment names in traffic: Azure compares them case-insensitively --


def test_traffic_of_a_deployment_named_in_capitals_reads_back(
    platform: AzureMLPlatform, aml: FakeAzureML, fake: FakeAzure
) -> None:
    aml.add_endpoint("churn-ep", {"Blue": 100})  # set up outside the SDK, which keeps case
    aml.add_deployment("churn-ep", "Blue", aml.model_id("churn", "1"))
    aml.add_deployment("churn-ep", "churn-v5", aml.model_id("churn", "5"))
    # one entry per deployment, under the name the SDK uses for it (it lists "Blue" as "blue")
    assert platform.get_traffic("churn-ep") == {"blue": 100, "churn-v5": 0}

    platform.set_traffic("churn-ep", {"Blue": 90, "churn-v5": 10})  # no "did not take effect"

    (put,) = fake.calls("PUT", "/onlineEndpoints/churn-ep$")
    assert put.json()["properties"]["traffic"] == {"blue": 90, "churn-v5": 10}  # SDK lower-cases
    assert platform.get_traffic("churn-ep") == {"blue": 90, "churn-v5": 10}
    platform.set_traffic("churn-ep", {"blue": 90, "churn-v5": 10})  # already so: no new PUT
    assert len(fake.calls("PUT", "/onlineEndpoints/churn-ep$")) == 1
    assert platform.champion_version("churn", "churn-ep") == "1"
