"""HTTP plumbing for the local Functions host: a threaded stdlib server with careful edges.

The host decides what a request means (``Dispatch``); this module reads it off the wire and
writes the answer back: body size limit checked before reading (``Content-Length`` and
chunked bodies alike), no request smuggling ambiguities, response headers that cannot inject
lines, one log line per request without query strings (they may carry keys), and a stop
that also closes idle keep-alive connections so the port is released at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("autopilot.host")

JSON = "application/json; charset=utf-8"
_HOP_BY_HOP = frozenset({"connection", "content-length", "keep-alive", "transfer-encoding"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# ASCII only: in a str pattern \d also matches non-ASCII digits ('²'), which no URL port may hold.
_HOST = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_CODE = re.compile(r"(code=)[^&\s'\"]*", re.IGNORECASE)
_MAX_CHUNK_LINE = 1024
_MAX_TRAILERS = 64
_LINGER_SECONDS = 2.0
LISTEN_BACKLOG = 2048  # connections the kernel queues before the accept loop takes them
# http.server's answers to a request line it cannot serve, as the client errors they are.
_PROTOCOL_STATUS = {501: 405, 505: 400}


@dataclass(frozen=True, slots=True)
class Request:
    """What the host needs to know about a request before its body is read."""

    method: str
    target: str  # path and query string as sent (still percent-encoded)
    path: str  # percent-encoded path, no query string
    query: dict[str, str]  # decoded; repeated names joined with "," as ASP.NET does
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    base_url: str  # scheme://host[:port], for the absolute URL functions see


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class NeedsBody:
    """Answer with ``run(body)`` once the body is read within the size limit.

    ``refused`` is told (with the message) when the body itself is refused: too large,
    malformed chunking, shorter than its Content-Length.
    """

    run: Callable[[bytes], Reply]
    refused: Callable[[str], None] | None = None


Dispatch = Callable[[Request], Reply | NeedsBody]


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps(payload, allow_nan=False).encode()
    return Reply(status, (("Content-Type", JSON), *headers), body)


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def readline(self, size: int, /) -> bytes: ...


class BodyError(Exception):
    """The request body cannot be accepted; ``status`` says how to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def read_body(stream: _Stream, headers: dict[str, str], limit: int) -> bytes:
    """The request body, refusing anything over ``limit`` bytes before reading it."""
    encoding = headers.get("transfer-encoding")
    declared = headers.get("content-length")
    if encoding is not None:
        if declared is not None:
            raise BodyError(400, "send either Transfer-Encoding or Content-Length, not both")
        if encoding.strip().lower() != "chunked":
            raise BodyError(400, f"Transfer-Encoding {encoding!r} is not supported")
        return _read_chunked(stream, limit)
    if declared is None:
        return b""
    length = whole_number(declared)
    if length is None:
        raise BodyError(400, "Content-Length is not a single whole number")
    if length > limit:
        raise BodyError(413, f"body is {length} bytes; at most {limit} are accepted")
    body = stream.read(length)
    if len(body) < length:
        raise BodyError(400, "body ended before Content-Length bytes arrived")
    return body


