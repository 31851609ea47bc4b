"""Alert storms and flapping on the real SQLite store and audit log: one cycle per model."""

from __future__ import annotations

import copy
import resource
import time
from pathlib import Path
from typing import Any

from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert
from shared.adapters.sqlite_audit import SqliteAuditLog
from shared.adapters.sqlite_store import SqliteStateStore
from shared.messagebus import MessageBus, Services
from shared.policy import Policy, parse_policy
from tests import payloads
from tests.fakes import POLICY, FakeClock, FakeMetrics, FakePlatform, FakePublisher


def sqlite_bus(tmp_path: Path, policy: Policy) -> tuple[MessageBus, FakePlatform]:
    platform = FakePlatform()
    services = Services(
        store=SqliteStateStore(tmp_path / "state.db"),
        audit=SqliteAuditLog(tmp_path / "a.db"),
        platform=platform,
        metrics=FakeMetrics(),
        publisher=FakePublisher(),
        policy=policy,
        clock=FakeClock(),
    )
    return bootstrap(services), platform


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def peak_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def many_models(n: int) -> Policy:
    data: dict[str, Any] = {"models": {}}
    for i in range(n):
        spec = copy.deepcopy(POLICY["models"]["credit"])
        spec["signals"] = {"drift_alerts": [f"drift-{i}"]}
        spec["rollout"]["endpoint"] = f"ep-{i}"
        data["models"][f"model-{i}"] = spec
    return parse_policy(data, "many-models")


def test_ten_thousand_alerts_for_one_model_start_one_cycle_with_flat_memory(
    tmp_path: Path,
) -> None:
    bus, platform = sqlite_bus(tmp_path, parse_policy(POLICY, "storm"))
    alert = payloads.alert()
    started = time.perf_counter()
    checkpoints = []
    for i in range(10_000):
        alert["data"]["essentials"]["alertId"] = f"storm-{i}"
        deliver_alert(bus, alert)
        if i in (1_999, 9_999):
            checkpoints.append(rss_kib())
    elapsed = time.perf_counter() - started
    cycles = bus.services.store.list_cycles()
    growth = checkpoints[1] - checkpoints[0]
    print(
        f"storm: 10,000 alerts in {elapsed:.1f}s ({10_000 / elapsed:.0f}/s) -> "
        f"{len(cycles)} cycle, {cycles[0].coalesced} coalesced, {len(platform.submitted)} job; "
        f"RSS {checkpoints[0] / 1024:.0f} MiB after 2,000 and {checkpoints[1] / 1024:.0f} MiB "
        f"after 10,000 (+{growth} KiB); peak RSS {peak_rss_kib() / 1024:.0f} MiB"
    )
    assert len(cycles) == 1 and len(platform.submitted) == 1
    assert cycles[0].coalesced == 9_999
    assert growth < 8 * 1024  # flat: no per-alert state kept in memory


def test_flapping_fired_and_resolved_never_starts_twice(tmp_path: Path) -> None:
    policy = parse_policy(
        {
            "models": {
                "credit": {**POLICY["models"]["credit"], "confirm": {"signals": 3, "within": "1h"}}
            }
        },
        "flap",
    )
    bus, platform = sqlite_bus(tmp_path, policy)
    for i in range(200):  # Fired, Resolved, Fired, ...: never 3 pending signals at once
        condition = "Fired" if i % 2 == 0 else "Resolved"
        deliver_alert(bus, payloads.alert(condition=condition, alert_id=f"flap-{i // 2}"))
    assert bus.services.store.list_cycles() == []
    assert platform.submitted == []
    for i in range(3):
        deliver_alert(bus, payloads.alert(alert_id=f"sustained-{i}"))
    assert len(bus.services.store.list_cycles()) == 1
    print("flapping: 100 Fired/Resolved pairs -> 0 cycles; 3 sustained alerts -> 1 cycle")


def test_alerts_for_many_models_at_once_start_one_cycle_each(tmp_path: Path) -> None:
    bus, platform = sqlite_bus(tmp_path, many_models(50))
    for round_ in range(20):
        for i in range(50):
            deliver_alert(bus, payloads.alert(rule=f"drift-{i}", alert_id=f"{i}-{round_}"))
    cycles = bus.services.store.list_cycles()
    print(f"50 models x 20 alerts -> {len(cycles)} cycles, {len(platform.submitted)} jobs")
    assert len(cycles) == 50 and len({c.model for c in cycles}) == 50
    assert len(platform.submitted) == 50
    assert all(c.coalesced == 19 for c in cycles)
