"""Files named by settings and the policy are found from the app root, whatever the cwd.

The Functions host does not promise to start the worker in the app folder; the policy, the
training job YAML and the deployment template must all be found anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.ml import load_job, load_online_deployment

from composition.wiring import azure_adapters
from shared.adapters.azure_ml import AzureMLPlatform
from shared.policy import load_policy
from shared.settings import APP_ROOT, AppSettings

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

ENV = {
    "AUTOPILOT_POLICY": "examples/azureml/policy.yaml",
    "AUTOPILOT_DEPLOYMENT_TEMPLATE": "examples/azureml/deployment.yml",
    "AUTOPILOT_AZUREML_SUBSCRIPTION_ID": "00000000-1111-2222-3333-444444444444",
    "AUTOPILOT_AZUREML_RESOURCE_GROUP": "rg-ml",
    "AUTOPILOT_AZUREML_WORKSPACE": "ws-ml",
    "AUTOPILOT_METRICS_REGION": "westeurope",
}


def test_policy_job_file_and_deployment_template_are_found_from_another_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the app root, as on a Functions host
    settings = AppSettings.from_env(ENV)

    policy = load_policy(settings.require_policy())
    job_file = policy.models["credit-risk"].training.job_file
    assert job_file == str(APP_ROOT / "examples/azureml/train-job.yml")
    job = load_job(job_file)
    assert str(getattr(job, "command", "")).startswith("python azureml/run_training.py")

    platform, _ = azure_adapters(settings)
    assert isinstance(platform, AzureMLPlatform)
    template = platform.deployment_template
    assert template == str(APP_ROOT / "examples/azureml/deployment.yml")
    assert load_online_deployment(template).instance_type == "Standard_DS3_v2"


def test_absolute_paths_and_paths_only_found_from_the_cwd_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.settings import app_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "local-job.yml").write_text("type: command\n", encoding="utf-8")
    assert app_path(tmp_path / "x.yml") == tmp_path / "x.yml"
    assert app_path("local-job.yml") == tmp_path / "local-job.yml"  # a local run elsewhere
    assert app_path("missing.yml") == APP_ROOT / "missing.yml"  # errors name the app path
