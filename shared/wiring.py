"""Build the runtime (services + keys) from settings: the only place adapters are chosen.

Heavy SDKs and the embedded platform are imported here, inside functions, when first used,
so importing ``function_app`` stays cheap (cold start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.errors import SettingsError
from shared.messagebus import Services, Settings
from shared.ports import EventPublisher, Metrics, MLPlatform
from shared.settings import AppSettings


@dataclass(frozen=True)
class Runtime:
    services: Services
    keys: dict[str, str]  # key name -> key; the name is the actor recorded in the audit log


def embedded_platform(
    data_dir: Path,
    webhook: tuple[str, str] | None = None,
) -> tuple[MLPlatform, Metrics]:
    """The embedded ML platform and its metrics; events go to ``webhook`` (url, key) if given."""
    from embedded.metrics import LocalMetrics
    from embedded.platform import LocalMLPlatform, WebhookEventSink

    sink = WebhookEventSink(webhook[0], webhook[1]) if webhook else None
    platform = LocalMLPlatform(data_dir / "platform", event_sink=sink, create_endpoints=True)
    return platform, LocalMetrics(data_dir / "platform")


def build_services(
    settings: AppSettings,
    *,
    platform: MLPlatform | None = None,
    metrics: Metrics | None = None,
    publisher: EventPublisher | None = None,
) -> Services:
    from shared.adapters.outbox import OutboxPublisher
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore
    from shared.policy import load_policy

    policy = load_policy(settings.require_policy())
    if settings.store != "sqlite":
        raise SettingsError(
            "AUTOPILOT_STORE=table (Azure Table Storage) is not available in this build; use sqlite"
        )
    if settings.platform != "embedded" and platform is None:
        raise SettingsError("AUTOPILOT_PLATFORM=azure is not available in this build; use embedded")
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    if platform is None or metrics is None:
        embedded, embedded_metrics = embedded_platform(data_dir)
        platform = platform or embedded
        metrics = metrics or embedded_metrics
    return Services(
        store=SqliteStateStore(data_dir / "state.db"),
        audit=SqliteAuditLog(data_dir / "audit.db"),
        platform=platform,
        metrics=metrics,
        publisher=publisher or OutboxPublisher(data_dir / "outbox.jsonl"),
        policy=policy,
        settings=Settings(stale_after_s=settings.stale_after_s),
    )


def runtime_from_settings(env: Mapping[str, str] | None = None) -> Runtime:
    settings = AppSettings.from_env(env)
    if not settings.keys:
        raise SettingsError(
            "AUTOPILOT_FUNCTION_KEYS is empty: set name=key pairs (the name is the audit actor)"
        )
    return Runtime(build_services(settings), settings.keys)
