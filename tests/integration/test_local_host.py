"""The local Functions host over real HTTP, with a small test FunctionApp (no service code)."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from autopilot import host_timers
from autopilot.host import LocalHost
from shared.errors import BadEvent, TransientError

KEY = "k-test-0123456789abcdef"
OTHER_KEY = "k-other-0123456789abcdef"
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=grid"
NEVER = "0 0 0 1 1 *"  # 1 January, midnight: does not fire during a test run


@dataclass
class State:
    """What the test functions saw, and how they should misbehave."""

    events: list[Any] = field(default_factory=list)
    fail_at: int | None = None  # raise on this event index
    error: Exception = field(default_factory=lambda: RuntimeError("boom /secret/path"))
    ticks: list[bool] = field(default_factory=list)  # past_due of each tick run
    tick_error: bool = False
    first_tick_seconds: float = 0.0  # how long the first tick run takes
    rejects: list[tuple[str, str]] = field(default_factory=list)
    together: threading.Barrier = field(default_factory=lambda: threading.Barrier(8, timeout=5))
    lock: threading.Lock = field(default_factory=threading.Lock)


def build_app(state: State) -> func.FunctionApp:
    bp = func.Blueprint()

    @bp.route(route="hello", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def hello(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(
            json.dumps({"name": req.params.get("name")}), mimetype="application/json"
        )

    @bp.route(route="items/{id}", methods=["GET", "DELETE"], auth_level=func.AuthLevel.FUNCTION)
    def item(req: func.HttpRequest) -> func.HttpResponse:
        body = {
            "id": req.route_params.get("id"),
            "q": req.params.get("q"),
            "key_header": req.headers.get("x-functions-key"),
            "url": req.url,
        }
        return func.HttpResponse(json.dumps(body), mimetype="application/json")

    @bp.route(route="items/special", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def special(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("special")

    @bp.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(req.get_body(), status_code=201, headers={"X-Echo": "yes"})

    @bp.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("secret detail")

    @bp.route(route="together", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def together(req: func.HttpRequest) -> func.HttpResponse:
        state.together.wait()  # returns only once 8 invocations are running at the same time
        return func.HttpResponse("done")

    @bp.event_grid_trigger(arg_name="event")
    def grid(event: Any) -> None:
        with state.lock:
            if state.fail_at is not None and len(state.events) == state.fail_at:
                raise state.error
            state.events.append(event)

    @bp.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        with state.lock:
            state.ticks.append(timer.past_due)
        if len(state.ticks) == 1:
            time.sleep(state.first_tick_seconds)
        if state.tick_error:
            raise RuntimeError("timer failed on purpose")

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    return app


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadEvent(f"body is not valid JSON: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise BadEvent("body is not valid UTF-8") from exc
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) for e in data):
        raise BadEvent("body must be a non-empty JSON array of objects")
    return data


@dataclass
class Served:
    host: LocalHost
    state: State

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.host.url.removeprefix("http://").split(":")
        return host, int(port)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = KEY,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes | type(None)) else json.dumps(body).encode()
        all_headers = {**({"x-functions-key": key} if key else {}), **(headers or {})}
        conn = http.client.HTTPConnection(*self.address, timeout=10)
        try:
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def start(
    state: State,
    *,
    run_timers: bool = False,
    schedule: str = NEVER,
    **kwargs: Any,
) -> LocalHost:
    def on_reject(function: str, message: str) -> None:
        state.rejects.append((function, message))

    host = LocalHost(
        build_app(state),
        keys={"tests": KEY, "other": OTHER_KEY},
        parse_event_batch=parse_batch,
        on_reject=on_reject,
        settings={"TICK_SCHEDULE": schedule},
        run_timers=run_timers,
        **kwargs,
    )
    host.start("127.0.0.1", 0)
    return host


@pytest.fixture
def served() -> Iterator[Served]:
    state = State()
    host = start(state, max_body_bytes=64 * 1024)
    yield Served(host, state)
    host.stop()


def grid_event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"id-{i}",
        "topic": "/subscriptions/s/resourceGroups/r/providers/X/workspaces/w",
        "subject": f"models/m:{i}",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2024-05-01T10:20:30.1234567Z",
        "data": {"modelName": "m", "modelVersion": str(i)},
        "dataVersion": "2",
        **extra,
    }


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- HTTP triggers ---------------------------------------------------------------------------


def test_anonymous_route_with_query_and_worker_content_type(served: Served) -> None:
    status, headers, body = served.call("GET", "/api/hello?name=ada", key=None)
    assert status == 200
    assert json.loads(body) == {"name": "ada"}
    assert headers["Content-Type"] == "application/json"  # the worker adds charset to text/* only


def test_unknown_paths_are_404_and_wrong_methods_405_with_allow(served: Served) -> None:
    assert served.call("GET", "/api/nope")[0] == 404
    assert served.call("GET", "/elsewhere")[0] == 404
    assert served.call("GET", "/api/items/1/extra")[0] == 404
    status, headers, _ = served.call("POST", "/api/hello", b"{}", key=None)
    assert status == 405
    assert headers["Allow"] == "GET"
    status, headers, _ = served.call("PUT", "/api/items/7")
    assert (status, headers["Allow"]) == (405, "DELETE, GET")


def test_route_params_are_decoded_and_query_passed(served: Served) -> None:
    status, _, body = served.call("GET", "/api/items/a%20b?q=x%26y&q=z")
    assert status == 200
    answer = json.loads(body)
    assert answer["id"] == "a b"
    assert answer["q"] == "x&y,z"  # repeated names joined with "," as the real host does
    assert answer["url"].endswith("/api/items/a%20b?q=x%26y&q=z")


def test_a_literal_route_beats_a_parameter_route(served: Served) -> None:
    status, _, body = served.call("GET", "/api/items/special", key=None)
    assert (status, body) == (200, b"special")
    status, _, body = served.call("GET", "/api/ITEMS/other")  # literals are case-insensitive
    assert json.loads(body)["id"] == "other"


def test_key_in_header_or_code_parameter_and_the_function_sees_it(served: Served) -> None:
    status, _, body = served.call("GET", "/api/items/1")
    assert status == 200 and json.loads(body)["key_header"] == KEY
    status, _, body = served.call("GET", f"/api/items/1?code={OTHER_KEY}", key=None)
    assert status == 200 and json.loads(body)["id"] == "1"


@pytest.mark.parametrize(
    ("key", "path"),
    [
        (None, "/api/items/1"),
        ("wrong-key-0123456789", "/api/items/1"),
        (None, "/api/items/1?code=wrong-key-0123456789"),
        (None, "/api/items/1?code="),
        (None, WEBHOOK),
        ("wrong-key-0123456789", WEBHOOK),
        (None, "/admin/functions/tick"),
    ],
)
def test_missing_or_wrong_key_is_401_without_echoing_it(
    served: Served, key: str | None, path: str
) -> None:
    method = "GET" if path.startswith("/api") else "POST"
    status, headers, body = served.call(method, path, b"[]" if method == "POST" else None, key=key)
    assert status == 401
    assert headers["Content-Type"].startswith("application/json")
    assert "error" in json.loads(body)
    assert b"wrong-key" not in body and KEY.encode() not in body
    assert served.state.events == [] and served.state.ticks == []


def test_header_key_is_checked_first_like_the_real_host(served: Served) -> None:
    status, _, _ = served.call("GET", f"/api/items/1?code={KEY}", key="wrong-key-0123456789")
    assert status == 401


def test_response_status_headers_and_body_are_copied(served: Served) -> None:
    status, headers, body = served.call("POST", "/api/echo", b"payload")
    assert (status, body) == (201, b"payload")
    assert headers["X-Echo"] == "yes"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"


def test_a_failing_http_function_is_a_bare_500_with_the_traceback_logged(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="autopilot.host"):
        status, _, body = served.call("GET", "/api/boom", key=None)
    assert status == 500
    assert json.loads(body) == {"error": "internal error"}
    assert "secret detail" in caplog.text and "Traceback" in caplog.text


def test_request_log_lines_never_carry_query_strings_or_keys(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="autopilot.host"):
        served.call("GET", f"/api/items/1?code={KEY}&q=private", key=None)
        served.call("GET", "/api/items/1")
    lines = [r.getMessage() for r in caplog.records if "/api/items/1" in r.getMessage()]
    assert len(lines) == 2 and all(line.startswith("GET /api/items/1 200 ") for line in lines)
    assert KEY not in caplog.text and "private" not in caplog.text


def test_concurrent_requests_are_served_in_parallel(served: Served) -> None:
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(served.call("GET", "/api/together", key=None)[0])
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8  # served one at a time, the first would fail at the barrier


def test_endpoints_are_derived_from_the_bindings(served: Served) -> None:
    described = {str(e) for e in served.host.endpoints}
    assert "GET /api/hello -> hello (anonymous)" in described
    assert "DELETE,GET /api/items/{id} -> item (function)" in described
    assert f"POST {WEBHOOK} -> grid (key)" in described
    assert f"timer tick: {NEVER}" in described


# -- Event Grid ------------------------------------------------------------------------------


def test_subscription_validation_handshake_answers_the_code_and_invokes_nothing(
    served: Served,
) -> None:
    validation = {
        **grid_event(0),
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
    }
    for headers in ({"aeg-event-type": "SubscriptionValidation"}, {}):
        status, _, body = served.call("POST", WEBHOOK, [validation], headers=headers)
        assert status == 200
        assert json.loads(body) == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert served.state.events == []


def test_validation_header_without_a_validation_event_is_refused(served: Served) -> None:
    status, _, _ = served.call(
        "POST", WEBHOOK, [grid_event(1)], headers={"aeg-event-type": "SubscriptionValidation"}
    )
    assert status == 400
    assert served.state.events == [] and len(served.state.rejects) == 1


def test_cloudevents_abuse_protection_handshake(served: Served) -> None:
    origin = {"WebHook-Request-Origin": "eventgrid.azure.net"}
    for key in (None, KEY):  # Event Grid sends the subscription URL's code; either way works
        status, headers, _ = served.call("OPTIONS", WEBHOOK, key=key, headers=origin)
        assert status == 200
        assert headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
        assert headers["WebHook-Allowed-Rate"] == "*"
    assert served.call("OPTIONS", WEBHOOK, key="wrong-key-0123456789", headers=origin)[0] == 401
    status, headers, _ = served.call(
        "OPTIONS", WEBHOOK, key=None, headers={"WebHook-Request-Origin": "evil.example.com"}
    )
    assert headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"  # as the real extension
    assert served.state.events == []


def test_a_100_event_batch_is_invoked_once_per_event_in_order(served: Served) -> None:
    status, _, body = served.call(
        "POST",
        WEBHOOK,
        [grid_event(i) for i in range(100)],
        headers={"aeg-event-type": "Notification"},
    )
    assert (status, body) == (200, b"")
    events = served.state.events
    assert [e.id for e in events] == [f"id-{i}" for i in range(100)]
    first = events[0]
    assert isinstance(first, func.EventGridEvent)
    assert first.event_type == "Microsoft.MachineLearningServices.ModelRegistered"
    assert first.subject == "models/m:0" and first.data_version == "2"
    assert first.topic.endswith("/workspaces/w")
    assert first.get_json() == {"modelName": "m", "modelVersion": "0"}
    assert first.event_time is not None and first.event_time.isoformat() == (
        "2024-05-01T10:20:30.123456+00:00"
    )


def cloud_event(i: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ce-{i}",
        "source": "/subscriptions/s/resourceGroups/r/providers/X/workspaces/w",
        "subject": f"models/m:{i}",
        "type": "Microsoft.MachineLearningServices.ModelRegistered",
        "time": "2024-05-01T10:20:30Z",
        "dataschema": "#2",
        "data": {"modelName": "m"},
        "traceparent": "00-abc-def-01",
    }


def test_cloudevents_are_handed_over_as_the_worker_does(served: Served) -> None:
    """azure-functions' Event Grid converter: a CloudEvent when specversion is present."""
    status, _, _ = served.call("POST", WEBHOOK, [cloud_event(1), grid_event(2)])
    assert status == 200
    cloud, grid = served.state.events
    assert isinstance(cloud, func.CloudEvent) and isinstance(grid, func.EventGridEvent)
    assert (cloud.id, cloud.type, cloud.source, cloud.subject, cloud.dataschema) == (
        "ce-1",
        "Microsoft.MachineLearningServices.ModelRegistered",
        "/subscriptions/s/resourceGroups/r/providers/X/workspaces/w",
        "models/m:1",
        "#2",
    )
    assert cloud.time is not None and cloud.time.isoformat() == "2024-05-01T10:20:30+00:00"
    assert cloud.get_json() == {"modelName": "m"}
    assert cloud.extension_attrs == {"traceparent": "00-abc-def-01"}


