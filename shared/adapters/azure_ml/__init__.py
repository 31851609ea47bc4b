"""The ML platform port on Azure Machine Learning, through azure-ai-ml's ``MLClient``.

``import azure.ai.ml`` costs over a second, so nothing here imports it at module level: the
client is built on first use. Every SDK call goes through :func:`shared.retry.call_with_retry`
(the SDK's own retries are switched off, so retries never nest), which also translates
azure-core errors into ours at this boundary. Calls that are not idempotent (job submit, model
create with an auto-incremented version) are tried once; they are made safe to repeat by a
lookup first (deterministic job name, ``autopilot_job`` tag on model versions).
"""

from shared.adapters.azure_ml.common import (
    CHAMPION_TAG,
    EVALUATION_FILE,
    EVALUATION_OUTPUT,
    IN_PROGRESS_RETRY_AFTER_S,
    JOB_TAG,
    job_output_uri,
    job_status,
    parse_model_ref,
)
from shared.adapters.azure_ml.platform import AzureMLPlatform

__all__ = [
    "CHAMPION_TAG",
    "EVALUATION_FILE",
    "EVALUATION_OUTPUT",
    "IN_PROGRESS_RETRY_AFTER_S",
    "JOB_TAG",
    "AzureMLPlatform",
    "job_output_uri",
    "job_status",
    "parse_model_ref",
]
