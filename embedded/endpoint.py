"""The local online endpoint: a real HTTP server hosting named deployments (blue/green ...).

- ``POST /score`` with ``{"rows": [{feature: value, ...}, ...]}`` (or a bare list of rows)
  answers ``{"predictions": [...], "deployment": "<name>"}``. Each request goes to one
  deployment drawn at random by the traffic percentages (the ``azureml-model-deployment``
  header pins one, as on Azure ML). Mirror traffic sends a copy of a share of requests to a
  shadow deployment in the background; its answer is dropped, its metrics are kept.
- ``GET /traffic``, ``GET /health``; admin routes under ``/admin`` need
  ``Authorization: Bearer <token>``: add/remove deployments, set traffic and mirror, inject
  faults (a fraction of requests answering 500, extra latency) for demos and tests.
- Routing is an immutable table swapped in one assignment: a traffic change never drops or
  half-routes an in-flight request, which keeps the table it started with.
- Every request (status, latency) and every scored row is recorded through
  :mod:`embedded.telemetry` (flushed in batches by a background thread), for the metrics
  adapter and the drift monitor in other processes.
- The endpoint's deployments, traffic and token persist in ``endpoints/<name>.json``; a
  restarted server loads them again. ``python -m embedded.endpoint --data-dir D --name N``
  runs one as its own process.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlparse

from embedded.files import read_json, write_json_atomic
from embedded.telemetry import InputRecord, RequestRecord, ScoreRecord, TelemetryStore
from shared.errors import (
    AlreadyExists,
    AutopilotError,
    NotFound,
    PayloadTooLarge,
    PermanentError,
)

log = logging.getLogger("embedded.endpoint")

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ROWS = 10_000
DEPLOYMENT_HEADER = "azureml-model-deployment"


def endpoints_dir(data_dir: Path) -> Path:
    return data_dir / "endpoints"


def state_path(data_dir: Path, name: str) -> Path:
    return endpoints_dir(data_dir) / f"{name}.json"


def telemetry_path(data_dir: Path) -> Path:
    return endpoints_dir(data_dir) / "telemetry.db"


class Predictor(Protocol):
    """A loaded model. Raises ``BadInput`` for rows it cannot take (answered 400)."""

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]: ...


class BadInput(ValueError):
    """The request's rows do not fit the model (missing columns, wrong types)."""


# (model, version) -> a loaded model. Raises NotFound for an unknown model version.
ModelLoader = Callable[[str, str], Predictor]


class PyfuncPredictor:
    """An MLflow pyfunc model scoring rows given as dicts."""

    def __init__(self, model: Any) -> None:
        self._model = model
        schema = model.metadata.get_input_schema()
        self._float_columns: tuple[str, ...] = ()
        if schema is not None and schema.has_input_names():
            self._float_columns = tuple(
                spec.name
                for spec in schema.inputs
                if getattr(getattr(spec, "type", None), "name", "") in ("double", "float")
            )

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        import pandas as pd  # type: ignore[import-untyped]
        from mlflow.exceptions import MlflowException

        frame = pd.DataFrame(rows)
        for name in self._float_columns:  # JSON has no int/float distinction: 30 means 30.0
            if name in frame.columns and frame[name].dtype.kind in "iub":
                frame[name] = frame[name].astype("float64")
        try:
            result = self._model.predict(frame)
        except MlflowException as exc:
            if exc.error_code == "INVALID_PARAMETER_VALUE":
                raise BadInput(str(exc)) from exc
            raise
        if hasattr(result, "to_dict") and hasattr(result, "columns"):
            return list(result.to_dict(orient="records"))
        if hasattr(result, "tolist"):
            return list(result.tolist())
        return list(result)


