"""Settings from the environment (Azure app settings or a shell), read when asked, not at import."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import SettingsError

DEFAULT_DATA_DIR = ".autopilot"
APP_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECONCILE_SCHEDULE = "0 */1 * * * *"
MIN_DELIVERY_RETENTION_S = 48 * 3600.0


def app_path(path: str | Path) -> Path:
    """A file the app reads (policy, job YAML, deployment template), wherever we were started.

    Absolute paths are used as given. Relative ones are taken from the app root (the folder of
    function_app.py): the Functions host does not promise to start the worker there. A relative
    path found only from the working directory (a local run elsewhere) is taken from there.
    """
    path = Path(path)
    if path.is_absolute():
        return path
    from_root = APP_ROOT / path
    if not from_root.exists() and path.exists():
        return path.resolve()
    return from_root


def parse_keys(raw: str) -> dict[str, str]:
    """``name=key,name2=key2`` -> {name: key}. Errors name the setting, never echo a key."""
    keys: dict[str, str] = {}
    for index, item in enumerate(p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, sep, key = item.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise SettingsError(
                f"AUTOPILOT_FUNCTION_KEYS entry {index + 1} must look like name=key"
            )
        if len(key) < 16:
            raise SettingsError(
                f"AUTOPILOT_FUNCTION_KEYS key {name!r} is shorter than 16 characters"
            )
        if name in keys:
            raise SettingsError(f"AUTOPILOT_FUNCTION_KEYS names {name!r} twice")
        keys[name] = key
    return keys


@dataclass(frozen=True)
class AzureSettings:
    """Where the Azure adapters point. Only read when the Azure platform or store is chosen."""

    subscription_id: str = ""
    resource_group: str = ""
    workspace: str = ""
    endpoint_resource_ids: dict[str, str] = field(default_factory=dict)
    metrics_region: str = ""
    metrics_endpoint: str = ""
    log_workspace_id: str = ""
    deployment_template: str = ""
    table_endpoint: str = ""
    table_connection_string: str = field(default="", repr=False)
    events_topic_endpoint: str = ""
    # the workspace blob datastore's container, where Azure ML's data collector writes
    collector_container_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AzureSettings:
        raw_ids = env.get("AUTOPILOT_ENDPOINT_RESOURCE_IDS", "").strip()
        ids: dict[str, str] = {}
        if raw_ids:
            try:
                parsed = json.loads(raw_ids)
            except ValueError as exc:
                raise SettingsError(
                    "AUTOPILOT_ENDPOINT_RESOURCE_IDS must be a JSON object "
                    '{"endpoint-name": "/subscriptions/.../onlineEndpoints/endpoint-name"}'
                ) from exc
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
            ):
                raise SettingsError("AUTOPILOT_ENDPOINT_RESOURCE_IDS must map names to ids")
            ids = parsed

        def get(name: str) -> str:
            return env.get(name, "").strip()

        return cls(
            subscription_id=get("AUTOPILOT_AZUREML_SUBSCRIPTION_ID"),
            resource_group=get("AUTOPILOT_AZUREML_RESOURCE_GROUP"),
            workspace=get("AUTOPILOT_AZUREML_WORKSPACE"),
            endpoint_resource_ids=ids,
            metrics_region=get("AUTOPILOT_METRICS_REGION"),
            metrics_endpoint=get("AUTOPILOT_METRICS_ENDPOINT"),
            log_workspace_id=get("AUTOPILOT_LOG_WORKSPACE_ID"),
            deployment_template=get("AUTOPILOT_DEPLOYMENT_TEMPLATE"),
            table_endpoint=get("AUTOPILOT_TABLE_ENDPOINT"),
            table_connection_string=get("AUTOPILOT_TABLE_CONNECTION_STRING"),
            events_topic_endpoint=get("AUTOPILOT_EVENTS_TOPIC_ENDPOINT"),
            collector_container_url=get("AUTOPILOT_COLLECTOR_CONTAINER_URL"),
        )

    def require(self, *names: str) -> None:
        """Fail naming every missing setting at once."""
        missing = [n for n in names if not getattr(self, _FIELD_OF[n])]
        if missing:
            raise SettingsError("missing setting(s): " + ", ".join(missing))


_FIELD_OF = {
    "AUTOPILOT_AZUREML_SUBSCRIPTION_ID": "subscription_id",
    "AUTOPILOT_AZUREML_RESOURCE_GROUP": "resource_group",
    "AUTOPILOT_AZUREML_WORKSPACE": "workspace",
    "AUTOPILOT_ENDPOINT_RESOURCE_IDS": "endpoint_resource_ids",
}


@dataclass(frozen=True)
class AppSettings:
    data_dir: Path
    policy_path: Path | None
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    platform: str = "embedded"
    store: str = "sqlite"
    reconcile_schedule: str = DEFAULT_RECONCILE_SCHEDULE
    stale_after_s: float = 600.0
    delivery_retention_s: float = 7 * 24 * 3600.0
    audit_shards: int = 1  # chains of the Table Storage audit log (SQLite keeps one)
    azure: AzureSettings = field(default_factory=AzureSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AppSettings:
        env = os.environ if env is None else env
        platform = env.get("AUTOPILOT_PLATFORM", "embedded").strip().lower()
        if platform not in ("embedded", "azure"):
            raise SettingsError(
                f"AUTOPILOT_PLATFORM must be 'embedded' or 'azure', not {platform!r}"
            )
        store = env.get("AUTOPILOT_STORE", "sqlite").strip().lower()
        if store not in ("sqlite", "table"):
            raise SettingsError(f"AUTOPILOT_STORE must be 'sqlite' or 'table', not {store!r}")
        policy = env.get("AUTOPILOT_POLICY", "").strip()
        try:
            stale = float(env.get("AUTOPILOT_STALE_AFTER_S", "600"))
        except ValueError as exc:
            raise SettingsError("AUTOPILOT_STALE_AFTER_S must be a number of seconds") from exc
        try:
            retention = float(env.get("AUTOPILOT_DELIVERY_RETENTION_S", str(7 * 24 * 3600)))
        except ValueError as exc:
            raise SettingsError(
                "AUTOPILOT_DELIVERY_RETENTION_S must be a number of seconds"
            ) from exc
        if retention < MIN_DELIVERY_RETENTION_S:
            raise SettingsError(
                f"AUTOPILOT_DELIVERY_RETENTION_S must be at least {MIN_DELIVERY_RETENTION_S:.0f} "
                "(48 hours): Event Grid redelivers for up to 24 hours, and a key forgotten "
                "earlier would let a redelivered event act twice"
            )
        shards_text = env.get("AUTOPILOT_AUDIT_SHARDS", "1").strip() or "1"
        if not (shards_text.isascii() and shards_text.isdigit() and 1 <= int(shards_text) <= 256):
            raise SettingsError(
                f"AUTOPILOT_AUDIT_SHARDS must be a whole number from 1 to 256, not {shards_text!r}"
            )
        return cls(
            data_dir=Path(env.get("AUTOPILOT_DATA_DIR", "").strip() or DEFAULT_DATA_DIR),
            policy_path=Path(policy) if policy else None,
            keys=parse_keys(env.get("AUTOPILOT_FUNCTION_KEYS", "")),
            platform=platform,
            store=store,
            reconcile_schedule=env.get("AUTOPILOT_RECONCILE_SCHEDULE", "").strip()
            or DEFAULT_RECONCILE_SCHEDULE,
            stale_after_s=stale,
            delivery_retention_s=retention,
            audit_shards=int(shards_text),
            azure=_checked_azure(platform, store, env),
        )

    def require_policy(self) -> Path:
        """The policy path, relative ones resolved by :func:`app_path`."""
        if self.policy_path is None:
            raise SettingsError("AUTOPILOT_POLICY is not set: give the path of the policy file")
        return app_path(self.policy_path)


def _checked_azure(platform: str, store: str, env: Mapping[str, str]) -> AzureSettings:
    """Azure settings, validated for the chosen adapters; contradictions fail at start-up."""
    azure = AzureSettings.from_env(env)
    if platform == "azure":
        if store != "table":
            raise SettingsError(
                "AUTOPILOT_PLATFORM=azure needs AUTOPILOT_STORE=table: SQLite files are not "
                "shared between function instances"
            )
        azure.require(
            "AUTOPILOT_AZUREML_SUBSCRIPTION_ID",
            "AUTOPILOT_AZUREML_RESOURCE_GROUP",
            "AUTOPILOT_AZUREML_WORKSPACE",
            "AUTOPILOT_ENDPOINT_RESOURCE_IDS",
        )
        if not (azure.metrics_region or azure.metrics_endpoint):
            raise SettingsError(
                "missing setting: AUTOPILOT_METRICS_REGION (e.g. westeurope) or "
                "AUTOPILOT_METRICS_ENDPOINT for Azure Monitor metrics"
            )
    if store == "table" and not (azure.table_endpoint or azure.table_connection_string):
        raise SettingsError(
            "AUTOPILOT_STORE=table needs AUTOPILOT_TABLE_ENDPOINT (managed identity) or "
            "AUTOPILOT_TABLE_CONNECTION_STRING"
        )
    return azure
