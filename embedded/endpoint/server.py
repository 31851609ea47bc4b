"""The endpoint server: admin operations, scoring and telemetry of one named endpoint."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from embedded.endpoint.handler import EndpointHandler, EndpointHTTPServer
from embedded.endpoint.model import BadInput, ModelLoader, mlflow_loader
from embedded.endpoint.paths import state_path, telemetry_path
from embedded.endpoint.routing import Deployment, Mirror, RoutingTable, frozen, validate_traffic
from embedded.files import read_json, write_json_atomic
from embedded.telemetry import InputRecord, RequestRecord, ScoreRecord, TelemetryStore
from shared.errors import AlreadyExists, AutopilotError, NotFound, PermanentError

log = logging.getLogger("embedded.endpoint")

MAX_ROWS = 10_000


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
        self._routing = RoutingTable(frozen(deployments), frozen(traffic), mirror)

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

    def _bind(self, host: str, port: int) -> EndpointHTTPServer:
        """Bind ``port``; for 0, the port a previous server of this endpoint had if it is
        free (clients keep their URL across a restart), else any free one."""
        previous = urlparse(str(self._stored().get("url") or "")).port if port == 0 else None
        if previous:
            try:
                return EndpointHTTPServer((host, previous), EndpointHandler)
            except OSError:
                log.info("endpoint %s: port %d is taken; binding a free one", self.name, previous)
        return EndpointHTTPServer((host, port), EndpointHandler)

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
                routing, deployments=frozen({**routing.deployments, name: deployment})
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
            self._routing = RoutingTable(frozen(deployments), frozen(traffic), mirror)
            self._persist()

    def set_traffic(self, traffic: Mapping[str, Any]) -> dict[str, int]:
        with self._admin_lock:
            routing = self._routing
            valid = validate_traffic(traffic, routing.deployments)
            self._routing = replace(routing, traffic=frozen(valid))
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
                routing, deployments=frozen({**routing.deployments, deployment: updated})
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
