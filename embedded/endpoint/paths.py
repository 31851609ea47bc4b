"""Where an endpoint keeps its state and telemetry in the platform's data folder."""

from __future__ import annotations

from pathlib import Path


def endpoints_dir(data_dir: Path) -> Path:
    return data_dir / "endpoints"


def state_path(data_dir: Path, name: str) -> Path:
    return endpoints_dir(data_dir) / f"{name}.json"


def telemetry_path(data_dir: Path) -> Path:
    return endpoints_dir(data_dir) / "telemetry.db"
