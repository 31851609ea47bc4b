"""Build the runtime (services + keys) from settings: where adapters are chosen.

Heavy SDKs and the embedded platform are imported here, inside functions, when first used,
so importing ``function_app`` stays cheap (cold start).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import log_scrub
from shared.errors import SettingsError
from shared.messagebus import Services, Settings
from shared.ports import (
    AuditLog,
    EventPublisher,
    LogQueries,
    Metrics,
    MLPlatform,
    ScoredLog,
    StateStore,
)
from shared.redact import Redactor
from shared.settings import AppSettings, app_path

if TYPE_CHECKING:
    from shared.ground_truth import GroundTruthReader
    from shared.policy import Policy


@dataclass(frozen=True)
class Runtime:
    services: Services
    keys: dict[str, str]  # key name -> key; the name is the actor recorded in the audit log


def embedded_platform(
    data_dir: Path,
    webhook: tuple[str, str] | None = None,
    wrap_sink: Callable[[Any], Any] | None = None,
    redactor: Redactor | None = None,
) -> tuple[MLPlatform, Metrics]:
    """The embedded ML platform and its metrics; events go to ``webhook`` (url, key) if given.

    ``wrap_sink`` wraps the event emitter (``autopilot serve`` puts its chaos sink there).
    """
    from embedded.metrics import LocalMetrics
    from embedded.platform import LocalMLPlatform, WebhookEventSink

    sink: Any = WebhookEventSink(webhook[0], webhook[1]) if webhook else None
    if sink is not None and wrap_sink is not None:
        sink = wrap_sink(sink)
    platform = LocalMLPlatform(
        data_dir / "platform", event_sink=sink, create_endpoints=True, redactor=redactor
    )
    return platform, LocalMetrics(data_dir / "platform")


def azure_adapters(settings: AppSettings) -> tuple[MLPlatform, Metrics]:
    """Azure ML platform and Azure Monitor metrics, with the managed identity."""
    from shared.adapters.azure_ml import AzureMLPlatform
    from shared.adapters.azure_monitor import AzureMonitorMetrics

    az = settings.azure
    platform = AzureMLPlatform(
        az.subscription_id,
        az.resource_group,
        az.workspace,
        deployment_template=str(app_path(az.deployment_template))
        if az.deployment_template
        else None,
    )
    from shared.adapters.azure_monitor import LogAnalyticsQueries

    metrics = AzureMonitorMetrics(
        az.endpoint_resource_ids,
        endpoint_url=az.metrics_endpoint or None,
        region=az.metrics_region or None,
        # per-request rows for rollout.analysis: sequential (the endpoints' traffic log)
        logs=LogAnalyticsQueries(az.log_workspace_id) if az.log_workspace_id else None,
    )
    return platform, metrics


def build_store(settings: AppSettings) -> tuple[StateStore, AuditLog]:
    if settings.store == "table":
        from shared.adapters.table_audit import TableAuditLog
        from shared.adapters.table_store import TableStateStore

        az = settings.azure
        conn = az.table_connection_string or None
        endpoint = None if conn else az.table_endpoint
        audit = TableAuditLog(conn, endpoint=endpoint, shards=settings.audit_shards)
        return TableStateStore(conn, endpoint=endpoint), audit
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return (
        SqliteStateStore(settings.data_dir / "state.db"),
        SqliteAuditLog(settings.data_dir / "audit.db"),
    )


def build_logs(settings: AppSettings, policy: Policy) -> LogQueries | None:
    """Log Analytics when a workspace is set; a policy that confirms with a query needs one."""
    workspace = settings.azure.log_workspace_id
    if workspace:
        from shared.adapters.azure_monitor import LogAnalyticsQueries

        return LogAnalyticsQueries(workspace)
    asking = [name for name, spec in policy.spec.models.items() if spec.confirm.query]
    if asking:
        raise SettingsError(
            f"model(s) {', '.join(asking)} confirm drift with a Log Analytics query "
            "(confirm.query): set AUTOPILOT_LOG_WORKSPACE_ID to the workspace's id"
        )
    return None


def build_scored(settings: AppSettings, policy: Policy) -> ScoredLog | None:
    """The scored-input log that ``estimated_performance`` reads: Azure ML's data collector
    output in the workspace blob datastore when its container is set, else (embedded platform)
    what the local endpoints recorded."""
    url = settings.azure.collector_container_url
    if url:
        from azure.identity import DefaultAzureCredential
        from azure.storage.blob import ContainerClient

        from shared.adapters.collector_blob import CollectorScoredLog

        container = ContainerClient.from_container_url(url, credential=DefaultAzureCredential())
        return CollectorScoredLog(container)
    if settings.platform != "azure":
        from embedded.metrics import LocalScoredLog

        return LocalScoredLog(settings.data_dir / "platform")
    asking = [n for n, s in policy.spec.models.items() if s.signals.estimated_performance]
    if asking:
        raise SettingsError(
            f"model(s) {', '.join(asking)} estimate performance from collected model outputs "
            "(signals.estimated_performance): set AUTOPILOT_COLLECTOR_CONTAINER_URL to the "
            "workspace blob datastore's container URL"
        )
    return None


def build_labels(settings: AppSettings, policy: Policy) -> GroundTruthReader:
    """Where ``ground_truth`` sources are read: local files, and datastore paths in the
    workspace blob datastore's container (``AUTOPILOT_COLLECTOR_CONTAINER_URL``, identity)."""
    from shared.ground_truth import GroundTruthReader, datastore_path

    url = settings.azure.collector_container_url
    if url:
        from azure.identity import DefaultAzureCredential
        from azure.storage.blob import ContainerClient

        from shared.adapters.ground_truth_blob import BlobGroundTruth

        container = ContainerClient.from_container_url(url, credential=DefaultAzureCredential())
        return GroundTruthReader(BlobGroundTruth(container))
    asking = [
        name
        for name, spec in policy.spec.models.items()
        if spec.signals.estimated_performance
        and spec.signals.estimated_performance.ground_truth
        and datastore_path(spec.signals.estimated_performance.ground_truth)
    ]
    if asking:
        raise SettingsError(
            f"model(s) {', '.join(asking)} read ground truth from a datastore path "
            "(estimated_performance.ground_truth: azureml://...): set "
            "AUTOPILOT_COLLECTOR_CONTAINER_URL to the workspace blob datastore's container URL"
        )
    return GroundTruthReader()


