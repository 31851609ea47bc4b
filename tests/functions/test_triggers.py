"""Triggers called as registered functions with real azure.functions request objects."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from composition.wiring import Runtime
from functions import runtime
from shared.model import CycleState, JobStatus
from tests import payloads
from tests.conftest import KEYS
from tests.fakes import World, make_policy, make_world


def call(registered: dict[str, Any], name: str, **kwargs: Any) -> Any:
    return registered[name].get_user_function()(**kwargs)


def http(
    method: str,
    route: str,
    body: Any = None,
    *,
    key: str | None = KEYS["ops-team"],
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> func.HttpRequest:
    headers = {"x-functions-key": key} if key else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return func.HttpRequest(
        method,
        f"http://localhost/api/{route}",
        headers=headers,
        params=params or {},
        route_params=route_params or {},
        body=data,
    )


def eg_event(payload: dict[str, Any]) -> str:
    """One event as the worker hands it to a ``str`` parameter: the JSON the host sent."""
    return json.dumps(payload)


def body_of(resp: func.HttpResponse) -> Any:
    return json.loads(resp.get_body())


def test_bindings_are_what_the_functions_host_needs(registered: dict[str, Any]) -> None:
    kinds = {name: fn.get_bindings()[0].get_dict_repr() for name, fn in registered.items()}
    assert kinds["azureml_events"]["type"] == "eventGridTrigger"
    assert kinds["reconcile"]["type"] == "timerTrigger"
    assert kinds["reconcile"]["schedule"] == "%AUTOPILOT_RECONCILE_SCHEDULE%"
    http_routes = {
        k["route"]: str(getattr(k["authLevel"], "value", k["authLevel"]))
        for k in kinds.values()
        if k["type"] == "httpTrigger"
    }
    assert http_routes.pop("health") == "anonymous"
    # the console page checks the key itself, to answer a browser with a key prompt (401)
    assert http_routes.pop("console") == "anonymous"
    assert set(http_routes.values()) == {"function"}
    assert set(http_routes) == {
        "alerts",
        "events",
        "cycles",
        "cycles/{id}",
        "audit",
        "cycles/{id}/approve",
        "cycles/{id}/deny",
        "models/{model}/retrain",
        "models/{model}/rollback",
        "models",
        "models/{model}/estimates",
        "audit/verify",
    }


def test_alert_trigger_starts_a_cycle(registered: dict[str, Any], world: World) -> None:
    resp = call(registered, "receive_alert", req=http("POST", "alerts", payloads.alert()))
    assert resp.status_code == 200
    assert body_of(resp) == {"result": "processed", "model": "credit", "as": "drift signal"}
    assert world.store.list_cycles()[0].state is CycleState.RETRAINING


def test_an_alert_bound_to_no_model_is_answered_as_ignored_and_why(
    registered: dict[str, Any], world: World
) -> None:
    body = payloads.alert("nobody-binds-this")
    resp = call(registered, "receive_alert", req=http("POST", "alerts", body))
    assert resp.status_code == 200
    assert body_of(resp) == {
        "result": "ignored",
        "reason": "no binding for alert rule 'nobody-binds-this': no model in the policy lists "
        "it under signals.drift_alerts or signals.health_alerts",
    }
    assert world.store.list_cycles() == []


def test_alert_trigger_refuses_bad_input_with_4xx(registered: dict[str, Any], world: World) -> None:
    bad = payloads.alert()
    bad["data"]["essentials"]["monitorCondition"] = "Maybe"
    cases = [
        (http("POST", "alerts", raw=b"{not json"), 400, "not valid JSON"),
        (http("POST", "alerts", {"schemaId": "other"}), 400, "schemaId"),
        (http("POST", "alerts", bad), 400, "monitorCondition"),
        (http("POST", "alerts", raw=b"[" + b"1," * 600_000 + b"1]"), 413, "at most"),
    ]
    for req, status, message in cases:
        resp = call(registered, "receive_alert", req=req)
        assert resp.status_code == status
        assert message in body_of(resp)["error"]
    assert world.store.list_cycles() == []
    assert [r.kind for r in world.audit.records] == ["rejected"] * 4


def test_every_route_but_health_needs_a_valid_key(registered: dict[str, Any], world: World) -> None:
    for name in (
        "receive_alert",
        "list_cycles",
        "get_cycle",
        "list_audit",
        "approve_cycle",
        "deny_cycle",
    ):
        for key in (None, "wrong-key-0123456789"):
            resp = call(registered, name, req=http("GET", "x", key=key))
            assert resp.status_code == 401, name
            assert "wrong-key" not in resp.get_body().decode()
    assert call(registered, "health", req=http("GET", "health", key=None)).status_code == 200
    assert world.audit.records == []


def test_event_grid_trigger_runs_the_lifecycle_and_rejects_bad_data_without_raising(
    registered: dict[str, Any], world: World
) -> None:
    call(registered, "azureml_events", event=eg_event(payloads.monitor_breach()))
    cycle = world.store.list_cycles()[0]
    assert cycle.job_name
    bad = payloads.run_event(cycle.job_name, "Completed")
    bad["data"]["runId"] = {"nested": "object"}
    call(registered, "azureml_events", event=eg_event(bad))  # permanent: audited, no raise
    assert world.audit.records[-1].kind == "rejected"
    assert "runId" in world.audit.records[-1].reason


def test_api_lists_and_shows_cycles_and_filters_audit(
    registered: dict[str, Any], world: World
) -> None:
    call(registered, "receive_alert", req=http("POST", "alerts", payloads.alert()))
    cycles = body_of(call(registered, "list_cycles", req=http("GET", "cycles")))["cycles"]
    assert [c["state"] for c in cycles] == ["RETRAINING"]
    cycle_id = cycles[0]["id"]
    shown = body_of(
        call(registered, "get_cycle", req=http("GET", "cycles/x", route_params={"id": cycle_id}))
    )
    assert shown["cycle"]["id"] == cycle_id
    assert shown["audit"] and all(r["cycle"] == cycle_id for r in shown["audit"])
    missing = call(registered, "get_cycle", req=http("GET", "c", route_params={"id": "nope"}))
    assert missing.status_code == 404
    audit = body_of(
        call(registered, "list_audit", req=http("GET", "audit", params={"cycle": cycle_id}))
    )["records"]
    assert audit == shown["audit"]
    bad_since = call(registered, "list_audit", req=http("GET", "audit", params={"since": "x"}))
    assert bad_since.status_code == 400


def test_approve_records_the_key_name_as_actor(registered: dict[str, Any], world: World) -> None:
    from tests.fakes import make_policy

    world.services.policy = make_policy(gate__approval_required=True)
    call(registered, "receive_alert", req=http("POST", "alerts", payloads.alert()))
    cycle = world.store.list_cycles()[0]
    assert cycle.job_name
    world.platform.evaluations[cycle.job_name] = payloads.evaluation(
        {"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.8}
    )
    world.platform.finish(cycle.job_name)
    call(registered, "azureml_events", event=eg_event(payloads.run_event(cycle.job_name)))
    resp = call(
        registered,
        "approve_cycle",
        req=http(
            "POST", "a", {"reason": "ship it"}, key=KEYS["alice"], route_params={"id": cycle.id}
        ),
    )
    assert resp.status_code == 200
    assert body_of(resp)["cycle"]["state"] == "REGISTERED"
    approval = next(r for r in world.audit.records if r.summary == "candidate approved")
    assert (approval.actor, approval.reason) == ("alice", "ship it")
    again = call(
        registered,
        "deny_cycle",
        req=http("POST", "d", {"reason": "no"}, route_params={"id": cycle.id}),
    )
    assert again.status_code == 409
    malformed = call(
        registered,
        "deny_cycle",
        req=http("POST", "d", {"reason": 7}, route_params={"id": cycle.id}),
    )
    assert malformed.status_code == 400  # a malformed request is 400 even on a settled cycle
    assert "reason" in body_of(malformed)["error"]


def test_timer_trigger_reconciles(registered: dict[str, Any], world: World) -> None:
    call(registered, "receive_alert", req=http("POST", "alerts", payloads.alert()))
    cycle = world.store.list_cycles()[0]
    assert cycle.job_name
    world.platform.finish(cycle.job_name, JobStatus.FAILED, "boom")
    call(registered, "reconcile", timer=TimerRequest(past_due=False))
    assert world.store.must(cycle.id).state is CycleState.FAILED


def test_operator_retrain_and_rollback_routes(registered: dict[str, Any], world: World) -> None:
    def post(name: str, model: str) -> func.HttpResponse:
        req = http(
            "POST",
            "m",
            {"reason": "new data landed"},
            key=KEYS["alice"],
            route_params={"model": model},
        )
        response: func.HttpResponse = call(registered, name, req=req)
        return response

    assert post("retrain_model", "nope").status_code == 404
    resp = post("retrain_model", "credit")
    assert resp.status_code == 200
    assert body_of(resp)["cycle"]["state"] == "RETRAINING"
    started = next(r for r in world.audit.records if r.summary == "retraining cycle started")
    assert started.actor == "alice"
    refused = post("rollback_model", "credit")
    assert refused.status_code == 409
    assert "nothing to roll back" in body_of(refused)["error"]


def test_event_grid_trigger_accepts_cloudevents_whatever_their_time_offset(
    registered: dict[str, Any], world: World
) -> None:
    """A non-UTC offset is valid RFC 3339; azure-functions' Event Grid converter refuses it."""
    breach = payloads.to_cloudevent(payloads.monitor_breach())
    breach["time"] = "2026-01-01T02:00:00+02:00"
    call(registered, "azureml_events", event=json.dumps(breach))
    cycle = world.store.list_cycles()[0]
    assert cycle.model == "credit" and cycle.state is CycleState.RETRAINING


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"id": "1", "id": "2"}', "duplicate"),
        ("[]", "must be a JSON object"),
        (json.dumps({"specversion": "1.0", "id": "x"}), "source"),
        (json.dumps({"id": "x", "subject": "s", "data": {}}), "eventType"),
    ],
)
def test_a_malformed_event_is_audited_as_rejected_and_not_retried(
    registered: dict[str, Any], world: World, event: str, problem: str
) -> None:
    call(registered, "azureml_events", event=event)  # returns: Event Grid does not retry it
    assert world.store.list_cycles() == []
    record = world.audit.records[-1]
    assert record.kind == "rejected" and problem in record.reason


