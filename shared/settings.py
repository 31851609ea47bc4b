"""Settings from the environment (Azure app settings or a shell), read when asked, not at import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import SettingsError

DEFAULT_DATA_DIR = ".autopilot"
DEFAULT_RECONCILE_SCHEDULE = "0 */1 * * * *"


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
class AppSettings:
    data_dir: Path
    policy_path: Path | None
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    platform: str = "embedded"
    store: str = "sqlite"
    reconcile_schedule: str = DEFAULT_RECONCILE_SCHEDULE
    stale_after_s: float = 600.0

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
        return cls(
            data_dir=Path(env.get("AUTOPILOT_DATA_DIR", "").strip() or DEFAULT_DATA_DIR),
            policy_path=Path(policy) if policy else None,
            keys=parse_keys(env.get("AUTOPILOT_FUNCTION_KEYS", "")),
            platform=platform,
            store=store,
            reconcile_schedule=env.get("AUTOPILOT_RECONCILE_SCHEDULE", "").strip()
            or DEFAULT_RECONCILE_SCHEDULE,
            stale_after_s=stale,
        )

    def require_policy(self) -> Path:
        if self.policy_path is None:
            raise SettingsError("AUTOPILOT_POLICY is not set: give the path of the policy file")
        return self.policy_path
