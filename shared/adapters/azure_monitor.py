"""Deployment health and drift confirmation from Azure Monitor.

- :class:`AzureMonitorMetrics` implements the ``Metrics`` port with azure-monitor-querymetrics'
  ``MetricsClient`` over the platform metrics Azure ML online endpoints publish
  (resource type ``Microsoft.MachineLearningServices/workspaces/onlineEndpoints``):
  ``RequestsPerMinute`` split by the ``statusCodeClass`` dimension, and ``RequestLatency_P95``,
  both filtered to one deployment by the ``deployment`` dimension.
- :class:`LogAnalyticsQueries` runs KQL with azure-monitor-query's ``LogsQueryClient``: counts,
  per-deployment health from the ``AmlOnlineEndpointTrafficLog`` table (one row per request),
  and "has the drift signal persisted for N windows".

Names come from the Azure Monitor reference ("Supported metrics for
Microsoft.MachineLearningServices/workspaces/onlineEndpoints" and the
``AmlOnlineEndpointTrafficLog`` table reference). SDK retries are off; ours apply.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import retry as retries
from shared.errors import PermanentError, SettingsError, TransientError
from shared.model import HealthSample
from shared.sequential import RequestSample

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport
    from azure.monitor.query import LogsQueryClient
    from azure.monitor.querymetrics import MetricsClient, MetricsQueryResult

log = logging.getLogger(__name__)

METRIC_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
REQUESTS_METRIC = "RequestsPerMinute"
LATENCY_P95_METRIC = "RequestLatency_P95"
DEPLOYMENT_DIMENSION = "deployment"
STATUS_CLASS_DIMENSION = "statusCodeClass"
TRAFFIC_TABLE = "AmlOnlineEndpointTrafficLog"
MAX_REQUEST_ROWS = 200_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def _checked_name(kind: str, value: str) -> str:
    """Endpoint and deployment names go into filters and KQL: allow only what Azure allows."""
    if not _NAME.match(value):
        raise PermanentError(f"{kind} name {value!r} is not a valid Azure ML name")
    return value


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    if end <= start:
        raise PermanentError(f"health window ends ({end.isoformat()}) before it starts")
    return start, end


class AzureMonitorMetrics:
    """``Metrics`` from Azure Monitor platform metrics of online endpoints.

    ``endpoint_resource_ids`` maps an endpoint name to its ARM resource id. ``endpoint_url``
    is the regional metrics endpoint, ``https://<region>.metrics.monitor.azure.com``, which
    must be the endpoints' region (give ``region`` to build it). Per-request data (the
    sequential canary judge) comes from ``logs``, the workspace the endpoints' traffic log
    (``AmlOnlineEndpointTrafficLog``) is sent to; platform metrics have no per-request rows.
    """

    def __init__(
        self,
        endpoint_resource_ids: Mapping[str, str],
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        credential: TokenCredential | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicy = retries.READ,
        error_classes: Sequence[str] = ("5xx",),
        granularity: timedelta = timedelta(minutes=1),
        logs: LogAnalyticsQueries | None = None,
    ) -> None:
        self.logs = logs
        if not endpoint_url:
            if not region:
                raise SettingsError("Azure Monitor metrics need endpoint_url or region")
            endpoint_url = f"https://{region.strip().lower()}.metrics.monitor.azure.com"
        self.endpoint_url = endpoint_url
        self.resource_ids = dict(endpoint_resource_ids)
        self._credential = credential
        self._transport = transport
        self._retry = retry
        self._error_classes = {c.lower() for c in error_classes}
        self._granularity = granularity
        self._client: MetricsClient | None = None

    @property
    def client(self) -> MetricsClient:
        if self._client is None:
            from azure.monitor.querymetrics import MetricsClient

            self._client = MetricsClient(
                self.endpoint_url,
                _credential_or_default(self._credential),
                **_sdk_kwargs(self._transport),
            )
        return self._client

    def _resource_id(self, endpoint: str) -> str:
        try:
            return self.resource_ids[endpoint]
        except KeyError:
            raise SettingsError(
                f"no Azure resource id configured for endpoint {endpoint!r}"
            ) from None

    def deployment_health(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> HealthSample:
        resource_id = self._resource_id(endpoint)
        deployment = _checked_name("deployment", deployment)
        start, end = _window(start, end)
        where = f"{DEPLOYMENT_DIMENSION} eq '{deployment}'"

        counts = self._query(
            resource_id,
            REQUESTS_METRIC,
            f"{where} and {STATUS_CLASS_DIMENSION} eq '*'",
            start,
            end,
            what=f"query {REQUESTS_METRIC} of {endpoint}/{deployment}",
        )
        requests = errors = 0.0
        for series in _series(counts, REQUESTS_METRIC):
            total = sum(point.average or 0.0 for point in series.data)
            requests += total
            status_class = _dimension(series.metadata_values, STATUS_CLASS_DIMENSION)
            if status_class.lower() in self._error_classes:
                errors += total

        latency = self._query(
            resource_id,
            LATENCY_P95_METRIC,
            where,
            start,
            end,
            what=f"query {LATENCY_P95_METRIC} of {endpoint}/{deployment}",
        )
        values = [
            point.average
            for series in _series(latency, LATENCY_P95_METRIC)
            for point in series.data
            if point.average is not None
        ]
        p95 = sum(values) / len(values) if values else None
        return HealthSample(requests=round(requests), errors=round(errors), latency_p95_ms=p95)

    def deployment_requests(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> RequestSample:
        """Per-request rows from the traffic log (Log Analytics); without a workspace this is
        a settings error naming the setting, not a silent empty sample."""
        if self.logs is None:
            raise SettingsError(
                "rollout.analysis: sequential needs per-request rows: set "
                "AUTOPILOT_LOG_WORKSPACE_ID to the workspace that receives the endpoints' "
                f"{TRAFFIC_TABLE} (diagnostic setting of the online endpoint)"
            )
        return self.logs.deployment_requests(endpoint, deployment, start, end)

    def _query(
        self,
        resource_id: str,
        metric: str,
        filter_: str,
        start: datetime,
        end: datetime,
        *,
        what: str,
    ) -> list[MetricsQueryResult]:
        return retries.call_with_retry(
            self._retry,
            self.client.query_resources,
            resource_ids=[resource_id],
            metric_namespace=METRIC_NAMESPACE,
            metric_names=[metric],
            timespan=(start, end),
            granularity=self._granularity,
            aggregations=["Average"],
            filter=filter_,
            what=what,
        )


def _series(results: list[MetricsQueryResult], metric: str) -> list[Any]:
    found = []
    for result in results:
        for item in result.metrics:
            if str(item.name).lower() == metric.lower():
                found.extend(item.timeseries)
    return found


def _dimension(values: Mapping[str, str] | None, name: str) -> str:
    """A dimension value; Azure Monitor returns dimension names lower-cased."""
    for key, value in (values or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return ""


class LogAnalyticsQueries:
    """KQL over a Log Analytics workspace (by its workspace id, a GUID)."""

    def __init__(
        self,
        workspace_id: str,
        *,
        credential: TokenCredential | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        endpoint: str | None = None,
        retry: retries.RetryPolicy = retries.READ,
        server_timeout_s: int = 60,
    ) -> None:
        if not workspace_id:
            raise SettingsError("Log Analytics workspace id is empty")
        self.workspace_id = workspace_id
        self._credential = credential
        self._transport = transport
        self._endpoint = endpoint
        self._retry = retry
        self._server_timeout_s = server_timeout_s
        self._client: LogsQueryClient | None = None

    @property
    def client(self) -> LogsQueryClient:
        if self._client is None:
            from azure.monitor.query import LogsQueryClient

            kwargs = _sdk_kwargs(self._transport)
            if self._endpoint:
                kwargs["endpoint"] = self._endpoint
            self._client = LogsQueryClient(_credential_or_default(self._credential), **kwargs)
        return self._client

    def rows(
        self, query: str, timespan: timedelta | tuple[datetime, datetime], *, what: str = ""
    ) -> list[dict[str, Any]]:
        """The first result table as a list of {column: value}; partial results raise."""
        from azure.monitor.query import LogsQueryStatus

        what = what or "log query"
        result = retries.call_with_retry(
            self._retry,
            self.client.query_workspace,
            self.workspace_id,
            query,
            timespan=timespan,
            server_timeout=self._server_timeout_s,
            what=what,
        )
        if result.status == LogsQueryStatus.PARTIAL:
            error = getattr(result, "partial_error", None)
            detail = getattr(error, "message", None) or "the service returned partial results"
            raise TransientError(f"{what}: partial result: {retries.redact(str(detail))}")
        tables = getattr(result, "tables", None) or []
        if not tables:
            return []
        table = tables[0]
        return [dict(zip(table.columns, list(row), strict=False)) for row in table.rows]

    def count(self, query: str, timespan: timedelta | tuple[datetime, datetime]) -> int:
        """The single number a query like ``... | count`` returns (0 when it returns no row)."""
        rows = self.rows(query, timespan, what="count query")
        if not rows:
            return 0
        value = next(iter(rows[0].values()), None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PermanentError(f"count query returned {value!r}, not a number")
        return int(value)

    def deployment_health_from_logs(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> HealthSample:
        """Health of one deployment from its request log rows (the traffic log must be on)."""
        endpoint = _checked_name("endpoint", endpoint)
        deployment = _checked_name("deployment", deployment)
        start, end = _window(start, end)
        query = (
            f"{TRAFFIC_TABLE}\n"
            f'| where EndpointName == "{endpoint}" and DeploymentName =~ "{deployment}"\n'
            "| summarize requests = count(), "
            "errors = countif(ResponseCode >= 500 or ModelStatusCode >= 500), "
            "p95 = percentile(TotalDurationMs, 95)"
        )
        # The query's timespan bounds TimeGenerated; no time filter in the KQL itself.
        rows = self.rows(query, (start, end), what=f"traffic log of {endpoint}/{deployment}")
        row = rows[0] if rows else {}
        requests = int(row.get("requests") or 0)
        p95 = row.get("p95")
        return HealthSample(
            requests=requests,
            errors=int(row.get("errors") or 0),
            latency_p95_ms=float(p95) if requests and p95 is not None else None,
        )

    def deployment_requests(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> RequestSample:
        """Every request row of one deployment: error flag and ``TotalDurationMs``.

        At most ``MAX_REQUEST_ROWS`` rows (the oldest first): the judge looks every few
        seconds, well before a window holds that many.
        """
        endpoint = _checked_name("endpoint", endpoint)
        deployment = _checked_name("deployment", deployment)
        start, end = _window(start, end)
        query = (
            f"{TRAFFIC_TABLE}\n"
            f'| where EndpointName == "{endpoint}" and DeploymentName =~ "{deployment}"\n'
            "| project TimeGenerated, "
            "error = toint(ResponseCode >= 500 or ModelStatusCode >= 500), "
            "ms = todouble(TotalDurationMs)\n"
            f"| order by TimeGenerated asc\n| take {MAX_REQUEST_ROWS}"
        )
        rows = self.rows(query, (start, end), what=f"request rows of {endpoint}/{deployment}")
        latencies = tuple(float(r["ms"]) for r in rows if r.get("ms") is not None)
        errors = sum(1 for r in rows if r.get("error"))
        return RequestSample(len(rows), errors, latencies)

    def drift_persists(
        self,
        query: str,
        windows: int,
        *,
        window: timedelta = timedelta(days=1),
        end: datetime | None = None,
    ) -> bool:
        """Whether ``query`` finds drift (a count > 0) in each of the last ``windows`` windows.

        ``query`` is a KQL count over the drift signal (for example the model monitor's
        breaches); it is run once per window, newest first, stopping at the first clean one.
        """
        if windows < 1:
            raise PermanentError(f"drift confirmation needs at least one window, got {windows}")
        end = end or datetime.now(UTC)
        for index in range(windows):
            stop = end - index * window
            if self.count(query, (stop - window, stop)) <= 0:
                log.info("drift not present in window %d of %d", index + 1, windows)
                return False
        return True


def _credential_or_default(credential: TokenCredential | None) -> TokenCredential:
    if credential is not None:
        return credential
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _sdk_kwargs(transport: HttpTransport[Any, Any] | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"retry_total": 0}
    if transport is not None:
        kwargs["transport"] = transport
    return kwargs