def test_an_event_the_workers_converter_cannot_decode_fails_as_on_azure(served: Served) -> None:
    """A time with a non-UTC offset: azure-functions' converter raises before the function."""
    event = cloud_event(1) | {"time": "2024-05-01T12:20:30+02:00"}
    status, _, body = served.call("POST", WEBHOOK, [grid_event(0), event])
    assert status == 500
    assert json.loads(body)["processed"] == 1
    assert "cannot decode" in json.loads(body)["error"]
    assert [e.id for e in served.state.events] == [grid_event(0)["id"]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"id": "x"}', "JSON array"),
        (b"[]", "non-empty"),
        (b"", "not valid JSON"),
    ],
)
def test_a_malformed_delivery_is_400_with_the_message_and_on_reject(
    served: Served, raw: bytes, message: str
) -> None:
    status, _, body = served.call("POST", WEBHOOK, raw)
    assert status == 400
    assert message in json.loads(body)["error"]
    assert served.state.rejects == [("grid", json.loads(body)["error"])]
    assert served.state.events == []


def test_an_unknown_function_name_is_404(served: Served) -> None:
    path = "/runtime/webhooks/eventgrid?functionName=nope"
    assert served.call("POST", path, [grid_event(0)])[0] == 404
    assert served.call("POST", "/runtime/webhooks/eventgrid", [grid_event(0)])[0] == 404
    assert served.call("POST", WEBHOOK.replace("grid", "hello"), [grid_event(0)])[0] == 404
    assert served.state.rejects == []


