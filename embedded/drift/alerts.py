"""Drift alerts as Azure Monitor sends them: the common alert schema, log search V2 shape."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from embedded.drift.statistics import LOWER_BREACHES, DriftReport, FeatureDrift
from embedded.events import SUBSCRIPTION, WORKSPACE_ID, utc_iso


def iso_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H"
    if seconds % 60 == 0:
        return f"PT{seconds // 60}M"
    return f"PT{seconds}S"


def alert_rule_id(rule: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/local/providers/"
        f"microsoft.insights/scheduledqueryrules/{rule}"
    )


def _criterion(
    endpoint: str, feature: FeatureDrift, metric: str, threshold: float
) -> dict[str, Any]:
    """One ``condition.allOf`` entry: a (feature, statistic) against its threshold."""
    return {
        "searchQuery": (
            f"AutopilotEndpointInputs | where Endpoint == '{endpoint}' "
            f"| summarize {metric}({feature.feature}) against baseline"
        ),
        "metricMeasureColumn": metric,
        "targetResourceTypes": "['Microsoft.MachineLearningServices/workspaces/onlineEndpoints']",
        "operator": "LessThan" if metric in LOWER_BREACHES else "GreaterThan",
        "threshold": str(threshold),
        "timeAggregation": "Maximum",
        "dimensions": [
            {"name": "feature", "value": feature.feature},
            {"name": "featureType", "value": feature.kind},
            {"name": "statistic", "value": metric},
        ],
        "metricValue": round(feature.statistics[metric], 6),
        "failingPeriods": {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1},
        "linkToSearchResultsUI": "",
        "linkToFilteredSearchResultsUI": "",
        "linkToSearchResultsAPI": "",
        "linkToFilteredSearchResultsAPI": "",
    }


def _essentials(
    rule: str,
    model: str,
    endpoint: str,
    drifted: list[str],
    condition: str,
    alert_id: str,
    fired_at: datetime,
    severity: str,
) -> dict[str, Any]:
    """The alert's ``essentials`` block (``resolvedDateTime`` is added when Resolved)."""
    return {
        "alertId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/"
        f"{alert_id}",
        "alertRule": rule,
        "alertRuleId": alert_rule_id(rule),
        "severity": severity,
        "signalType": "Log",
        "monitorCondition": condition,
        "monitoringService": "Log Analytics",
        "alertTargetIDs": [f"{WORKSPACE_ID}/onlineEndpoints/{endpoint}"],
        "configurationItems": [endpoint],
        "originAlertId": alert_id,
        "firedDateTime": utc_iso(fired_at),
        "description": (
            f"Data drift on model {model} (endpoint {endpoint}): "
            + (", ".join(drifted) if drifted else "no feature over its threshold")
        ),
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }


def alert_payload(
    *,
    rule: str,
    model: str,
    endpoint: str,
    report: DriftReport,
    condition: Literal["Fired", "Resolved"],
    alert_id: str,
    fired_at: datetime,
    window_start: datetime,
    window_end: datetime,
    severity: str = "Sev2",
    resolved_at: datetime | None = None,
) -> dict[str, Any]:
    """An Azure Monitor common-alert-schema alert in the log search V2 shape.

    ``condition.allOf`` has one entry per (feature, statistic) with a threshold: the breached
    ones when Fired, all of them (now under their thresholds) when Resolved.
    """
    all_of = [
        _criterion(endpoint, feature, metric, threshold)
        for feature in report.features
        for metric, threshold in feature.thresholds.items()
        if metric in feature.statistics and (condition != "Fired" or metric in feature.breaches)
    ]
    drifted = report.drifted_features
    essentials = _essentials(
        rule, model, endpoint, drifted, condition, alert_id, fired_at, severity
    )
    if condition == "Resolved":
        essentials["resolvedDateTime"] = utc_iso(resolved_at or window_end)
    window = (window_end - window_start).total_seconds()
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": essentials,
            "alertContext": {
                "properties": {
                    "model": model,
                    "endpoint": endpoint,
                    "rows": str(report.n),
                    "evidence": json.dumps(report.to_json(), sort_keys=True),
                },
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": iso_duration(window),
                    "allOf": all_of,
                    "windowStartTime": utc_iso(window_start),
                    "windowEndTime": utc_iso(window_end),
                },
            },
            "customProperties": {
                "model": model,
                "endpoint": endpoint,
                "driftedFeatures": ",".join(drifted),
                "rows": str(report.n),
                "source": "autopilot-embedded-drift-monitor",
            },
        },
    }
