"""function_app.py indexed by the real Azure Functions Python worker library, as on Azure.

The worker (``azure-functions-runtime``, installed by scripts/setup.sh) indexes the app at
start-up: ``loader.index_function_app`` imports function_app.py and collects its functions,
then ``loader.process_indexed_function`` validates each one (parameters against bindings, type
annotations against the binding's converter) and builds the metadata it sends the host. One
function that fails there fails the host's whole metadata request: no function runs at all.
``app.get_functions()`` alone does none of these checks.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure_functions_runtime import functions as worker_functions
from azure_functions_runtime import loader
from azure_functions_runtime.bindings import meta

from tests.functions import worker_protos

APP_DIR = Path(__file__).resolve().parents[2]


def http(route: str, method: str, auth: str = "FUNCTION") -> list[dict[str, Any]]:
    trigger: dict[str, Any] = {"type": "httpTrigger", "direction": "IN", "name": "req"}
    trigger |= {"route": route, "methods": method.split(","), "authLevel": auth}
    return [trigger, {"type": "http", "direction": "OUT", "name": "$return"}]


# What the host is told, function by function (names are the Python function names).
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "azureml_events": [{"type": "eventGridTrigger", "direction": "IN", "name": "event"}],
    # the batched Event Grid webhook: a POST per delivery, OPTIONS for the CloudEvents handshake
    "eventgrid_webhook": http("events", "POST,OPTIONS"),
    "receive_alert": http("alerts", "POST"),
    "reconcile": [
        {
            "type": "timerTrigger",
            "direction": "IN",
            "name": "timer",
            "schedule": "%AUTOPILOT_RECONCILE_SCHEDULE%",
            "runOnStartup": False,
        }
    ],
    "health": http("health", "GET", "ANONYMOUS"),
    "list_cycles": http("cycles", "GET"),
    "get_cycle": http("cycles/{id}", "GET"),
    "list_audit": http("audit", "GET"),
    "retrain_model": http("models/{model}/retrain", "POST"),
    "rollback_model": http("models/{model}/rollback", "POST"),
    "approve_cycle": http("cycles/{id}/approve", "POST"),
    "deny_cycle": http("cycles/{id}/deny", "POST"),
    # the console checks the key itself, to answer a missing or wrong one with its key prompt
    "console_page": http("console", "GET", "ANONYMOUS"),
    "list_models": http("models", "GET"),
    "verify_audit": http("audit/verify", "GET"),
    "model_estimates": http("models/{model}/estimates", "GET"),
}


@pytest.fixture
def fresh_import() -> Iterator[None]:
    """The worker imports function_app itself; the SDK allows one get_functions() per app."""
    saved = sys.modules.pop("function_app", None)
    try:
        yield
    finally:
        sys.modules.pop("function_app", None)
        if saved is not None:
            sys.modules["function_app"] = saved


def index_as_the_worker_does() -> tuple[list[Any], worker_functions.Registry]:
    """What the worker's dispatcher runs on init (handle_event.index_functions)."""
    meta.load_binding_registry()
    indexed = loader.index_function_app(str(APP_DIR / "function_app.py"))
    registry = worker_functions.Registry()
    metadata, _ = loader.process_indexed_function(worker_protos, registry, indexed, str(APP_DIR))
    return metadata, registry


@pytest.mark.usefixtures("fresh_import")
def test_the_worker_loads_every_function_with_the_bindings_the_host_needs() -> None:
    metadata, registry = index_as_the_worker_does()

    assert [m.name for m in metadata] == list(EXPECTED)
    for m in metadata:
        bindings = [json.loads(raw) for raw in m.raw_bindings]
        assert bindings == EXPECTED[m.name], m.name
        assert (m.entry_point, m.language, m.script_file) == (m.name, "python", "function_app.py")
        assert m.properties == {"worker_indexed": "True"}
        assert m.retry_options is None
        info = registry.get_function(m.function_id)
        assert info is not None and info.name == m.name
        assert info.is_http_func == (bindings[0]["type"] == "httpTrigger")
        assert info.has_return == info.is_http_func  # only HTTP functions answer


@pytest.mark.usefixtures("fresh_import")
def test_the_worker_decodes_events_as_text_and_requests_with_azure_functions_converters() -> None:
    """What each trigger parameter is decoded with, as the worker decided when indexing."""
    _, registry = index_as_the_worker_does()
    decoded = {
        info.name: (binding.binding_name, binding.pytype)
        for info in registry._functions.values()
        for binding in info.input_types.values()
    }
    assert decoded.pop("azureml_events") == ("generic", str)  # the event's JSON, unconverted
    assert decoded.pop("reconcile") == ("timerTrigger", func.TimerRequest)
    assert set(decoded.values()) == {("httpTrigger", func.HttpRequest)}


def test_a_union_annotation_is_what_the_worker_refuses() -> None:
    """The check above is the worker's, not ours: the annotation main had is refused."""

    bp = func.Blueprint()

    @bp.event_grid_trigger(arg_name="event")
    def refused(event: func.EventGridEvent | func.CloudEvent) -> None:
        pass

    app = func.FunctionApp()
    app.register_functions(bp)
    meta.load_binding_registry()
    with pytest.raises(worker_functions.FunctionLoadError, match="non-type annotation"):
        loader.process_indexed_function(
            worker_protos, worker_functions.Registry(), app.get_functions(), str(APP_DIR)
        )
