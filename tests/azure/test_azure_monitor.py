"""Azure Monitor adapters through the real query SDKs, answered by local fakes.

Response shapes: the metrics batch API example (Microsoft.Insights data-plane 2024-02-01,
``MetricBatchExample.json``) and the Log Analytics query API response format (tables of
columns and rows; a 200 with an ``error`` object for partial results).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.azure_monitor import AzureMonitorMetrics, LogAnalyticsQueries
from shared.errors import PermanentError, SettingsError, TransientError
from shared.model import HealthSample
from shared.ports import Metrics
from shared.sequential import RequestSample
from tests.azure.fake_arm import Drop, FakeAzure, FakeCredential, Recorded, Reply

SUB = "00000000-1111-2222-3333-444444444444"
ENDPOINT_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-ml/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws-ml/onlineEndpoints/churn-ep"
)
METRICS_HOST = "westeurope.metrics.monitor.azure.com"
BATCH_PATH = f"/subscriptions/{SUB}/metrics:getBatch"
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=3)
LA_HOST = "api.loganalytics.io"
WORKSPACE_ID = "b9c3a1de-0000-4000-8000-000000000001"
LA_PATH = f"/v1/workspaces/{WORKSPACE_ID}/query"


def _points(values: list[float | None]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for minute, value in enumerate(values):
        point: dict[str, Any] = {"timeStamp": (START + timedelta(minutes=minute)).isoformat()}
        if value is not None:
            point["average"] = value
        points.append(point)
    return points


def _metric(name: str, unit: str, series: list[tuple[dict[str, str], list[float | None]]]) -> Any:
    return {
        "id": f"{ENDPOINT_ID}/providers/Microsoft.Insights/metrics/{name}",
        "type": "Microsoft.Insights/metrics",
        "name": {"value": name, "localizedValue": name},
        "displayDescription": name,
        "unit": unit,
        "timeseries": [
            {
                "metadatavalues": [
                    {"name": {"value": k, "localizedValue": k}, "value": v} for k, v in dims.items()
                ],
                "data": _points(values),
            }
            for dims, values in series
        ],
        "errorCode": "Success",
    }


def _batch(metric: dict[str, Any]) -> dict[str, Any]:
    return {
        "values": [
            {
                "starttime": START.isoformat(),
                "endtime": END.isoformat(),
                "interval": "PT1M",
                "value": [metric],
                "namespace": "microsoft.machinelearningservices/workspaces/onlineendpoints",
                "resourceregion": "westeurope",
                "resourceid": ENDPOINT_ID,
            }
        ]
    }


def metrics_service(rec: Recorded) -> Reply:
    """Per-deployment RequestsPerMinute by status class, and RequestLatency_P95."""
    name = rec.query["metricnames"]
    if name == "RequestsPerMinute":
        return Reply(
            200,
            _batch(
                _metric(
                    name,
                    "Count",
                    [
                        ({"deployment": "green", "statuscodeclass": "2xx"}, [100, 120, None]),
                        ({"deployment": "green", "statuscodeclass": "4xx"}, [3, 0, None]),
                        ({"deployment": "green", "statuscodeclass": "5xx"}, [2, 5, None]),
                    ],
                )
            ),
        )
    if name == "RequestLatency_P95":
        return Reply(
            200,
            _batch(_metric(name, "Milliseconds", [({"deployment": "green"}, [80.0, 100.0, None])])),
        )
    return Reply(400, {"error": {"code": "BadRequest", "message": f"unknown metric {name}"}})


@pytest.fixture
def metrics(fake: FakeAzure, credential: FakeCredential) -> AzureMonitorMetrics:
    port: Metrics = AzureMonitorMetrics(
        {"churn-ep": ENDPOINT_ID},
        region="westeurope",
        credential=credential,
        transport=fake.transport(),
    )
    assert isinstance(port, AzureMonitorMetrics)
    return port


def test_deployment_health_from_platform_metrics(
    metrics: AzureMonitorMetrics, fake: FakeAzure, credential: FakeCredential
) -> None:
    fake.add("POST", BATCH_PATH, metrics_service, host=METRICS_HOST)

    health = metrics.deployment_health("churn-ep", "green", START, END)

    assert health == HealthSample(requests=230, errors=7, latency_p95_ms=90.0)
    counts, latency = fake.calls("POST", "metrics:getBatch")
    assert counts.api_version == "2024-02-01"
    assert counts.query["metricnamespace"] == (
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    )
    assert counts.query["metricnames"] == "RequestsPerMinute"
    assert counts.query["filter"] == "deployment eq 'green' and statusCodeClass eq '*'"
    assert counts.query["aggregation"] == "Average"
    assert counts.query["interval"] == "PT1M"
    assert counts.query["starttime"].startswith("2026-01-01T12:00:00")
    assert counts.query["endtime"].startswith("2026-01-01T12:03:00")
    assert counts.json() == {"resourceids": [ENDPOINT_ID]}
    assert latency.query["metricnames"] == "RequestLatency_P95"
    assert latency.query["filter"] == "deployment eq 'green'"
    assert credential.scopes[0] == ("https://metrics.monitor.azure.com/.default",)


def test_error_classes_are_configurable(fake: FakeAzure, credential: FakeCredential) -> None:
    fake.add("POST", BATCH_PATH, metrics_service, host=METRICS_HOST)
    metrics = AzureMonitorMetrics(
        {"churn-ep": ENDPOINT_ID},
        endpoint_url=f"https://{METRICS_HOST}",
        credential=credential,
        transport=fake.transport(),
        error_classes=("4xx", "5xx"),
    )
    assert metrics.deployment_health("churn-ep", "green", START, END).errors == 10


def test_no_traffic_gives_an_empty_sample(metrics: AzureMonitorMetrics, fake: FakeAzure) -> None:
    def empty(rec: Recorded) -> Reply:
        unit = "Count" if rec.query["metricnames"] == "RequestsPerMinute" else "Milliseconds"
        return Reply(200, _batch(_metric(rec.query["metricnames"], unit, [])))

    fake.add("POST", BATCH_PATH, empty, host=METRICS_HOST)
    assert metrics.deployment_health("churn-ep", "green", START, END) == HealthSample(0, 0, None)


def test_metrics_throttling_is_retried(metrics: AzureMonitorMetrics, fake: FakeAzure) -> None:
    throttled = Reply(
        429,
        {"error": {"code": "TooManyRequests", "message": "Throttled"}},
        {"Retry-After": "1"},
    )
    fake.add("POST", BATCH_PATH, throttled, Drop(), metrics_service, host=METRICS_HOST)
    assert metrics.deployment_health("churn-ep", "green", START, END).requests == 230
    assert len(fake.calls("POST", "metrics:getBatch")) == 4  # 429, drop, then the 2 queries


def test_metrics_forbidden_is_permanent(metrics: AzureMonitorMetrics, fake: FakeAzure) -> None:
    forbidden = Reply(
        403,
        {"error": {"code": "AuthorizationFailed", "message": "no Monitoring Reader role"}},
    )
    fake.add("POST", BATCH_PATH, forbidden, host=METRICS_HOST)
    with pytest.raises(PermanentError, match="HTTP 403"):
        metrics.deployment_health("churn-ep", "green", START, END)
    assert len(fake.calls("POST")) == 1


def test_unknown_endpoint_is_a_settings_error(metrics: AzureMonitorMetrics) -> None:
    with pytest.raises(SettingsError, match="other-ep"):
        metrics.deployment_health("other-ep", "green", START, END)


@pytest.mark.parametrize("deployment", ["green' or deployment eq '*", "a b", ""])
def test_deployment_names_cannot_inject_filters(
    metrics: AzureMonitorMetrics, deployment: str, fake: FakeAzure
) -> None:
    with pytest.raises(PermanentError):
        metrics.deployment_health("churn-ep", deployment, START, END)
    assert fake.requests == []


def test_metrics_need_a_region_or_endpoint() -> None:
    with pytest.raises(SettingsError):
        AzureMonitorMetrics({"churn-ep": ENDPOINT_ID})


def test_window_must_not_be_empty(metrics: AzureMonitorMetrics) -> None:
    with pytest.raises(PermanentError):
        metrics.deployment_health("churn-ep", "green", END, START)


# -- Log Analytics --


def table(columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "tables": [
            {
                "name": "PrimaryResult",
                "columns": [{"name": n, "type": t} for n, t in columns],
                "rows": rows,
            }
        ]
    }


@pytest.fixture
def logs(fake: FakeAzure, credential: FakeCredential) -> LogAnalyticsQueries:
    return LogAnalyticsQueries(WORKSPACE_ID, credential=credential, transport=fake.transport())


def test_count_runs_the_query_over_the_timespan(
    logs: LogAnalyticsQueries, fake: FakeAzure, credential: FakeCredential
) -> None:
    fake.add("POST", LA_PATH, Reply(200, table([("Count", "long")], [[17]])), host=LA_HOST)

    assert logs.count("AmlOnlineEndpointTrafficLog | count", (START, END)) == 17

    (call,) = fake.calls("POST", host=LA_HOST)
    body = call.json()
    assert body["query"] == "AmlOnlineEndpointTrafficLog | count"
    assert body["timespan"].startswith("2026-01-01T12:00:00")
    assert "2026-01-01T12:03:00" in body["timespan"]
    assert call.headers["Prefer"] == "wait=60"
    assert credential.scopes[0] == ("https://api.loganalytics.io/.default",)


def test_count_of_no_rows_is_zero(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    fake.add("POST", LA_PATH, Reply(200, table([("Count", "long")], [])), host=LA_HOST)
    assert logs.count("T | count", timedelta(hours=1)) == 0


def test_count_of_text_is_permanent(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    fake.add("POST", LA_PATH, Reply(200, table([("Name", "string")], [["x"]])), host=LA_HOST)
    with pytest.raises(PermanentError):
        logs.count("T | project Name", timedelta(hours=1))


def test_partial_results_are_transient(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    partial = table([("Count", "long")], [[3]])
    partial["error"] = {
        "code": "PartialError",
        "message": "There were some errors when processing your query.",
        "details": [{"code": "EngineError", "message": "Query exceeded memory limit"}],
    }
    fake.add("POST", LA_PATH, Reply(200, partial), host=LA_HOST)
    with pytest.raises(TransientError, match="partial result"):
        logs.count("T | count", timedelta(hours=1))


def test_bad_query_is_permanent_and_not_retried(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    semantic = {
        "error": {
            "code": "BadArgumentError",
            "message": "The request had some invalid properties",
            "innererror": {
                "code": "SemanticError",
                "message": "'where' operator: Failed to resolve table "
                "'AmlOnlineEndpointTrafficLog'",
            },
        }
    }
    fake.add("POST", LA_PATH, Reply(400, semantic), host=LA_HOST)
    with pytest.raises(PermanentError):
        logs.count("AmlOnlineEndpointTrafficLog | count", timedelta(hours=1))
    assert len(fake.calls("POST")) == 1


def test_log_query_500_then_success(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    fake.add(
        "POST",
        LA_PATH,
        Reply(500, {"error": {"code": "InternalServerError", "message": "oops"}}),
        Reply(200, table([("Count", "long")], [[2]])),
        host=LA_HOST,
    )
    assert logs.count("T | count", timedelta(hours=1)) == 2


def test_deployment_health_from_the_traffic_log(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    result = table(
        [("requests", "long"), ("errors", "long"), ("p95", "real")],
        [[400, 6, 212.5]],
    )
    fake.add("POST", LA_PATH, Reply(200, result), host=LA_HOST)

    health = logs.deployment_health_from_logs("churn-ep", "green", START, END)

    assert health == HealthSample(requests=400, errors=6, latency_p95_ms=212.5)
    query = fake.calls("POST", host=LA_HOST)[0].json()["query"]
    assert query.startswith("AmlOnlineEndpointTrafficLog\n")
    # The adapter reports deployment names lower-cased (as azure-ai-ml does): compare =~ so a
    # deployment named "Green" on Azure still finds its rows.
    assert 'EndpointName == "churn-ep" and DeploymentName =~ "green"' in query
    assert "ResponseCode >= 500 or ModelStatusCode >= 500" in query
    assert "percentile(TotalDurationMs, 95)" in query


def test_traffic_log_without_requests(logs: LogAnalyticsQueries, fake: FakeAzure) -> None:
    result = table([("requests", "long"), ("errors", "long"), ("p95", "real")], [[0, 0, None]])
    fake.add("POST", LA_PATH, Reply(200, result), host=LA_HOST)
    assert logs.deployment_health_from_logs("churn-ep", "green", START, END) == HealthSample(
        0, 0, None
    )


@pytest.mark.parametrize(("counts", "persists"), [([3, 1, 2], True), ([3, 0, 2], False)])
def test_drift_persists_over_consecutive_windows(
    logs: LogAnalyticsQueries, fake: FakeAzure, counts: list[int], persists: bool
) -> None:
    fake.add(
        "POST",
        LA_PATH,
        *[Reply(200, table([("Count", "long")], [[c]])) for c in counts],
        host=LA_HOST,
    )
    end = datetime(2026, 1, 10, tzinfo=UTC)
    assert logs.drift_persists("Drift | count", 3, window=timedelta(days=1), end=end) is persists
    spans = [json.loads(c.body)["timespan"] for c in fake.calls("POST", host=LA_HOST)]
    assert spans[0].startswith("2026-01-09T00:00:00")
    assert len(spans) == (3 if persists else 2)  # stops at the first clean window


def test_drift_needs_a_window(logs: LogAnalyticsQueries) -> None:
    with pytest.raises(PermanentError):
        logs.drift_persists("Drift | count", 0)


def test_request_rows_from_the_traffic_log_for_the_sequential_judge(
    fake: FakeAzure, credential: FakeCredential, logs: LogAnalyticsQueries
) -> None:
    """Per-request rows through the metrics port: the real LogsQueryClient over the wire."""
    result = table(
        [("TimeGenerated", "datetime"), ("error", "int"), ("ms", "real")],
        [[(START + timedelta(seconds=i)).isoformat(), int(i == 2), 100.0 + i] for i in range(5)],
    )
    fake.add("POST", LA_PATH, Reply(200, result), host=LA_HOST)
    port: Metrics = AzureMonitorMetrics(
        {"churn-ep": ENDPOINT_ID}, region="westeurope", credential=credential, logs=logs
    )

    sample = port.deployment_requests("churn-ep", "Green", START, END)

    assert sample == RequestSample(5, 1, (100.0, 101.0, 102.0, 103.0, 104.0))
    call = fake.calls("POST", host=LA_HOST)[0].json()
    assert call["query"].startswith("AmlOnlineEndpointTrafficLog\n")
    assert 'EndpointName == "churn-ep" and DeploymentName =~ "Green"' in call["query"]
    assert "ResponseCode >= 500 or ModelStatusCode >= 500" in call["query"]
    assert call["timespan"].startswith("2026-01-01T12:00:00")


def test_request_rows_without_a_workspace_name_the_setting(metrics: AzureMonitorMetrics) -> None:
    with pytest.raises(SettingsError, match="AUTOPILOT_LOG_WORKSPACE_ID"):
        metrics.deployment_requests("churn-ep", "green", START, END)


def test_request_rows_refuse_a_name_that_could_change_the_query(
    logs: LogAnalyticsQueries, fake: FakeAzure
) -> None:
    with pytest.raises(PermanentError):
        logs.deployment_requests("churn-ep", 'green" or 1==1 //', START, END)
    assert fake.calls("POST") == []