def require_request_logs(settings: AppSettings, policy: Policy) -> None:
    """On Azure the sequential canary judge reads per-request rows from Log Analytics:
    refuse to start without the workspace rather than fail at the first canary look."""
    if settings.platform != "azure" or settings.azure.log_workspace_id:
        return
    asking = [
        name
        for name, spec in policy.spec.models.items()
        if spec.rollout is not None and spec.rollout.analysis == "sequential"
    ]
    if asking:
        raise SettingsError(
            f"model(s) {', '.join(asking)} judge canaries sequentially (rollout.analysis: "
            "sequential), which reads AmlOnlineEndpointTrafficLog rows: set "
            "AUTOPILOT_LOG_WORKSPACE_ID to the workspace the endpoints' traffic log goes to"
        )


def build_publisher(settings: AppSettings) -> EventPublisher:
    if settings.azure.events_topic_endpoint:
        from shared.adapters.eventgrid_publisher import EventGridCloudEventPublisher

        return EventGridCloudEventPublisher(settings.azure.events_topic_endpoint)
    from shared.adapters.outbox import OutboxPublisher

    return OutboxPublisher(settings.data_dir / "outbox.jsonl")


def build_services(
    settings: AppSettings,
    *,
    platform: MLPlatform | None = None,
    metrics: Metrics | None = None,
    publisher: EventPublisher | None = None,
    redactor: Redactor | None = None,
) -> Services:
    """Every adapter from settings; arguments given replace the corresponding adapter.
    ``redactor`` (default: the secrets of this process's environment) scrubs stored text and,
    installed process-wide (:mod:`shared.log_scrub`), every log record."""
    from shared.policy import load_policy

    policy = load_policy(settings.require_policy())
    require_request_logs(settings, policy)
    redactor = redactor or Redactor.from_env(os.environ, settings.keys.values())
    log_scrub.install(redactor)  # what it scrubs from stored text it scrubs from log lines too
    if platform is None or metrics is None:
        if settings.platform == "azure":
            chosen, chosen_metrics = azure_adapters(settings)
        else:
            chosen, chosen_metrics = embedded_platform(settings.data_dir, redactor=redactor)
        platform = platform or chosen
        metrics = metrics or chosen_metrics
    logs = build_logs(settings, policy)
    store, audit = build_store(settings)
    return Services(
        store=store,
        audit=audit,
        platform=platform,
        metrics=metrics,
        publisher=publisher or build_publisher(settings),
        policy=policy,
        logs=logs,
        scored=build_scored(settings, policy),
        labels=build_labels(settings, policy),
        settings=Settings(
            stale_after_s=settings.stale_after_s,
            delivery_retention_s=settings.delivery_retention_s,
        ),
        redactor=redactor,
    )


def runtime_from_settings(env: Mapping[str, str] | None = None) -> Runtime:
    env = os.environ if env is None else env
    settings = AppSettings.from_env(env)
    if not settings.keys:
        raise SettingsError(
            "AUTOPILOT_FUNCTION_KEYS is empty: set name=key pairs (the name is the audit actor)"
        )
    return Runtime(build_services(settings, redactor=Redactor.from_env(env)), settings.keys)
