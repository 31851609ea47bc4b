"""Event normalisation: both schemas, case-insensitive data, bindings, clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.envelope import envelope_from_dict, parse_delivery
from shared.errors import BadEvent
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    HealthAlertFired,
    JobStatusChanged,
    ModelRegistered,
    SignalResolved,
)
from shared.normalise import normalise_azureml, parse_alert
from tests import payloads
from tests.fakes import make_policy
from tests.strategies import events, json_values

POLICY = make_policy()


def normalise(event: dict[str, Any]) -> Any:
    return normalise_azureml(envelope_from_dict(event), POLICY)


def test_doc_samples_pascal_case_and_real_camel_case_read_the_same() -> None:
    pascal = payloads.sample("eventgrid/eventgrid_schema_ModelRegistered.json")[0]
    camel = payloads.model_registered(
        "sklearn_regression_model", "20", {"area": "diabetes", "type": "regression"}
    )
    for event in (pascal, camel):
        message = normalise(event)
        assert isinstance(message, ModelRegistered)
        assert (message.model, message.version) == ("sklearn_regression_model", "20")
        assert message.tags == {"area": "diabetes", "type": "regression"}


def test_cloudevents_and_event_grid_schema_give_the_same_message() -> None:
    event = payloads.run_event("run-1", "Completed")
    grid, cloud = normalise(event), normalise(payloads.to_cloudevent(event))
    assert isinstance(grid, JobStatusChanged) and isinstance(cloud, JobStatusChanged)
    assert (grid.job_name, grid.status) == (cloud.job_name, cloud.status) == ("run-1", "Completed")
    assert grid.event_key == cloud.event_key  # source, type, subject, id


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Completed", "Completed"),
        ("failed", "Failed"),
        ("Canceled", "Canceled"),
        # azure-ai-ml lists NotResponding among its terminal run statuses (no heartbeat)
        ("NotResponding", "Failed"),
        ("notresponding", "Failed"),
    ],
)
def test_terminal_run_statuses(status: str, expected: str) -> None:
    message = normalise(payloads.run_event("r", status))
    assert isinstance(message, JobStatusChanged) and message.status == expected


@pytest.mark.parametrize(
    "status", ["Running", "Finalizing", "Queued", "CancelRequested", "Paused", "Unknown"]
)
def test_non_terminal_statuses_are_ignored(status: str) -> None:
    assert isinstance(normalise(payloads.run_event("r", status)), EventIgnored)


def test_model_monitor_breach_is_a_drift_signal_for_the_bound_model() -> None:
    message = normalise(payloads.monitor_breach("credit-monitor"))
    assert isinstance(message, DriftSignalled) and message.model == "credit"
    assert isinstance(normalise(payloads.monitor_breach("unbound-monitor")), EventIgnored)


def test_dedup_key_uses_source_type_subject_and_id() -> None:
    a = payloads.run_event("r1", event_id="same")
    b = payloads.run_event("r2", event_id="same")
    assert envelope_from_dict(a).dedup_key != envelope_from_dict(b).dedup_key


@pytest.mark.parametrize(
    ("rule", "condition", "kind"),
    [
        ("credit-drift", "Fired", DriftSignalled),
        ("credit-endpoint-errors", "Fired", HealthAlertFired),
        ("credit-drift", "Resolved", SignalResolved),
        ("unbound", "Fired", EventIgnored),
    ],
)
def test_alerts_bind_per_policy(rule: str, condition: str, kind: type) -> None:
    assert isinstance(parse_alert(payloads.alert(rule, condition), POLICY), kind)


def test_alert_binds_by_rule_resource_id_too() -> None:
    policy = make_policy(signals={"drift_alerts": [payloads.RULES.upper() + "/MY-RULE"]})
    message = parse_alert(payloads.alert("my-rule"), policy)
    assert isinstance(message, DriftSignalled)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda e: e["data"].pop("modelName"), "missing 'modelName'"),
        (lambda e: e["data"].update(modelVersion=["1"]), "'modelVersion' must be a string"),
        (lambda e: e.update(data="text"), "'data' must be an object"),
        (lambda e: e["data"].update(modelTags=[1]), "'modelTags' must be an object"),
    ],
)
def test_malformed_azure_ml_data_names_the_problem(mutate: Any, problem: str) -> None:
    event = payloads.model_registered("m", "1", {})
    mutate(event)
    with pytest.raises(BadEvent, match=problem):
        normalise(event)


def test_batches_over_5000_events_are_refused() -> None:
    batch = [payloads.run_event("r", "Running") for _ in range(5001)]
    with pytest.raises(BadEvent, match="at most 5000"):
        parse_delivery(json.dumps(batch).encode())


def test_deep_nesting_is_a_bad_event_not_a_crash() -> None:
    with pytest.raises(BadEvent):
        parse_delivery(b"[" * 100_000 + b"]" * 100_000)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.lists(events, max_size=5)))
def test_arbitrary_json_is_either_a_message_or_a_bad_event(payload: Any) -> None:
    body = json.dumps(payload).encode()
    try:
        events = parse_delivery(body)
        for index, event in enumerate(events):
            normalise_azureml(envelope_from_dict(event, index), POLICY)
    except BadEvent as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_alert_json_is_either_a_message_or_a_bad_event(payload: Any) -> None:
    try:
        parse_alert(payload, POLICY)
    except BadEvent as exc:
        assert str(exc)
