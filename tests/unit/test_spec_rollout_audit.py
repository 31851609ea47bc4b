"""What the audit log of a rollout tells its reader: every record names the event or tick that
caused it, a decision carries the evidence it was made on, a rollback keeps the failing look's
evidence, and what the platform was asked to do (which deployment, which version, which window)
is the rollout's own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.messages import HealthAlertFired, ModelRegistered, Reconcile
from shared.model import AuditRecord, Cycle, CycleState, HealthSample
from shared.rollout_state import Phase
from tests.fakes import World, make_world
from tests.unit.test_spec_rollout import (
    ENDPOINT,
    HEALTHY,
    LIVE,
    bus_of,
    policy,
    registered,
)

NEW = "credit-v8"  # the candidate's deployment: credit is live at v7, the candidate is v8
SICK = HealthSample(requests=500, errors=100, latency_p95_ms=40.0)


def since(world: World, before: int, cycle: Cycle | None = None) -> list[AuditRecord]:
    """The audit records written after the first ``before`` (of ``cycle`` only, if given)."""
    records = world.audit.records[before:]
    return [r for r in records if cycle is None or r.cycle == cycle.id]


def tick(world: World, key: str, seconds: float = 301) -> list[AuditRecord]:
    """A reconcile tick ``seconds`` later, with its own key; the records it wrote."""
    before = len(world.audit.records)
    world.clock.advance(seconds)
    bus_of(world).handle(Reconcile(event_key=key))
    return since(world, before)


def register(world: World, cycle: Cycle, key: str = "registered-8") -> list[AuditRecord]:
    before = len(world.audit.records)
    assert cycle.candidate_version
    tags = {"autopilot_cycle": cycle.id}
    bus_of(world).handle(ModelRegistered(cycle.model, cycle.candidate_version, tags, key))
    return since(world, before)


def start(world: World, **rollout: Any) -> tuple[Cycle, list[AuditRecord]]:
    """credit live at v7 on credit-ep, candidate v8 registered and its rollout started."""
    world.services.policy = policy(**rollout)
    cycle = registered(world, "credit", "7")
    written = register(world, cycle)
    return world.store.must(cycle.id), written


def keys(records: list[AuditRecord]) -> set[str | None]:
    return {r.caused_by for r in records}


def healthy(world: World) -> None:
    world.metrics.samples = {NEW: HEALTHY, LIVE["credit"]: HEALTHY}


def cleaned_up(world: World) -> set[str]:
    return set(world.platform.deployments.get(ENDPOINT["credit"], {}))


# --- the start of a rollout ----------------------------------------------------------------


def test_starting_a_rollout_is_audited_as_caused_by_the_registration_event() -> None:
    world = make_world()
    cycle, written = start(world)
    assert keys(written) == {"registered-8"}
    moved = [r for r in written if r.summary == "cycle REGISTERED -> ROLLING_OUT"]
    assert [(r.kind, r.reason) for r in moved] == [
        ("action", f"creating deployment {NEW} on credit-ep at 0% traffic")
    ]
    step = [r for r in written if r.summary.startswith("traffic ")]
    assert [(r.kind, r.summary, r.evidence) for r in step] == [
        (
            "action",
            f"traffic credit-live 90%, {NEW} 10% on credit-ep (step 1/3)",
            {"traffic": {NEW: 10, "credit-live": 90}},
        )
    ]
    assert all(r.cycle == cycle.id and r.model == "credit" and r.version == "8" for r in step)


def test_the_new_deployment_serves_the_candidate_version_of_this_model() -> None:
    world = make_world()
    start(world)
    assert world.platform.created == [("credit-ep", NEW, "credit", "8")]
    assert world.platform.champions["credit"] == "7"  # not before promotion


def test_the_rollout_started_and_each_step_are_published_with_their_deployments() -> None:
    world = make_world()
    start(world)
    published = [(t, s, d) for t, s, d in world.publisher.published if "rollout" in t]
    assert [(t, s) for t, s, _ in published] == [
        ("Autopilot.rollout.started", "models/credit"),
        ("Autopilot.rollout.step", "models/credit"),
    ]
    assert published[0][2]["deployment"] == NEW
    assert published[0][2]["previous"] == "credit-live"
    assert published[1][2]["traffic"] == {NEW: 10, "credit-live": 90}


def test_the_live_deployment_is_the_one_with_the_most_traffic_not_the_last_by_name() -> None:
    world = make_world()
    world.platform.deployments["credit-ep"] = {"zz-old": "6"}
    world.platform.traffic["credit-ep"] = {"zz-old": 0}
    cycle, _ = start(world)
    assert cycle.rollout is not None and cycle.rollout.previous == "credit-live"
    assert world.platform.traffic["credit-ep"] == {"zz-old": 0, "credit-live": 90, NEW: 10}


def test_a_first_deployment_is_promoted_at_once_and_keeps_nothing_warm() -> None:
    """The endpoint already sends everything to the candidate's deployment (a rollout cut
    short after its traffic moved): there is no previous deployment to come back to."""
    world = make_world(policy())
    cycle = registered(world, "credit", "7")
    world.platform.deployments["credit-ep"] = {NEW: "8"}
    world.platform.traffic["credit-ep"] = {NEW: 100}
    written = register(world, cycle)
    done = world.store.must(cycle.id)
    assert done.state is CycleState.PROMOTED and done.rollout is not None
    assert done.rollout.previous is None and done.rollout.phase is Phase.DONE
    promoted = [r for r in written if r.summary == "cycle ROLLING_OUT -> PROMOTED"]
    assert [(r.kind, r.reason, r.evidence) for r in promoted] == [
        (
            "action",
            "promoted credit v8: first deployment of this model on the endpoint",
            {"watch_until": None, "kept_warm": None},
        )
    ]
    assert keys(written) == {"registered-8"}
    started = [d for t, _, d in world.publisher.published if t == "Autopilot.rollout.started"]
    assert started[0]["previous"] is None


@pytest.mark.parametrize(
    ("tags", "summary"),
    [
        ({}, "model credit v8 registered elsewhere"),
        ({"autopilot_cycle": "no-such-cycle"}, "model credit v8 registered elsewhere"),
    ],
)
def test_a_registration_no_cycle_of_ours_made_is_ignored_and_says_so(
    tags: dict[str, str], summary: str
) -> None:
    world = make_world(policy())
    before = len(world.audit.records)
    bus_of(world).handle(ModelRegistered("credit", "8", tags, "elsewhere-8"))
    written = since(world, before)
    assert [(r.kind, r.summary, r.model, r.reason, r.caused_by) for r in written] == [
        (
            "ignored",
            summary,
            "credit",
            "not registered by one of our cycles",
            "elsewhere-8",
        )
    ]


def test_a_registration_tagged_with_another_models_cycle_is_ignored() -> None:
    world = make_world(policy())
    fraud = registered(world, "fraud", "3")
    before = len(world.audit.records)
    tags = {"autopilot_cycle": fraud.id}
    bus_of(world).handle(ModelRegistered("credit", "4", tags, "registered-credit"))
    written = since(world, before)
    assert [(r.kind, r.summary, r.caused_by) for r in written] == [
        ("ignored", "model credit v4 registered elsewhere", "registered-credit")
    ]
    assert world.store.must(fraud.id).state is CycleState.REGISTERED


@pytest.mark.parametrize("rolling_out", [True, False])
def test_a_registration_already_handled_or_of_another_version_is_ignored(
    rolling_out: bool,
) -> None:
    world = make_world()
    cycle, _ = start(world) if rolling_out else (None, [])
    if cycle is None:
        world.services.policy = policy()
        cycle = registered(world, "credit", "7")
    state = world.store.must(cycle.id).state
    version = "8" if rolling_out else "9"
    before = len(world.audit.records)
    tags = {"autopilot_cycle": cycle.id}
    bus_of(world).handle(ModelRegistered("credit", version, tags, "registered-again"))
    written = since(world, before)
    assert [(r.kind, r.summary, r.cycle, r.reason, r.caused_by) for r in written] == [
        (
            "ignored",
            f"registration of v{version} already handled",
            cycle.id,
            f"cycle is {state.value}",
            "registered-again",
        )
    ]
    assert world.store.must(cycle.id).state is state


def test_a_rollout_waiting_for_a_busy_endpoint_names_the_rollout_it_waits_for() -> None:
    data = policy()
    fraud_rollout = data.models["fraud"].rollout
    assert fraud_rollout is not None
    shared_endpoint = fraud_rollout.model_copy(update={"endpoint": "credit-ep"})
    data.models["fraud"] = data.models["fraud"].model_copy(update={"rollout": shared_endpoint})
    world = make_world(data)
    credit = registered(world, "credit", "7")
    register(world, credit)
    fraud = registered(world, "fraud", "3")
    written = register(world, fraud, "registered-fraud")
    assert [(r.kind, r.summary, r.cycle, r.reason, r.caused_by) for r in written] == [
        (
            "decision",
            "rollout waits: endpoint credit-ep is busy",
            fraud.id,
            f"cycle {credit.id} is rolling out there; one rollout per endpoint",
            "registered-fraud",
        )
    ]
    assert world.store.must(fraud.id).state is CycleState.REGISTERED
    bus_of(world).handle(HealthAlertFired("credit", "credit-endpoint-errors", "alert-1"))
    written = tick(world, "tick-free")
    assert world.store.must(fraud.id).state is CycleState.ROLLING_OUT
    assert keys([r for r in written if r.cycle == fraud.id]) == {"tick-free"}


# --- each step ------------------------------------------------------------------------------


def test_each_healthy_step_is_audited_with_its_evidence_and_caused_by_its_tick() -> None:
    world = make_world()
    cycle, _ = start(world)
    healthy(world)
    started = world.clock.now()
    written = tick(world, "tick-1")
    now = world.clock.now()
    assert keys(written) == {"tick-1"}
    decision = [r for r in written if r.kind == "decision"]
    assert [(r.summary, r.reason, r.cycle, r.model, r.version) for r in decision] == [
        ("canary at 10% healthy", "500 requests, error rate 0.20%", cycle.id, "credit", "8")
    ]
    health = {"requests": 500, "errors": 1, "error_rate": 0.002, "latency_p95_ms": 40.0}
    assert decision[0].evidence == {
        "window": [started.isoformat(), now.isoformat()],
        "percent": 10,
        "new": health,
        "live": health,
        "verdict": "pass",
        "estimated_performance": None,
    }
    check = world.store.must(cycle.id).rollout.checks[-1]  # type: ignore[union-attr]
    assert (check.at, check.verdict, check.why) == (now, "pass", decision[0].reason)
    assert check.evidence == {k: v for k, v in decision[0].evidence.items() if k != "verdict"}
    assert world.metrics.asked == [
        ("credit-ep", NEW, started, now),
        ("credit-ep", "credit-live", started, now),
    ]


def test_a_breach_rolls_back_with_the_failing_looks_evidence_and_the_ticks_key() -> None:
    world = make_world()
    start(world)
    world.metrics.samples = {NEW: SICK, LIVE["credit"]: HEALTHY}
    started = world.clock.now()
    written = tick(world, "tick-sick")
    assert keys(written) == {"tick-sick"}
    rolled = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
    assert len(rolled) == 1
    assert (rolled[0].kind, rolled[0].actor) == ("decision", "system")
    assert rolled[0].reason == "rolled back: canary at 10% breach: error rate 20.00% > 5.00%"
    assert rolled[0].evidence["window"] == [started.isoformat(), world.clock.now().isoformat()]
    assert rolled[0].evidence["new"]["errors"] == 100
    assert rolled[0].evidence["verdict"] == "breach"
    assert rolled[0].evidence["restored"] == {"credit-live": 100}
    assert world.platform.traffic["credit-ep"] == {"credit-live": 100}  # candidate deleted
    assert NEW not in cleaned_up(world)


def test_the_last_step_promotes_with_its_looks_reason_and_keeps_live_warm() -> None:
    world = make_world()
    cycle, _ = start(world, watch="10m")
    healthy(world)
    tick(world, "tick-1")
    tick(world, "tick-2")
    world.metrics.samples[NEW] = HealthSample(800, 2, 40.0)
    written = tick(world, "tick-3")
    assert keys(written) == {"tick-3"}
    now = world.clock.now()
    promoted = [r for r in written if r.summary == "cycle ROLLING_OUT -> PROMOTED"]
    assert [(r.kind, r.reason, r.evidence) for r in promoted] == [
        (
            "action",
            "promoted credit v8: 800 requests, error rate 0.25%",
            {"watch_until": (now + timedelta(minutes=10)).isoformat(), "kept_warm": "credit-live"},
        )
    ]
    done = world.store.must(cycle.id)
    assert done.rollout is not None
    assert done.rollout.next_check_at == now + timedelta(minutes=10)
    assert "credit-live" in cleaned_up(world)  # kept warm for the watch


@pytest.mark.parametrize(("watch", "phase"), [("0s", Phase.DONE), ("1s", Phase.WATCH)])
def test_a_watch_period_of_any_length_keeps_the_previous_deployment(
    watch: str, phase: Phase
) -> None:
    world = make_world()
    cycle, _ = start(world, steps=[100], watch=watch)
    healthy(world)
    written = tick(world, "tick-1")
    done = world.store.must(cycle.id)
    assert done.state is CycleState.PROMOTED and done.rollout is not None
    assert done.rollout.phase is phase
    assert ("credit-live" in cleaned_up(world)) is (phase is Phase.WATCH)
    assert keys(written) == {"tick-1"}
    if phase is Phase.DONE:
        assert any(r.summary == "deployment credit-live deleted from credit-ep" for r in written)


# --- too little traffic ---------------------------------------------------------------------


@pytest.mark.parametrize(("after_deadline", "rolled_back"), [(0, False), (1, True)])
def test_too_little_traffic_rolls_back_only_after_the_wait(
    after_deadline: float, rolled_back: bool
) -> None:
    world = make_world()
    cycle, _ = start(world, bake="5m", max_wait="10m")
    thin = HealthSample(requests=3, errors=0, latency_p95_ms=40.0)
    world.metrics.samples = {NEW: thin, LIVE["credit"]: HEALTHY}
    tick(world, "tick-1", 300)
    written = tick(world, "tick-2", 600 + after_deadline)
    after = world.store.must(cycle.id)
    assert (after.state is CycleState.ROLLED_BACK) is rolled_back
    if rolled_back:
        rolled = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
        assert rolled[0].reason == (
            "rolled back: not enough traffic for a verdict within the wait: "
            "3 requests < 20 needed for a verdict"
        )
        assert rolled[0].evidence["new"]["requests"] == 3
        assert rolled[0].evidence["verdict"] == "wait"
        assert keys(written) == {"tick-2"}


def test_a_wait_past_the_deadline_is_looked_at_one_second_after_it() -> None:
    world = make_world()
    cycle, _ = start(world, bake="5m", max_wait="2s")
    started = world.clock.now()
    world.metrics.samples = {NEW: HealthSample(3, 0, 40.0), LIVE["credit"]: HEALTHY}
    tick(world, "tick-1", 300)
    waiting = world.store.must(cycle.id)
    assert waiting.state is CycleState.ROLLING_OUT and waiting.rollout is not None
    assert waiting.rollout.next_check_at == started + timedelta(seconds=303)
    assert waiting.reason == (
        "canary at 10%: waiting for traffic (3 requests < 20 needed for a verdict); "
        "next health check 12:05:03 UTC, rolled back if still too little after 12:05:02 UTC"
    )


def test_a_run_of_waits_after_a_pass_keeps_the_pass_and_the_latest_wait() -> None:
    world = make_world()
    cycle, _ = start(world)
    healthy(world)
    tick(world, "tick-1")
    world.metrics.samples[NEW] = HealthSample(3, 0, 40.0)
    tick(world, "tick-2")
    tick(world, "tick-3")
    last = tick(world, "tick-4")
    assert not [r for r in last if r.cycle == cycle.id]  # a wait is not audited
    ro = world.store.must(cycle.id).rollout
    assert ro is not None
    assert [(c.verdict, c.at) for c in ro.checks] == [
        ("pass", ro.steps[1].at),
        ("wait", world.clock.now()),
    ]


# --- health alerts and rollbacks ------------------------------------------------------------


def test_a_health_alert_rollback_carries_the_alerts_evidence_and_key() -> None:
    world = make_world()
    cycle, _ = start(world)
    before = len(world.audit.records)
    evidence = {"alert": "credit-endpoint-errors", "value": 0.31}
    bus_of(world).handle(HealthAlertFired("credit", "credit-endpoint-errors", "alert-7", evidence))
    written = since(world, before)
    assert keys(written) == {"alert-7"}
    rolled = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
    assert rolled[0].evidence == {**evidence, "restored": {"credit-live": 100}}
    assert world.store.must(cycle.id).state is CycleState.ROLLED_BACK


def test_a_rollback_whose_traffic_change_still_runs_is_finished_by_the_next_tick() -> None:
    world = make_world()
    cycle, _ = start(world)
    world.platform.in_progress["set_traffic"] = 1
    evidence = {"alert": "credit-endpoint-errors"}
    before = len(world.audit.records)
    bus_of(world).handle(HealthAlertFired("credit", "credit-endpoint-errors", "alert-7", evidence))
    written = since(world, before)
    assert [(r.kind, r.summary, r.reason, r.caused_by) for r in written] == [
        (
            "action",
            "rollback to credit-live in progress; the reconciler checks it on its next tick",
            "set_traffic credit-ep: operation still running",
            "alert-7",
        )
    ]
    assert world.store.must(cycle.id).state is CycleState.ROLLING_OUT
    written = tick(world, "tick-after", 301)  # after the step's bake: nothing judges it now
    assert keys(written) == {"tick-after"}
    rolled = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
    assert rolled[0].reason == (
        "rolled back: health alert 'credit-endpoint-errors' fired during rollout"
    )
    assert rolled[0].evidence == {**evidence, "restored": {"credit-live": 100}}
    after = world.store.must(cycle.id)
    assert after.state is CycleState.ROLLED_BACK and after.reason == rolled[0].reason
    assert [c.verdict for c in after.rollout.checks] == []  # type: ignore[union-attr]
    assert world.platform.traffic["credit-ep"] == {"credit-live": 100}


def test_a_permanent_error_during_a_step_fails_safe_and_names_it() -> None:
    from shared.errors import PermanentError

    world = make_world()
    cycle, _ = start(world)
    world.metrics.failure = PermanentError("metrics workspace deleted")
    written = tick(world, "tick-broken")
    failed = world.store.must(cycle.id)
    assert failed.state is CycleState.FAILED
    assert failed.reason == "metrics workspace deleted; failed safe (credit-live at 100%)"
    assert world.platform.traffic["credit-ep"] == {"credit-live": 100}
    assert keys([r for r in written if r.cycle == cycle.id]) == {"tick-broken"}


# --- platform operations still running ------------------------------------------------------


def test_a_deployment_still_provisioning_is_waited_for_then_the_rollout_goes_on() -> None:
    world = make_world()
    world.platform.in_progress["create_deployment"] = 1
    cycle, written = start(world)
    waiting = [
        r for r in written if r.summary.endswith("the reconciler checks it on its next tick")
    ]
    assert [(r.kind, r.summary, r.reason, r.caused_by) for r in waiting] == [
        (
            "action",
            f"deployment {NEW} in progress; the reconciler checks it on its next tick",
            f"create_deployment {NEW}: operation still running",
            "registered-8",
        )
    ]
    assert cycle.rollout is not None and cycle.rollout.in_progress == f"deployment {NEW}"
    written = tick(world, "tick-1", 10)
    assert keys([r for r in written if r.cycle == cycle.id]) == {"tick-1"}
    going = world.store.must(cycle.id)
    assert going.rollout is not None and going.rollout.percent == 10


def test_a_deployment_that_fails_to_provision_fails_the_cycle_and_is_removed() -> None:
    world = make_world()
    world.platform.fail_creates = True
    cycle, written = start(world)
    assert cycle.state is CycleState.FAILED
    failed = [r for r in written if r.summary == "cycle ROLLING_OUT -> FAILED"]
    assert [(r.kind, r.reason) for r in failed] == [
        ("error", f"deployment failed: deployment {NEW} failed to provision")
    ]
    assert keys(written) == {"registered-8"}
    assert NEW not in cleaned_up(world)


def test_a_rollout_cut_short_before_its_deployment_resumes_once_stale() -> None:
    world = make_world()
    world.services.policy = policy()
    cycle = registered(world, "credit", "7")
    world.platform.in_progress["create_deployment"] = 1
    register(world, cycle)
    # as if the worker died after the state change: nothing recorded as in progress
    stuck = world.store.must(cycle.id)
    assert stuck.rollout is not None
    stuck.rollout = stuck.rollout.platform_done()
    world.store.save_cycle(stuck)
    stale = world.services.settings.stale_after_s
    assert not [r for r in tick(world, "tick-early", 1) if r.cycle == cycle.id]
    assert world.store.must(cycle.id).rollout.percent is None  # type: ignore[union-attr]
    written = tick(world, "tick-stale", stale + 1)
    assert world.store.must(cycle.id).rollout.percent == 10  # type: ignore[union-attr]
    assert keys([r for r in written if r.cycle == cycle.id]) == {"tick-stale"}


def test_a_step_change_still_running_is_applied_by_the_next_tick_without_judging_again() -> None:
    world = make_world()
    cycle, _ = start(world)
    healthy(world)
    world.platform.in_progress["set_traffic"] = 1
    tick(world, "tick-1")
    held = world.store.must(cycle.id)
    assert held.rollout is not None and held.rollout.percent == 10
    assert held.rollout.in_progress == f"traffic change to {{'{NEW}': 50, 'credit-live': 50}}"
    written = tick(world, "tick-2", 10)
    moved = world.store.must(cycle.id)
    assert moved.rollout is not None and moved.rollout.percent == 50
    assert [c.verdict for c in moved.rollout.checks] == ["pass"]
    assert [r.summary for r in written if r.cycle == cycle.id] == [
        f"traffic credit-live 50%, {NEW} 50% on credit-ep (step 2/3)"
    ]
    assert keys(written) == {"tick-2"}


def test_an_unconfirmed_step_is_retried_without_judging_it_again() -> None:
    world = make_world()
    cycle, _ = start(world)
    healthy(world)
    world.platform.ignore_traffic_changes = True
    first = tick(world, "tick-1")
    assert [r.caused_by for r in first if r.kind == "error"] == ["tick-1"]
    world.platform.ignore_traffic_changes = False
    written = tick(world, "tick-2", 10)
    moved = world.store.must(cycle.id)
    assert moved.rollout is not None and moved.rollout.percent == 50
    assert [c.verdict for c in moved.rollout.checks] == ["pass"]
    assert keys(written) == {"tick-2"}


def test_failing_safe_retries_the_restore_and_keeps_the_evidence() -> None:
    world = make_world()
    cycle, _ = start(world, traffic_attempts=1)
    healthy(world)
    world.platform.ignore_traffic_changes = True
    written = tick(world, "tick-1")
    restoring = world.store.must(cycle.id)
    assert restoring.rollout is not None and restoring.rollout.phase is Phase.RESTORING
    assert keys(written) == {"tick-1"}
    world.platform.ignore_traffic_changes = False
    written = tick(world, "tick-2", 10)
    failed = [r for r in written if r.summary == "cycle ROLLING_OUT -> FAILED"]
    assert failed[0].reason == (
        "traffic change did not take effect after 1 attempts; failed safe (credit-live at 100%)"
    )
    assert failed[0].evidence["wanted"] == {NEW: 50, "credit-live": 50}
    assert keys(written) == {"tick-2"}


# --- shadow ---------------------------------------------------------------------------------


SHADOW = {"percent": 20, "bake": "2m"}


@pytest.mark.parametrize(("analysis", "first_look_s"), [("threshold", 120), ("sequential", 45)])
def test_shadow_mirrors_its_share_and_is_looked_at_after_its_own_bake(
    analysis: str, first_look_s: float
) -> None:
    world = make_world()
    now = world.clock.now()
    cycle, written = start(
        world, shadow=SHADOW, analysis=analysis, sequential={"check_every": "45s"}
    )
    ro = cycle.rollout
    assert ro is not None and ro.phase is Phase.SHADOW
    assert world.platform.mirrors["credit-ep"] == {NEW: 20}
    assert ro.steps[-1].mirror == 20 and ro.steps[-1].traffic == {"credit-live": 100}
    due = now + timedelta(seconds=first_look_s)
    assert ro.next_check_at == due
    assert cycle.reason == (
        f"shadow: credit-live serves 100% on credit-ep, 20% mirrored to {NEW}; "
        f"health check due {due.strftime('%H:%M:%S')} UTC"
    )
    mirrored = [r for r in written if r.summary.startswith("shadow:")]
    assert [(r.kind, r.summary, r.cycle, r.caused_by) for r in mirrored] == [
        (
            "action",
            f"shadow: 20% of live traffic mirrored to {NEW} (responses discarded)",
            cycle.id,
            "registered-8",
        )
    ]


def test_a_mirror_still_being_set_up_is_waited_for() -> None:
    world = make_world()
    world.platform.in_progress["set_mirror"] = 1
    cycle, written = start(world, shadow=SHADOW)
    waiting = [r for r in written if "in progress" in r.summary]
    assert [(r.summary, r.reason, r.caused_by) for r in waiting] == [
        (
            f"mirroring to {NEW} in progress; the reconciler checks it on its next tick",
            "set_mirror credit-ep: operation still running",
            "registered-8",
        )
    ]
    tick(world, "tick-1", 10)
    assert world.store.must(cycle.id).rollout.phase is Phase.SHADOW  # type: ignore[union-attr]


def test_after_shadow_the_canary_steps_bake_their_own_time() -> None:
    world = make_world()
    cycle, _ = start(world, shadow={"percent": 20, "bake": "10m"}, bake="1m")
    healthy(world)
    written = tick(world, "tick-1", 600)
    assert keys(written) == {"tick-1"}
    canary = world.store.must(cycle.id)
    assert canary.rollout is not None and canary.rollout.percent == 10
    assert world.platform.mirrors["credit-ep"] == {}
    tick(world, "tick-2", 61)
    assert world.store.must(cycle.id).rollout.percent == 50  # type: ignore[union-attr]


# --- the sequential judge -------------------------------------------------------------------


def sequential_look(world: World, key: str, new: tuple[int, int], live: tuple[int, int]) -> Any:
    """Both deployments serve (requests, errors) for 30 s at 50 ms; then a tick."""
    at = world.clock.now()
    world.metrics.serve(NEW, at, 30, new[0], new[1], 50.0)
    world.metrics.serve(LIVE["credit"], at, 30, live[0], live[1], 50.0)
    return tick(world, key, 30)


SEQUENTIAL = {"analysis": "sequential", "sequential": {"check_every": "30s", "max_bake": "10m"}}


def test_a_sequential_rollback_carries_the_looks_evidence_and_its_ticks_key() -> None:
    world = make_world()
    cycle, _ = start(world, **SEQUENTIAL)
    written = sequential_look(world, "look-1", (300, 30), (300, 3))
    assert keys(written) == {"look-1"}
    rolled = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
    assert rolled[0].reason.startswith("rolled back: canary at 10%: rolled back after 300 ")
    assert rolled[0].evidence["analysis"] == "sequential"
    assert rolled[0].evidence["bounds"][-1]["errors"]["lower"] > 0
    assert rolled[0].evidence["verdict"] == "rollback"
    assert rolled[0].evidence["restored"] == {"credit-live": 100}
    assert world.store.must(cycle.id).state is CycleState.ROLLED_BACK


def test_a_sequential_pass_of_the_last_step_promotes_with_the_looks_sentence() -> None:
    """``steps: [100]``: live serves nothing at the step; it served everything before it."""
    world = make_world()
    began = world.clock.now()
    for half_minute in range(1, 21):
        world.metrics.serve(
            LIVE["credit"], began - timedelta(seconds=30 * half_minute), 30, 300, 0, 50.0
        )
    cycle, _ = start(world, steps=[100], **SEQUENTIAL)
    for look in range(10):
        written = sequential_look(world, f"look-{look}", (300, 0), (0, 0))
        if world.store.must(cycle.id).state is not CycleState.ROLLING_OUT:
            break
    assert keys(written) == {f"look-{look}"}
    passed = [r for r in written if r.summary == "canary at 100% healthy"]
    assert passed[0].kind == "decision" and passed[0].evidence["analysis"] == "sequential"
    promoted = [r for r in written if r.summary == "cycle ROLLING_OUT -> PROMOTED"]
    assert promoted[0].reason == f"promoted credit v8: {passed[0].reason}"


def test_when_health_and_the_estimate_both_breach_the_rollback_names_the_health_breach() -> None:
    from tests.unit.test_performance import canary, degraded_scores, healthy_scores, serve

    world, cycle = canary()
    serve(world, cycle, degraded_scores(800), healthy_scores(800))
    world.metrics.samples[cycle.rollout.deployment] = SICK
    written = tick(world, "tick-1")
    rolled = world.store.must(cycle.id)
    assert rolled.state is CycleState.ROLLED_BACK
    assert rolled.reason == "rolled back: canary at 10% breach: error rate 20.00% > 5.00%"
    rollback = [r for r in written if r.summary == "cycle ROLLING_OUT -> ROLLED_BACK"]
    estimate = rollback[0].evidence["estimated_performance"]
    assert estimate["live"]["value"] - estimate["new"]["value"] > estimate["tolerance"]


def test_a_first_deployment_whose_promotion_was_cut_short_is_judged_alone_then_promoted() -> None:
    from shared.errors import TransientError

    world = make_world(policy())
    cycle = registered(world, "credit", "7")
    world.platform.deployments["credit-ep"] = {}
    world.platform.traffic["credit-ep"] = {}
    world.platform.champion_failures = 1
    with pytest.raises(TransientError):
        register(world, cycle)
    cut = world.store.must(cycle.id)
    assert cut.state is CycleState.ROLLING_OUT
    assert cut.reason == f"first deployment: {NEW} 100% on credit-ep (step 1/1)"
    assert world.platform.traffic["credit-ep"] == {NEW: 100}
    world.metrics.samples = {NEW: HEALTHY}
    written = tick(world, "tick-1")
    done = world.store.must(cycle.id)
    assert done.state is CycleState.PROMOTED and world.platform.champions["credit"] == "8"
    healthy_look = [r for r in written if r.summary == "canary at 100% healthy"]
    assert healthy_look[0].evidence["live"] is None
    assert done.reason == "promoted credit v8: 500 requests, error rate 0.20%"


def test_an_unconfirmed_change_from_shadow_to_the_first_step_is_retried_not_judged_again() -> None:
    world = make_world()
    cycle, _ = start(world, shadow=SHADOW)
    healthy(world)
    world.platform.ignore_traffic_changes = True
    tick(world, "tick-1", 120)
    failed_once = world.store.must(cycle.id).rollout
    assert failed_once is not None and failed_once.traffic_failures == 1
    world.platform.ignore_traffic_changes = False
    written = tick(world, "tick-2", 10)
    moved = world.store.must(cycle.id).rollout
    assert moved is not None and (moved.phase, moved.percent) == (Phase.CANARY, 10)
    assert [c.verdict for c in moved.checks] == ["pass"]  # the shadow was judged once
    assert not [r for r in written if r.kind == "decision"]
    assert keys(written) == {"tick-2"}


def test_a_retry_stored_by_an_older_version_reapplies_the_running_step() -> None:
    """Versions before ``pending_step`` stored only the failure count: the running step's
    change is applied again."""
    world = make_world()
    cycle, _ = start(world)
    stored = world.store.cycles[cycle.id]
    stored["rollout"] = {**stored["rollout"], "pending_step": None, "traffic_failures": 1}
    world.platform.traffic["credit-ep"] = {"credit-live": 100, NEW: 0}
    written = tick(world, "tick-1", 10)
    again = world.store.must(cycle.id).rollout
    assert again is not None and (again.percent, again.traffic_failures) == (10, 0)
    assert world.platform.traffic["credit-ep"] == {"credit-live": 90, NEW: 10}
    assert [r.summary for r in written] == [
        f"traffic credit-live 90%, {NEW} 10% on credit-ep (step 1/3)"
    ]


def live(world: World) -> dict[str, int]:
    """The deployments of credit-ep that take traffic."""
    return {name: pct for name, pct in world.platform.traffic["credit-ep"].items() if pct}


def lose_rollout_section(world: World) -> None:
    data = world.services.policy
    data.models["credit"] = data.models["credit"].model_copy(update={"rollout": None})


def test_a_rollout_whose_policy_lost_its_rollout_section_fails_safe() -> None:
    """Nothing is left to judge the candidate by: its traffic goes back, the cycle fails."""
    world = make_world()
    cycle, _ = start(world)
    lose_rollout_section(world)
    written = tick(world, "tick-1")
    assert live(world) == {"credit-live": 100}
    failed = world.store.must(cycle.id)
    assert failed.state is CycleState.FAILED
    assert "no longer has a rollout section" in failed.reason
    assert any("no longer has a rollout section" in r.reason for r in written)


def test_a_rollout_section_lost_while_the_restore_does_not_take_retries_it() -> None:
    world = make_world()
    cycle, _ = start(world)
    lose_rollout_section(world)
    world.platform.ignore_traffic_changes = True  # the endpoint does not change yet
    tick(world, "tick-1")
    held = world.store.must(cycle.id)
    assert held.state is CycleState.ROLLING_OUT and "failing safe" in held.reason
    world.platform.ignore_traffic_changes = False
    tick(world, "tick-2", 60)
    assert live(world) == {"credit-live": 100}
    assert world.store.must(cycle.id).state is CycleState.FAILED


def test_the_champion_to_restore_is_the_version_the_endpoint_served() -> None:
    """As on Azure: the endpoint's live deployment names the champion, whatever the
    registry's tag says."""
    world = make_world()
    world.platform.served["credit-ep"] = "6"
    cycle, _ = start(world, watch="10m")
    assert cycle.rollout is not None and cycle.rollout.previous_champion == "6"
    healthy(world)
    for n in range(3):
        tick(world, f"tick-{n}")
    assert world.platform.champions["credit"] == "8"
    bus_of(world).handle(HealthAlertFired("credit", "credit-endpoint-errors", "alert-1"))
    assert world.store.must(cycle.id).state is CycleState.ROLLED_BACK
    assert world.platform.champions["credit"] == "6"
