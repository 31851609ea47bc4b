"""Jobs on Azure ML: submit from the policy's YAML, read status and the evaluation output."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from shared import retry as retries
from shared.adapters.azure_ml.client import AzureMLClient
from shared.adapters.azure_ml.common import (
    DATASTORE_URI,
    EVALUATION_FILE,
    EVALUATION_OUTPUT,
    LITERAL_INPUT_TYPES,
    job_status,
    read_yaml,
    text,
)
from shared.errors import AlreadyExists, NotFound, PermanentError
from shared.model import JobInfo, JobRequest, JobStatus

log = logging.getLogger("shared.adapters.azure_ml")


class AzureMLJobs(AzureMLClient):
    """The job part of ``MLPlatform``."""

    def submit_job(self, request: JobRequest) -> JobInfo:
        try:
            existing = self._call(
                self._retry.read, f"get job {request.name}", self.ml.jobs.get, request.name
            )
        except NotFound:
            existing = None
        if existing is not None:
            raise AlreadyExists(f"Azure ML job {request.name} already exists")
        job = self._load_job(request)
        created = self._call(
            retries.ONCE, f"submit job {request.name}", self.ml.jobs.create_or_update, job
        )
        log.info("submitted Azure ML job %s (experiment %s)", request.name, request.experiment)
        return self._job_info(created)

    def _load_job(self, request: JobRequest) -> Any:
        """The policy's job YAML with our name, experiment, tags and declared inputs set.

        Overrides go through ``load_job(params_override=...)`` (what ``az ml job create --set``
        does): setting attributes on a loaded job does not reach the submitted job.
        """
        if not request.job_file:
            raise PermanentError(
                f"job {request.name}: Azure ML needs a job YAML (the policy's job_file)"
            )
        from azure.ai.ml import load_job

        spec = read_yaml(request.job_file)
        declared = spec.get("inputs") or {}
        overrides: dict[str, Any] = {
            "name": request.name,
            "experiment_name": request.experiment,
            "tags": {**(spec.get("tags") or {}), **request.tags},
        }
        for name, value in request.inputs.items():
            if name not in declared:
                log.warning(
                    "job %s: ignoring input %r the job does not declare", request.name, name
                )
                continue
            decl = declared[name]
            is_asset = isinstance(decl, dict) and decl.get("type") not in LITERAL_INPUT_TYPES
            if is_asset and isinstance(value, str):
                overrides[f"inputs.{name}.path"] = value
            else:
                overrides[f"inputs.{name}"] = value
        outputs = spec.get("outputs") or {}
        if self._evaluation_datastore and EVALUATION_OUTPUT in outputs:
            evaluation = outputs[EVALUATION_OUTPUT]
            if not (isinstance(evaluation, dict) and evaluation.get("path")):
                # Pin where the evaluation lands so get_evaluation can read it back.
                overrides[f"outputs.{EVALUATION_OUTPUT}.path"] = self._evaluation_uri(request.name)
        if spec.get("type", "command") == "command" and request.timeout_s > 0:
            overrides["limits.timeout"] = int(request.timeout_s)
        try:
            return load_job(request.job_file, params_override=[overrides])
        except Exception as exc:  # the SDK raises many kinds for a bad YAML
            raise PermanentError(
                f"job file {request.job_file}: {type(exc).__name__}: {retries.redact(str(exc))}"
            ) from exc

    def _evaluation_uri(self, job_name: str) -> str:
        return (
            f"azureml://datastores/{self._evaluation_datastore}/paths/"
            f"autopilot/{job_name}/{EVALUATION_OUTPUT}/"
        )

    def get_job(self, name: str) -> JobInfo:
        job = self._call(self._retry.read, f"get job {name}", self.ml.jobs.get, name)
        return self._job_info(job)

    @staticmethod
    def _job_info(job: Any) -> JobInfo:
        status = job_status(getattr(job, "status", None))
        error = ""
        if status in (JobStatus.FAILED, JobStatus.CANCELED):
            # ARM job resources carry no error text; the details live in the job's run history.
            error = f"Azure ML job {job.name} ended {status.value}"
        tags = {str(k): str(v) for k, v in (getattr(job, "tags", None) or {}).items()}
        return JobInfo(name=str(job.name), status=status, tags=tags, error=error)

    def get_evaluation(self, job_name: str) -> dict[str, Any]:
        """Read ``evaluation.json`` from the job's ``evaluation`` output.

        The output's datastore path (pinned at submit) is read through azure-storage-blob with
        our credential; without a path, the SDK's ``jobs.download`` resolves it instead.
        """
        job = self._call(self._retry.read, f"get job {job_name}", self.ml.jobs.get, job_name)
        output = (getattr(job, "outputs", None) or {}).get(EVALUATION_OUTPUT)
        path = getattr(output, "path", None) if output is not None else None
        match = DATASTORE_URI.match(path) if isinstance(path, str) else None
        if match:
            raw = self._read_datastore_file(match["ds"], match["path"], job_name)
        else:
            raw = self._download_evaluation(job_name)
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PermanentError(f"job {job_name}: {EVALUATION_FILE} is not valid JSON") from exc
        if not isinstance(doc, dict):
            raise PermanentError(f"job {job_name}: {EVALUATION_FILE} is not a JSON object")
        return doc

    def _read_datastore_file(self, datastore: str, path: str, job_name: str) -> bytes:
        from azure.storage.blob import BlobClient

        what = f"read {EVALUATION_FILE} of job {job_name}"
        store = self._call(
            self._retry.read,
            f"get datastore {datastore}",
            self.ml.datastores.get,
            datastore,
            include_secrets=True,
        )
        if text(getattr(store, "type", "")).lower() != "azureblob":
            raise PermanentError(f"{what}: datastore {datastore} is not a blob container")
        blob_name = path if path.endswith(".json") else f"{path.rstrip('/')}/{EVALUATION_FILE}"
        account_url = f"{store.protocol}://{store.account_name}.blob.{store.endpoint}"
        credential = self._datastore_credential(store)
        client = BlobClient(
            account_url,
            store.container_name,
            blob_name,
            credential=credential,
            **self._sdk_kwargs(),
        )
        try:
            data: bytes = self._call(
                self._retry.read, what, lambda: client.download_blob().readall()
            )
        except NotFound as exc:
            raise NotFound(f"job {job_name} wrote no {EVALUATION_FILE}") from exc
        return data

    def _datastore_credential(self, store: Any) -> Any:
        creds = getattr(store, "credentials", None)
        key = getattr(creds, "account_key", None)
        if key:
            return {"account_name": store.account_name, "account_key": key}
        sas = getattr(creds, "sas_token", None)
        if sas:
            return sas
        return self._credential_or_default()  # identity-based datastore

    def _download_evaluation(self, job_name: str) -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="autopilot-eval-") as tmp:
            self._call(
                self._retry.read,
                f"download {EVALUATION_OUTPUT} of job {job_name}",
                self.ml.jobs.download,
                job_name,
                output_name=EVALUATION_OUTPUT,
                download_path=tmp,
            )
            found = sorted(Path(tmp).rglob(EVALUATION_FILE))
            if not found:
                raise NotFound(f"job {job_name} wrote no {EVALUATION_FILE}")
            return found[0].read_bytes()
