"""The ML platform port on Azure Machine Learning, through azure-ai-ml's ``MLClient``.

``import azure.ai.ml`` costs over a second, so nothing here imports it at module level: the
client is built on first use. Every SDK call goes through :func:`shared.retry.call_with_retry`
(the SDK's own retries are switched off, so retries never nest), which also translates
azure-core errors into ours at this boundary. Calls that are not idempotent (job submit, model
create with an auto-incremented version) are tried once; they are made safe to repeat by a
lookup first (deterministic job name, ``autopilot_job`` tag on model versions).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared import budget as budgets
from shared import retry as retries
from shared.errors import (
    AlreadyExists,
    InProgress,
    NotFound,
    PermanentError,
    SettingsError,
    TransientError,
)
from shared.model import JobInfo, JobRequest, JobStatus
from shared.run_status import azure_run_status

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Model, OnlineDeployment
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

log = logging.getLogger(__name__)

T = TypeVar("T")

JOB_TAG = "autopilot_job"
CHAMPION_TAG = "autopilot_champion"
EVALUATION_OUTPUT = "evaluation"
EVALUATION_FILE = "evaluation.json"

_LITERAL_INPUT_TYPES = frozenset({"string", "number", "integer", "boolean"})
_DATASTORE_URI = re.compile(r"^azureml://(?:.*/)?datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$")
_ASSET_REF = re.compile(r"^azureml:(?P<name>[^:/]+):(?P<version>[^:/]+)$")
_ARM_MODEL_ID = re.compile(r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$", re.I)
# Provisioning states (ARM ``provisioningState``) of deployments and endpoints.
_READY = "Succeeded"
_FAILED = frozenset({"Failed", "Canceled"})
_ENDPOINT_BUSY = frozenset({"Creating", "Updating"})
# Waiting on an operation this long is pointless for the reconciler's next tick to check.
IN_PROGRESS_RETRY_AFTER_S = 30.0
TESTING_REAL_WAIT_S = 2.0


def job_status(azure_status: object) -> JobStatus:
    """Our status for an Azure ML job status; unknown non-terminal ones count as queued."""
    if azure_status is None:
        return JobStatus.QUEUED
    status = azure_run_status(_text(azure_status))
    if status is None:
        log.warning("unknown Azure ML job status %r, treating it as queued", azure_status)
        return JobStatus.QUEUED
    return status


def _text(value: object) -> str:
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


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


class AzureMLPlatform:
    """``MLPlatform`` on an Azure ML workspace.

    ``deployment_template`` is the path of a managed online deployment YAML (instance type,
    probes, scale settings...) used for every new deployment; without it a minimal
    ``ManagedOnlineDeployment`` of ``instance_type`` x ``instance_count`` is created, which
    suits MLflow models (no scoring script needed).
    """

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        credential: TokenCredential | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicies = retries.DEFAULT_POLICIES,
        deployment_template: str | None = None,
        instance_type: str = "Standard_DS3_v2",
        instance_count: int = 1,
        model_type: str = "mlflow_model",
        model_output: str = "model",
        evaluation_datastore: str | None = "workspaceblobstore",
        lro_wait_s: float = 10.0,
    ) -> None:
        for name, value in (
            ("subscription_id", subscription_id),
            ("resource_group", resource_group),
            ("workspace", workspace),
        ):
            if not value:
                raise SettingsError(f"Azure ML {name} is empty")
        if model_type not in ("mlflow_model", "custom_model", "triton_model"):
            raise SettingsError(f"Azure ML model_type {model_type!r} is not a model asset type")
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace = workspace
        self._credential = credential
        self._transport = transport
        self._retry = retry
        self._deployment_template = deployment_template
        self._instance_type = instance_type
        self._instance_count = instance_count
        self._model_type = model_type
        self._model_output = model_output
        self._evaluation_datastore = evaluation_datastore
        self._lro_wait_s = lro_wait_s
        self._client: MLClient | None = None

    @property
    def deployment_template(self) -> str | None:
        """The managed online deployment YAML every new deployment starts from, if any."""
        return self._deployment_template

    # -- plumbing --

    def _credential_or_default(self) -> TokenCredential:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    def _sdk_kwargs(self) -> dict[str, Any]:
        """Client options: our transport (tests) and no SDK-level retries (ours only)."""
        kwargs: dict[str, Any] = {"retry_total": 0}
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return kwargs

    @property
    def ml(self) -> MLClient:
        """The ``MLClient``, built (and ``azure.ai.ml`` imported) on first use."""
        if self._client is None:
            from azure.ai.ml import MLClient

            self._client = MLClient(
                self._credential_or_default(),
                self.subscription_id,
                self.resource_group,
                self.workspace,
                enable_telemetry=False,
                **self._sdk_kwargs(),
            )
        return self._client

    def _call(
        self, policy: retries.RetryPolicy, what: str, fn: Callable[..., T], *args: Any, **kw: Any
    ) -> T:
        """Run an SDK call under ``policy``; azure-ai-ml's own validation errors are permanent."""
        from azure.ai.ml.exceptions import MlException

        try:
            return retries.call_with_retry(policy, fn, *args, what=what, **kw)
        except MlException as exc:
            raise PermanentError(f"{what}: {_ml_message(exc)}") from exc

    def _await(self, poller: Any, what: str) -> Any:
        """Wait a little for a started long-running operation; raise ``InProgress`` if it runs on.

        The wait is ``lro_wait_s`` or what is left of the invocation's budget, whichever is
        less; the operation goes on in Azure either way and a repeated call checks on it. In
        testing mode at most ``TESTING_REAL_WAIT_S`` is really waited (a fake service finishes
        in milliseconds) and the rest is charged to the budget.
        """
        wait_s = budgets.remaining(self._lro_wait_s)
        real_s = min(wait_s, TESTING_REAL_WAIT_S) if retries.is_testing() else wait_s
        try:
            poller.wait(timeout=real_s)  # raises the operation's error if it failed
            if not poller.done():
                invocation = budgets.current()
                if invocation is not None and real_s < wait_s:
                    invocation.charge(wait_s - real_s)
                raise InProgress(
                    f"{what}: still in progress after {wait_s:.0f}s; it goes on in Azure",
                    retry_after=IN_PROGRESS_RETRY_AFTER_S,
                )
            return poller.result()
        except Exception as exc:
            error = retries.translate(exc, what)
            if error is exc:
                raise
            raise error from exc

    # -- jobs --

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

        spec = _read_yaml(request.job_file)
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
            is_asset = isinstance(decl, dict) and decl.get("type") not in _LITERAL_INPUT_TYPES
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
        match = _DATASTORE_URI.match(path) if isinstance(path, str) else None
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
        if _text(getattr(store, "type", "")).lower() != "azureblob":
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

    # -- models --

    def _versions(self, model: str) -> list[Model]:
        def listing() -> list[Model]:
            return list(self.ml.models.list(name=model))

        try:
            return self._call(self._retry.read, f"list versions of model {model}", listing)
        except NotFound:
            return []

    def register_model(self, model: str, job_name: str, tags: dict[str, str]) -> str:
        for version in self._versions(model):
            if (version.tags or {}).get(JOB_TAG) == job_name:
                log.info(
                    "model %s already has version %s from job %s", model, version.version, job_name
                )
                return str(version.version)
        from azure.ai.ml.entities import Model

        entity = Model(
            name=model,
            path=job_output_uri(job_name, self._model_output),
            type=self._model_type,
            tags={**tags, JOB_TAG: job_name},
            description=f"Registered by autopilot from job {job_name}",
        )
        created = self._call(
            retries.ONCE,
            f"register model {model} from job {job_name}",
            self.ml.models.create_or_update,
            entity,
        )
        log.info("registered model %s version %s from job %s", model, created.version, job_name)
        return str(created.version)

    def champion_version(self, model: str, endpoint: str | None) -> str | None:
        if endpoint:
            live = self._live_model(endpoint)
            if live is not None:
                name, version = live
                if name == model:
                    return version
                log.warning("endpoint %s serves model %s, not %s", endpoint, name, model)
        tagged = [v for v in self._versions(model) if _is_champion(v)]
        if not tagged:
            return None
        if len(tagged) > 1:
            log.warning(
                "model %s has %d versions tagged %s; taking the highest",
                model,
                len(tagged),
                CHAMPION_TAG,
            )
        return str(max(tagged, key=lambda v: _version_key(str(v.version))).version)

    def _live_model(self, endpoint: str) -> tuple[str, str] | None:
        try:
            traffic = self.get_traffic(endpoint)
        except NotFound:
            return None
        serving = [(share, name) for name, share in traffic.items() if share > 0]
        if not serving:
            return None
        _, deployment = max(serving, key=lambda item: (item[0], item[1]))
        dep = self._deployment(endpoint, deployment)
        if dep is None:
            return None
        return parse_model_ref(getattr(dep, "model", None))

    def set_champion(self, model: str, version: str) -> None:
        versions = self._versions(model)
        target = next((v for v in versions if str(v.version) == str(version)), None)
        if target is None:
            raise NotFound(f"model {model} has no version {version}")
        # Tag the new champion first: a crash in between leaves two tagged versions (the
        # highest wins), never none.
        if not _is_champion(target):
            target.tags = {**(target.tags or {}), CHAMPION_TAG: "true"}
            self._update_model(target)
        for other in versions:
            if other is not target and _is_champion(other):
                other.tags = {k: v for k, v in (other.tags or {}).items() if k != CHAMPION_TAG}
                self._update_model(other)
        log.info("model %s champion is now version %s", model, version)

    def _update_model(self, version: Model) -> None:
        self._call(
            self._retry.write,
            f"update tags of model {version.name}:{version.version}",
            self.ml.models.create_or_update,
            version,
        )

    # -- endpoints and deployments --

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        """Start creating the deployment and return once it is ready, or raise ``InProgress``.

        A repeated call checks on it: ``AlreadyExists`` once it succeeded, ``InProgress`` while
        it (or a deletion of a same-named deployment) runs, ``PermanentError`` if it failed.
        """
        what = f"create deployment {endpoint}/{deployment}"
        existing = self._deployment(endpoint, deployment)
        if existing is not None:
            state = _text(getattr(existing, "provisioning_state", ""))
            if state == _READY:
                raise AlreadyExists(f"deployment {endpoint}/{deployment} already exists")
            if state in _FAILED:
                raise PermanentError(f"{what}: a deployment of that name exists in state {state}")
            if state == "Deleting":
                raise InProgress(
                    f"{what}: a deployment of that name is still being deleted; it is created "
                    "once that is done",
                    retry_after=IN_PROGRESS_RETRY_AFTER_S,
                )
            # Creating, Updating, Scaling (or a state this code does not know): not ready yet.
            raise InProgress(
                f"{what}: deployment is still {state or 'provisioning'}",
                retry_after=IN_PROGRESS_RETRY_AFTER_S,
            )
        entity = self._deployment_entity(endpoint, deployment, model, version)
        # Not retried: a second PUT while the first is provisioning conflicts; the caller's
        # next attempt sees the deployment and decides from its state.
        poller = self._call(
            retries.ONCE, what, self.ml.online_deployments.begin_create_or_update, entity
        )
        self._await(poller, what)
        log.info("created deployment %s/%s serving %s:%s", endpoint, deployment, model, version)

    def _deployment(self, endpoint: str, deployment: str) -> Any:
        """The deployment entity, or None if there is none of that name."""
        try:
            return self._call(
                self._retry.read,
                f"get deployment {endpoint}/{deployment}",
                self.ml.online_deployments.get,
                name=deployment,
                endpoint_name=endpoint,
            )
        except NotFound:
            return None

    def _deployment_entity(
        self, endpoint: str, deployment: str, model: str, version: str
    ) -> OnlineDeployment:
        from azure.ai.ml import load_online_deployment
        from azure.ai.ml.entities import ManagedOnlineDeployment

        tags = {"autopilot_model": model, "autopilot_version": str(version)}
        ref = f"azureml:{model}:{version}"
        if self._deployment_template:
            try:
                entity: OnlineDeployment = load_online_deployment(self._deployment_template)
            except Exception as exc:
                raise PermanentError(
                    f"deployment template {self._deployment_template}: {type(exc).__name__}: "
                    f"{retries.redact(str(exc))}"
                ) from exc
            entity.name = deployment
            entity.endpoint_name = endpoint
            entity.model = ref
            entity.tags = {**(entity.tags or {}), **tags}
            return entity
        return ManagedOnlineDeployment(
            name=deployment,
            endpoint_name=endpoint,
            model=ref,
            instance_type=self._instance_type,
            instance_count=self._instance_count,
            tags=tags,
        )

    def _endpoint(self, endpoint: str) -> Any:
        return self._call(
            self._retry.read, f"get endpoint {endpoint}", self.ml.online_endpoints.get, endpoint
        )

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        """Traffic per deployment, keyed by the deployment's name as azure-ai-ml spells it.

        The SDK lower-cases deployment names (``Deployment.__init__``) and the traffic keys it
        sends (``begin_create_or_update``), while an endpoint set up by other means may hold
        ``Blue: 100``; ``get`` then adds the listed deployment at 0% as ``blue``. The keys are
        merged here under the lower-case name, the one every later call sends and reads back.
        """
        return _by_deployment(self._endpoint(endpoint).traffic)

    def _mirror(self, endpoint: str) -> dict[str, int]:
        return _by_deployment(self._endpoint(endpoint).mirror_traffic)

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        _check_shares(traffic, total=100, what=f"traffic for {endpoint}")
        self._update_endpoint(endpoint, "traffic", traffic)
        after = self.get_traffic(endpoint)
        if _nonzero(after) != _nonzero(traffic):  # deployment names compare case-insensitively
            raise TransientError(
                f"endpoint {endpoint}: traffic is {_nonzero(after)} after setting "
                f"{_nonzero(traffic)}",
                retry_after=30.0,
            )
        log.info("endpoint %s traffic set to %s", endpoint, _nonzero(traffic))

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        """Mirror (shadow) a share of live traffic to deployments; {} stops mirroring."""
        for name, share in mirror.items():
            if not 0 <= int(share) <= 50:
                raise PermanentError(f"mirror traffic for {endpoint}/{name} must be 0..50")
        self._update_endpoint(endpoint, "mirror_traffic", mirror)
        after = self._mirror(endpoint)
        if _nonzero(after) != _nonzero(mirror):
            raise TransientError(
                f"endpoint {endpoint}: mirror traffic is {_nonzero(after)} after setting "
                f"{_nonzero(mirror)}",
                retry_after=30.0,
            )
        log.info("endpoint %s mirror traffic set to %s", endpoint, _nonzero(mirror))

    def _update_endpoint(self, endpoint: str, field: str, shares: dict[str, int]) -> None:
        """Start the endpoint update unless it is already so; ``InProgress`` while it runs."""
        what = f"update {field} of endpoint {endpoint}"
        ep = self._endpoint(endpoint)
        state = _text(getattr(ep, "provisioning_state", ""))
        if state in _ENDPOINT_BUSY:  # ours from an earlier tick, or someone else's
            raise InProgress(
                f"{what}: endpoint is {state}; checking again later",
                retry_after=IN_PROGRESS_RETRY_AFTER_S,
            )
        if state == "Deleting":
            raise PermanentError(f"{what}: the endpoint is being deleted")
        if _nonzero(_by_deployment(getattr(ep, field))) == _nonzero(shares):
            return  # already so (an update from an earlier tick took effect): nothing to start
        setattr(ep, field, {k: int(v) for k, v in shares.items()})
        # A PUT of the same endpoint with the same shares is idempotent.
        try:
            poller = self._call(
                self._retry.lro, what, self.ml.online_endpoints.begin_create_or_update, ep
            )
        except AlreadyExists as exc:  # 409: another operation on the endpoint is running
            raise TransientError(f"{what}: endpoint is busy ({exc})", retry_after=30.0) from exc
        self._await(poller, what)

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        """Begin deleting a deployment and return without waiting for Azure (that takes
        minutes): True once it is gone, False while Azure is deleting it. Idempotent: a
        missing deployment is done, one already ``Deleting`` is not asked again."""
        what = f"delete deployment {endpoint}/{deployment}"
        existing = self._deployment(endpoint, deployment)
        if existing is None:
            log.info("deployment %s/%s is gone", endpoint, deployment)
            return True
        if _text(getattr(existing, "provisioning_state", "")) == "Deleting":
            return False
        try:
            # The DELETE is sent here; the SDK's poller follows it in the background.
            poller = self._call(
                self._retry.write,
                what,
                self.ml.online_deployments.begin_delete,
                name=deployment,
                endpoint_name=endpoint,
            )
        except NotFound:
            log.info("deployment %s/%s was already gone", endpoint, deployment)
            return True
        except AlreadyExists as exc:  # 409: the deployment is busy (e.g. still updating)
            raise TransientError(f"{what}: deployment is busy ({exc})", retry_after=30.0) from exc
        if not poller.done():
            log.info("deletion of deployment %s/%s begun", endpoint, deployment)
            return False
        self._call(retries.ONCE, what, poller.result)  # finished at once: surface a failure
        log.info("deleted deployment %s/%s", endpoint, deployment)
        return True


