"""Break things on purpose: crashes at named points, transient faults, lost events, storms.

Each test prints its figure. Event Grid is simulated the way it behaves: a delivery that did
not get a 2xx (an exception, or a process that died) is delivered again later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from autopilot.faults import Crash, FaultPlan, FaultyMetrics, FaultyPlatform, FaultyStore
from composition.bootstrap import bootstrap
from composition.delivery import deliver_alert, deliver_azureml
from shared.envelope import envelope_from_dict
from shared.errors import TransientError
from shared.messagebus import MessageBus
from shared.messages import Reconcile
from shared.model import Cycle, CycleState, HealthSample
from tests import payloads
from tests.fakes import FakePlatform, World, make_policy, make_world

HEALTHY = HealthSample(500, 0, 30.0)
LEASE_AND_STALE_S = 601.0  # past the delivery lease (300 s) and the stale threshold (600 s)


Send = Callable[[MessageBus, Any], str]


def send_event(bus: MessageBus, payload: Any) -> str:
    return deliver_azureml(bus, envelope_from_dict(payload))


class Lifecycle:
    """Drives one model through the whole loop, redelivering like Event Grid."""

    def __init__(self, world: World, plan: FaultPlan) -> None:
        self.world = world
        self.plan = plan
        self.inner: FakePlatform = world.platform
        world.services.platform = FaultyPlatform(world.platform, plan)
        world.services.metrics = FaultyMetrics(world.metrics, plan)
        world.services.store = FaultyStore(world.store, plan)
        world.metrics.default = HEALTHY
        self.crashes = 0
        self.redeliveries = 0

    def deliver(self, send: Send, payload: Any) -> None:
        for _ in range(50):
            try:
                send(bootstrap(self.world.services), payload)
                return
            except Crash:
                self.crashes += 1
                self.plan.crash_at.clear()  # the process restarts without the fault
                self.world.clock.advance(LEASE_AND_STALE_S)
            except TransientError:
                self.world.clock.advance(5)
            self.redeliveries += 1
        raise AssertionError("delivery never succeeded")

    def tick(self, seconds: float = 301) -> None:
        self.world.clock.advance(seconds)
        try:
            bootstrap(self.world.services).handle(Reconcile())
        except Crash:
            self.crashes += 1
            self.plan.crash_at.clear()

    def submitted_job(self) -> tuple[str, str]:
        for _ in range(20):
            cycles = self.world.store.list_cycles()
            if cycles and cycles[0].job_name and cycles[0].job_name in self.inner.jobs:
                return cycles[0].id, cycles[0].job_name
            self.tick()
        raise AssertionError("no job was submitted")

    def run(self) -> Cycle:
        self.deliver(deliver_alert, payloads.alert(alert_id="drift-1"))
        cycle_id, job = self.submitted_job()
        self.inner.evaluations[job] = payloads.evaluation(
            {"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.8}
        )
        self.inner.finish(job)
        self.deliver(send_event, payloads.run_event(job, "Completed", event_id="run-done"))
        for _ in range(30):
            cycle = self.world.store.must(cycle_id)
            if cycle.state is CycleState.REGISTERED and cycle.candidate_version:
                registered = payloads.model_registered(
                    "credit",
                    cycle.candidate_version,
                    {"autopilot_cycle": cycle.id},
                    event_id="registered",
                )
                self.deliver(send_event, registered)
            if not cycle.is_active and getattr(cycle.rollout, "phase", None) != "watch":
                return cycle
            self.tick()
        return self.world.store.must(cycle_id)


def live_world(**policy: Any) -> World:
    world = make_world(make_policy(**policy) if policy else None)
    world.platform.deployments["credit-ep"] = {"blue": "1"}
    world.platform.traffic["credit-ep"] = {"blue": 100}
    world.platform.champions["credit"] = "1"
    return world


CRASH_POINTS = [
    "store.create_cycle.after",
    "platform.submit_job.before",
    "platform.submit_job.after",
    "store.save_cycle.after",
    "platform.get_evaluation.after",
    "platform.register_model.after",
    "platform.create_deployment.after",
    "platform.set_traffic.after",
    "platform.set_champion.after",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_any_point_then_redelivery_acts_exactly_once(point: str) -> None:
    world = live_world()
    driver = Lifecycle(world, FaultPlan(crash_at={point}))
    cycle = driver.run()
    platform = driver.inner
    print(
        f"crash at {point}: {driver.crashes} crash, {driver.redeliveries} redeliveries -> "
        f"{cycle.state.value}; jobs {len(platform.submitted)}, registrations "
        f"{len(platform.registered)}, deployments now {sorted(platform.deployments['credit-ep'])}"
    )
    assert driver.crashes == 1
    assert cycle.state is CycleState.PROMOTED
    assert len(platform.submitted) == 1
    assert len(platform.registered) == 1
    # one deployment created (v2: blue serves v1); the previous one deleted after the watch
    assert platform.deployments["credit-ep"] == {"credit-v2": "2"}
    assert platform.traffic["credit-ep"] == {"credit-v2": 100}
    assert platform.champions["credit"] == "2" and cycle.candidate_version == "2"
    trail = [r.summary for r in world.audit.records if r.cycle == cycle.id]
    assert trail[0] == "retraining cycle started"
    assert sum(s.endswith("-> PROMOTED") for s in trail) == 1
    assert trail[-2].startswith("watch period over")
    assert trail[-1] == "deployment blue deleted from credit-ep"


def test_thirty_percent_transient_faults_on_every_call_still_complete_every_cycle() -> None:
    finished, retries, injected = [], 0, 0
    for seed in range(5):
        # A traffic change is confirmed by reading it back: with 30% faults on each of those
        # two calls, ~half the attempts fail, so this policy allows 10 before failing safe
        # (3, the default, fails safe ~13% of the time here -- by design).
        world = live_world(rollout__traffic_attempts=10)
        driver = Lifecycle(
            world,
            FaultPlan(
                seed=seed,
                transient_rate=0.3,
                only={
                    f"platform.{m}"
                    for m in (
                        "submit_job",
                        "get_job",
                        "get_evaluation",
                        "register_model",
                        "champion_version",
                        "create_deployment",
                        "get_traffic",
                        "set_traffic",
                        "set_champion",
                    )
                },
            ),
        )
        cycle = driver.run()
        finished.append(cycle.state)
        retries += driver.redeliveries
        injected += driver.plan.transient_injected
        assert len(driver.inner.submitted) == 1 and len(driver.inner.registered) == 1
    print(
        f"5 cycles under 30% transient platform faults: {injected} faults injected, "
        f"{retries} redeliveries, final states {[s.value for s in finished]}"
    )
    assert finished == [CycleState.PROMOTED] * 5
    assert injected > 0


def test_lost_completion_and_registration_events_are_recovered_within_two_ticks() -> None:
    world = live_world()
    bus = bootstrap(world.services)
    deliver_alert(bus, payloads.alert())
    cycle = world.store.list_cycles()[0]
    assert cycle.job_name
    world.platform.evaluations[cycle.job_name] = payloads.evaluation(
        {"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.8}
    )
    world.platform.finish(cycle.job_name)  # RunCompleted and ModelRegistered both dropped
    for _ in range(2):
        world.clock.advance(60)
        bus.handle(Reconcile())
    cycle = world.store.must(cycle.id)
    reconciled = [r for r in world.audit.records if r.kind == "reconciled"]
    print(
        f"dropped events: after 2 reconcile ticks the cycle is {cycle.state.value}, "
        f"{len(reconciled)} reconciled record(s)"
    )
    assert cycle.state is CycleState.ROLLING_OUT
    assert reconciled


def test_permanent_failures_are_audited_and_acknowledged_not_retried_forever() -> None:
    world = live_world()
    plan = FaultPlan(permanent={"platform.get_traffic"})  # e.g. the endpoint does not exist
    world.services.platform = FaultyPlatform(world.platform, plan)
    bus = bootstrap(world.services)
    deliver_alert(bus, payloads.alert())
    cycle = world.store.list_cycles()[0]
    assert cycle.job_name
    world.platform.evaluations[cycle.job_name] = payloads.evaluation(
        {"auc": 0.9, "accuracy": 0.8}, {"auc": 0.8, "accuracy": 0.8}
    )
    world.platform.finish(cycle.job_name)
    outcome = send_event(bus, payloads.run_event(cycle.job_name, "Completed"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.REGISTERED  # registration done before the failure
    registered = payloads.model_registered(
        "credit", str(cycle.candidate_version), {"autopilot_cycle": cycle.id}
    )
    assert send_event(bus, registered) == "failed"  # acknowledged: no 24 h of redeliveries
    assert outcome == "processed"
    errors = [r for r in world.audit.records if r.kind == "error"]
    assert errors and "injected permanent failure" in errors[-1].reason
    world.clock.advance(60)
    bus.handle(Reconcile())  # the reconciler meets the same failure: closes the cycle
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.FAILED
    assert "injected permanent failure" in cycle.reason
