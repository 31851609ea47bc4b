"""What the service layer every handler uses promises: the names it derives (cycle id, job,
deployment) are deterministic and valid on Azure, every move is saved, audited and published
with its cause, a closed cycle's leftover deployments are scheduled for clean-up, and the
queries over cycles pick the right model's cycles."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from shared.errors import InvalidTransition
from shared.lifecycle import (
    CYCLE_TAG,
    cycle_id_for,
    deployment_name_for,
    is_stale,
    job_name_for,
    leftover_deployments,
    load,
    move,
    note,
    publish,
    rollout_of,
    schedule_cleanup,
    slug,
    watching,
    with_leftovers,
)
from shared.messagebus import stable_suffix
from shared.model import AuditKind, Cycle, CycleState
from shared.redact import Redactor
from shared.rollout_state import Phase, RolloutState
from tests.fakes import World, make_world

SECRET = "s3cr3t-value-of-the-key"


def cycle_in(
    world: World,
    state: CycleState,
    *,
    model: str = "credit",
    cid: str = "c-1",
    rollout: RolloutState | None = None,
    version: str | None = "7",
) -> Cycle:
    now = world.clock.now()
    cycle = Cycle(cid, model, state, now, now, candidate_version=version, rollout=rollout)
    cycle.version = 1
    world.store.cycles[cid] = cycle.to_json()
    if state.is_active:
        world.store.locks[model] = cid
    return world.store.must(cid)


RO = RolloutState(endpoint="credit-ep", deployment="credit-v7", previous="blue")


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("Credit_Model v2", 40, "credit-model-v2"),
        ("--a--b--", 40, "a--b"),
        ("--abcdef", 3, "abc"),  # leading hyphens go before the cut, not into it
        ("abc-def", 4, "abc"),  # cut at the limit, then no trailing hyphen
        ("ABCDEF", 3, "abc"),
        ("___", 10, "x"),  # nothing usable left: still a name
        ("", 10, "x"),
        ("a.b/c", 10, "a-b-c"),
    ],
)
def test_a_slug_is_lower_case_letters_digits_and_inner_hyphens(
    text: str, limit: int, expected: str
) -> None:
    assert slug(text, limit) == expected


@pytest.mark.parametrize(
    ("model", "version", "expected"),
    [
        ("credit", "7", "credit-v7"),
        ("Credit Risk", "12", "credit-risk-v12"),
        ("9lives", "3", "m9lives-v3"),  # Azure: a deployment name starts with a letter
        ("a" * 40, "1", "a" * 29 + "-v1"),
        ("1" + "b" * 40, "1", "m1" + "b" * 27 + "-v1"),
        ("credit", "2024.05.01-rc1", "credit-v2024-05"),
    ],
)
def test_a_deployment_name_is_a_valid_azure_name_per_model_version(
    model: str, version: str, expected: str
) -> None:
    name = deployment_name_for(model, version)
    assert name == expected
    assert 3 <= len(name) <= 32 and re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", name)


def test_names_are_deterministic_so_a_redelivery_finds_its_cycle_and_job_again() -> None:
    cid = cycle_id_for("Credit Risk", "alert|Fired|a-1|2026-01-01")
    assert cid == "credit-risk-" + stable_suffix("alert|Fired|a-1|2026-01-01", 10)
    assert cycle_id_for("Credit Risk", "alert|Fired|a-1|2026-01-01") == cid
    assert cycle_id_for("Credit Risk", "alert|Fired|a-2|2026-01-01") != cid
    assert cycle_id_for("m" * 60, "k").startswith("m" * 40 + "-")
    assert job_name_for(cid) == f"autopilot-{cid}"
    assert CYCLE_TAG == "autopilot_cycle"


@pytest.mark.parametrize(("idle_s", "stale"), [(600, False), (600.001, True), (0, False)])
def test_a_cycle_is_stale_only_after_stale_after_s_without_progress(
    idle_s: float, stale: bool
) -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.RETRAINING)
    world.clock.advance(idle_s)
    assert is_stale(cycle, world.services) is stale


# --- moving a cycle -------------------------------------------------------------------------------


def test_a_move_is_saved_audited_and_published_with_its_cause() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.EVALUATING)
    world.clock.advance(30)
    move(
        world.services,
        cycle,
        CycleState.REGISTERED,
        "gate passed",
        caused_by="ev-1",
        kind=AuditKind.ACTION,
        evidence={"auc": 0.9},
        actor="alice",
    )
    stored = world.store.must("c-1")
    assert stored.state is CycleState.REGISTERED and stored.reason == "gate passed"
    assert stored.updated_at == world.clock.now()
    [record] = world.audit.records
    assert record.kind == "action" and record.summary == "cycle EVALUATING -> REGISTERED"
    assert (record.actor, record.model, record.version, record.cycle) == (
        "alice",
        "credit",
        "7",
        "c-1",
    )
    assert (record.reason, record.evidence, record.caused_by) == (
        "gate passed",
        {"auc": 0.9},
        "ev-1",
    )
    [(event_type, subject, data)] = world.publisher.published
    assert (event_type, subject) == ("Autopilot.cycle.registered", "models/credit")
    assert data == {
        "cycle": "c-1",
        "model": "credit",
        "state": "REGISTERED",
        "reason": "gate passed",
    }


def test_a_move_by_default_is_the_systems_decision_without_evidence() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.RETRAINING)
    move(world.services, cycle, CycleState.FAILED, "job failed")
    [record] = world.audit.records
    assert (record.kind, record.actor, record.evidence, record.caused_by) == (
        "decision",
        "system",
        {},
        None,
    )


def test_a_move_never_stores_a_secret_in_the_reason() -> None:
    world = make_world()
    world.services.redactor = Redactor([SECRET])
    cycle = cycle_in(world, CycleState.RETRAINING)
    move(world.services, cycle, CycleState.FAILED, f"job failed: key={SECRET}")
    assert SECRET not in world.store.must("c-1").reason
    assert SECRET not in world.audit.records[0].reason
    assert SECRET not in str(world.publisher.published)


def test_a_move_the_state_machine_forbids_changes_nothing() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.RETRAINING)
    with pytest.raises(InvalidTransition):
        move(world.services, cycle, CycleState.PROMOTED, "skipping ahead")
    assert world.store.must("c-1").state is CycleState.RETRAINING
    assert world.audit.records == [] and world.publisher.published == []


class BrokenPublisher:
    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        raise ConnectionError("Event Grid unreachable")


def test_a_publisher_outage_never_stops_the_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    world = make_world()
    world.services.publisher = BrokenPublisher()
    cycle = cycle_in(world, CycleState.RETRAINING)
    move(world.services, cycle, CycleState.FAILED, "job failed")
    assert world.store.must("c-1").state is CycleState.FAILED
    [logged] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert logged.getMessage() == "publishing cycle.failed for cycle c-1 failed"
    assert logged.exc_info is not None  # with the publisher's error


def test_a_published_event_carries_no_configured_secret() -> None:
    world = make_world()
    world.services.redactor = Redactor([SECRET])
    cycle = cycle_in(world, CycleState.RETRAINING)
    publish(world.services, cycle, "cycle.note", {"detail": f"token {SECRET}"})
    [(event_type, _, data)] = world.publisher.published
    assert event_type == "Autopilot.cycle.note"
    assert SECRET not in str(data) and data["cycle"] == "c-1"


# --- clean-up of a closed cycle -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "phase", "leftover"),
    [
        (CycleState.ROLLED_BACK, Phase.ROLLED_BACK, ["credit-v7"]),  # the candidate goes
        (CycleState.FAILED, Phase.CANARY, ["credit-v7"]),
        (CycleState.PROMOTED, Phase.DONE, ["blue"]),  # the previous one goes
        (CycleState.PROMOTED, Phase.WATCH, []),  # kept warm while watched
        (CycleState.ROLLING_OUT, Phase.CANARY, []),  # still active: nothing yet
    ],
)
def test_a_closed_cycle_leaves_the_deployment_it_no_longer_needs(
    state: CycleState, phase: Phase, leftover: list[str]
) -> None:
    world = make_world()
    cycle = cycle_in(world, state, rollout=replace(RO, phase=phase))
    assert leftover_deployments(cycle) == leftover


@pytest.mark.parametrize(
    "rollout",
    [None, replace(RO, endpoint=""), replace(RO, previous=None, phase=Phase.DONE)],
    ids=["no-rollout", "no-endpoint", "first-deployment"],
)
def test_nothing_is_left_over_without_a_deployment_to_remove(rollout: Any) -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.PROMOTED, rollout=rollout)
    assert leftover_deployments(cycle) == []


def test_closing_a_cycle_schedules_its_leftovers_once_and_skips_what_is_done() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.ROLLING_OUT, rollout=RO)
    move(world.services, cycle, CycleState.ROLLED_BACK, "canary failed")
    stored = world.store.must("c-1")
    assert rollout_of(stored).cleanup == ("credit-v7",)
    schedule_cleanup(stored)
    assert rollout_of(stored).cleanup == ("credit-v7",)  # not twice
    for done in ("removed", "kept"):
        other = cycle_in(
            world,
            CycleState.ROLLED_BACK,
            cid=f"c-{done}",
            rollout=replace(RO, **{done: ("credit-v7",)}),  # type: ignore[arg-type]
        )
        schedule_cleanup(other)
        assert rollout_of(other).cleanup == ()
    earlier = cycle_in(
        world, CycleState.ROLLED_BACK, cid="c-earlier", rollout=replace(RO, cleanup=("old-1",))
    )
    schedule_cleanup(earlier)
    assert rollout_of(earlier).cleanup == ("old-1", "credit-v7")


def test_scheduling_clean_up_of_a_cycle_without_a_rollout_does_nothing() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.FAILED)
    schedule_cleanup(cycle)
    assert cycle.rollout is None


def test_closed_cycles_with_pending_clean_up_are_found_and_no_others() -> None:
    world = make_world()
    cycle_in(world, CycleState.ROLLED_BACK, cid="pending", rollout=replace(RO, cleanup=("x",)))
    cycle_in(world, CycleState.ROLLED_BACK, cid="clean", rollout=RO)
    cycle_in(world, CycleState.FAILED, cid="no-rollout")
    cycle_in(
        world,
        CycleState.ROLLING_OUT,
        model="fraud",
        cid="active",
        rollout=replace(RO, cleanup=("y",)),
    )
    assert [c.id for c in with_leftovers(world.services)] == ["pending"]


# --- queries and notes ----------------------------------------------------------------------------


def test_watching_finds_promotions_still_in_their_watch_for_that_model_only() -> None:
    world = make_world()
    cycle_in(world, CycleState.PROMOTED, cid="credit-w", rollout=replace(RO, phase=Phase.WATCH))
    cycle_in(world, CycleState.PROMOTED, cid="credit-done", rollout=replace(RO, phase=Phase.DONE))
    cycle_in(world, CycleState.PROMOTED, cid="credit-none")
    cycle_in(
        world,
        CycleState.ROLLING_OUT,
        cid="credit-canary",
        rollout=replace(RO, phase=Phase.WATCH),
    )
    cycle_in(
        world,
        CycleState.PROMOTED,
        model="fraud",
        cid="fraud-w",
        rollout=replace(RO, phase=Phase.WATCH),
    )
    assert [c.id for c in watching(world.services, "credit")] == ["credit-w"]
    assert sorted(c.id for c in watching(world.services)) == ["credit-w", "fraud-w"]


def test_a_note_about_a_cycle_names_its_model_version_and_cycle() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.RETRAINING)
    note(
        world.services,
        AuditKind.ACTION,
        "job submitted",
        cycle,
        reason="r",
        evidence={"job": "j"},
        caused_by="ev-2",
        actor="bob",
    )
    [record] = world.audit.records
    assert (record.kind, record.summary, record.actor) == ("action", "job submitted", "bob")
    assert (record.model, record.version, record.cycle) == ("credit", "7", "c-1")
    assert (record.reason, record.evidence, record.caused_by) == ("r", {"job": "j"}, "ev-2")
    assert world.store.must("c-1").state is CycleState.RETRAINING  # a note changes nothing


def test_a_note_about_a_model_has_no_cycle_and_defaults_to_the_system() -> None:
    world = make_world()
    note(world.services, AuditKind.IGNORED, "alert ignored", model="fraud")
    [record] = world.audit.records
    assert (record.model, record.version, record.cycle) == ("fraud", None, None)
    assert (record.actor, record.reason, record.evidence, record.caused_by) == (
        "system",
        "",
        {},
        None,
    )


def test_load_reads_the_cycle_as_stored_now_and_none_when_gone() -> None:
    world = make_world()
    cycle_in(world, CycleState.RETRAINING)
    world.clock.advance(5)
    assert load(world.services, "c-1") == world.store.must("c-1")
    assert load(world.services, "nope") is None


def test_a_cycle_without_a_rollout_has_no_rollout_state_to_give() -> None:
    world = make_world()
    cycle = cycle_in(world, CycleState.REGISTERED)
    with pytest.raises(AssertionError, match="cycle c-1 has no rollout"):
        rollout_of(cycle)
    assert rollout_of(cycle_in(world, CycleState.ROLLING_OUT, cid="c-2", rollout=RO)) == RO


def test_stale_uses_the_settings_threshold() -> None:
    world = make_world()
    world.services.settings = replace(world.services.settings, stale_after_s=60.0)
    cycle = cycle_in(world, CycleState.RETRAINING)
    world.clock.advance(61)
    assert is_stale(cycle, world.services)
    world.clock.advance(-61 + 59)
    assert not is_stale(cycle, world.services)
