"""The local host hands a function what the real Python worker would hand it.

Each trigger kind goes over the local host (``LocalHost.handle`` / ``trigger_timer``) to a
function that records what it got; the same data goes through the worker library's own
invocation path (it indexes the same functions, then ``bindings.meta.from_incoming_proto``
decodes the typed data the Functions host would send). The two values must agree.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import pytest
from azure_functions_runtime import functions as worker_functions
from azure_functions_runtime import loader
from azure_functions_runtime.bindings import meta

from autopilot.host import LocalHost
from tests.functions import worker_protos as protos

KEY = "trigger-values-key"
BASE = "http://localhost"


@dataclass
class Seen:
    values: dict[str, list[Any]] = field(default_factory=dict)

    def record(self, name: str, value: Any) -> None:
        self.values.setdefault(name, []).append(value)


def build_app(seen: Seen) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.event_grid_trigger(arg_name="event")
    def as_text(event: str) -> None:  # as functions/azureml_events.py takes it
        seen.record("as_text", event)

    @app.event_grid_trigger(arg_name="event")
    def as_object(event: func.EventGridEvent) -> None:
        seen.record("as_object", event)

    @app.route(route="items/{id}", methods=["POST"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        seen.record("item", req)
        return func.HttpResponse("ok")

    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        seen.record("tick", timer)

    return app


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def host(seen: Seen) -> Iterator[LocalHost]:
    yield LocalHost(
        build_app(seen).get_functions(),
        keys={"tests": KEY},
        parse_event_batch=json.loads,
        run_timers=False,
    )


@pytest.fixture
def worker(seen: Seen) -> worker_functions.Registry:
    """The same functions, indexed by the worker library (a second app: one index per app)."""
    meta.load_binding_registry()
    registry = worker_functions.Registry()
    loader.process_indexed_function(protos, registry, build_app(seen).get_functions(), ".")
    return registry


def worker_value(registry: worker_functions.Registry, name: str, data: protos.TypedData) -> Any:
    """What the worker passes the function's trigger parameter (handle_event.invocation_request)."""
    info = next(f for f in registry._functions.values() if f.name == name)
    (arg, type_info), *_ = info.input_types.items()
    trigger_metadata: dict[str, Any] | None = (
        {} if meta.is_trigger_binding(type_info.binding_name) else None
    )
    return meta.from_incoming_proto(
        type_info.binding_name,
        protos.ParameterBinding(arg, data),
        pytype=type_info.pytype,
        trigger_metadata=trigger_metadata,
        function_name=name,
    )


def described(value: Any) -> Any:
    """A value's type and everything a function can read from it, for comparison."""
    if isinstance(value, (str, bytes)):
        return value
    seen: dict[str, Any] = {"type": type(value)}
    for name in dir(value):
        if name.startswith("_"):
            continue
        attribute = getattr(value, name)
        if name in ("get_json", "get_body"):
            seen[name] = attribute()
        elif not callable(attribute):
            seen[name] = dict(attribute) if hasattr(attribute, "keys") else attribute
    return seen


def grid_event() -> dict[str, Any]:
    return {
        "id": "eg-1",
        "topic": "/subscriptions/s/resourceGroups/r/providers/X/workspaces/w",
        "subject": "models/credit:3",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2026-03-01T10:20:30.1234567Z",
        "data": {"modelName": "credit", "modelVersion": "3"},
        "dataVersion": "2",
    }


def cloud_event() -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/subscriptions/s/resourceGroups/r/providers/X/workspaces/w",
        "subject": "models/credit:3",
        "type": "Microsoft.MachineLearningServices.ModelRegistered",
        "time": "2026-03-01T10:20:30Z",
        "dataschema": "#2",
        "data": {"modelName": "credit", "modelVersion": "3"},
        "traceparent": "00-abc-def-01",
    }


def deliver(host: LocalHost, function: str, events: list[dict[str, Any]]) -> int:
    target = f"/runtime/webhooks/eventgrid?functionName={function}"
    body = json.dumps(events).encode()
    status, _, _ = host.handle("POST", target, {"x-functions-key": KEY}, body)
    return status