def test_an_oversized_body_is_413_before_it_is_read(served: Served) -> None:
    host, port = served.address
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nx-functions-key: {KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n".encode()
        )
        answer = sock.recv(4096)  # no body sent: the host must answer from the headers
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert served.state.rejects and served.state.rejects[0][0] == "grid"
    status, _, _ = served.call("POST", "/api/echo", b"x" * (64 * 1024 + 1))
    assert status == 413
    assert served.state.events == []


def test_chunked_bodies_are_read_and_refused_over_the_limit(served: Served) -> None:
    def chunked(path: str, parts: list[bytes]) -> int:
        conn = http.client.HTTPConnection(*served.address, timeout=10)
        try:
            conn.request("POST", path, body=iter(parts), headers={"x-functions-key": KEY})
            return conn.getresponse().status
        finally:
            conn.close()

    batch = json.dumps([grid_event(1)]).encode()
    assert chunked(WEBHOOK, [batch[:10], batch[10:]]) == 200
    assert [e.id for e in served.state.events] == ["id-1"]
    assert chunked(WEBHOOK, [b"[" + b" " * 40_000] * 2 + [b"]"]) == 413
    assert chunked("/api/echo", [b"x" * 40_000] * 2) == 413
    assert len(served.state.events) == 1


@pytest.mark.parametrize(
    "framing",
    [
        "Content-Length: 2\r\nTransfer-Encoding: chunked",  # ambiguous: a smuggling vector
        "Content-Length: 2, 2",
        "Content-Length: -2",
        "Transfer-Encoding: gzip",
    ],
)
def test_ambiguous_or_unsupported_framing_is_refused(served: Served, framing: str) -> None:
    host, port = served.address
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            f"POST {WEBHOOK} HTTP/1.1\r\nHost: x\r\nx-functions-key: {KEY}\r\n"
            f"{framing}\r\n\r\n[]".encode()
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in answer
    assert served.state.events == []