def _ml_message(exc: Exception) -> str:
    """The gist of an azure-ai-ml error (its text is a multi-paragraph help page)."""
    text = str(exc)
    if "Details:" in text:
        text = text.split("Details:", 1)[1].split("Resolutions:", 1)[0]
    return retries.redact(" ".join(line.strip() for line in text.splitlines() if line.strip()))


def _is_champion(version: Any) -> bool:
    return str((version.tags or {}).get(CHAMPION_TAG, "")).lower() == "true"


def _nonzero(shares: dict[str, int]) -> dict[str, int]:
    """The non-zero shares, keyed by lower-cased deployment name (Azure compares names so)."""
    return {k.lower(): int(v) for k, v in sorted(shares.items()) if int(v)}


def _by_deployment(shares: dict[str, Any] | None) -> dict[str, int]:
    """Shares per deployment under the SDK's name for it (lower case), spellings merged."""
    merged: dict[str, int] = {}
    for key, value in (shares or {}).items():
        name = str(key).lower()
        merged[name] = merged.get(name, 0) + int(value)
    return merged


def _check_shares(shares: dict[str, int], *, total: int, what: str) -> None:
    values = [int(v) for v in shares.values()]
    if any(v < 0 or v > 100 for v in values):
        raise PermanentError(f"{what}: every share must be 0..100, got {shares}")
    if sum(values) not in (0, total):
        raise PermanentError(f"{what}: shares must add up to {total}, got {shares}")


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PermanentError(f"job file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise PermanentError(f"job file {path}: not a YAML mapping")
    return data