def whole_number(text: str, max_digits: int = 18) -> int | None:
    """``text`` as a non-negative integer, or None: ASCII digits only ('²'.isdigit() is True,
    but int('²') raises), and not so long that int() would refuse it or it means nothing."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > max_digits:
        return None
    return int(text)


def _read_chunked(stream: _Stream, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = stream.readline(_MAX_CHUNK_LINE)
        size_text = line.split(b";", 1)[0].strip()
        if not line.endswith(b"\n") or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
            raise BodyError(400, "malformed chunked body")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise BodyError(413, f"chunked body is over {limit} bytes; at most {limit} accepted")
        chunk = stream.read(size)
        if len(chunk) < size or stream.read(2) != b"\r\n":
            raise BodyError(400, "malformed chunked body")
        parts.append(chunk)
    for _ in range(_MAX_TRAILERS):
        if stream.readline(_MAX_CHUNK_LINE) in (b"\r\n", b"\n", b""):
            return b"".join(parts)
    raise BodyError(400, "too many chunked-body trailers")


def build_request(
    method: str, target: str, headers: list[tuple[str, str]], default_host: str
) -> Request:
    """A Request from the request line and headers; ``default_host`` if Host is unusable."""
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    host = joined.get("host", "")
    if not _HOST.fullmatch(host):
        host = default_host
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    return Request(method, path_and_query, parts.path, query, joined, f"http://{host}")


def answer(dispatch: Dispatch, request: Request, read: Callable[[], bytes]) -> tuple[Reply, bool]:
    """Run ``dispatch``, reading the body with ``read`` only if needed; (reply, body read)."""
    read_done = False
    try:
        outcome = dispatch(request)
        if isinstance(outcome, Reply):
            return outcome, read_done
        try:
            body = read()
            read_done = True
        except BodyError as exc:
            if outcome.refused is not None:
                outcome.refused(str(exc))
            return json_reply(exc.status, {"error": str(exc)}), read_done
        except TimeoutError:
            return json_reply(408, {"error": "timed out reading the request body"}), read_done
        return outcome.run(body), read_done
    except Exception:
        log.exception("local host failed on %s %s", request.method, printable(request.path))
        return json_reply(500, {"error": "internal error"}), read_done


def printable(text: str, limit: int = 200) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", text)[:limit]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "autopilot-local-functions-host"
    sys_version = ""
    timeout = 60  # seconds a connection may sit idle or trickle a body

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _handle(self) -> None:
        started = time.perf_counter()
        bound, port = str(self.server.server_address[0]), self.server.server_address[1]
        default_host = f"[{bound}]:{port}" if ":" in bound else f"{bound}:{port}"
        request = build_request(self.command, self.path, self.headers.items(), default_host)
        has_body = "transfer-encoding" in request.headers or request.headers.get(
            "content-length", "0"
        ).strip() not in ("", "0")
        reply, body_read = answer(
            self.server.dispatch,
            request,
            lambda: read_body(self.rfile, request.headers, self.server.max_body_bytes),
        )
        function = request.query.get("functionName")
        log.info(  # before sending: once the client has its answer, the line is written
            "%s %s%s %d %.1fms",
            self.command,
            printable(request.path),
            f" [{printable(function, 80)}]" if function else "",
            reply.status,
            (time.perf_counter() - started) * 1000,
        )
        unread = has_body and not body_read  # an unread body cannot be skipped safely
        self._send(reply, close=unread)
        if unread:
            self._linger()

    def _linger(self) -> None:
        """Drop what the client is still sending before closing ("lingering close").

        Closing a socket with unread input makes the kernel send a reset, which can destroy
        the answer in flight: a client still sending a refused body would see a broken pipe
        instead of the 413.
        """
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + _LINGER_SECONDS
            while time.monotonic() < deadline and self.rfile.read1(65536):
                pass

    def _send(self, reply: Reply, *, close: bool) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            if name.lower() in _HOP_BY_HOP:
                continue
            if not _TOKEN.fullmatch(name) or any(c in value for c in "\r\n\0"):
                log.warning("dropped response header %r: not a valid header", printable(name))
                continue
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if close:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors found before dispatch (request line, version, method, header size)
        as a JSON 4xx: an unknown method (501) or HTTP version (505) is the sender's input,
        not a fault a retry could fix, so it gets 405 / 400 rather than a 5xx."""
        status = _PROTOCOL_STATUS.get(code, code)
        text = _CODE.sub(r"\1***", message or self.responses.get(code, ("error",))[0])
        self.log_error("code %d, message %s", status, text)
        body = json.dumps({"error": text}).encode()
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # what http.server assumes of a line it
            self.request_version = "HTTP/1.0"  # cannot parse: answer with a status line
        self.send_response(status)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _handle logs each request once, without its query string

    def log_message(self, format: str, *args: Any) -> None:
        # Only protocol errors arrive here (bad request lines, timeouts); they can quote the
        # raw request line, so mask any code= value before logging.
        log.warning("%s: %s", self.address_string(), _CODE.sub(r"\1***", format % args))


class _Server(ThreadingHTTPServer):
    """One thread per connection; a listen backlog big enough for a burst of senders.

    Python's default backlog (5) makes the kernel drop or reset connections under a burst
    (200 concurrent POSTs: up to 160 reset). The kernel caps the value at
    ``net.core.somaxconn`` (4096 on most Linux machines).
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], dispatch: Dispatch, max_body_bytes: int) -> None:
        self.dispatch = dispatch
        self.max_body_bytes = max_body_bytes
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone before its answer was written is routine: one line, not socketserver's
        traceback on stderr (15 lines per connection, unescaped, which any client could
        repeat to flood the log). Anything else goes through our (escaped) log."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("client %s went away: %s", client_address[0], type(error).__name__)
            return
        log.exception("connection from %s failed", client_address[0])

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End keep-alive waits and body reads; answers being written still go out."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RD)


class HttpServer:
    """A threaded HTTP server running ``dispatch`` for each request, in background threads."""

    def __init__(self, dispatch: Dispatch, *, max_body_bytes: int) -> None:
        self._dispatch = dispatch
        self._max_body_bytes = max_body_bytes
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = _Server((host, port), self._dispatch, self._max_body_bytes)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-host-http",
            daemon=True,
        )
        self._thread.start()
        return self.address

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()  # returns once the accept loop has ended (<= poll_interval)
        server.server_close()  # releases the port
        server.close_connections()
        if thread is not None:
            thread.join(timeout=1)
