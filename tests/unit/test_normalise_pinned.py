"""Each delivered event becomes exactly the message a user expects, whole: its model, signal,
evidence, the event type an ignored event is audited under, and the event key that makes a
redelivery a duplicate. Built from the public samples (tests/payloads.py shapes the rest)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.envelope import envelope_from_dict
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    HealthAlertFired,
    JobStatusChanged,
    Message,
    ModelRegistered,
    SignalResolved,
)
from shared.normalise import normalise_azureml, parse_alert
from tests import payloads
from tests.fakes import make_policy

POLICY = make_policy()
AML = "Microsoft.MachineLearningServices."
AUTOML_RUN = "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"


def grid(kind: str) -> dict[str, Any]:
    """The documented Event Grid sample of ``kind`` (a fresh copy)."""
    return copy.deepcopy(payloads.sample(f"eventgrid/eventgrid_schema_{kind}.json")[0])


def read(event: dict[str, Any]) -> tuple[Message, str]:
    """The message of ``event`` and the key its delivery is deduplicated by."""
    envelope = envelope_from_dict(event)
    return normalise_azureml(envelope, POLICY), envelope.dedup_key


# --- Azure ML events ------------------------------------------------------------------------


def test_a_registered_model_is_its_name_version_tags_and_event_key() -> None:
    message, key = read(grid("ModelRegistered"))
    tags = {"area": "diabetes", "type": "regression"}
    assert message == ModelRegistered("sklearn_regression_model", "20", tags, key)


@pytest.mark.parametrize(
    ("kind", "status"), [("RunCompleted", "Completed"), ("RunStatusChanged", "Failed")]
)
def test_an_ended_run_is_a_job_status_with_its_experiment_and_event_key(
    kind: str, status: str
) -> None:
    message, key = read(grid(kind))
    assert message == JobStatusChanged(AUTOML_RUN, status, {}, key, "automl-local-regression")


@pytest.mark.parametrize("kind", ["RunCompleted", "RunStatusChanged"])
@pytest.mark.parametrize("null", [True, False], ids=["null", "absent"])
def test_a_run_without_an_experiment_name_is_still_a_job_status(kind: str, null: bool) -> None:
    event = grid(kind)
    if null:
        event["data"]["experimentName"] = None
    else:
        del event["data"]["experimentName"]
    message, _ = read(event)
    assert isinstance(message, JobStatusChanged)
    assert (message.job_name, message.experiment) == (AUTOML_RUN, "")


def test_a_run_still_running_is_ignored_under_its_event_type_and_key() -> None:
    event = grid("RunStatusChanged")
    event["data"]["runStatus"] = "Running"
    message, key = read(event)
    expected = EventIgnored(AML + "RunStatusChanged", "run status 'running' is not terminal", key)
    assert message == expected


def test_data_drift_of_a_bound_monitor_is_the_whole_drift_signal() -> None:
    message, key = read(grid("DatasetDriftDetected"))
    evidence = {
        "dataDriftId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        "runId": "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380",
        "driftCoefficient": "0.8350349068479208",
        "startTime": "2019-07-04T00:00:00+00:00",
        "endTime": "2019-07-05T00:00:00+00:00",
    }
    assert message == DriftSignalled("credit", "datadrift", "myDriftMonitor", key, evidence)


def test_data_drift_of_an_unbound_monitor_is_ignored_under_its_event_type_and_key() -> None:
    event = grid("DatasetDriftDetected")
    event["data"]["DataDriftName"] = "someone-elses-monitor"
    message, key = read(event)
    assert isinstance(message, EventIgnored)
    assert (message.event_type, message.event_key) == (AML + "DatasetDriftDetected", key)
    assert message.model is None
    assert message.evidence["runId"] == "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"


def test_a_model_deployment_is_recorded_under_its_event_type_and_key() -> None:
    message, key = read(grid("ModelDeployed"))
    evidence = {
        "service": "my-sklearn-service",
        "models": "sklearn_regression_model:1,sklearn_regression_model:2",
    }
    reason = "deployments are driven by rollouts; recorded only"
    assert message == EventIgnored(AML + "ModelDeployed", reason, key, evidence=evidence)


@pytest.mark.parametrize(
    ("event_type", "recorded"),
    [
        (AML + "ModelDeprecated", AML + "ModelDeprecated"),
        # another publisher's event named like an Azure ML one is not read as one
        ("ModelRegistered", "ModelRegistered"),
        ("Contoso.Models.ModelRegistered", "Contoso.Models.ModelRegistered"),
        ("", "(none)"),
    ],
)
def test_an_event_type_not_handled_is_ignored_under_its_type_and_key(
    event_type: str, recorded: str
) -> None:
    event = grid("ModelRegistered")
    event["eventType"] = event_type
    message, key = read(event)
    assert message == EventIgnored(recorded, "event type not handled", key)


# --- model monitor breaches (a run event tagged by the monitor) ------------------------------


@pytest.mark.parametrize("kind", ["RunStatusChanged", "RunCompleted"])
def test_a_breach_of_a_bound_monitor_is_the_whole_drift_signal(kind: str) -> None:
    event = payloads.monitor_breach("credit-monitor")
    event["eventType"] = AML + kind
    message, key = read(event)
    breach = event["data"]["runTags"]["azureml_modelmonitor_threshold_breached"]
    evidence = {"breach": breach, "run_id": "credit-monitor-run-1"}
    assert message == DriftSignalled("credit", "model_monitor", "credit-monitor", key, evidence)


def test_a_breach_of_an_unknown_monitor_is_ignored_under_its_event_type_and_key() -> None:
    event = payloads.monitor_breach("nobodys-monitor")
    message, key = read(event)
    breach = event["data"]["runTags"]["azureml_modelmonitor_threshold_breached"]
    assert message == EventIgnored(
        AML + "RunStatusChanged",
        "model monitor breach bound to no model in the policy",
        key,
        evidence={"breach": breach, "experiment": "nobodys-monitor"},
    )


# --- Azure Monitor alerts ---------------------------------------------------------------------


def sample_alert(rule: str, condition: str) -> dict[str, Any]:
    body = payloads.sample("alerts/common_schema_metric_alert_full.json")
    body["data"]["essentials"].update(alertRule=rule, monitorCondition=condition)
    return dict(body)


def sample_evidence(rule: str) -> dict[str, Any]:
    """What an alert built from the public sample carries as its evidence."""
    data = payloads.sample("alerts/common_schema_metric_alert_full.json")["data"]
    ess = data["essentials"]
    return {
        "alertId": ess["alertId"],
        "severity": "Sev3",
        "signalType": "Metric",
        "firedDateTime": "2019-03-22T13:58:24.3713213Z",
        "resolvedDateTime": "2019-03-22T14:03:16.2246313Z",
        "conditions": data["alertContext"]["condition"]["allOf"],
        "window": "PT5M",
        "conditionType": "SingleResourceMultipleMetricCriteria",
        "rule": rule,
    }


FIRED = "2019-03-22T13:58:24.3713213Z"
RESOLVED = "2019-03-22T14:03:16.2246313Z"
HEALTH_RESOLVED = (
    "health alert rule 'credit-endpoint-errors' resolved: nothing to undo, "
    "pending drift signals kept"
)


@pytest.mark.parametrize(
    ("rule", "condition", "when", "expected"),
    [
        (
            "credit-drift",
            "Fired",
            FIRED,
            lambda key, ev: DriftSignalled("credit", "alert", "credit-drift", key, ev),
        ),
        (
            "credit-drift",
            "Resolved",
            RESOLVED,
            lambda key, ev: SignalResolved("credit", "alert", "credit-drift", key, ev),
        ),
        (
            "credit-endpoint-errors",
            "Fired",
            FIRED,
            lambda key, ev: HealthAlertFired("credit", "credit-endpoint-errors", key, ev),
        ),
        (
            "credit-endpoint-errors",
            "Resolved",
            RESOLVED,
            lambda key, ev: EventIgnored(
                "alert.Resolved", HEALTH_RESOLVED, key, model="credit", evidence=ev
            ),
        ),
        (
            "WCUS-R2-Gen2",
            "Fired",
            FIRED,
            lambda key, ev: EventIgnored(
                "alert.Fired", "alert rule 'WCUS-R2-Gen2' is bound to no model", key, evidence=ev
            ),
        ),
        (
            "WCUS-R2-Gen2",
            "Resolved",
            RESOLVED,
            lambda key, ev: EventIgnored(
                "alert.Resolved", "alert rule 'WCUS-R2-Gen2' is bound to no model", key, evidence=ev
            ),
        ),
    ],
)
def test_each_alert_is_its_whole_message_keyed_by_its_id_and_time(
    rule: str, condition: str, when: str, expected: Any
) -> None:
    body = sample_alert(rule, condition)
    alert_id = body["data"]["essentials"]["alertId"]
    key = f"azure-monitor|{condition}|{alert_id}|{when}"
    assert parse_alert(body, POLICY) == expected(key, sample_evidence(rule))


def test_two_alerts_firing_at_the_same_time_are_two_events() -> None:
    first = parse_alert(payloads.alert(alert_id=f"{payloads.ALERTS}/a-1"), POLICY)
    second = parse_alert(payloads.alert(alert_id=f"{payloads.ALERTS}/a-2"), POLICY)
    assert first.event_key != second.event_key
    assert f"{payloads.ALERTS}/a-1" in first.event_key


def test_an_alert_with_only_the_required_essentials_is_read_by_its_rule_name() -> None:
    body = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": "a-1",
                "alertRule": "credit-drift",
                "monitorCondition": "Fired",
            }
        },
    }
    evidence = {
        "alertId": "a-1",
        "severity": None,
        "signalType": None,
        "firedDateTime": None,
        "resolvedDateTime": None,
        "rule": "credit-drift",
    }
    expected = DriftSignalled(
        "credit", "alert", "credit-drift", "azure-monitor|Fired|a-1|", evidence
    )
    assert parse_alert(body, POLICY) == expected
