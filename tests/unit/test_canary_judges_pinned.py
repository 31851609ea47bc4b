"""What the canary judges show a user, pinned look by look: each look's kept evidence, the
thinning of a long hold, the threshold check's samples, the endpoint the requests are read
from, and a rollout of one step (``steps: [100]``), whose live served all traffic before it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.canary_judges import settings_of, threshold_verdict
from shared.model import CycleState, HealthSample
from shared.policy import Health
from shared.sequential import RequestSample
from tests.fakes import FakeMetrics, World, make_policy, make_world
from tests.unit.test_lifecycle import registered_and_rolling, tick
from tests.unit.test_rollout_sequential import (
    decisions,
    full_step_decision,
    sequential_world,
    serve_and_look,
)


def _at(world: World, seconds: float) -> datetime:
    return world.clock.now() + timedelta(seconds=seconds)


@dataclass
class OneEndpointMetrics(FakeMetrics):
    """Requests recorded on ``credit-ep`` only: a deployment of the same name on any other
    endpoint served nothing."""

    endpoint: str = "credit-ep"

    def deployment_requests(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> RequestSample:
        if endpoint != self.endpoint:
            return RequestSample(0, 0, ())
        return super().deployment_requests(endpoint, deployment, start, end)


def on_one_endpoint(world: World) -> World:
    metrics = OneEndpointMetrics()
    world.metrics = world.services.metrics = metrics
    return world


def test_a_slower_step_is_judged_on_the_rollouts_own_endpoint() -> None:
    world = on_one_endpoint(sequential_world())
    cycle = registered_and_rolling(world)
    for _ in range(4):
        cycle = serve_and_look(world, cycle, new=(300, 0, 90.0), live=(300, 0, 50.0))
        if cycle.state is not CycleState.ROLLING_OUT:
            break
    assert cycle.state is CycleState.ROLLED_BACK
    assert "slower than live's p95" in cycle.reason


def test_the_full_step_reads_lives_last_window_on_the_rollouts_endpoint() -> None:
    full = full_step_decision(on_one_endpoint(sequential_world()), live_at_full=(0, 0, 50.0))
    assert full.evidence["live_requests"] == 800  # the 50% step: two looks of 400


def promoted(world: World, cycle: Any = None) -> Any:
    """Healthy steps with live serving (none at 100%) until promotion."""
    cycle = cycle or registered_and_rolling(world)
    for _ in range(30):
        if cycle.state is not CycleState.ROLLING_OUT:
            break
        live = (0, 0, 50.0) if cycle.rollout.percent == 100 else (400, 0, 50.0)
        cycle = serve_and_look(world, cycle, new=(400, 0, 50.0), live=live)
    assert cycle.state is CycleState.PROMOTED and cycle.rollout.phase == "watch"
    return cycle


def rolled_back_in_watch(world: World, cycle: Any) -> Any:
    """The new deployment fails 10% after promotion: the watch's rollback record."""
    cycle = serve_and_look(world, cycle, new=(300, 30, 50.0), live=(0, 0, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    assert world.platform.traffic["credit-ep"]["blue"] == 100
    rolled = [r for r in world.audit.records if r.cycle == cycle.id and "ROLLED_BACK" in r.summary]
    return rolled[-1]


def test_the_watch_reads_both_deployments_on_the_rollouts_endpoint() -> None:
    world = on_one_endpoint(sequential_world())
    rolled = rolled_back_in_watch(world, promoted(world))
    assert (rolled.evidence["new_requests"], rolled.evidence["live_requests"]) == (300, 800)


def test_after_two_steps_the_full_step_and_the_watch_compare_with_the_whole_first_step() -> None:
    """``steps: [50, 100]``, the 50% step three looks long (its first two before any request
    reached the new deployment), the 100% step two: live's baseline is the whole 50% step
    (1,200 requests), and the 100% decision's band lists the 100% step's looks only."""
    world = make_world(
        make_policy(
            rollout__analysis="sequential",
            rollout__steps=[50, 100],
            rollout__sequential={"check_every": "30s", "max_bake": "10m"},
        )
    )
    cycle = registered_and_rolling(world)
    for _ in range(2):
        cycle = serve_and_look(world, cycle, new=(0, 0, 50.0), live=(400, 0, 50.0))
    cycle = promoted(world, cycle)
    first, full = cycle.rollout.steps
    window = f"({first.at.isoformat()} to {full.at.isoformat()})"
    (passed,) = [d for d in decisions(world, cycle.id) if d.summary == "canary at 100% healthy"]
    assert window in passed.evidence["baseline"]
    assert passed.evidence["live_requests"] == 1200
    assert [b["at"] > full.at.isoformat() for b in passed.evidence["bounds"]] == [True, True]
    rolled = rolled_back_in_watch(world, cycle)
    assert window in rolled.evidence["baseline"]
    assert rolled.evidence["live_requests"] == 1200


def one_step_world() -> World:
    """``steps: [100]``; live served 10 requests a second for the hour before."""
    world = make_world(
        make_policy(
            rollout__analysis="sequential",
            rollout__steps=[100],
            rollout__sequential={"check_every": "30s", "max_bake": "10m"},
        )
    )
    world.metrics.serve("blue", _at(world, -3600), 3600, 36000, 0, 50.0)
    return world


def test_a_healthy_single_full_step_is_promoted_against_lives_traffic_before_it() -> None:
    """With one step live never serves during the rollout: the step was compared with live's
    requests of the step (none), said "no requests yet on live" at every look and was rolled
    back at max_bake however healthy. Its window before the step stands in for it now."""
    world = one_step_world()
    started = world.clock.now()
    cycle = promoted(world)
    passed = [d for d in decisions(world, cycle.id) if d.summary == "canary at 100% healthy"][-1]
    now = world.clock.now()
    before = started - (now - started)  # as long a window before the step as the step
    assert (
        f"({before.isoformat()} to {started.isoformat()}), on errors only"
        in (passed.evidence["baseline"])
    )
    assert passed.evidence["live_requests"] == 10 * (now - started).total_seconds()


def test_a_harmful_deployment_after_a_single_full_step_is_rolled_back_in_the_watch() -> None:
    world = one_step_world()
    cycle = promoted(world)
    (step,) = cycle.rollout.steps
    length = world.clock.now() - step.at  # the step lasted until promotion
    rolled = rolled_back_in_watch(world, cycle)
    window = f"({(step.at - length).isoformat()} to {step.at.isoformat()})"
    assert window in rolled.evidence["baseline"]
    assert rolled.evidence["live_requests"] == 10 * length.total_seconds()


def test_each_look_keeps_its_latency_start_lives_p95_and_six_place_estimates() -> None:
    world = sequential_world()  # the default 30 s warm-up
    cycle = registered_and_rolling(world)
    warm = _at(world, 30).isoformat()
    cycle = serve_and_look(world, cycle, new=(300, 1, 50.0), live=(300, 0, 50.0))
    first = cycle.rollout.checks[-1].evidence
    assert (first["latency_from"], first["live_p95_ms"], first["latency"]) == (warm, None, None)
    assert first["errors"]["estimate"] == 0.003333  # 1/300 - 0/300 in six places
    cycle = serve_and_look(world, cycle, new=(300, 0, 50.0), live=(300, 0, 50.0))
    second = cycle.rollout.checks[-1].evidence
    assert second["latency_from"] == warm
    # live's 300 latencies after the warm-up: 50..69 ms, 15 of each; p95 between 68 and 69
    assert second["live_p95_ms"] == pytest.approx(68.05)
    assert second["errors"]["estimate"] == 0.001667  # 1/600 in six places


def test_a_long_look_keeps_sixty_looks_then_every_other_and_holds_with_that_band() -> None:
    """61 looks without a decision: sixty are all kept; the 61st keeps the first, the last and
    every other between (31), and the hold audited at that look lists those 31."""
    world = sequential_world(max_bake=61 * 30, on_max_bake="hold")
    cycle = registered_and_rolling(world)
    times = []
    for _ in range(61):
        cycle = serve_and_look(world, cycle, new=(1, 0, 50.0), live=(9, 0, 50.0))
        times.append(world.clock.now().isoformat())
        if len(times) == 60:
            assert [c.at.isoformat() for c in cycle.rollout.checks] == times
    assert cycle.state is CycleState.ROLLING_OUT and cycle.rollout.percent == 10
    kept = times[::2]
    assert [c.at.isoformat() for c in cycle.rollout.checks] == kept
    (held,) = [d for d in decisions(world, cycle.id) if "held at max_bake" in d.summary]
    assert [b["at"] for b in held.evidence["bounds"]] == kept
    next_look = _at(world, 30).strftime("%H:%M:%S UTC")
    assert "(held past max_bake): 61 requests: " in cycle.reason
    assert cycle.reason.endswith(f"; next look {next_look}")  # no "decision by" any more


def test_a_look_without_new_traffic_replaces_the_look_before() -> None:
    world = sequential_world()
    cycle = registered_and_rolling(world)
    cycle = serve_and_look(world, cycle, new=(5, 0, 50.0), live=(45, 0, 50.0))
    cycle = serve_and_look(world, cycle, new=(0, 0, 50.0), live=(10, 0, 50.0))
    (look,) = cycle.rollout.checks
    assert (look.at, look.new_requests, look.evidence["live_requests"]) == (
        world.clock.now(),
        5,
        55,
    )


def test_failing_safe_at_max_bake_audits_the_last_look_as_evidence() -> None:
    world = sequential_world(max_bake="2m")
    cycle = registered_and_rolling(world)
    started = world.clock.now()
    for _ in range(4):
        cycle = serve_and_look(world, cycle, new=(3, 0, 50.0), live=(27, 0, 50.0))
    assert cycle.state is CycleState.ROLLED_BACK
    records = world.audit.records
    (rolled,) = [r for r in records if r.cycle == cycle.id and "ROLLED_BACK" in r.summary]
    assert rolled.caused_by == "timer:reconcile"
    evidence = rolled.evidence
    assert evidence["window"] == [started.isoformat(), world.clock.now().isoformat()]
    assert (evidence["verdict"], evidence["new_requests"], evidence["live_requests"]) == (
        "continue",
        12,
        108,
    )


def test_the_threshold_check_shows_both_samples_and_its_pass() -> None:
    world = make_world()
    cycle = registered_and_rolling(world)
    world.metrics.samples = {
        cycle.rollout.deployment: HealthSample(300, 1, 40.0),
        "blue": HealthSample(2700, 3, 38.5),
    }
    tick(world)
    (healthy,) = [d for d in decisions(world, cycle.id) if d.summary == "canary at 10% healthy"]
    assert healthy.evidence["verdict"] == "pass"
    assert healthy.evidence["new"] == {
        "requests": 300,
        "errors": 1,
        "error_rate": 0.003333,
        "latency_p95_ms": 40.0,
    }
    assert healthy.evidence["live"] == {
        "requests": 2700,
        "errors": 3,
        "error_rate": 0.001111,
        "latency_p95_ms": 38.5,
    }
    assert world.store.must(cycle.id).rollout.checks[0].verdict == "pass"  # type: ignore[union-attr]


HEALTH = Health(
    min_requests=100,
    max_error_rate=0.05,
    max_error_rate_increase=0.02,
    max_latency_p95_ms=200.0,
    max_latency_ratio=2.0,
)


@pytest.mark.parametrize(
    ("new", "old", "verdict"),
    [
        (HealthSample(99, 0, 10.0), None, "wait"),  # one short of min_requests
        (HealthSample(100, 5, 10.0), None, "pass"),  # exactly min_requests, exactly 5%
        (HealthSample(100, 6, 10.0), None, "breach"),
        (HealthSample(100, 3, 10.0), HealthSample(100, 1, 10.0), "pass"),  # +2 pp exactly
        (HealthSample(100, 4, 10.0), HealthSample(100, 1, 10.0), "breach"),
        (HealthSample(100, 4, 10.0), HealthSample(0, 0, None), "pass"),  # live idle: no increase
        (HealthSample(100, 0, 200.0), None, "pass"),  # exactly the p95 ceiling
        (HealthSample(100, 0, 201.0), None, "breach"),
        (HealthSample(100, 0, 100.0), HealthSample(100, 0, 50.0), "pass"),  # exactly 2x live
        (HealthSample(100, 0, 101.0), HealthSample(100, 0, 50.0), "breach"),
        (HealthSample(100, 0, 150.0), HealthSample(100, 0, None), "pass"),  # live's p95 unknown
        (HealthSample(100, 0, None), HealthSample(100, 0, 50.0), "pass"),  # new's p95 unknown
    ],
)
def test_threshold_verdicts_at_their_boundaries(
    new: HealthSample, old: HealthSample | None, verdict: str
) -> None:
    assert threshold_verdict(new, old, HEALTH)[0] == verdict


def test_a_threshold_pass_says_how_many_requests_at_what_error_rate() -> None:
    assert threshold_verdict(HealthSample(400, 2, 30.0), None, HEALTH) == (
        "pass",
        "400 requests, error rate 0.50%",
    )


@pytest.mark.parametrize(("watch", "stages"), [("0s", 3), ("1s", 4), ("10m", 4)])
def test_alpha_is_split_over_the_steps_and_any_watch_period(watch: str, stages: int) -> None:
    spec = make_policy(rollout__watch=watch).models["credit"].rollout
    assert spec is not None
    assert settings_of(spec).alpha == pytest.approx(spec.sequential.alpha / stages)
