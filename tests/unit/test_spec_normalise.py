"""What intake promises for every event kind: required fields are required, each kind becomes
the message a user expects, alerts are deduplicated per firing, and payload text is bounded."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from shared.envelope import envelope_from_dict
from shared.errors import BadEvent
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    HealthAlertFired,
    JobStatusChanged,
    ModelRegistered,
    SignalResolved,
)
from shared.normalise import MAX_TEXT, normalise_azureml, parse_alert
from tests import payloads
from tests.fakes import make_policy

POLICY = make_policy()
AML = "Microsoft.MachineLearningServices."


def grid(kind: str) -> dict[str, Any]:
    """The documented Event Grid sample of ``kind`` (a fresh copy)."""
    return copy.deepcopy(payloads.sample(f"eventgrid/eventgrid_schema_{kind}.json")[0])


def normalise(event: dict[str, Any]) -> Any:
    return normalise_azureml(envelope_from_dict(event), POLICY)


def alert(**essentials: Any) -> dict[str, Any]:
    body = copy.deepcopy(payloads.sample("alerts/common_schema_metric_alert_full.json"))
    body["data"]["essentials"].update(essentials)
    return dict(body)


# --- required fields, table-driven over every event kind --------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("ModelRegistered", "ModelName"),
        ("ModelRegistered", "ModelVersion"),
        ("RunCompleted", "runId"),
        ("RunStatusChanged", "runId"),
        ("RunStatusChanged", "runStatus"),
        ("DatasetDriftDetected", "DataDriftName"),
    ],
)
def test_a_missing_required_field_is_a_bad_event_naming_it(kind: str, field: str) -> None:
    event = grid(kind)
    data = event["data"]
    [key] = [k for k in data if k.lower() == field.lower()]
    del data[key]
    name = field[0].lower() + field[1:]
    with pytest.raises(BadEvent, match=rf"^{kind} event data: missing '{name}'$"):
        normalise(event)


@pytest.mark.parametrize("field", ["alertId", "alertRule", "monitorCondition"])
def test_an_alert_without_a_required_field_is_a_bad_event_naming_it(field: str) -> None:
    body = alert(alertRule="credit-drift")
    del body["data"]["essentials"][field]
    with pytest.raises(BadEvent, match=rf"^alert\.data\.essentials: missing '{field}'$"):
        parse_alert(body, POLICY)


@pytest.mark.parametrize("kind", ["ModelRegistered", "RunCompleted", "DatasetDriftDetected"])
def test_event_data_that_is_not_an_object_is_a_bad_event(kind: str) -> None:
    event = grid(kind)
    event["data"] = ["not", "an", "object"]
    expected = f"{AML}{kind} event '{event['id']}': 'data' must be an object, got list"
    with pytest.raises(BadEvent, match=f"^{re.escape(expected)}$"):
        normalise(event)


# --- every kind becomes the message a user expects ---------------------------------------------


def test_a_registered_model_names_its_model_version_and_tags() -> None:
    message = normalise(grid("ModelRegistered"))
    assert isinstance(message, ModelRegistered)
    assert (message.model, message.version) == ("sklearn_regression_model", "20")
    assert message.tags == {"area": "diabetes", "type": "regression"}


def test_run_completed_is_a_completed_job_with_its_experiment_and_tags() -> None:
    event = grid("RunCompleted")
    event["data"]["runTags"] = {"autopilot.cycle": "c-1"}
    message = normalise(event)
    assert isinstance(message, JobStatusChanged)
    assert message.job_name == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
    assert message.status == "Completed"
    assert message.tags == {"autopilot.cycle": "c-1"}
    assert message.experiment == "automl-local-regression"
    assert message.event_key == envelope_from_dict(event).dedup_key


@pytest.mark.parametrize(("status", "expected"), [("Failed", "Failed"), ("completed", "Completed")])
def test_run_status_changed_to_a_terminal_status_is_a_job_status(
    status: str, expected: str
) -> None:
    event = grid("RunStatusChanged")
    event["data"]["runStatus"] = status
    message = normalise(event)
    assert isinstance(message, JobStatusChanged) and message.status == expected


@pytest.mark.parametrize("status", ["Running", "Queued", "made-up"])
def test_a_run_status_that_is_not_terminal_is_ignored_and_says_which(status: str) -> None:
    event = grid("RunStatusChanged")
    event["data"]["runStatus"] = status
    message = normalise(event)
    assert isinstance(message, EventIgnored)
    assert message.reason == f"run status {status.lower()!r} is not terminal"


def test_data_drift_of_a_bound_monitor_is_a_drift_signal_with_its_evidence() -> None:
    message = normalise(grid("DatasetDriftDetected"))
    assert isinstance(message, DriftSignalled)
    assert (message.model, message.source, message.signal) == (
        "credit",
        "datadrift",
        "myDriftMonitor",
    )
    assert message.evidence == {
        "dataDriftId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "runId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        "driftCoefficient": "0.8350349068479208",
        "startTime": "2019-07-04T00:00:00+00:00",
        "endTime": "2019-07-05T00:00:00+00:00",
    }


def test_data_drift_of_an_unbound_monitor_is_ignored_and_says_which() -> None:
    event = grid("DatasetDriftDetected")
    event["data"]["DataDriftName"] = "someone-elses-monitor"
    message = normalise(event)
    assert isinstance(message, EventIgnored)
    assert message.reason == "data drift monitor 'someone-elses-monitor' is bound to no model"
    assert message.evidence["dataDriftId"] == "01d29aa4-e6a4-470a-9ef3-66660d21f8ef"


def test_a_model_deployed_event_is_recorded_only() -> None:
    message = normalise(grid("ModelDeployed"))
    assert isinstance(message, EventIgnored)
    assert message.reason == "deployments are driven by rollouts; recorded only"
    assert message.evidence == {
        "service": "my-sklearn-service",
        "models": "sklearn_regression_model:1,sklearn_regression_model:2",
    }


def test_an_unhandled_event_type_is_ignored_with_its_type() -> None:
    event = grid("ModelDeployed")
    event["eventType"] = AML + "ModelDeprecated"
    message = normalise(event)
    assert isinstance(message, EventIgnored)
    assert message.reason == "event type not handled"
    assert message.event_type == AML + "ModelDeprecated"


@pytest.mark.parametrize(
    "tag", ["azureml_modelmonitor_threshold_breached", "AzureML_ModelMonitor_Threshold_Breached"]
)
def test_a_monitor_breach_of_a_bound_monitor_is_drift_whatever_the_tag_case(tag: str) -> None:
    event = payloads.monitor_breach("credit-monitor")
    tags = event["data"]["runTags"]
    tags[tag] = tags.pop("azureml_modelmonitor_threshold_breached")
    message = normalise(event)
    assert isinstance(message, DriftSignalled)
    assert (message.model, message.source, message.signal) == (
        "credit",
        "model_monitor",
        "credit-monitor",
    )
    assert message.evidence["run_id"] == "credit-monitor-run-1"
    assert "credit-monitor" in message.evidence["breach"]


def test_a_monitor_breach_bound_through_run_properties_is_drift() -> None:
    event = payloads.monitor_breach("credit-monitor")
    event["data"]["runTags"] = {"azureml_modelmonitor_threshold_breached": "thresholds violated"}
    event["data"]["experimentName"] = "other"
    event["data"]["runId"] = "r-9"
    event["data"]["runProperties"] = {"monitor": "credit-monitor"}
    message = normalise(event)
    assert isinstance(message, DriftSignalled) and message.model == "credit"
    assert message.signal == "other"


def test_a_monitor_breach_of_an_unknown_monitor_is_ignored() -> None:
    message = normalise(payloads.monitor_breach("nobodys-monitor"))
    assert isinstance(message, EventIgnored)
    assert message.reason == "model monitor breach bound to no model in the policy"
    assert message.evidence["experiment"] == "nobodys-monitor"


# --- alerts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "condition", "expected"),
    [
        ("credit-drift", "Fired", DriftSignalled),
        ("credit-drift", "Resolved", SignalResolved),
        ("credit-endpoint-errors", "Fired", HealthAlertFired),
        ("credit-endpoint-errors", "Resolved", EventIgnored),
        ("unbound-rule", "Fired", EventIgnored),
        ("unbound-rule", "Resolved", EventIgnored),
    ],
)
def test_each_alert_becomes_the_message_its_binding_says(
    rule: str, condition: str, expected: type
) -> None:
    message = parse_alert(alert(alertRule=rule, monitorCondition=condition), POLICY)
    assert type(message) is expected
    if isinstance(message, DriftSignalled | SignalResolved | HealthAlertFired):
        assert message.model == "credit"


def test_a_resolved_health_alert_keeps_pending_signals_and_names_its_model() -> None:
    message = parse_alert(
        alert(alertRule="credit-endpoint-errors", monitorCondition="Resolved"), POLICY
    )
    assert isinstance(message, EventIgnored)
    assert message.model == "credit"
    assert message.event_type == "alert.Resolved"
    assert message.reason == (
        "health alert rule 'credit-endpoint-errors' resolved: nothing to undo, "
        "pending drift signals kept"
    )


def test_an_unbound_alert_is_ignored_and_says_which_rule() -> None:
    message = parse_alert(alert(alertRule="WCUS-R2-Gen2", monitorCondition="Fired"), POLICY)
    assert isinstance(message, EventIgnored)
    assert message.reason == "alert rule 'WCUS-R2-Gen2' is bound to no model"
    assert message.event_type == "alert.Fired"
    assert message.evidence["rule"] == "WCUS-R2-Gen2"


def test_an_alert_carries_its_evidence() -> None:
    message = parse_alert(alert(alertRule="credit-drift", monitorCondition="Fired"), POLICY)
    assert isinstance(message, DriftSignalled)
    assert (message.source, message.signal) == ("alert", "credit-drift")
    ev = message.evidence
    assert ev["severity"] == "Sev3" and ev["signalType"] == "Metric"
    assert ev["firedDateTime"] == "2019-03-22T13:58:24.3713213Z"
    assert ev["window"] == "PT5M"
    assert ev["conditionType"] == "SingleResourceMultipleMetricCriteria"
    assert ev["conditions"][0]["metricName"] == "Percentage CPU"
    assert "properties" not in ev  # null context values are left out
    assert ev["rule"] == "credit-drift"


def test_alert_conditions_are_capped_at_fifty() -> None:
    body = alert(alertRule="credit-drift")
    body["data"]["alertContext"]["condition"]["allOf"] = [{"i": i} for i in range(80)]
    body["data"]["alertContext"]["properties"] = {"team": "risk"}
    message = parse_alert(body, POLICY)
    assert isinstance(message, SignalResolved)  # the sample is a resolution
    assert [c["i"] for c in message.evidence["conditions"]] == list(range(50))
    assert message.evidence["properties"] == {"team": "risk"}


def test_the_same_alert_firing_again_later_is_a_new_event() -> None:
    first = parse_alert(alert(alertRule="credit-drift", monitorCondition="Fired"), POLICY)
    again = parse_alert(
        alert(
            alertRule="credit-drift",
            monitorCondition="Fired",
            firedDateTime="2019-03-23T09:00:00Z",
        ),
        POLICY,
    )
    redelivered = parse_alert(alert(alertRule="credit-drift", monitorCondition="Fired"), POLICY)
    assert first.event_key != again.event_key
    assert first.event_key == redelivered.event_key
    assert "2019-03-23T09:00:00Z" in again.event_key


def test_a_resolution_is_keyed_by_its_resolution_time_not_the_firing() -> None:
    resolved = parse_alert(alert(alertRule="credit-drift", monitorCondition="Resolved"), POLICY)
    later = parse_alert(
        alert(
            alertRule="credit-drift",
            monitorCondition="Resolved",
            resolvedDateTime="2019-03-24T00:00:00Z",
        ),
        POLICY,
    )
    refired_same_resolution = parse_alert(
        alert(
            alertRule="credit-drift",
            monitorCondition="Resolved",
            firedDateTime="2019-03-20T00:00:00Z",
        ),
        POLICY,
    )
    assert resolved.event_key != later.event_key
    assert resolved.event_key == refired_same_resolution.event_key
    assert resolved.event_key.startswith("azure-monitor|Resolved|")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "alert must be a JSON object, got list"),
        (
            {"schemaId": "other", "data": {}},
            "alert schemaId must be 'azureMonitorCommonAlertSchema', got 'other'",
        ),
        ({"schemaId": "azureMonitorCommonAlertSchema"}, "alert: missing object 'data'"),
        (
            {"schemaId": "azureMonitorCommonAlertSchema", "data": {}},
            "alert: missing object 'data.essentials'",
        ),
        (
            {"schemaId": "azureMonitorCommonAlertSchema", "data": {"essentials": "x"}},
            "alert.data: 'essentials' must be an object, got str",
        ),
    ],
)
def test_malformed_alerts_are_bad_events(body: Any, problem: str) -> None:
    with pytest.raises(BadEvent, match=f"^{re.escape(problem)}$"):
        parse_alert(body, POLICY)


def test_a_monitor_condition_other_than_fired_or_resolved_is_a_bad_event() -> None:
    with pytest.raises(
        BadEvent,
        match=r"^alert: monitorCondition must be 'Fired' or 'Resolved', got 'Acknowledged'$",
    ):
        parse_alert(alert(alertRule="credit-drift", monitorCondition="Acknowledged"), POLICY)


# --- payload text is typed and bounded -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (True, "'modelVersion' must be a string, got bool"),
        ({"v": 1}, "'modelVersion' must be a string, got dict"),
        ("9" * (MAX_TEXT + 1), f"'modelVersion' is longer than {MAX_TEXT} characters"),
    ],
)
def test_a_field_of_the_wrong_type_or_too_long_is_a_bad_event(value: Any, problem: str) -> None:
    event = payloads.model_registered("credit", "1", {})
    event["data"]["modelVersion"] = value
    with pytest.raises(BadEvent, match=f"^ModelRegistered event data: {re.escape(problem)}$"):
        normalise(event)


@pytest.mark.parametrize(
    ("value", "text"), [(7, "7"), (2.5, "2.5"), ("9" * MAX_TEXT, "9" * MAX_TEXT)]
)
def test_numbers_and_text_up_to_the_limit_are_read_as_text(value: Any, text: str) -> None:
    event = payloads.model_registered("credit", "1", {})
    event["data"]["modelVersion"] = value
    assert normalise(event).version == text


def test_tags_keep_scalars_as_text_and_drop_nested_values() -> None:
    tags = {"a": 1, "b": None, "c": {"x": 1}, "d": [1], "k" * 300: "v" * (MAX_TEXT + 10), "e": True}
    event = payloads.model_registered("credit", "1", {})
    event["data"]["modelTags"] = tags
    message = normalise(event)
    assert message.tags == {"a": "1", "b": "", "k" * 256: "v" * MAX_TEXT, "e": "True"}


@pytest.mark.parametrize("value", [["a"], "text"])
def test_tags_that_are_not_an_object_are_a_bad_event(value: Any) -> None:
    event = payloads.model_registered("credit", "1", {})
    event["data"]["modelTags"] = value
    kind = type(value).__name__
    expected = f"ModelRegistered event data: 'modelTags' must be an object, got {kind}"
    with pytest.raises(BadEvent, match=f"^{re.escape(expected)}$"):
        normalise(event)


def test_absent_tags_are_empty() -> None:
    event = payloads.model_registered("credit", "1", {})
    event["data"]["modelTags"] = None
    assert normalise(event).tags == {}