def mlflow_loader(data_dir: Path) -> ModelLoader:
    """Loads ``models:/<model>/<version>`` from the platform's MLflow registry."""
    from embedded.registry import MlflowRegistry

    registry = MlflowRegistry(data_dir)

    def load(model: str, version: str) -> Predictor:
        import mlflow.pyfunc

        path = registry.model_path(model, version)
        try:
            return PyfuncPredictor(mlflow.pyfunc.load_model(str(path)))
        except Exception as exc:
            raise PermanentError(f"cannot load model {model} v{version}: {exc}") from exc

    return load


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    model: str
    version: str
    predictor: Predictor = field(repr=False, compare=False)
    inject_errors: float = 0.0  # fraction of requests answered 500
    latency_ms: float = 0.0  # added to every request

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "inject_errors": self.inject_errors,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True, slots=True)
class Mirror:
    deployment: str
    percent: int

    def describe(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "percent": self.percent}


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Deployments, live traffic and mirror at one moment. Never changed: replaced."""

    deployments: Mapping[str, Deployment] = field(default_factory=lambda: MappingProxyType({}))
    traffic: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    mirror: Mirror | None = None

    def choose(self, draw: float) -> Deployment | None:
        """The deployment for a uniform ``draw`` in [0, 1): weighted by traffic."""
        point = draw * 100.0
        upto = 0.0
        for name, percent in self.traffic.items():
            if percent <= 0:
                continue
            upto += percent
            if point < upto:
                return self.deployments[name]
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "traffic": {name: self.traffic.get(name, 0) for name in self.deployments},
            "mirror": self.mirror.describe() if self.mirror else None,
        }


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def validate_traffic(traffic: Mapping[str, Any], deployments: Mapping[str, Any]) -> dict[str, int]:
    """Integer percentages (0-100) of existing deployments that sum to 100."""
    if not isinstance(traffic, Mapping):
        raise PermanentError("traffic must be an object of deployment -> percent")
    out: dict[str, int] = {}
    for name, value in traffic.items():
        if name not in deployments:
            raise PermanentError(f"traffic names unknown deployment {name!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise PermanentError(f"traffic for {name!r} must be an integer 0-100, got {value!r}")
        out[name] = value
    total = sum(out.values())
    if total != 100:
        raise PermanentError(f"traffic must sum to 100, got {total} ({out})")
    return out


class EndpointServer:
    """One named endpoint served over HTTP on 127.0.0.1."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        *,
        loader: ModelLoader | None = None,
        token: str | None = None,
        seed: int | None = None,
        flush_interval_s: float = 0.5,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self._loader = loader or mlflow_loader(data_dir)
        self._state_file = state_path(data_dir, name)
        self._telemetry = TelemetryStore(telemetry_path(data_dir))
        self._rng = random.Random(seed)  # noqa: S311 - routing, not security
        self._routing = RoutingTable()
        self._admin_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._inputs: list[InputRecord] = []
        self._scores: list[ScoreRecord] = []
        self._flush_interval_s = flush_interval_s
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._mirror_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"mirror-{name}")
        self.token = token or self._stored_token() or secrets.token_urlsafe(24)
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------

    def _stored(self) -> dict[str, Any]:
        try:
            data = read_json(self._state_file)
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _stored_token(self) -> str | None:
        token = self._stored().get("token")
        return token if isinstance(token, str) and token else None

    def _restore(self) -> None:
        """Load the deployments, traffic and mirror a previous server of this endpoint had."""
        stored = self._stored()
        deployments: dict[str, Deployment] = {}
        for dep_name, spec in (stored.get("deployments") or {}).items():
            try:
                predictor = self._loader(str(spec["model"]), str(spec["version"]))
            except (AutopilotError, KeyError) as exc:
                log.error("endpoint %s: cannot restore deployment %s: %s", self.name, dep_name, exc)
                continue
            deployments[dep_name] = Deployment(
                dep_name,
                str(spec["model"]),
                str(spec["version"]),
                predictor,
                float(spec.get("inject_errors", 0.0)),
                float(spec.get("latency_ms", 0.0)),
            )
        traffic = {k: int(v) for k, v in (stored.get("traffic") or {}).items() if k in deployments}
        if sum(traffic.values()) != 100:
            traffic = {}
        self._warm_up(deployments)
        mirror_spec = stored.get("mirror")
        mirror = None
        if isinstance(mirror_spec, dict) and mirror_spec.get("deployment") in deployments:
            mirror = Mirror(str(mirror_spec["deployment"]), int(mirror_spec.get("percent", 0)))
        self._routing = RoutingTable(_frozen(deployments), _frozen(traffic), mirror)

    def _warm_up(self, deployments: Mapping[str, Deployment]) -> None:
        """Score the endpoint's last recorded row once on each restored deployment, so the
        first client request after a restart does not pay the model's first-call cost."""
        try:
            rows = self._telemetry.inputs(self.name, 0.0, time.time() + 1.0, limit=1)
        except Exception:
            return
        for deployment in deployments.values() if rows else ():
            with contextlib.suppress(Exception):
                deployment.predictor.predict(rows)

    def _persist(self) -> None:
        routing = self._routing
        write_json_atomic(
            self._state_file,
            {
                "name": self.name,
                "url": self.url,
                "token": self.token,
                "pid": os.getpid(),
                "deployments": {n: d.describe() for n, d in routing.deployments.items()},
                "traffic": dict(routing.traffic),
                "mirror": routing.mirror.describe() if routing.mirror else None,
            },
            mode=0o600,
        )

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Restore persisted deployments, bind, serve in background threads; returns the URL."""
        self._state_file.parent.mkdir(parents=True, exist_ok=True)
        self._restore()
        server = self._bind(host, port)
        server.endpoint = self
        self._httpd = server
        self.url = f"http://{host}:{server.server_address[1]}"
        with self._admin_lock:
            self._persist()
        serve = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"endpoint-{self.name}",
            daemon=True,
        )
        flusher = threading.Thread(
            target=self._flush_loop, name=f"endpoint-{self.name}-flush", daemon=True
        )
        self._threads = [serve, flusher]
        for thread in self._threads:
            thread.start()
        log.info("endpoint %s serving at %s", self.name, self.url)
        return self.url

    def _bind(self, host: str, port: int) -> _Server:
        """Bind ``port``; for 0, the port a previous server of this endpoint had if it is
        free (clients keep their URL across a restart), else any free one."""
        previous = urlparse(str(self._stored().get("url") or "")).port if port == 0 else None
        if previous:
            try:
                return _Server((host, previous), _Handler)
            except OSError:
                log.info("endpoint %s: port %d is taken; binding a free one", self.name, previous)
        return _Server((host, port), _Handler)

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None and self._threads:
            self._httpd.shutdown()
        if self._httpd is not None:
            self._httpd.server_close()
        self._mirror_pool.shutdown(wait=True, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=5)
        self.flush()

    # -- telemetry ------------------------------------------------------------------------

    def _record(
        self,
        request: RequestRecord,
        rows: list[dict[str, Any]] | None = None,
        predictions: Any = None,
    ) -> None:
        scores = _scores(request, predictions) if rows else []
        with self._buffer_lock:
            self._requests.append(request)
            if rows:
                self._inputs.extend(
                    InputRecord(request.endpoint, request.deployment, request.ts, row)
                    for row in rows
                )
                self._scores.extend(scores)

    def flush(self) -> None:
        """Write buffered request, input and score records to the telemetry store now."""
        with self._buffer_lock:
            requests, self._requests = self._requests, []
            inputs, self._inputs = self._inputs, []
            scores, self._scores = self._scores, []
        if requests or inputs or scores:
            try:
                self._telemetry.append(requests, inputs, scores)
            except Exception:
                log.exception("endpoint %s: could not write telemetry", self.name)

    def _flush_loop(self) -> None:
        while not self._stopping.wait(self._flush_interval_s):
            self.flush()

    # -- admin (also used in-process) -----------------------------------------------------

    @property
    def routing(self) -> RoutingTable:
        return self._routing

    def add_deployment(self, name: str, model: str, version: str) -> Deployment:
        """Load ``model`` ``version`` and host it as ``name`` at 0% traffic."""
        with self._admin_lock:
            if name in self._routing.deployments:
                raise AlreadyExists(f"deployment {name!r} already exists on {self.name}")
            predictor = self._loader(model, version)  # NotFound / PermanentError
            deployment = Deployment(name, model, version, predictor)
            routing = self._routing
            self._routing = replace(
                routing, deployments=_frozen({**routing.deployments, name: deployment})
            )
            self._persist()
            return deployment

    def remove_deployment(self, name: str) -> None:
        with self._admin_lock:
            routing = self._routing
            if name not in routing.deployments:
                raise NotFound(f"deployment {name!r} does not exist on {self.name}")
            if routing.traffic.get(name, 0) > 0:
                raise PermanentError(
                    f"deployment {name!r} still takes {routing.traffic[name]}% of the traffic; "
                    "set it to 0 first"
                )
            deployments = {k: v for k, v in routing.deployments.items() if k != name}
            traffic = {k: v for k, v in routing.traffic.items() if k != name}
            mirror = (
                routing.mirror if routing.mirror and routing.mirror.deployment != name else None
            )
            self._routing = RoutingTable(_frozen(deployments), _frozen(traffic), mirror)
            self._persist()

    def set_traffic(self, traffic: Mapping[str, Any]) -> dict[str, int]:
        with self._admin_lock:
            routing = self._routing
            valid = validate_traffic(traffic, routing.deployments)
            self._routing = replace(routing, traffic=_frozen(valid))
            self._persist()
            return valid

    def set_mirror(self, deployment: str | None, percent: int = 0) -> None:
        with self._admin_lock:
            routing = self._routing
            if deployment is None or percent == 0:
                mirror = None
            else:
                if deployment not in routing.deployments:
                    raise NotFound(f"deployment {deployment!r} does not exist on {self.name}")
                if isinstance(percent, bool) or not isinstance(percent, int):
                    raise PermanentError(f"mirror percent must be an integer, got {percent!r}")
                if not 0 <= percent <= 100:
                    raise PermanentError(f"mirror percent must be 0-100, got {percent}")
                mirror = Mirror(deployment, percent)
            self._routing = replace(routing, mirror=mirror)
            self._persist()

    def set_faults(
        self, deployment: str, inject_errors: float | None = None, latency_ms: float | None = None
    ) -> Deployment:
        with self._admin_lock:
            routing = self._routing
            current = routing.deployments.get(deployment)
            if current is None:
                raise NotFound(f"deployment {deployment!r} does not exist on {self.name}")
            errors = current.inject_errors if inject_errors is None else float(inject_errors)
            latency = current.latency_ms if latency_ms is None else float(latency_ms)
            if not 0.0 <= errors <= 1.0:
                raise PermanentError(f"inject_errors must be 0-1, got {errors}")
            if not 0.0 <= latency <= 60_000:
                raise PermanentError(f"latency_ms must be 0-60000, got {latency}")
            updated = replace(current, inject_errors=errors, latency_ms=latency)
            self._routing = replace(
                routing, deployments=_frozen({**routing.deployments, deployment: updated})
            )
            self._persist()
            return updated

    # -- scoring --------------------------------------------------------------------------

    def _invoke(self, deployment: Deployment, rows: list[dict[str, Any]]) -> tuple[int, Any]:
        if deployment.latency_ms:
            time.sleep(deployment.latency_ms / 1000.0)
        if deployment.inject_errors and self._rng.random() < deployment.inject_errors:
            return 500, {"error": "injected failure", "deployment": deployment.name}
        try:
            predictions = deployment.predictor.predict(rows)
        except BadInput as exc:
            return 400, {"error": f"bad input: {exc}", "deployment": deployment.name}
        except Exception as exc:
            log.warning("endpoint %s/%s: scoring failed: %s", self.name, deployment.name, exc)
            return 500, {"error": f"scoring failed: {exc}", "deployment": deployment.name}
        return 200, {"predictions": predictions, "deployment": deployment.name}

    def _score_on(
        self, deployment: Deployment, rows: list[dict[str, Any]], mirrored: bool
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        status, body = self._invoke(deployment, rows)
        latency_ms = (time.perf_counter() - started) * 1000.0
        record = RequestRecord(
            self.name, deployment.name, time.time(), status, latency_ms, mirrored
        )
        live = status == 200 and not mirrored
        predictions = body.get("predictions") if live and isinstance(body, dict) else None
        self._record(record, rows if live else None, predictions)
        return status, body

    def score(self, payload: Any, pinned: str | None = None) -> tuple[int, Any]:
        """Route one scoring request; returns (HTTP status, JSON body)."""
        rows = payload.get("rows") if isinstance(payload, dict) else payload
        if isinstance(payload, dict) and rows is None:
            rows = payload.get("input_data")
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            return 400, {"error": 'send {"rows": [{feature: value, ...}, ...]} or a list of rows'}
        if len(rows) > MAX_ROWS:
            return 413, {"error": f"at most {MAX_ROWS} rows per request"}
        routing = self._routing  # one snapshot for the whole request
        if pinned:
            deployment = routing.deployments.get(pinned)
            if deployment is None:
                return 404, {"error": f"deployment {pinned!r} does not exist on {self.name}"}
        else:
            deployment = routing.choose(self._rng.random())
            if deployment is None:
                return 503, {"error": f"endpoint {self.name} has no deployment taking traffic"}
        status, body = self._score_on(deployment, rows, mirrored=False)
        mirror = routing.mirror
        if (
            not pinned
            and mirror is not None
            and mirror.deployment != deployment.name
            and mirror.deployment in routing.deployments
            and self._rng.random() * 100.0 < mirror.percent
        ):
            shadow = routing.deployments[mirror.deployment]
            with contextlib.suppress(RuntimeError):  # pool shut down while stopping
                self._mirror_pool.submit(self._score_on, shadow, rows, True)
        return status, body


def _scores(request: RequestRecord, predictions: Any) -> list[ScoreRecord]:
    """Positive-class scores (or regression predictions) of a live response's predictions
    (floats only: class labels and other shapes give none)."""
    from shared.adapters.collector_blob import score_of

    if not isinstance(predictions, list):
        return []
    found = (score_of(p, "score") for p in predictions)
    return [
        ScoreRecord(request.endpoint, request.deployment, request.ts, s)
        for s in found
        if s is not None
    ]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    endpoint: EndpointServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "autopilot-endpoint/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def endpoint(self) -> EndpointServer:
        return self.server.endpoint

    def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise PayloadTooLarge("body too large")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.endpoint.token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    def do_GET(self) -> None:
        path = urlparse(self.path).path.rstrip("/")
        routing = self.endpoint.routing
        if path == "/health":
            self._send(
                200,
                {
                    "status": "ok",
                    "endpoint": self.endpoint.name,
                    "pid": os.getpid(),
                    "deployments": sorted(routing.deployments),
                },
            )
        elif path == "/traffic":
            self._send(200, routing.describe())
        elif path == "/admin/deployments":
            if not self._authorized():
                self._send(401, {"error": "admin token required"})
                return
            self._send(
                200, {"deployments": {n: d.describe() for n, d in routing.deployments.items()}}
            )
        else:
            self._send(404, {"error": f"no route GET {path}"})

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urlparse(self.path).path.rstrip("/")
        try:
            body = self._body()
        except PayloadTooLarge:
            self._send(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            self.close_connection = True
            return
        except ValueError:
            self._send(400, {"error": "body is not valid JSON"})
            return
        if method == "POST" and path in ("/score", "/predict"):
            status, answer = self.endpoint.score(body, self.headers.get(DEPLOYMENT_HEADER))
            headers = {}
            if isinstance(answer, dict) and "deployment" in answer:
                headers[DEPLOYMENT_HEADER] = str(answer["deployment"])
            self._send(status, answer, headers)
            return
        if not path.startswith("/admin/"):
            self._send(404, {"error": f"no route {method} {path}"})
            return
        if not self._authorized():
            self._send(401, {"error": "admin token required"})
            return
        try:
            status, answer = self._admin(method, path, body if isinstance(body, dict) else {})
        except AlreadyExists as exc:
            status, answer = 409, {"error": str(exc)}
        except NotFound as exc:
            status, answer = 404, {"error": str(exc)}
        except PermanentError as exc:
            status, answer = 400, {"error": str(exc)}
        except Exception as exc:
            log.exception("endpoint %s: admin %s %s failed", self.endpoint.name, method, path)
            status, answer = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._send(status, answer)

    def _admin(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        endpoint = self.endpoint
        parts = path.strip("/").split("/")  # admin, ...
        if method == "POST" and parts == ["admin", "deployments"]:
            name, model, version = body.get("name"), body.get("model"), body.get("version")
            if not all(isinstance(v, str) and v for v in (name, model, version)):
                raise PermanentError("give 'name', 'model' and 'version' as strings")
            deployment = endpoint.add_deployment(str(name), str(model), str(version))
            return 201, {"name": deployment.name, **deployment.describe()}
        if method == "DELETE" and len(parts) == 3 and parts[1] == "deployments":
            endpoint.remove_deployment(parts[2])
            return 200, {"deleted": parts[2]}
        if method == "PUT" and parts == ["admin", "traffic"]:
            endpoint.set_traffic(body.get("traffic", body))
            return 200, endpoint.routing.describe()
        if method == "PUT" and parts == ["admin", "mirror"]:
            target = body.get("deployment")
            endpoint.set_mirror(
                str(target) if target else None, body.get("percent", 0) if target else 0
            )
            return 200, endpoint.routing.describe()
        if (
            method == "PUT"
            and len(parts) == 4
            and parts[1] == "deployments"
            and parts[3] == "faults"
        ):
            updated = endpoint.set_faults(
                parts[2], body.get("inject_errors"), body.get("latency_ms")
            )
            return 200, {"name": updated.name, **updated.describe()}
        return 404, {"error": f"no route {method} {path}"}


def main(argv: list[str] | None = None) -> int:
    """Run one endpoint as its own process until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, required=True, help="the platform's data folder")
    parser.add_argument("--name", required=True, help="endpoint name")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from shared import log_escape

    log_escape.install()  # request and alert text cannot forge log lines
    server = EndpointServer(args.name, args.data_dir.resolve())
    print(f"endpoint {args.name} serving {server.start(port=args.port)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
