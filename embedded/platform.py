"""The embedded ML platform: the offline default of the ``MLPlatform`` port.

It is not a mock. Jobs are real subprocesses running the operator's training command
(:mod:`embedded.jobs`); runs, models and aliases live in MLflow on SQLite
(:mod:`embedded.registry`); endpoints are real HTTP servers with weighted traffic split and
mirroring (:mod:`embedded.endpoint`), driven over their admin routes so any process sharing
``data_dir`` can drive them. Like Azure ML, it emits ``RunStatusChanged``, ``RunCompleted``
and ``ModelRegistered`` events (Event Grid schema, camelCase data) to an :class:`EventSink`.

Layout of ``data_dir``::

    jobs/<name>/job.json, stdout.log, stderr.log, outputs/   one folder per job
    mlflow.db, mlartifacts/                                  MLflow tracking + registry
    endpoints/<name>.json, endpoints/telemetry.db            endpoints and what they record
    locks/                                                   inter-process locks

Heavy libraries (MLflow, pandas) are imported only when a method needs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from embedded.endpoint import (
    EndpointServer,
    Predictor,
    PyfuncPredictor,
    endpoints_dir,
    state_path,
)
from embedded.events import (
    MODEL_REGISTERED,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    EventSink,
    ListEventSink,
    WebhookEventSink,
    azureml_event,
)
from embedded.files import file_lock, read_json
from embedded.jobs import JobRecord, JobRunner
from embedded.registry import CHAMPION, MlflowRegistry
from shared.errors import AlreadyExists, NotFound, PermanentError, TransientError
from shared.model import JobInfo, JobRequest, JobStatus
from shared.redact import Redactor

__all__ = ["EventSink", "ListEventSink", "LocalMLPlatform", "WebhookEventSink"]

log = logging.getLogger("embedded.platform")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
RUN_TYPE = "azureml.scriptrun"


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise PermanentError(
            f"{kind} name {value!r} is not valid: use letters, digits, '_', '.', '-'"
        )
    return value


class LocalMLPlatform:
    """``MLPlatform`` on one machine. Extra methods: ``cancel_job``, ``ensure_endpoint``,
    ``endpoint_url``, ``set_faults``, ``job_dir``, ``resume``, ``close``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        event_sink: EventSink | None = None,
        python: str = sys.executable,
        code_dir: Path | None = None,
        create_endpoints: bool = False,
        endpoint_seed: int | None = None,
        admin_timeout_s: float = 120.0,
        redactor: Redactor | None = None,
    ) -> None:
        """``code_dir`` (default: the current folder) is where relative paths in job
        commands and inputs are looked up. ``create_endpoints`` makes a call naming an
        endpoint that does not exist yet start it (otherwise: ``NotFound``)."""
        self.data_dir = data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.event_sink = event_sink
        self.registry = MlflowRegistry(self.data_dir)
        self.tracking_uri = self.registry.uri
        self.jobs = JobRunner(
            self.data_dir / "jobs",
            python=python,
            code_dir=(code_dir or Path.cwd()).resolve(),
            env={
                "MLFLOW_TRACKING_URI": self.tracking_uri,
                "MLFLOW_REGISTRY_URI": self.tracking_uri,
            },
            prepare=self._prepare_job,
            on_change=self._job_changed,
            redactor=redactor,
        )
        self._create_endpoints = create_endpoints
        self._endpoint_seed = endpoint_seed
        self._admin_timeout_s = admin_timeout_s
        self._servers: dict[str, EndpointServer] = {}
        self._lock = threading.Lock()

    # -- events ---------------------------------------------------------------------------

    def _emit(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        if self.event_sink is None:
            return
        try:
            self.event_sink.emit(azureml_event(event_type, subject, data))
        except Exception:
            log.exception("event sink failed on %s %s", event_type, subject)

    def _job_changed(self, record: JobRecord) -> None:
        properties = {"azureml.runsource": "autopilot-embedded", "model": record.model}
        if record.exit_code is not None:
            properties["exitCode"] = str(record.exit_code)
        if record.error:
            properties["error"] = record.error[-1000:]
        data = {
            "experimentId": record.experiment_id,
            "experimentName": record.experiment,
            "runId": record.name,
            "runType": RUN_TYPE,
            "runTags": dict(record.tags),
            "runProperties": properties,
            "runStatus": record.status,
        }
        subject = f"experiments/{record.experiment_id}/runs/{record.name}"
        self._emit(RUN_STATUS_CHANGED, subject, data)
        if record.job_status is JobStatus.COMPLETED:
            self._emit(RUN_COMPLETED, subject, data)

    # -- jobs -----------------------------------------------------------------------------

    def _prepare_job(self, record: JobRecord) -> str:
        return self.registry.ensure_experiment(record.experiment)

    def submit_job(self, request: JobRequest) -> JobInfo:
        _check_name("experiment", request.experiment)
        return self.jobs.submit(request).info()

    def get_job(self, name: str) -> JobInfo:
        return self.jobs.get(name).info()

    def cancel_job(self, name: str) -> JobInfo:
        """Stop a queued or running job; it ends Canceled. A finished job is left as it is."""
        return self.jobs.cancel(name).info()

    def job_dir(self, name: str) -> Path:
        return self.jobs.job_dir(name)

    def get_evaluation(self, job_name: str) -> dict[str, Any]:
        self.jobs.get(job_name)  # NotFound for an unknown job
        path = self.jobs.outputs_dir(job_name) / "evaluation.json"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"job {job_name} wrote no outputs/evaluation.json") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise PermanentError(
                f"job {job_name}: evaluation.json is not valid JSON: {exc}"
            ) from exc
        if not isinstance(document, dict):
            raise PermanentError(f"job {job_name}: evaluation.json is not a JSON object")
        return document

    # -- registry -------------------------------------------------------------------------

    def register_model(self, model: str, job_name: str, tags: dict[str, str]) -> str:
        _check_name("model", model)
        record = self.jobs.get(job_name)
        if record.job_status is not JobStatus.COMPLETED:
            raise PermanentError(
                f"job {job_name} is {record.status}: only a completed job's model is registered"
            )
        registration = self.registry.register(model, job_name, record.experiment, tags)
        if registration.created:
            self._emit(
                MODEL_REGISTERED,
                f"models/{model}:{registration.version}",
                {
                    "modelName": model,
                    "modelVersion": registration.version,
                    "modelTags": self.registry.version_tags(model, registration.version),
                    "modelProperties": {
                        "runId": registration.run_id,
                        "source": registration.source,
                        "job": job_name,
                    },
                },
            )
        return registration.version

    def champion_version(self, model: str, endpoint: str | None) -> str | None:
        """The version the registry alias ``champion`` points at (``endpoint`` is not used:
        the alias is set on promotion, whatever endpoint served it)."""
        _check_name("model", model)
        return self.registry.alias_version(model, CHAMPION)

    def set_champion(self, model: str, version: str) -> None:
        _check_name("model", model)
        self.registry.set_alias(model, str(version), CHAMPION)

    # -- endpoints ------------------------------------------------------------------------

    def _load_model(self, model: str, version: str) -> Predictor:
        import mlflow.pyfunc

        path = self.registry.model_path(model, version)
        try:
            return PyfuncPredictor(mlflow.pyfunc.load_model(str(path)))
        except Exception as exc:
            raise PermanentError(f"cannot load model {model} v{version}: {exc}") from exc

    def _state(self, endpoint: str) -> dict[str, Any] | None:
        try:
            state = read_json(state_path(self.data_dir, endpoint))
        except (FileNotFoundError, ValueError):
            return None
        return state if isinstance(state, dict) and state.get("url") else None

    @staticmethod
    def _alive(endpoint: str, url: str) -> bool:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2.0) as response:
                return bool(json.loads(response.read()).get("endpoint") == endpoint)
        except (OSError, ValueError):
            return False

    def ensure_endpoint(self, name: str) -> str:
        """Start endpoint ``name`` on a free 127.0.0.1 port unless it already runs (in this or
        another process); returns its URL. A restarted endpoint keeps its deployments."""
        _check_name("endpoint", name)
        with self._lock:
            server = self._servers.get(name)
            if server is not None:
                return server.url
        with file_lock(self.data_dir / "locks" / f"endpoint-{name}.lock"):
            state = self._state(name)
            if state is not None and self._alive(name, str(state["url"])):
                return str(state["url"])
            server = EndpointServer(
                name, self.data_dir, loader=self._load_model, seed=self._endpoint_seed
            )
            url = server.start()
            with self._lock:
                self._servers[name] = server
            return url

    def endpoint_url(self, name: str) -> str:
        state = self._state(_check_name("endpoint", name))
        if state is None:
            raise NotFound(f"endpoint {name!r} does not exist")
        return str(state["url"])

    def _request(self, endpoint: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        state = self._state(_check_name("endpoint", endpoint))
        if state is None:
            if not self._create_endpoints:
                raise NotFound(
                    f"endpoint {endpoint!r} does not exist (start it with ensure_endpoint)"
                )
            self.ensure_endpoint(endpoint)
            state = self._state(endpoint)
            assert state is not None
        for attempt in (1, 2):
            request = urllib.request.Request(
                str(state["url"]) + path,
                data=None if body is None else json.dumps(body).encode("utf-8"),
                method=method,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {state.get('token', '')}",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=self._admin_timeout_s) as response:
                    return int(response.status), json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                try:
                    answer = json.loads(raw) if raw else None
                except ValueError:
                    answer = raw.decode("utf-8", "replace")
                return int(exc.code), answer
            except OSError as exc:
                if attempt == 2:
                    raise TransientError(f"endpoint {endpoint} is not answering: {exc}") from exc
                # the endpoint's server is gone: start it again from its persisted state
                self.ensure_endpoint(endpoint)
                state = self._state(endpoint) or state
        raise AssertionError("unreachable")

    def _admin(self, endpoint: str, method: str, path: str, body: Any = None) -> Any:
        status, answer = self._request(endpoint, method, path, body)
        if 200 <= status < 300:
            return answer
        message = answer.get("error") if isinstance(answer, dict) else answer
        text = f"endpoint {endpoint}: {method} {path}: HTTP {status}: {message}"
        if status == 404:
            raise NotFound(text)
        if status == 409:
            raise AlreadyExists(text)
        if status >= 500 or status in (408, 429):
            raise TransientError(text)
        raise PermanentError(text)

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        _check_name("deployment", deployment)
        _check_name("model", model)
        self._admin(
            endpoint,
            "POST",
            "/admin/deployments",
            {"name": deployment, "model": model, "version": str(version)},
        )

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        answer = self._admin(endpoint, "GET", "/traffic")
        return {str(k): int(v) for k, v in answer["traffic"].items()}

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        """Replace the live traffic split: deployments not named get 0; the sum must be 100."""
        self._admin(endpoint, "PUT", "/admin/traffic", {"traffic": dict(traffic)})

    def get_mirror(self, endpoint: str) -> dict[str, int]:
        mirror = self._admin(endpoint, "GET", "/traffic").get("mirror")
        return {str(mirror["deployment"]): int(mirror["percent"])} if mirror else {}

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        """Mirror a percentage of live traffic to one deployment; ``{}`` switches it off."""
        active = {k: v for k, v in mirror.items() if v}
        if len(active) > 1:
            raise PermanentError(f"mirror traffic goes to one deployment at most, got {mirror}")
        for name in mirror:
            _check_name("deployment", name)
        target, percent = next(iter(active.items())) if active else (None, 0)
        self._admin(endpoint, "PUT", "/admin/mirror", {"deployment": target, "percent": percent})

    def set_faults(
        self,
        endpoint: str,
        deployment: str,
        *,
        inject_errors: float | None = None,
        latency_ms: float | None = None,
    ) -> None:
        """Make a deployment unhealthy on purpose: a fraction of 500s, extra latency."""
        body: dict[str, float] = {}
        if inject_errors is not None:
            body["inject_errors"] = inject_errors
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        self._admin(
            endpoint, "PUT", f"/admin/deployments/{quote(deployment, safe='')}/faults", body
        )

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        """Remove a deployment that takes no live traffic (at once: always True); a missing
        one is already gone. PermanentError while it takes traffic."""
        _check_name("deployment", deployment)
        with contextlib.suppress(NotFound):
            self._admin(endpoint, "DELETE", f"/admin/deployments/{quote(deployment, safe='')}")
        return True

    # -- start and shutdown ---------------------------------------------------------------

    def resume(self) -> dict[str, list[str]]:
        """After a restart on the same ``data_dir``: adopt the jobs a previous process
        started and serve every endpoint it served again (on its old port when free).

        A restart then neither fails a running job nor leaves clients without an endpoint
        until something happens to call the platform. Returns what was resumed, by kind.
        """
        adopted = self.jobs.adopt_orphans()
        endpoints: list[str] = []
        folder = endpoints_dir(self.data_dir)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            if not NAME.match(path.stem) or self._state(path.stem) is None:
                continue
            try:
                self.ensure_endpoint(path.stem)
                endpoints.append(path.stem)
            except Exception:
                log.exception("endpoint %s: could not serve it again", path.stem)
        if adopted or endpoints:
            log.info("resumed: jobs %s, endpoints %s", adopted or "none", endpoints or "none")
        return {"jobs": adopted, "endpoints": endpoints}

    def close(self, *, leave_jobs_running: bool = False) -> None:
        """Stop this process's endpoint servers and flush events; cancel the jobs it runs,
        unless ``leave_jobs_running`` (a restart: the next process adopts them)."""
        self.jobs.close(leave_running=leave_jobs_running)
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.stop()
        close = getattr(self.event_sink, "close", None)
        if callable(close):
            close()
