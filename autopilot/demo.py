"""``autopilot demo``: the closed loop on the embedded default, with live progress.

Starts the service (local Functions host), the embedded platform, a scoring endpoint and a
drift monitor on loopback ports; trains and deploys v1 through the service; sends production
traffic; shifts the data; then the service does the rest by itself: drift alert -> retraining
job -> gate -> registration -> canary -> promotion (or rejection / rollback, per scenario).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autopilot.serve import LocalService, post_json, start_service

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
        "latency_tolerance": 0.15,
        "check_every": "2s",
        "max_bake": "60s",
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


class Progress:
    """Prints each new audit record as it lands, like a live log."""

    def __init__(self, service: LocalService) -> None:
        self.service = service
        self.seen: set[int] = set()

    def api(self, path: str) -> Any:
        request = urllib.request.Request(
            self.service.url + path,
            headers={"x-functions-key": self.service.key},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def show_new(self) -> None:
        """Print audit records not shown yet, in order (ignored events are left to the log)."""
        for record in self.api("/api/audit")["records"]:
            if record["seq"] in self.seen:
                continue
            self.seen.add(record["seq"])
            if record["kind"] == "ignored":
                continue
            stamp = record["time"][11:19]
            reason = f" — {record['reason']}" if record["reason"] else ""
            say(f"   {stamp} [{record['kind']}] {record['summary']}{reason}"[:220])

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.show_new()
            if predicate():
                self.show_new()
                return
            time.sleep(0.5)
        raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")

    def cycles(self) -> list[dict[str, Any]]:
        return list(self.api(f"/api/cycles?model={MODEL}")["cycles"])


def run_demo(
    *,
    scenario: str,
    data_dir: Path,
    fresh: bool = True,
    port: int = 0,
    show_cycle: Callable[[Path, str], object] | None = None,
) -> int:
    if scenario not in SCENARIOS:
        raise DemoFailed(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    started = time.monotonic()
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    say(f"== MLOps Autopilot demo — scenario '{scenario}' (data in {data_dir})")
    policy = demo_policy(data_dir, scenario)
    if not (data_dir / "data").exists():
        generate(data_dir, seed=1, shift=False)
    env = {"AUTOPILOT_RECONCILE_SCHEDULE": "*/2 * * * * *", "AUTOPILOT_STALE_AFTER_S": "60"}
    import os

    service, _ = start_service(
        policy=policy,
        data_dir=data_dir,
        port=port,
        env={**os.environ, **env, "AUTOPILOT_FUNCTION_KEYS": ""},
    )
    traffic: Traffic | None = None
    monitor_stop = threading.Event()
    try:
        progress = Progress(service)
        say(f"1. service up at {service.url} (key in {data_dir / 'function_keys.json'})")
        say(f"   console: {service.url}/api/console?code={service.key}")
        from functions import runtime

        platform: Any = runtime.current().services.platform
        first = _ensure_v1(progress, service, platform)
        endpoint = platform.ensure_endpoint(MODEL)
        say(f"2. v{first} serves 100% of {endpoint}")

        baseline_rows = read_rows(min((data_dir / "data").glob("*.csv")))  # v1's training data
        traffic = Traffic(endpoint, baseline_rows)
        threading.Thread(target=traffic.run, daemon=True).start()
        say("3. production traffic flowing (25 rows per request)")

        from embedded.drift import DriftMonitor, summarize

        columns = {k: [r[k] for r in baseline_rows] for k in baseline_rows[0]}
        baseline = summarize(columns, categorical=["region", "channel"])
        if scenario == "worse":
            _make_training_worse(policy)
        before = {c["id"] for c in progress.cycles()}
        shutil.rmtree(data_dir / "platform" / "drift", ignore_errors=True)  # a fresh alert rule
        silent = scenario == "silent"
        shifted = generate(data_dir, seed=2, shift=not silent, silent=silent)
        traffic.rows = read_rows(shifted)
        if silent:
            say(
                "4. the world changes silently: every feature keeps its distribution, but the "
                "risk factors now cancel out (the scores bunch up where the model is unsure) and "
                "the concept changes"
            )
        else:
            say("4. the world changes: new data batch with a covariate shift and a concept change")

        monitor = DriftMonitor(
            data_dir / "platform",
            model=MODEL,
            endpoint=MODEL,
            baseline=baseline,
            alert_url=service.url + "/api/alerts",
            key=service.key,
            window_s=6.0,
            min_samples=1000,
            estimate=_estimate_signal(data_dir / "platform", MODEL),  # None: no estimate
        )
        threading.Thread(target=monitor.run, args=(1.0, monitor_stop), daemon=True).start()
        monitor_estimate: dict[str, Any] | None = None
        if silent:
            say("5. the drift monitor watches the same traffic; the service estimates AUC from")
            say("   the scores alone every 3 s (no labels) and compares it with v1's evaluation:")
            cycle = _new_cycle(progress, before, timeout=90)
            trigger = _trigger(progress, cycle)
            say(
                f"   cycle started by {trigger.get('source')}: estimated {trigger.get('metric')} "
                f"{trigger.get('estimate')} {trigger.get('interval')} vs reference "
                f"{trigger.get('reference')}; drift alert fired: {monitor.firing}"
            )
            seen = monitor.check().estimate  # the monitor's report of the same kind of window
            monitor_estimate = seen.to_json() if seen else None
            say(f"   drift monitor: {seen.summary() if seen else 'no estimate'}")
        else:
            progress.wait_for(lambda: monitor.firing, 60, "the drift alert")
            say("5. drift monitor fired an Azure Monitor alert; the rule fires twice more:")
            for _ in range(2):
                _refire(service)
            cycle = _new_cycle(progress, before)
        progress.wait_for(
            lambda: _state(progress, cycle) not in ("TRIGGERED",),
            30,
            "retraining to start",
        )
        if scenario == "unhealthy":
            threading.Thread(
                target=_inject_errors_when_rolling, args=(progress, platform, cycle), daemon=True
            ).start()
        progress.wait_for(lambda: _state(progress, cycle) in CLOSED, 150, "the cycle to close")
        if scenario == "alert" and _state(progress, cycle) == "PROMOTED":
            say(
                "6. after promotion, Azure Monitor fires the endpoint's health alert "
                f"'{MODEL}-endpoint-errors' (bound in the policy) during the watch period:"
            )
            _fire_health_alert(service)
            progress.wait_for(
                lambda: _state(progress, cycle) == "ROLLED_BACK", 30, "the alert-driven rollback"
            )
        final = _state(progress, cycle)
        started_by = _trigger(progress, cycle).get("source")
        if silent and started_by != "estimated_performance":
            final = f"{final} (started by {started_by}, not the estimate)"
        expectation = f"expected {EXPECTED[scenario]}" if fresh else "resumed world"
        say("")
        if show_cycle is not None:  # the CLI passes its ``cycles show`` (demo never imports cli)
            show_cycle(data_dir, cycle)
        say(
            f"\nclient requests: {traffic.sent} sent, {traffic.failed} dropped, served by "
            f"{_counts(traffic.served_by)}, error answers by "
            f"{_counts(traffic.server_errors) if traffic.server_errors else 'none'}"
        )
        result = {
            "scenario": scenario,
            "cycle": cycle,
            "state": final,
            "started_by": started_by,
            "expected": EXPECTED[scenario],
            "champion": platform.champion_version(MODEL, MODEL),
            "traffic": platform.get_traffic(MODEL),
            "client": {
                "sent": traffic.sent,
                "dropped": traffic.failed,
                "served_by": traffic.served_by,
                "server_errors": traffic.server_errors,
            },
            "seconds": round(time.monotonic() - started, 1),
            "monitor_estimate": monitor_estimate,
        }
        (data_dir / "demo-result.json").write_text(json.dumps(result, indent=2))
        say(f"\nresult: cycle {cycle} {final} ({expectation}) in {time.monotonic() - started:.0f}s")
        cli, mlflow = tool_command("autopilot"), tool_command("mlflow")
        say(
            "look further:\n"
            f"  {cli} cycles show {cycle} --data-dir {data_dir}\n"
            f"  {cli} audit list --data-dir {data_dir}\n"
            f"  {cli} audit verify --data-dir {data_dir}\n"
            f"  {mlflow} ui --backend-store-uri sqlite:///{data_dir / 'platform' / 'mlflow.db'}"
        )
        if not fresh:  # a resumed world has a different champion: any closed outcome is valid
            return 0 if final in CLOSED else 1
        return 0 if final == EXPECTED[scenario] else 1
    except KeyboardInterrupt:
        say(
            "\ninterrupted: stopping; state kept for inspection "
            f"(rerun with --resume to keep it, without to start fresh) in {data_dir}"
        )
        return 130
    finally:
        monitor_stop.set()
        if traffic:
            traffic.stop.set()
        service.stop()


def _ensure_v1(progress: Progress, service: LocalService, platform: Any) -> str:
    champion = platform.champion_version(MODEL, MODEL)
    if champion:
        say(f"   champion v{champion} already deployed (resumed)")
        return str(champion)
    say("   training and deploying v1 through the service (an operator-requested cycle) ...")
    status, text = post_json(
        service.url + f"/api/models/{MODEL}/retrain",
        service.key,
        json.dumps({"reason": "initial model"}).encode(),
    )
    if status != 200:
        raise DemoFailed(f"retrain request failed: {status} {text}")
    cycle = json.loads(text)["cycle"]["id"]
    progress.wait_for(lambda: _state(progress, cycle) in CLOSED, 120, "v1")
    if _state(progress, cycle) != "PROMOTED":
        raise DemoFailed(f"v1 cycle ended {_state(progress, cycle)}")
    return str(platform.champion_version(MODEL, MODEL))


def _estimate_signal(platform_dir: Path, endpoint: str) -> Any:
    """The drift monitor's estimate signal, calibrated like the service's check (the
    champion's evaluation), when the policy asks for an estimate; else None."""
    from embedded.estimate_monitor import EstimateSignal
    from functions import runtime
    from handlers.performance import champion_reference

    services = runtime.current().services
    spec = services.policy.models[MODEL].signals.estimated_performance
    ref = champion_reference(services, MODEL, spec) if spec else None
    if spec is None or ref is None:
        return None
    return EstimateSignal(
        platform_dir, endpoint=endpoint, spec=spec, fitted=ref.fitted, reference=ref.value
    )


def _make_training_worse(policy_path: Path) -> None:
    """Scenario 'worse': the operator's next training run is sabotaged (tiny, noisy sample).

    The service re-reads nothing at run time, so the command change is applied through the
    policy object the running service holds.
    """
    from functions import runtime
    from shared.policy import parse_policy

    data = yaml.safe_load(policy_path.read_text())
    data["models"][MODEL]["training"]["command"] += ["--quality", "worse"]
    policy_path.write_text(yaml.safe_dump(data, sort_keys=False))
    runtime.current().services.policy = parse_policy(data, str(policy_path))


def _fire_alert(
    service: LocalService, rule: str, signal_type: str, service_name: str, context: dict[str, Any]
) -> None:
    """POST a Fired common-alert-schema alert, as an Azure Monitor action group would."""
    import uuid

    essentials = {
        "alertId": f"/subscriptions/local/providers/Microsoft.AlertsManagement/alerts/"
        f"{uuid.uuid4()}",
        "alertRule": rule,
        "severity": "Sev2",
        "signalType": signal_type,
        "monitorCondition": "Fired",
        "monitoringService": service_name,
        "firedDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    body = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {"essentials": essentials, "alertContext": context},
    }
    post_json(service.url + "/api/alerts", service.key, json.dumps(body).encode())


def _refire(service: LocalService) -> None:
    """The drift rule fires again (a stateless log alert fires every evaluation period)."""
    _fire_alert(service, f"autopilot-drift-{MODEL}", "Log", "Log Analytics", {})


def _fire_health_alert(service: LocalService) -> None:
    """The endpoint's 5xx metric alert, bound in the policy as a health alert."""
    condition = {
        "windowSize": "PT5M",
        "allOf": [
            {
                "metricName": "RequestsPerMinute",
                "operator": "GreaterThan",
                "threshold": "10",
                "timeAggregation": "Total",
                "metricValue": 42,
                "dimensions": [{"name": "statusCodeClass", "value": "5xx"}],
            }
        ],
    }
    _fire_alert(
        service,
        f"{MODEL}-endpoint-errors",
        "Metric",
        "Platform",
        {"conditionType": "SingleResourceMultipleMetricCriteria", "condition": condition},
    )


def _new_cycle(progress: Progress, before: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress.show_new()
        new = [c for c in progress.cycles() if c["id"] not in before]
        if new:
            return str(new[-1]["id"])
        time.sleep(0.3)
    raise DemoFailed("no signal started a cycle")


def _trigger(progress: Progress, cycle: str) -> dict[str, Any]:
    """The evidence that started ``cycle`` (its signal's source and what it measured)."""
    trigger = progress.api(f"/api/cycles/{cycle}")["cycle"].get("trigger")
    return trigger if isinstance(trigger, dict) else {}


def _state(progress: Progress, cycle: str) -> str:
    return str(progress.api(f"/api/cycles/{cycle}")["cycle"]["state"])


def _inject_errors_when_rolling(progress: Progress, platform: Any, cycle: str) -> None:
    """Scenario 'unhealthy': the new deployment answers 60% of requests with errors."""
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        data = progress.api(f"/api/cycles/{cycle}")["cycle"]
        if data["state"] == "ROLLING_OUT" and data.get("rollout"):
            platform.set_faults(MODEL, data["rollout"]["deployment"], inject_errors=0.6)
            say(f"   (scenario: {data['rollout']['deployment']} now fails 60% of its requests)")
            return
        if data["state"] in CLOSED:
            return
        time.sleep(0.3)


def _counts(counts: dict[str, int]) -> str:
    """``{'m-v1': 732, 'm-v2': 118}`` as ``m-v1 732, m-v2 118`` (most first)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} {count}" for name, count in ordered) or "none"
