"""Builders for delivered payloads, shaped like the public samples and real deliveries."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws"
)
AML = "Microsoft.MachineLearningServices."
RULES = "/subscriptions/x/resourceGroups/rg/providers/microsoft.insights/scheduledqueryrules"
ALERTS = "/subscriptions/x/providers/Microsoft.AlertsManagement/alerts"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def alert(
    rule: str = "credit-drift",
    condition: str = "Fired",
    alert_id: str | None = None,
    fired: str = "2026-01-01T12:00:00Z",
) -> dict[str, Any]:
    body = sample("alerts/common_schema_metric_alert_full.json")
    ess = body["data"]["essentials"]
    ess["alertRule"] = rule
    ess["alertRuleId"] = f"{RULES}/{rule}"
    ess["monitorCondition"] = condition
    ess["alertId"] = alert_id or f"{ALERTS}/{uuid.uuid4()}"
    ess["firedDateTime"] = fired
    return dict(body)


def run_event(
    run_id: str,
    status: str | None = "Completed",
    *,
    event_type: str = "RunStatusChanged",
    tags: dict[str, str] | None = None,
    event_id: str | None = None,
    experiment: str = "credit-retrain",
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "experimentId": "0fa9dfaa",
        "experimentName": experiment,
        "runId": run_id,
        "runType": None,
        "runTags": tags or {},
        "runProperties": {},
    }
    if status is not None:
        data["runStatus"] = status
    return {
        "topic": TOPIC,
        "subject": f"experiments/0fa9dfaa/runs/{run_id}",
        "eventType": AML + event_type,
        "eventTime": "2026-01-01T12:00:00Z",
        "id": event_id or str(uuid.uuid4()),
        "data": data,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def model_registered(
    model: str, version: str, tags: dict[str, str], event_id: str | None = None
) -> dict[str, Any]:
    return {
        "topic": TOPIC,
        "subject": f"models/{model}:{version}",
        "eventType": AML + "ModelRegistered",
        "eventTime": "2026-01-01T12:00:00Z",
        "id": event_id or str(uuid.uuid4()),
        "data": {
            "modelName": model,
            "modelVersion": version,
            "modelTags": tags,
            "modelProperties": {},
        },
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def monitor_breach(monitor: str = "credit-monitor", event_id: str | None = None) -> dict[str, Any]:
    event = run_event(
        f"{monitor}-run-1",
        "Failed",
        experiment=monitor,
        event_id=event_id,
        tags={
            "azureml_modelmonitor_threshold_breached": f"Monitor {monitor} signal data-drift "
            "has failed due to one or more features violating metric thresholds"
        },
    )
    return event


def to_cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "data": event["data"],
    }


def evaluation(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    n: int = 1000,
    champion_version: str = "1",
) -> dict[str, Any]:
    return {
        "schema": "autopilot.evaluation/v1",
        "model": "credit",
        "n": n,
        "champion": {"version": champion_version, "metrics": champion} if champion else None,
        "challenger": {"metrics": challenger},
    }
