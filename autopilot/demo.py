"""``autopilot demo``: the closed loop on the embedded default, with live progress.

Starts the service (local Functions host), the embedded platform, a scoring endpoint and a
drift monitor on loopback ports; trains and deploys v1 through the service; sends production
traffic; shifts the data; then the service does the rest by itself: drift alert -> retraining
job -> gate -> registration -> canary -> promotion (or rejection / rollback, per scenario).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autopilot.demo_watch import (
    Progress,
    fire_health_alert,
    inject_errors_when_rolling,
    new_cycle,
    refire,
    state_of,
    trigger_of,
)
from autopilot.demo_world import (
    CLOSED,
    EXPECTED,
    MODEL,
    ROOT,
    SCENARIOS,
    DemoFailed,
    Traffic,
    demo_policy,
    generate,
    read_rows,
    say,
    tool_command,
    traffic_interval,
)
from autopilot.serve import LocalService, post_json, start_service

if TYPE_CHECKING:
    from embedded.drift import BaselineSketch, DriftMonitor

__all__ = [
    "CLOSED",
    "EXPECTED",
    "MODEL",
    "ROOT",
    "SCENARIOS",
    "DemoFailed",
    "demo_policy",
    "generate",
    "read_rows",
    "run_demo",
    "tool_command",
]


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
    service, _ = start_service(
        policy=policy,
        data_dir=data_dir,
        port=port,
        env={**os.environ, **env, "AUTOPILOT_FUNCTION_KEYS": ""},
    )
    run = _Run(scenario, data_dir, fresh, started, service)
    try:
        return run.play(policy, show_cycle)
    except KeyboardInterrupt:
        say(
            "\ninterrupted: stopping; state kept for inspection "
            f"(rerun with --resume to keep it, without to start fresh) in {data_dir}"
        )
        return 130
    finally:
        run.monitor_stop.set()
        if run.traffic:
            run.traffic.stop.set()
        service.stop()


@dataclass
class _Run:
    """One demo run, step by step: v1 live, traffic, the world shifts, a signal, the cycle."""

    scenario: str
    data_dir: Path
    fresh: bool
    started: float
    service: LocalService
    traffic: Traffic | None = None
    monitor_stop: threading.Event = field(default_factory=threading.Event)
    monitor_estimate: dict[str, Any] | None = None  # the drift monitor's estimate (silent)

    @property
    def silent(self) -> bool:
        return self.scenario == "silent"

    def play(self, policy: Path, show_cycle: Callable[[Path, str], object] | None) -> int:
        service, data_dir = self.service, self.data_dir
        progress = Progress(service)
        say(f"1. service up at {service.url} (key in {data_dir / 'function_keys.json'})")
        say(f"   console: {service.url}/api/console?code={service.key}")
        from functions import runtime

        platform: Any = runtime.current().services.platform
        first = _ensure_v1(progress, service, platform)
        endpoint = platform.ensure_endpoint(MODEL)
        say(f"2. v{first} serves 100% of {endpoint}")

        baseline_rows = read_rows(min((data_dir / "data").glob("*.csv")))  # v1's training data
        traffic = self.traffic = Traffic(endpoint, baseline_rows, interval_s=traffic_interval())
        threading.Thread(target=traffic.run, daemon=True).start()
        say("3. production traffic flowing (25 rows per request)")

        before, baseline = self._change_the_world(progress, policy, traffic, baseline_rows)
        monitor = self._watch_drift(baseline)
        cycle = self._first_signal(progress, monitor, before)
        self._follow(progress, platform, cycle)
        return self._report(progress, platform, traffic, cycle, show_cycle)

    def _change_the_world(
        self, progress: Progress, policy: Path, traffic: Traffic, baseline_rows: list[Any]
    ) -> tuple[set[str], BaselineSketch]:
        """Step 4: sketch v1's data, shift the world (the scenario's way) and feed it."""
        from embedded.drift import summarize

        columns = {k: [r[k] for r in baseline_rows] for k in baseline_rows[0]}
        baseline = summarize(columns, categorical=["region", "channel"])
        if self.scenario == "worse":
            _make_training_worse(policy)
        before = {c["id"] for c in progress.cycles()}
        # a fresh alert rule
        shutil.rmtree(self.data_dir / "platform" / "drift", ignore_errors=True)
        shifted = generate(self.data_dir, seed=2, shift=not self.silent, silent=self.silent)
        traffic.rows = read_rows(shifted)
        if self.silent:
            say(
                "4. the world changes silently: every feature keeps its distribution, but the "
                "risk factors now cancel out (the scores bunch up where the model is unsure) and "
                "the concept changes"
            )
        else:
            say("4. the world changes: new data batch with a covariate shift and a concept change")
        return before, baseline

    def _watch_drift(self, baseline: BaselineSketch) -> DriftMonitor:
        """The drift monitor on the endpoint's inputs, alerting the service."""
        from embedded.drift import DriftMonitor

        monitor = DriftMonitor(
            self.data_dir / "platform",
            model=MODEL,
            endpoint=MODEL,
            baseline=baseline,
            alert_url=self.service.url + "/api/alerts",
            key=self.service.key,
            window_s=6.0,
            min_samples=1000,
            estimate=_estimate_signal(self.data_dir / "platform", MODEL),  # None: no estimate
        )
        threading.Thread(target=monitor.run, args=(1.0, self.monitor_stop), daemon=True).start()
        return monitor

    def _first_signal(self, progress: Progress, monitor: DriftMonitor, before: set[str]) -> str:
        """Step 5: the signal (drift alert, or the label-free estimate) that starts a cycle."""
        if self.silent:
            say("5. the drift monitor watches the same traffic; the service estimates AUC from")
            say("   the scores alone every 3 s (no labels) and compares it with v1's evaluation:")
            cycle = new_cycle(progress, before, timeout=90)
            trigger = trigger_of(progress, cycle)
            say(
                f"   cycle started by {trigger.get('source')}: estimated {trigger.get('metric')} "
                f"{trigger.get('estimate')} {trigger.get('interval')} vs reference "
                f"{trigger.get('reference')}; drift alert fired: {monitor.firing}"
            )
            seen = monitor.check().estimate  # the monitor's report of the same kind of window
            self.monitor_estimate = seen.to_json() if seen else None
            say(f"   drift monitor: {seen.summary() if seen else 'no estimate'}")
            return cycle
        progress.wait_for(lambda: monitor.firing, 60, "the drift alert")
        say("5. drift monitor fired an Azure Monitor alert; the rule fires twice more:")
        for _ in range(2):
            refire(self.service)
        return new_cycle(progress, before)

    def _follow(self, progress: Progress, platform: Any, cycle: str) -> None:
        """The cycle runs by itself to its end (step 6: the alert scenario's rollback)."""
        progress.wait_for(
            lambda: state_of(progress, cycle) not in ("TRIGGERED",),
            30,
            "retraining to start",
        )
        if self.scenario == "unhealthy":
            threading.Thread(
                target=inject_errors_when_rolling, args=(progress, platform, cycle), daemon=True
            ).start()
        progress.wait_for(lambda: state_of(progress, cycle) in CLOSED, 400, "the cycle to close")
        if self.scenario == "alert" and state_of(progress, cycle) == "PROMOTED":
            say(
                "6. after promotion, Azure Monitor fires the endpoint's health alert "
                f"'{MODEL}-endpoint-errors' (bound in the policy) during the watch period:"
            )
            fire_health_alert(self.service)
            progress.wait_for(
                lambda: state_of(progress, cycle) == "ROLLED_BACK", 30, "the alert-driven rollback"
            )

    def _report(
        self,
        progress: Progress,
        platform: Any,
        traffic: Traffic,
        cycle: str,
        show_cycle: Callable[[Path, str], object] | None,
    ) -> int:
        """The outcome: the cycle, the clients' view, ``demo-result.json``; the exit code."""
        scenario, data_dir, started = self.scenario, self.data_dir, self.started
        final = state_of(progress, cycle)
        started_by = trigger_of(progress, cycle).get("source")
        if self.silent and started_by != "estimated_performance":
            final = f"{final} (started by {started_by}, not the estimate)"
        expectation = f"expected {EXPECTED[scenario]}" if self.fresh else "resumed world"
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
            "monitor_estimate": self.monitor_estimate,
        }
        (data_dir / "demo-result.json").write_text(json.dumps(result, indent=2))
        say(f"\nresult: cycle {cycle} {final} ({expectation}) in {time.monotonic() - started:.0f}s")
        _look_further(cycle, data_dir)
        if not self.fresh:  # a resumed world has a different champion: any closed outcome is valid
            return 0 if final in CLOSED else 1
        return 0 if final == EXPECTED[scenario] else 1


