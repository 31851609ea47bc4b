"""A local stand-in for Azure REST services, answered inside the process.

``FakeAzure`` is a ``requests`` transport adapter: mount it on a session, wrap the session in
an azure-core ``RequestsTransport`` and hand that to any Azure SDK client. The real SDK then
builds, signs, polls and parses real HTTP; only the socket is replaced. Routes match on
method and URL path (a regular expression, full match); each route answers with a queue of
replies whose last one repeats. Every request is logged for assertions, and requests that
match no route are answered 404 and kept in ``unmatched``.

Reuse it for fault injection: queue ``Reply(429, headers={"Retry-After": "3"})`` or
``Reply(500)`` or ``Drop()`` (a connection error) before the good answer.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

ARM = "https://management.azure.com"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the SDK sent it."""

    method: str
    url: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class Reply:
    """One canned response. ``body``: dict/list -> JSON, str/bytes -> as is, None -> empty."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.body is None:
            data = b""
        elif isinstance(self.body, bytes):
            data = self.body
            headers.setdefault("Content-Type", "application/octet-stream")
        elif isinstance(self.body, str):
            data = self.body.encode()
            headers.setdefault("Content-Type", "text/plain")
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
        headers["Content-Length"] = str(len(data))
        headers.setdefault("x-ms-request-id", "00000000-0000-0000-0000-000000000000")
        return data, headers


@dataclass(frozen=True, slots=True)
class Drop:
    """Fail the request at the connection level (azure-core sees ServiceRequestError)."""

    message: str = "connection refused by fake"


Answer = Reply | Drop | Callable[[Recorded], "Reply | Drop"]


def arm_error(status: int, code: str, message: str, **headers: str) -> Reply:
    """An error in the ARM shape: ``{"error": {"code", "message"}}``."""
    return Reply(status, {"error": {"code": code, "message": message}}, headers)


@dataclass(slots=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    host: str | None
    answers: list[Answer]
    hits: int = 0

    def next_answer(self) -> Answer:
        index = min(self.hits, len(self.answers) - 1)
        self.hits += 1
        return self.answers[index]


class FakeAzure(BaseAdapter):
    """Routes registry + request log, mounted on a ``requests.Session`` for every https host."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[Route] = []
        self.requests: list[Recorded] = []
        self.unmatched: list[Recorded] = []
        self._lock = threading.Lock()

    # -- building the fake service
    def add(self, method: str, path: str, *answers: Answer, host: str | None = None) -> Route:
        """Answer ``method path`` (regex, full match) with ``answers`` in turn; last repeats.

        Later routes win over earlier ones, so a test can override a default.
        """
        if not answers:
            raise ValueError("a route needs at least one answer")
        route = Route(method.upper(), re.compile(path), host, list(answers))
        self.routes.insert(0, route)
        return route

    def transport(self) -> RequestsTransport:
        """An azure-core transport whose every request is answered by this fake."""
        session = requests.Session()
        session.trust_env = False
        session.mount("https://", self)
        session.mount("http://", self)
        return RequestsTransport(session=session, session_owner=False, use_env_settings=False)

    # -- reading the log
    def calls(
        self, method: str | None = None, path: str | None = None, host: str | None = None
    ) -> list[Recorded]:
        """Logged requests, filtered by method and path regex (search) and host."""
        found = []
        for rec in self.requests:
            if method and rec.method != method.upper():
                continue
            if path and not re.search(path, rec.path):
                continue
            if host and rec.host != host:
                continue
            found.append(rec)
        return found

    # -- requests adapter protocol
    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        rec = _record(request)
        with self._lock:
            self.requests.append(rec)
            route = self._match(rec)
            if route is None:
                self.unmatched.append(rec)
                answer: Answer = arm_error(404, "NoFakeRoute", f"{rec.method} {rec.path}")
            else:
                answer = route.next_answer()
        if callable(answer):
            answer = answer(rec)
        if isinstance(answer, Drop):
            raise requests.exceptions.ConnectionError(answer.message, request=request)
        return _response(request, answer)

    def close(self) -> None:
        pass

    def _match(self, rec: Recorded) -> Route | None:
        for route in self.routes:
            if route.method != rec.method:
                continue
            if route.host is not None and route.host != rec.host:
                continue
            if route.pattern.fullmatch(rec.path):
                return route
        return None


def _record(request: requests.PreparedRequest) -> Recorded:
    url = request.url or ""
    parts = urlsplit(url)
    body = request.body
    if body is None:
        raw = b""
    elif isinstance(body, str):
        raw = body.encode()
    elif isinstance(body, bytes):
        raw = body
    else:  # a file-like or iterable body (uploads)
        raw = b"".join(_chunks(body))
    return Recorded(
        method=(request.method or "").upper(),
        url=url,
        host=parts.netloc,
        path=parts.path,
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()},
        body=raw,
    )


def _chunks(body: Any) -> Iterable[bytes]:
    if hasattr(body, "read"):
        data = body.read()
        yield data.encode() if isinstance(data, str) else data
        return
    for chunk in body:
        yield chunk.encode() if isinstance(chunk, str) else chunk


def _response(request: requests.PreparedRequest, reply: Reply) -> requests.Response:
    data, headers = reply.encoded()
    raw = urllib3.HTTPResponse(
        body=io.BytesIO(data),
        headers=headers,
        status=reply.status,
        preload_content=False,
        decode_content=False,
        reason=_REASONS.get(reply.status, "Status"),
    )
    response = requests.Response()
    response.status_code = reply.status
    response.headers = CaseInsensitiveDict(headers)
    response.raw = raw
    response.reason = raw.reason or ""
    response.url = request.url or ""
    response.request = request
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    return response


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def fake_jwt(**claims: Any) -> str:
    """An unsigned JWT: some SDK paths (pipeline job submit) decode the token's claims."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    body = {
        "aud": "https://management.azure.com/",
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "oid": "11111111-2222-3333-4444-555555555555",
        "tid": "00000000-0000-0000-0000-000000000000",
        "exp": 4102444800,
        **claims,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}.c2ln"


class FakeCredential:
    """A token credential that records the scopes asked and hands out unsigned JWTs.

    Each token's ``aud`` is the scope's resource, as Microsoft Entra ID issues them (the SDK
    checks it for pipeline jobs). Pass ``token`` to hand out one fixed string instead.
    """

    def __init__(self, token: str | None = None) -> None:
        self.fixed = token
        self.scopes: list[tuple[str, ...]] = []

    def token_for(self, *scopes: str) -> str:
        if self.fixed is not None:
            return self.fixed
        resource = scopes[0].removesuffix("/.default") if scopes else ""
        return fake_jwt(aud=resource)

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token_for(*scopes), int(time.time()) + 3600)
