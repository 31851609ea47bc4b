"""Deployment clean-up on the real embedded endpoint (HTTP server, persisted routing table).

After every way a cycle closes, the endpoint holds only the deployments that serve traffic,
plus the previous one while a watch period keeps it warm. Jobs and the registry stay fake
data (``FakePlatform``); the endpoint calls go to ``LocalMLPlatform``.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from composition.delivery import deliver_alert
from embedded.endpoint import Predictor
from embedded.platform import LocalMLPlatform
from shared.errors import TransientError
from shared.messages import Reconcile
from shared.model import CycleState, HealthSample
from shared.policy import Policy
from tests import payloads
from tests.fakes import FakePlatform, World, make_policy, make_world
from tests.unit.test_lifecycle import HEALTHY, bus_of, complete_job, event

SICK = HealthSample(500, 100, 40.0)
EP = "credit-ep"


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        return [self.value for _ in rows]


def constant_loader(model: str, version: str) -> Predictor:
    return Constant(float(version))


@dataclass
class EmbeddedEndpoints(FakePlatform):
    """Fake jobs and registry; deployments and traffic on the embedded endpoint."""

    local: LocalMLPlatform | None = None
    traffic_outage: int = 0  # this many traffic changes fail (an outage) before one works
    deletes: list[str] = field(default_factory=list)

    @property
    def ep(self) -> LocalMLPlatform:
        assert self.local is not None
        return self.local

    def create_deployment(self, endpoint: str, deployment: str, model: str, version: str) -> None:
        self.ep.create_deployment(endpoint, deployment, model, version)

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        return self.ep.get_traffic(endpoint)

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> None:
        if self.traffic_outage:
            self.traffic_outage -= 1
            raise TransientError(f"endpoint {endpoint} is not answering")
        self.ep.set_traffic(endpoint, traffic)

    def set_mirror(self, endpoint: str, mirror: dict[str, int]) -> None:
        self.ep.set_mirror(endpoint, mirror)

    def delete_deployment(self, endpoint: str, deployment: str) -> bool:
        self.deletes.append(deployment)
        return self.ep.delete_deployment(endpoint, deployment)


@dataclass
class Setup:
    world: World
    platform: EmbeddedEndpoints

    def deployments(self) -> list[str]:
        """The endpoint's own list of its deployments (its health route)."""
        with urllib.request.urlopen(self.platform.ep.endpoint_url(EP) + "/health") as answer:
            return sorted(json.loads(answer.read())["deployments"])

    def tick(self, seconds: float = 301) -> Any:
        self.world.clock.advance(seconds)
        bus_of(self.world).handle(Reconcile())
        (cycle,) = self.world.store.list_cycles()
        return cycle

    def rolling(self) -> Any:
        """blue (v1) live at 100%; a better v2 registered and its canary at 10%."""
        cycle = complete_job(self.world)
        event(
            bus_of(self.world),
            payloads.model_registered(
                "credit", cycle.candidate_version, {"autopilot_cycle": cycle.id}
            ),
        )
        cycle = self.world.store.must(cycle.id)
        assert cycle.state is CycleState.ROLLING_OUT
        return cycle

    def promoted(self) -> Any:
        cycle = self.rolling()
        self.world.metrics.samples = {cycle.rollout.deployment: HEALTHY, "blue": HEALTHY}
        for _ in range(3):
            cycle = self.tick()
        assert cycle.state is CycleState.PROMOTED
        return cycle


def _setup(tmp_path: Path, policy: Policy | None = None) -> Iterator[Setup]:
    local = LocalMLPlatform(tmp_path, create_endpoints=True)
    local._load_model = constant_loader  # type: ignore[method-assign]
    try:
        local.create_deployment(EP, "blue", "credit", "0")
        local.set_traffic(EP, {"blue": 100})
        platform = EmbeddedEndpoints(local=local)
        platform.champions["credit"] = "0"
        world = make_world(policy)
        world.platform = platform
        world.services.platform = platform
        yield Setup(world, platform)
    finally:
        local.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    yield from _setup(tmp_path)


@pytest.fixture
def no_watch(tmp_path: Path) -> Iterator[Setup]:
    yield from _setup(tmp_path, make_policy(rollout__watch="0s"))


def test_rollback_during_the_canary_leaves_only_the_live_deployment(setup: Setup) -> None:
    cycle = setup.rolling()
    new = cycle.rollout.deployment
    assert setup.deployments() == ["blue", new]
    setup.world.metrics.samples = {new: SICK, "blue": HEALTHY}
    cycle = setup.tick()
    assert cycle.state is CycleState.ROLLED_BACK
    assert setup.deployments() == ["blue"]
    assert setup.platform.get_traffic(EP) == {"blue": 100}


def test_failing_safe_leaves_only_the_live_deployment(setup: Setup) -> None:
    cycle = setup.rolling()
    new = cycle.rollout.deployment
    setup.world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    setup.platform.traffic_outage = 3  # the 50% step fails 3 times; the restore then works
    for seconds in (301, 10, 10):
        cycle = setup.tick(seconds)
    assert cycle.state is CycleState.FAILED and "failed safe" in cycle.reason
    assert setup.deployments() == ["blue"]
    assert setup.platform.get_traffic(EP) == {"blue": 100}


def test_health_alert_in_the_watch_rolls_back_to_the_live_deployment_only(setup: Setup) -> None:
    cycle = setup.promoted()
    new = cycle.rollout.deployment
    assert setup.deployments() == ["blue", new]  # the previous one kept warm
    deliver_alert(bus_of(setup.world), payloads.alert(rule="credit-endpoint-errors"))
    cycle = setup.world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert setup.deployments() == ["blue"]
    assert setup.platform.get_traffic(EP) == {"blue": 100}


def test_promotion_without_a_watch_leaves_only_the_new_deployment(no_watch: Setup) -> None:
    cycle = no_watch.promoted()
    new = cycle.rollout.deployment
    assert no_watch.deployments() == [new]
    assert no_watch.platform.get_traffic(EP) == {new: 100}


def test_the_end_of_the_watch_leaves_only_the_new_deployment(setup: Setup) -> None:
    cycle = setup.promoted()
    new = cycle.rollout.deployment
    cycle = setup.tick(601)
    assert cycle.rollout.phase == "done"
    assert setup.deployments() == [new]
    assert setup.platform.get_traffic(EP) == {new: 100}
    setup.tick(60)  # nothing left to clean: the reconciler does not ask again
    assert setup.platform.deletes == ["blue"]