def test_audit_limit_must_be_a_plain_integer(registered: dict[str, Any], world: World) -> None:
    for bad in ("¹", "٣", "0", "-1", "1e3", "100001"):
        resp = call(registered, "list_audit", req=http("GET", "audit", params={"limit": bad}))
        assert resp.status_code == 400, bad
    ok = call(registered, "list_audit", req=http("GET", "audit", params={"limit": "5"}))
    assert ok.status_code == 200


def test_retrain_answers_what_each_request_did(registered: dict[str, Any], world: World) -> None:
    """Each request is a new intent: started, or coalesced into the active cycle; a retry with
    the same Idempotency-Key is the same intent."""

    def retrain(headers: dict[str, str] | None = None) -> dict[str, Any]:
        req = http(
            "POST", "models/credit/retrain", {"reason": "r"}, route_params={"model": "credit"}
        )
        for name, value in (headers or {}).items():
            req = func.HttpRequest(
                req.method,
                req.url,
                headers={**dict(req.headers), name: value},
                params=dict(req.params),
                route_params=dict(req.route_params),
                body=req.get_body(),
            )
        resp = call(registered, "retrain_model", req=req)
        assert resp.status_code == 200
        return dict(body_of(resp))

    first = retrain({"Idempotency-Key": "k-1"})
    assert first["outcome"] == "started" and first["cycle"]["state"] == "RETRAINING"
    second = retrain()
    assert second["outcome"] == "coalesced" and second["cycle"]["id"] == first["cycle"]["id"]
    again = retrain({"Idempotency-Key": "k-1"})
    assert again["outcome"] == "already handled" and again["cycle"]["id"] == first["cycle"]["id"]
    assert len(world.store.list_cycles()) == 1


