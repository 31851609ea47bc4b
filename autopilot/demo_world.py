"""The demo's world: its policy, data, production traffic and the names it runs under."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MODEL = "credit-risk"
SCENARIOS = ("improve", "worse", "unhealthy", "alert", "silent")
EXPECTED = {
    "silent": "PROMOTED",
    "improve": "PROMOTED",
    "worse": "REJECTED",
    "unhealthy": "ROLLED_BACK",
    "alert": "ROLLED_BACK",
}
CLOSED = {"PROMOTED", "REJECTED", "ROLLED_BACK", "FAILED"}


class DemoFailed(Exception):
    pass


def tool_command(tool: str) -> str:
    """How to run ``tool`` of this Python environment as written from the current folder
    (``.venv/bin/autopilot`` after set-up: the venv is not on PATH)."""
    path = Path(sys.executable).parent / tool
    if not path.exists():
        return f"{sys.executable} -m {'autopilot.cli' if tool == 'autopilot' else tool}"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def say(text: str) -> None:
    print(text, flush=True)


def demo_policy(data_dir: Path, scenario: str) -> Path:
    """The example policy with demo timings and this run's data folder."""
    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    spec = policy["models"][MODEL]
    spec["training"]["inputs"]["data_dir"] = str(data_dir / "data")
    spec["training"]["command"] = [
        "{python}",
        str(ROOT / "examples" / "model" / "train.py"),
        "--data-dir",
        "{inputs.data_dir}",
        "--model-name",
        "{inputs.model_name}",
        "--outputs",
        "{outputs}",
        "--window",
        "3000",
    ]
    spec["training"].pop("job_file", None)
    spec["cooldown"] = "0s"  # the demo's drift comes right after v1's cycle closed
    # scenario 'alert': the previous deployment stays warm for a watch period after promotion
    watch = "5m" if scenario == "alert" else "0s"
    spec["rollout"].update(bake="8s", max_wait="60s", watch=watch)
    spec["rollout"]["health"].update(min_requests=30)
    if scenario == "silent":  # the label-free estimate, not drift, is what notices
        spec["training"]["command"].append("--serve-probabilities")
        spec["signals"]["estimated_performance"] = {
            "metric": "auc",
            "max_drop": 0.03,
            "window": "15s",
            "min_rows": 1000,
            "check_every": "3s",
            "guard_tolerance": 0.03,
        }
    # the sequential judge at demo traffic (~2 requests/s on a 10% canary): wider tolerances
    spec["rollout"]["sequential"] = {
        **spec["rollout"].get("sequential", {}),
        "tolerance": 0.05,
        "delta": 0.1,
        # local scoring answers in a few ms, so the share above live's p95 is mostly the
        # machine's noise (a traffic shift's first requests rolled a good model back): only a
        # grossly slower model fails on latency here; errors are judged as everywhere
        "latency_tolerance": 0.5,
        "latency_warmup": "5s",  # ~10 requests; the default 30 s would slow every step down
        "check_every": "2s",
        "max_bake": "120s",  # no decision by then fails safe; a busy machine sends fewer requests
    }
    path = data_dir / "demo-policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def generate(
    data_dir: Path, *, seed: int, shift: bool, rows: int = 3000, silent: bool = False
) -> Path:
    args = [
        sys.executable,
        str(ROOT / "examples" / "model" / "generate_data.py"),
        "--out-dir",
        str(data_dir / "data"),
        "--rows",
        str(rows),
        "--seed",
        str(seed),
    ]
    if shift or silent:
        args.append("--shift" if shift else "--silent")
    subprocess.run(args, check=True, capture_output=True)
    return max((data_dir / "data").glob("*.csv"))


def read_rows(path: Path) -> list[dict[str, Any]]:
    import csv

    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        row.pop("label", None)
        out.append({k: (v if k in ("region", "channel") else float(v)) for k, v in row.items()})
    return out


def traffic_interval() -> float:
    """Seconds the demo's client waits between requests: 0.05 (about 10-15 requests/s here).

    A test-only knob: the end-to-end tests set ``AUTOPILOT_DEMO_TRAFFIC_INTERVAL_S`` lower so
    that each canary step gets the requests its judge needs sooner; the judge is unchanged.
    """
    value = float(os.environ.get("AUTOPILOT_DEMO_TRAFFIC_INTERVAL_S", "0.05"))
    if not 0 <= value <= 10:
        raise DemoFailed(f"AUTOPILOT_DEMO_TRAFFIC_INTERVAL_S must be 0..10 seconds, not {value}")
    return value


@dataclass
class Traffic:
    """A production client: posts batches of rows to the endpoint until stopped."""

    url: str
    rows: list[dict[str, Any]]
    batch: int = 25
    interval_s: float = 0.05
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    failed: int = 0  # no answer at all (connection refused/reset, timeout): a dropped request
    server_errors: dict[str, int] = field(default_factory=dict)  # 5xx answers, per deployment
    served_by: dict[str, int] = field(default_factory=dict)

    def run(self) -> None:
        rng = random.Random(7)  # noqa: S311 (traffic sampling, not security)
        while not self.stop.is_set():
            body = json.dumps({"rows": rng.sample(self.rows, self.batch)}).encode()
            request = urllib.request.Request(
                self.url + "/score",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    served = json.loads(resp.read()).get("deployment", "?")
                    self.served_by[served] = self.served_by.get(served, 0) + 1
            except urllib.error.HTTPError as exc:
                served = exc.headers.get("azureml-model-deployment") or "?"
                self.server_errors[served] = self.server_errors.get(served, 0) + 1
            except (urllib.error.URLError, OSError, ValueError):
                self.failed += 1
            self.sent += 1
            self.stop.wait(self.interval_s)
