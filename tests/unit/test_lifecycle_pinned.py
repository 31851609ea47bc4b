"""Pinned behaviour of the service layer the spec tests leave open: what an error in the work
on one cycle leaves behind (the guard ``contain_cycle_errors``: the cycle, its audit record,
its published event, the follow-up work, the log line), and what ``load`` returns and says
when the cycle moved on before the work got to it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from shared.errors import ConcurrencyError, PermanentError, TransientError
from shared.lifecycle import contain_cycle_errors, load
from shared.messagebus import Handler, MessageBus, Services
from shared.messages import Command, FailRollout, ReconcileCycle
from shared.model import Cycle, CycleState
from tests.fakes import World, make_world

KEY = "tick-1"


def cycle_in(world: World, state: CycleState, cid: str = "c-1") -> Cycle:
    now = world.clock.now()
    cycle = Cycle(cid, "credit", state, now, now, candidate_version="7")
    cycle.version = 1
    world.store.cycles[cid] = cycle.to_json()
    if state.is_active:
        world.store.locks["credit"] = cid
    return world.store.must(cid)


@dataclass(frozen=True, slots=True)
class Tick(Command):
    event_key: str


def reconcile_raising(world: World, exc: Exception, cid: str = "c-1") -> list[FailRollout]:
    """A reconcile tick whose look at cycle ``cid`` raises ``exc``, guarded as the reconciler
    guards it; the FailRollout work the guard asked for."""
    failed: list[FailRollout] = []

    def tick(msg: Tick, svc: Services) -> None:
        svc.emit(ReconcileCycle(cid, msg.event_key), contain_cycle_errors)

    def look(msg: ReconcileCycle, svc: Services) -> None:
        raise exc

    def fail(msg: FailRollout, svc: Services) -> None:
        failed.append(msg)

    handlers: dict[type[Command], Handler] = {Tick: tick, ReconcileCycle: look, FailRollout: fail}
    MessageBus(world.services, {}, handlers).handle(Tick(KEY))
    return failed


def untouched(world: World, state: CycleState) -> bool:
    """The cycle is as it was: same state, no audit record, nothing published."""
    return (
        world.store.must("c-1").state is state
        and world.audit.records == []
        and world.publisher.published == []
    )


# --- an error in the work on one cycle ------------------------------------------------------------


def test_an_outage_defers_the_cycle_to_the_next_tick_naming_the_cycle_and_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world()
    cycle_in(world, CycleState.RETRAINING)
    with caplog.at_level(logging.INFO, logger="shared.lifecycle"):
        failed = reconcile_raising(world, TransientError("table storage unavailable"))
    assert failed == [] and untouched(world, CycleState.RETRAINING)
    [logged] = [r for r in caplog.records if r.name == "shared.lifecycle"]
    assert logged.levelname == "WARNING"
    assert logged.getMessage() == "reconcile of cycle c-1 deferred: table storage unavailable"


def test_a_lost_race_leaves_the_cycle_to_the_next_tick_naming_the_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world()
    cycle_in(world, CycleState.EVALUATING)
    with caplog.at_level(logging.INFO, logger="shared.lifecycle"):
        failed = reconcile_raising(world, ConcurrencyError("version 1 is stale"))
    assert failed == [] and untouched(world, CycleState.EVALUATING)
    [logged] = [r for r in caplog.records if r.name == "shared.lifecycle"]
    assert logged.levelname == "INFO"
    assert logged.getMessage() == "cycle c-1 changed while reconciling; next tick will look again"


def test_a_permanent_error_in_a_rollout_fails_it_through_the_rollouts_safe_path() -> None:
    world = make_world()
    cycle_in(world, CycleState.ROLLING_OUT)
    failed = reconcile_raising(world, PermanentError("endpoint credit-ep deleted"))
    assert failed == [FailRollout("c-1", "endpoint credit-ep deleted", KEY)]
    # the safe path (traffic back to the previous deployment first) closes it, not the guard
    assert untouched(world, CycleState.ROLLING_OUT)


@pytest.mark.parametrize(
    "state",
    [
        CycleState.TRIGGERED,
        CycleState.RETRAINING,
        CycleState.EVALUATING,
        CycleState.AWAITING_APPROVAL,
        CycleState.REGISTERED,
    ],
)
def test_a_permanent_error_closes_any_other_open_cycle_as_failed_with_its_cause(
    state: CycleState,
) -> None:
    world = make_world()
    cycle_in(world, state)
    world.clock.advance(30)
    failed = reconcile_raising(world, PermanentError("training script missing"))
    assert failed == []
    stored = world.store.must("c-1")
    assert stored.state is CycleState.FAILED and stored.reason == "training script missing"
    assert (stored.history[-1].state, stored.history[-1].reason) == (
        CycleState.FAILED,
        "training script missing",
    )
    assert stored.updated_at == world.clock.now()
    [record] = world.audit.records
    assert (record.kind, record.summary) == ("error", f"cycle {state.value} -> FAILED")
    assert (record.model, record.version, record.cycle) == ("credit", "7", "c-1")
    assert (record.reason, record.caused_by) == ("training script missing", KEY)
    [(event_type, subject, data)] = world.publisher.published
    assert (event_type, subject) == ("Autopilot.cycle.failed", "models/credit")
    assert data == {
        "cycle": "c-1",
        "model": "credit",
        "state": "FAILED",
        "reason": "training script missing",
    }


@pytest.mark.parametrize(
    "state",
    [CycleState.PROMOTED, CycleState.REJECTED, CycleState.ROLLED_BACK, CycleState.FAILED],
)
def test_a_permanent_error_leaves_a_cycle_closed_meanwhile_as_it_is(state: CycleState) -> None:
    world = make_world()
    cycle_in(world, state)
    failed = reconcile_raising(world, PermanentError("endpoint credit-ep deleted"))
    assert failed == [] and untouched(world, state)


def test_a_permanent_error_for_a_cycle_gone_meanwhile_is_dropped() -> None:
    world = make_world()
    cycle_in(world, CycleState.RETRAINING)
    failed = reconcile_raising(world, PermanentError("gone"), cid="c-gone")
    assert failed == [] and untouched(world, CycleState.RETRAINING)
    assert world.store.get_cycle("c-gone") is None


def test_any_other_error_is_a_bug_and_goes_on_up_leaving_the_cycle_open() -> None:
    world = make_world()
    cycle_in(world, CycleState.RETRAINING)
    with pytest.raises(KeyError, match="metric"):
        reconcile_raising(world, KeyError("metric"))
    assert untouched(world, CycleState.RETRAINING)


# --- a follow-up's look at its cycle --------------------------------------------------------------


def test_a_cycle_that_moved_on_is_not_loaded_and_the_log_names_who_does_the_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world()
    cycle_in(world, CycleState.FAILED)
    with caplog.at_level(logging.INFO, logger="shared.lifecycle"):
        found = load(world.services, "c-1", CycleState.ROLLING_OUT, CycleState.REGISTERED)
    assert found is None
    [logged] = [r for r in caplog.records if r.name == "shared.lifecycle"]
    assert logged.getMessage() == (
        "cycle c-1 is FAILED now: work for ROLLING_OUT/REGISTERED left to the worker that moved it"
    )


def test_a_cycle_still_in_one_of_the_states_is_loaded_as_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world()
    cycle_in(world, CycleState.REGISTERED)
    with caplog.at_level(logging.INFO, logger="shared.lifecycle"):
        found = load(world.services, "c-1", CycleState.ROLLING_OUT, CycleState.REGISTERED)
        gone = load(world.services, "c-gone", CycleState.REGISTERED)
    assert found == world.store.must("c-1") and gone is None
    assert [r for r in caplog.records if r.name == "shared.lifecycle"] == []
