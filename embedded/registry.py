"""MLflow tracking and model registry on a SQLite file, for the embedded platform.

MLflow is imported inside the methods: importing it costs over a second, and the service's
cold start must not pay for it. The client is typed ``Any`` on purpose: MLflow's own
annotations are partial, and this module is the one boundary that talks to it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from embedded.files import file_lock
from shared.errors import NotFound, PermanentError, TransientError

JOB_TAG = "autopilot_job"
CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def local_path(uri: str) -> Path:
    """A filesystem path from a ``file:`` URI or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path if parsed.scheme else uri))
    raise PermanentError(f"model artifacts at {uri!r} are not on the local filesystem")


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


@dataclass(frozen=True, slots=True)
class Registration:
    version: str
    created: bool
    run_id: str
    source: str


class MlflowRegistry:
    """Experiments, runs and registered models in ``data_dir/mlflow.db``; artifacts in
    ``data_dir/mlartifacts``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.db_path = data_dir / "mlflow.db"
        self.uri = sqlite_uri(self.db_path)
        self.artifact_root = data_dir / "mlartifacts"
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        """The MLflow client; the first call creates the database (under a file lock)."""
        with self._lock:
            if self._client is None:
                # offline: MLflow's usage telemetry would try to reach the internet
                os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
                from mlflow import MlflowClient

                with file_lock(self.data_dir / "locks" / "mlflow-init.lock"):
                    client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                    client.search_experiments(max_results=1)  # runs the schema migrations
                self._client = client
            return self._client

    @staticmethod
    def _exception_type() -> type[Exception]:
        from mlflow.exceptions import MlflowException

        return MlflowException

    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name``, created with its artifacts under ``mlartifacts``."""
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = (self.artifact_root / name).resolve().as_uri()
        with file_lock(self.data_dir / "locks" / "experiments.lock"):
            found = client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            return str(client.create_experiment(name, artifact_location=location))

    def _job_run(self, job_name: str, experiment: str) -> Any:
        client = self.client()
        found = client.get_experiment_by_name(experiment)
        experiment_ids = [found.experiment_id] if found is not None else []
        if not experiment_ids:
            experiment_ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(
            experiment_ids,
            filter_string=f"tags.{JOB_TAG} = '{job_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        finished = [r for r in runs if r.info.status == "FINISHED"] or list(runs)
        if not finished:
            raise PermanentError(
                f"job {job_name!r} logged no MLflow run tagged {JOB_TAG}={job_name} "
                f"(experiment {experiment!r}); the training script must tag its run"
            )
        return finished[0]

    def _model_source(self, run: Any) -> tuple[str, str | None]:
        """(source URI, logged model id) of the run's model output named ``model``."""
        client = self.client()
        outputs = getattr(run, "outputs", None)
        model_outputs = list(getattr(outputs, "model_outputs", None) or [])
        candidates = []
        for output in model_outputs:
            logged = client.get_logged_model(output.model_id)
            candidates.append((logged.name == MODEL_ARTIFACT, output.step, logged.model_id, logged))
        if candidates:
            best = max(candidates, key=lambda c: c[:3])
            # the artifact location, not models:/<id>: the registry store would resolve that
            # through MLflow's process-global tracking URI rather than this client's
            return str(best[3].artifact_location), str(best[2])
        # MLflow 2 style: the model is an artifact folder of the run
        names = {a.path for a in client.list_artifacts(run.info.run_id, MODEL_ARTIFACT)}
        if f"{MODEL_ARTIFACT}/MLmodel" in names:
            return f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}", None
        raise PermanentError(
            f"run {run.info.run_id} logged no model named {MODEL_ARTIFACT!r} to register"
        )

    def existing_version(self, model: str, job_name: str) -> str | None:
        client = self.client()
        error = self._exception_type()
        try:
            versions = client.search_model_versions(
                f"name = '{model}' and tags.{JOB_TAG} = '{job_name}'"
            )
        except error as exc:
            if "RESOURCE_DOES_NOT_EXIST" in _error_code(exc):
                return None
            raise TransientError(f"model registry: {exc}") from exc
        if not versions:
            return None
        return str(min(int(v.version) for v in versions))

    def register(
        self, model: str, job_name: str, experiment: str, tags: dict[str, str]
    ) -> Registration:
        """Register the job's model (once per job) and point alias ``challenger`` at it."""
        client = self.client()
        error = self._exception_type()
        with file_lock(self.data_dir / "locks" / f"register-{model}.lock"):
            existing = self.existing_version(model, job_name)
            if existing is not None:
                return Registration(existing, False, "", "")
            run = self._job_run(job_name, experiment)
            source, model_id = self._model_source(run)
            try:
                client.create_registered_model(model)
            except error as exc:
                if "ALREADY_EXISTS" not in _error_code(exc):
                    raise TransientError(f"model registry: {exc}") from exc
            all_tags = {
                **tags,
                JOB_TAG: job_name,
                "autopilot_run_id": run.info.run_id,
                "autopilot_experiment": experiment,
            }
            try:
                version = client.create_model_version(
                    model, source, run_id=run.info.run_id, tags=all_tags, model_id=model_id
                )
                client.set_registered_model_alias(model, CHALLENGER, str(version.version))
            except error as exc:
                raise TransientError(f"model registry: {exc}") from exc
        return Registration(str(version.version), True, run.info.run_id, source)

    def alias_version(self, model: str, alias: str) -> str | None:
        client = self.client()
        error = self._exception_type()
        try:
            return str(client.get_model_version_by_alias(model, alias).version)
        except error as exc:
            code = _error_code(exc)
            if "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER_VALUE" in code:
                return None
            raise TransientError(f"model registry: {exc}") from exc

    def version_tags(self, model: str, version: str) -> dict[str, str]:
        client = self.client()
        error = self._exception_type()
        try:
            return dict(client.get_model_version(model, version).tags)
        except error as exc:
            raise NotFound(f"model {model} version {version} does not exist") from exc

    def set_alias(self, model: str, version: str, alias: str) -> None:
        self.version_tags(model, version)  # NotFound if the version does not exist
        client = self.client()
        client.set_registered_model_alias(model, alias, version)
        if alias == CHAMPION and self.alias_version(model, CHALLENGER) == version:
            client.delete_registered_model_alias(model, CHALLENGER)

    def model_path(self, model: str, version: str) -> Path:
        """The local folder that holds ``model`` ``version`` (the MLmodel file and friends)."""
        client = self.client()
        error = self._exception_type()
        try:
            uri = client.get_model_version_download_uri(model, version)
        except error as exc:
            raise NotFound(f"model {model} version {version} does not exist") from exc
        return local_path(str(uri))
