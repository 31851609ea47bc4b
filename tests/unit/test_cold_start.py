"""Importing function_app and indexing its functions must not load heavy SDKs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = [
    "azure.ai.ml",
    "azure.monitor",
    "azure.data.tables",
    "azure.identity",
    "mlflow",
    "sklearn",
    "numpy",
    "scipy",
    "pandas",
    "pydantic",
    "yaml",
]


def test_function_app_import_stays_light() -> None:
    code = (
        "import sys, json, function_app\n"
        "names = [f.get_function_name() for f in function_app.app.get_functions()]\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'functions': names, 'heavy': heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    assert {"azureml_events", "receive_alert", "reconcile", "health"} <= set(result["functions"])
