"""The HTTP side of an endpoint: request parsing, authorisation and the route table."""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlparse

from embedded.endpoint.routing import Deployment, RoutingTable
from shared.errors import AlreadyExists, NotFound, PayloadTooLarge, PermanentError

log = logging.getLogger("embedded.endpoint")

MAX_BODY_BYTES = 8 * 1024 * 1024
DEPLOYMENT_HEADER = "azureml-model-deployment"


class Endpoint(Protocol):
    """What the HTTP routes call on the endpoint (``embedded.endpoint.server``)."""

    name: str
    token: str

    @property
    def routing(self) -> RoutingTable: ...

    def score(self, payload: Any, pinned: str | None = None) -> tuple[int, Any]: ...

    def add_deployment(self, name: str, model: str, version: str) -> Deployment: ...

    def remove_deployment(self, name: str) -> None: ...

    def set_traffic(self, traffic: Mapping[str, Any]) -> dict[str, int]: ...

    def set_mirror(self, deployment: str | None, percent: int = 0) -> None: ...

    def set_faults(
        self, deployment: str, inject_errors: float | None = None, latency_ms: float | None = None
    ) -> Deployment: ...


class EndpointHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    endpoint: Endpoint


class EndpointHandler(BaseHTTPRequestHandler):
    server: EndpointHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "autopilot-endpoint/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    @property
    def endpoint(self) -> Endpoint:
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
