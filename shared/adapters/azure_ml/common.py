"""Names, statuses and references shared by the Azure ML adapter's parts."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from shared import retry as retries
from shared.errors import PermanentError
from shared.model import JobStatus
from shared.run_status import azure_run_status

log = logging.getLogger("shared.adapters.azure_ml")

JOB_TAG = "autopilot_job"
CHAMPION_TAG = "autopilot_champion"
EVALUATION_OUTPUT = "evaluation"
EVALUATION_FILE = "evaluation.json"

LITERAL_INPUT_TYPES = frozenset({"string", "number", "integer", "boolean"})
DATASTORE_URI = re.compile(r"^azureml://(?:.*/)?datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$")
_ASSET_REF = re.compile(r"^azureml:(?P<name>[^:/]+):(?P<version>[^:/]+)$")
_ARM_MODEL_ID = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$", re.I)
# Provisioning states (ARM ``provisioningState``) of deployments and endpoints.
READY = "Succeeded"
FAILED = frozenset({"Failed", "Canceled"})
ENDPOINT_BUSY = frozenset({"Creating", "Updating"})
# Waiting on an operation this long is pointless for the reconciler's next tick to check.
IN_PROGRESS_RETRY_AFTER_S = 30.0
TESTING_REAL_WAIT_S = 2.0


def job_status(azure_status: object) -> JobStatus:
    """Our status for an Azure ML job status; unknown non-terminal ones count as queued."""
    if azure_status is None:
        return JobStatus.QUEUED
    status = azure_run_status(text(azure_status))
    if status is None:
        log.warning("unknown Azure ML job status %r, treating it as queued", azure_status)
        return JobStatus.QUEUED
    return status


def text(value: object) -> str:
    """The string behind an SDK enum member (their ``str()`` is ``Class.MEMBER``) or a str."""
    return str(getattr(value, "value", value) or "")


def parse_model_ref(ref: str | None) -> tuple[str, str] | None:
    """``azureml:name:version`` or an ARM model-version id -> (name, version)."""
    if not ref:
        return None
    match = _ASSET_REF.match(ref) or _ARM_MODEL_ID.search(ref)
    return (match["name"], match["version"]) if match else None


def job_output_uri(job_name: str, output: str, path: str = "") -> str:
    """The documented URI of a file or folder in a job's named output (azure-ai-ml's
    ``JOB_URI_FORMAT``); an empty ``path`` is the output's root, where the MLflow model is."""
    return f"azureml://jobs/{job_name}/outputs/{output}/paths/{path}"


def ml_message(exc: Exception) -> str:
    """The gist of an azure-ai-ml error (its text is a multi-paragraph help page)."""
    text = str(exc)
    if "Details:" in text:
        text = text.split("Details:", 1)[1].split("Resolutions:", 1)[0]
    return retries.redact(" ".join(line.strip() for line in text.splitlines() if line.strip()))


def read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PermanentError(f"job file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PermanentError(f"job file {path}: not a YAML mapping")
    return data