def test_retrain_in_observe_mode_starts_nothing_and_says_so(registered: dict[str, Any]) -> None:
    observe = make_world(make_policy(mode="observe"))
    runtime.use(Runtime(observe.services, dict(KEYS)))
    try:
        req = http(
            "POST", "models/credit/retrain", {"reason": "r"}, route_params={"model": "credit"}
        )
        resp = call(registered, "retrain_model", req=req)
    finally:
        runtime.use(None)
    assert body_of(resp) == {"outcome": "not started", "cycle": None}
    assert observe.store.list_cycles() == []


def test_an_error_answer_never_quotes_a_configured_secret(
    registered: dict[str, Any], world: World
) -> None:
    """A platform error can quote a secret (a SAS URL, a key): the 503 says what failed
    without it, as the logs and the audit log do."""
    from shared.errors import TransientError
    from shared.redact import Redactor

    secret = "Sup3r-Secret-Storage-Key-0123456789"
    world.services.redactor = Redactor([secret])

    def outage(request: Any) -> Any:
        raise TransientError(f"PUT https://acct.blob.core.windows.net/x?sv=1&sig={secret}: 503")

    world.platform.submit_job = outage  # type: ignore[method-assign]  # the fake's outage
    req = http("POST", "m", {"reason": "r"}, key=KEYS["alice"], route_params={"model": "credit"})
    resp = call(registered, "retrain_model", req=req)
    text = resp.get_body().decode()
    assert resp.status_code == 503, text
    assert secret not in text and "***" in text and "temporarily unavailable" in text
