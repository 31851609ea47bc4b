"""Watching the demo from outside: the audit log as it lands, cycles, alerts sent by hand."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from autopilot.demo_world import CLOSED, MODEL, DemoFailed, say
from autopilot.serve import LocalService, post_json


class Progress:
    """Prints each new audit record as it lands, like a live log."""

    def __init__(self, service: LocalService) -> None:
        self.service = service
        self.seen: set[int] = set()

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            self.service.url + path,
            headers={"x-functions-key": self.service.key},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def show_new(self) -> None:
        """Print audit records not shown yet, in order (ignored events are left to the log)."""
        for record in self.api("/api/audit")["records"]:
            if record["seq"] in self.seen:
                continue
            self.seen.add(record["seq"])
            if record["kind"] == "ignored":
                continue
            stamp = record["time"][11:19]
            reason = f" — {record['reason']}" if record["reason"] else ""
            say(f"   {stamp} [{record['kind']}] {record['summary']}{reason}"[:220])

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.show_new()
            if predicate():
                self.show_new()
                return
            time.sleep(0.5)
        raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")

    def cycles(self) -> list[dict[str, Any]]:
        return list(self.api(f"/api/cycles?model={MODEL}")["cycles"])


def fire_alert(
    service: LocalService, rule: str, signal_type: str, service_name: str, context: dict[str, Any]
) -> None:
    """POST a Fired common-alert-schema alert, as an Azure Monitor action group would."""
    import uuid

    essentials = {
        "alertId": f"/subscriptions/local/providers/Microsoft.AlertsManagement/alerts/"
        f"{uuid.uuid4()}",
        "alertRule": rule,
        "severity": "Sev2",
        "signalType": signal_type,
        "monitorCondition": "Fired",
        "monitoringService": service_name,
        "firedDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    body = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials, "alertContext": context},
    }
    post_json(service.url + "/api/alerts", service.key, json.dumps(body).encode())


def refire(service: LocalService) -> None:
    """The drift rule fires again (a stateless log alert fires every evaluation period)."""
    fire_alert(service, f"autopilot-drift-{MODEL}", "Log", "Log Analytics", {})


def fire_health_alert(service: LocalService) -> None:
    """The endpoint's 5xx metric alert, bound in the policy as a health alert."""
    condition = {
        "windowSize": "PT5M",
        "allOf": [
            {
                "metricName": "RequestsPerMinute",
                "operator": "GreaterThan",
                "threshold": "10",
                "timeAggregation": "Total",
                "metricValue": 42,
                "dimensions": [{"name": "statusCodeClass", "value": "5xx"}],
            }
        ],
    }
    fire_alert(
        service,
        f"{MODEL}-endpoint-errors",
        "Metric",
        "Platform",
        {"conditionType": "SingleResourceMultipleMetricCriteria", "condition": condition},
    )


def new_cycle(progress: Progress, before: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress.show_new()
        new = [c for c in progress.cycles() if c["id"] not in before]
        if new:
            return str(new[-1]["id"])
        time.sleep(0.3)
    raise DemoFailed("no signal started a cycle")


def trigger_of(progress: Progress, cycle: str) -> dict[str, Any]:
    """The evidence that started ``cycle`` (its signal's source and what it measured)."""
    trigger = progress.api(f"/api/cycles/{cycle}")["cycle"].get("trigger")
    return trigger if isinstance(trigger, dict) else {}


def state_of(progress: Progress, cycle: str) -> str:
    return str(progress.api(f"/api/cycles/{cycle}")["cycle"]["state"])


def inject_errors_when_rolling(progress: Progress, platform: Any, cycle: str) -> None:
    """Scenario 'unhealthy': the new deployment answers 60% of requests with errors."""
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        data = progress.api(f"/api/cycles/{cycle}")["cycle"]
        if data["state"] == "ROLLING_OUT" and data.get("rollout"):
            platform.set_faults(MODEL, data["rollout"]["deployment"], inject_errors=0.6)
            say(f"   (scenario: {data['rollout']['deployment']} now fails 60% of its requests)")
            return
        if data["state"] in CLOSED:
            return
        time.sleep(0.3)