def test_a_transient_failure_is_503_with_retry_after_and_stops_the_batch(served: Served) -> None:
    served.state.fail_at = 2
    served.state.error = TransientError("store is throttled", retry_after=7.2)
    status, headers, body = served.call("POST", WEBHOOK, [grid_event(i) for i in range(5)])
    assert status == 503
    assert headers["Retry-After"] == "8"
    assert json.loads(body) == {"error": "event [2]: store is throttled", "processed": 2}
    assert [e.id for e in served.state.events] == ["id-0", "id-1"]


def test_an_unexpected_failure_is_500_without_details(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.state.fail_at = 0
    with caplog.at_level(logging.ERROR, logger="autopilot.host"):
        status, headers, body = served.call("POST", WEBHOOK, [grid_event(0), grid_event(1)])
    assert status == 500
    assert "Retry-After" not in headers
    assert json.loads(body) == {"error": "event [0]: internal error", "processed": 0}
    assert b"secret" not in body and b"Traceback" not in body
    assert "boom /secret/path" in caplog.text
    assert served.state.events == []


# -- timers ----------------------------------------------------------------------------------


def test_a_timer_fires_on_its_schedule_and_survives_its_own_exceptions() -> None:
    state = State(tick_error=True)
    host = start(state, run_timers=True, schedule="*/1 * * * * *")
    try:
        assert wait_for(lambda: len(state.ticks) >= 2, timeout=3.5)
        assert state.ticks[:2] == [False, False]
        served = Served(host, state)
        assert served.call("GET", "/api/hello", key=None)[0] == 200
    finally:
        host.stop()


def test_a_run_that_overruns_its_schedule_makes_the_next_one_past_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(host_timers, "PAST_DUE_AFTER_SECONDS", 0.2)
    state = State(first_tick_seconds=1.5)  # the next occurrence passes while this run is busy
    host = start(state, run_timers=True, schedule="*/1 * * * * *")
    try:
        assert wait_for(lambda: len(state.ticks) >= 2, timeout=3.5)
    finally:
        host.stop()
    assert state.ticks[:2] == [False, True]


def test_trigger_timer_and_the_admin_route_run_a_timer_once(served: Served) -> None:
    assert served.host.trigger_timer("tick") is True
    assert served.state.ticks == [False]
    status, _, body = served.call("POST", "/admin/functions/tick", {"input": ""})
    assert (status, body) == (202, b"")
    assert wait_for(lambda: len(served.state.ticks) == 2)
    assert served.call("POST", "/admin/functions/nope", {"input": ""})[0] == 404
    assert served.call("POST", "/admin/functions/hello", {"input": ""})[0] == 400
    assert served.call("GET", "/admin/functions/tick")[0] == 405
    assert served.call("POST", "/admin/functions/tick", b"not json")[0] == 400
    with pytest.raises(LookupError):
        served.host.trigger_timer("hello")
    served.state.tick_error = True
    assert served.host.trigger_timer("tick") is False  # logged, never raised


def test_wake_runs_a_timer_once_at_the_time_asked_between_its_scheduled_runs() -> None:
    state = State()
    host = start(state, run_timers=True, schedule=NEVER)  # the schedule alone never fires
    try:
        asked = time.monotonic()
        soon = datetime.now(UTC) + timedelta(seconds=0.4)
        host.wake("tick", soon)
        host.wake("tick", soon)  # runs due together collapse into one
        # a second run well after the first (1 s): a timer thread woken late on a loaded
        # machine (two test workers) would find both due together and rightly run once
        host.wake("tick", soon + timedelta(seconds=1.0))
        assert wait_for(lambda: len(state.ticks) >= 1)
        first = time.monotonic() - asked
        assert wait_for(lambda: len(state.ticks) >= 2)
        time.sleep(0.3)
    finally:
        host.stop()
    assert 0.3 <= first < 1.2, first  # at the time asked, not at once nor at the schedule's
    assert state.ticks == [False, False]
    with pytest.raises(LookupError):
        host.wake("hello", soon)


def test_run_on_startup_is_honoured() -> None:
    state = State()
    bp = func.Blueprint()

    @bp.timer_trigger(schedule=NEVER, arg_name="timer", run_on_startup=True)
    def warm(timer: func.TimerRequest) -> None:
        state.ticks.append(timer.past_due)

    app = func.FunctionApp()
    app.register_functions(bp)
    host = LocalHost(app, keys={"k": KEY}, parse_event_batch=parse_batch, settings={})
    host.start()
    try:
        assert wait_for(lambda: state.ticks == [False])
    finally:
        host.stop()


def test_a_schedule_naming_a_missing_setting_fails_at_start_naming_it() -> None:
    with pytest.raises(ValueError, match="TICK_SCHEDULE"):
        LocalHost(build_app(State()), keys={}, parse_event_batch=parse_batch, settings={})


# -- in process ------------------------------------------------------------------------------


def test_handle_runs_a_request_in_process_with_the_same_rules() -> None:
    state = State()
    host = LocalHost(
        build_app(state),
        keys={"tests": KEY},
        parse_event_batch=parse_batch,
        settings={"TICK_SCHEDULE": NEVER},
        max_body_bytes=1000,
    )  # not started: no socket
    assert host.handle("GET", "/api/items/7?q=1", {"X-Functions-Key": KEY})[0] == 200
    assert host.handle("GET", "/api/items/7", {})[0] == 401
    status, _, body = host.handle("POST", WEBHOOK, {"x-functions-key": KEY}, b"[{}]")
    assert (status, body) == (200, b"")
    assert host.handle("POST", WEBHOOK, {"x-functions-key": KEY}, b"[" + b" " * 1000 + b"]")[0] == (
        413
    )
    assert len(state.events) == 1


# -- lifecycle -------------------------------------------------------------------------------


def test_stop_is_quick_with_idle_keep_alive_connections_and_releases_the_port() -> None:
    state = State()
    host = start(state, run_timers=True)
    served = Served(host, state)
    address = served.address
    idle = http.client.HTTPConnection(*address, timeout=10)
    idle.request("GET", "/api/hello", headers={"Connection": "keep-alive"})
    assert idle.getresponse().read()  # the connection now waits for its next request
    started = time.monotonic()
    host.stop()
    assert time.monotonic() - started < 1.5
    with pytest.raises(RuntimeError):
        _ = host.url
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any server does
        probe.bind(address)  # the port is free again
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1).close()
    idle.close()
    host.stop()  # idempotent