def _look_further(cycle: str, data_dir: Path) -> None:
    cli, mlflow = tool_command("autopilot"), tool_command("mlflow")
    say(
        "look further:\n"
        f"  {cli} cycles show {cycle} --data-dir {data_dir}\n"
        f"  {cli} audit list --data-dir {data_dir}\n"
        f"  {cli} audit verify --data-dir {data_dir}\n"
        f"  {mlflow} ui --backend-store-uri sqlite:///{data_dir / 'platform' / 'mlflow.db'}"
    )


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
    progress.wait_for(lambda: state_of(progress, cycle) in CLOSED, 120, "v1")
    if state_of(progress, cycle) != "PROMOTED":
        raise DemoFailed(f"v1 cycle ended {state_of(progress, cycle)}")
    return str(platform.champion_version(MODEL, MODEL))


def _estimate_signal(platform_dir: Path, endpoint: str) -> Any:
    """The drift monitor's estimate signal, calibrated like the service's check (the
    champion's evaluation), when the policy asks for an estimate; else None."""
    from embedded.estimate_monitor import EstimateSignal
    from functions import runtime
    from shared.estimated_performance import champion_reference

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


def _counts(counts: dict[str, int]) -> str:
    """``{'m-v1': 732, 'm-v2': 118}`` as ``m-v1 732, m-v2 118`` (most first)."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} {count}" for name, count in ordered) or "none"