@pytest.mark.parametrize("make_event", [grid_event, cloud_event], ids=["eventgrid", "cloudevents"])
@pytest.mark.parametrize("function", ["as_text", "as_object"])
def test_an_event_reaches_the_function_as_the_worker_decodes_it(
    host: LocalHost,
    worker: worker_functions.Registry,
    seen: Seen,
    function: str,
    make_event: Callable[[], dict[str, Any]],
) -> None:
    event = make_event()
    assert deliver(host, function, [event]) == 200
    (local,) = seen.values[function]
    on_azure = worker_value(worker, function, protos.TypedData(json=json.dumps(event)))
    assert described(local) == described(on_azure)
    if function == "as_text":
        assert json.loads(local) == event
    else:  # the converter's choice, whatever the annotation
        cloud = "specversion" in event
        assert isinstance(local, func.CloudEvent if cloud else func.EventGridEvent)
        assert local.id == event["id"] and local.get_json() == event["data"]


def test_an_event_time_the_workers_converter_refuses_fails_the_invocation_on_both(
    host: LocalHost, worker: worker_functions.Registry, seen: Seen
) -> None:
    """Why azureml_events takes text: ``+02:00`` is valid RFC 3339, the converter raises."""
    event = cloud_event() | {"time": "2026-03-01T12:20:30+02:00"}
    with pytest.raises(ValueError):
        worker_value(worker, "as_object", protos.TypedData(json=json.dumps(event)))
    assert deliver(host, "as_object", [event]) == 500
    assert "as_object" not in seen.values
    assert deliver(host, "as_text", [event]) == 200
    assert json.loads(seen.values["as_text"][0]) == event


def test_an_http_request_reaches_the_function_as_the_worker_builds_it(
    host: LocalHost, worker: worker_functions.Registry, seen: Seen
) -> None:
    body = b'{"reason": "caf\xc3\xa9"}'
    headers = {"x-functions-key": KEY, "content-type": "application/json", "x-trace": "t1"}
    status, _, answer = host.handle("POST", "/api/items/7?x=1&y=two%20words", headers, body)
    assert (status, answer) == (200, b"ok")
    (local,) = seen.values["item"]
    rpc = protos.RpcHttp(
        method="POST",
        url=f"{BASE}/api/items/7?x=1&y=two%20words",
        headers=headers,
        body=protos.TypedData(bytes=body),
        params={"id": "7"},
        query={"x": "1", "y": "two words"},
    )
    on_azure = worker_value(worker, "item", protos.TypedData(http=rpc))
    assert described(local) == described(on_azure)
    assert type(local) is func.http.HttpRequest  # the converter's subclass, as on Azure
    assert local.get_json() == {"reason": "café"} and local.route_params == {"id": "7"}


@pytest.mark.parametrize("past_due", [False, True])
def test_a_timer_run_reaches_the_function_as_the_worker_decodes_it(
    host: LocalHost, worker: worker_functions.Registry, seen: Seen, past_due: bool
) -> None:
    assert host.trigger_timer("tick", past_due=past_due)
    (local,) = seen.values["tick"]
    status = local.schedule_status
    sent = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    on_azure = worker_value(worker, "tick", protos.TypedData(json=json.dumps(sent)))
    assert described(local) == described(on_azure)
    assert local.past_due is past_due and local.schedule == {"AdjustForDST": True}
    assert set(status) == {"Last", "Next", "LastUpdated"}
    datetime.datetime.fromisoformat(status["LastUpdated"])


def test_a_refused_event_is_not_echoed_at_length(host: LocalHost) -> None:
    """The converter's message quotes the untrusted time; the host's answer stays short."""
    event = cloud_event() | {"time": "2026-03-01T12:20:30+02:00" + "9" * 10_000}
    target = "/runtime/webhooks/eventgrid?functionName=as_object"
    status, _, body = host.handle(
        "POST", target, {"x-functions-key": KEY}, json.dumps([event]).encode()
    )
    assert status == 500
    assert "cannot decode" in json.loads(body)["error"] and len(body) < 600
