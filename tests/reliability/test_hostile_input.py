"""Hostile input over the whole intake (host routing, auth, parsing, handlers), property-based.

At least 10,000 generated requests per run: the service answers 2xx or a clear 4xx, never a
5xx, never an unhandled exception, and nothing from a payload reaches a command or target.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopilot.host import LocalHost
from autopilot.serve import event_batch_validator
from functions import alerts, api, azureml_events, reconcile, runtime
from shared.wiring import Runtime
from tests import payloads
from tests.conftest import KEYS
from tests.fakes import World, make_world
from tests.strategies import events, json_values

KEY = KEYS["ops-team"]
EXAMPLES = 2_500  # per test; four tests -> 10,000 generated requests
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=azureml_events"


@pytest.fixture(scope="module")
def hosted() -> Iterator[tuple[LocalHost, World]]:
    app = func.FunctionApp()
    for blueprint in (azureml_events.bp, alerts.bp, reconcile.bp, api.bp):
        app.register_functions(blueprint)
    world = make_world()
    runtime.use(Runtime(world.services, dict(KEYS)))
    host = LocalHost(
        app,
        keys=KEYS,
        run_timers=False,
        settings={"AUTOPILOT_RECONCILE_SCHEDULE": "0 0 * * * *"},
        parse_event_batch=event_batch_validator(lambda: world.services.policy),
    )
    yield host, world
    runtime.use(None)


def check(
    host: LocalHost,
    world: World,
    method: str,
    target: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> int:
    status, _, data = host.handle(method, target, {"x-functions-key": KEY, **(headers or {})}, body)
    assert status < 500, (status, data[:300])
    if status >= 400:
        assert json.loads(data)["error"]  # a clear message
    for job in world.platform.submitted:  # whatever came in, commands come from the policy
        assert job.command == ("{python}", "train.py", "--outputs", "{outputs}")
    return status


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@FUZZ
@given(st.one_of(st.lists(events, max_size=6), json_values))
def test_event_grid_deliveries(hosted: tuple[LocalHost, World], payload: Any) -> None:
    check(*hosted, "POST", WEBHOOK, json.dumps(payload).encode())


def mutated_alert(data: st.DataObject) -> dict[str, Any]:
    alert = payloads.alert()
    essentials = alert["data"]["essentials"]
    for key in data.draw(st.lists(st.sampled_from(sorted(essentials)), max_size=3)):
        essentials[key] = data.draw(json_values)
    return alert


@FUZZ
@given(st.data())
def test_alerts(hosted: tuple[LocalHost, World], data: st.DataObject) -> None:
    body = data.draw(
        st.one_of(json_values, st.builds(lambda: None).map(lambda _: mutated_alert(data)))
    )
    check(*hosted, "POST", "/api/alerts", json.dumps(body).encode())


@FUZZ
@given(st.binary(max_size=300))
def test_raw_bytes_and_invalid_utf8(hosted: tuple[LocalHost, World], body: bytes) -> None:
    check(*hosted, "POST", WEBHOOK, body)
    check(*hosted, "POST", "/api/alerts", body)


url_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)


@FUZZ
@given(url_text, url_text, url_text)
def test_route_query_and_header_injection(
    hosted: tuple[LocalHost, World], segment: str, query: str, header: str
) -> None:
    from urllib.parse import quote

    host, world = hosted
    check(
        host,
        world,
        "GET",
        f"/api/cycles/{quote(segment, safe='')}?model={quote(query)}",
        b"",
        {"x-extra": header},
    )
    check(host, world, "GET", f"/api/audit?since={quote(query)}&limit={quote(segment)}", b"")
    check(
        host,
        world,
        "POST",
        f"/api/cycles/{quote(segment, safe='')}/approve",
        json.dumps({"reason": header}).encode(),
    )
    check(
        host,
        world,
        "POST",
        f"/api/models/{quote(segment, safe='')}/retrain",
        json.dumps({"reason": query}).encode(),
    )
