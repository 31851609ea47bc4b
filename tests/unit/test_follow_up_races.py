"""Follow-up work that finds its cycle moved on does nothing.

The reconciler looks at a cycle, then asks for work on it (start the rollout, check the job,
advance a step, ...); the work reads the cycle again. Between the two, another worker (another
Functions instance, another ``autopilot serve`` process on the same store) can do that work
and move the cycle on. Seen on Table Storage: four processes, a REGISTERED cycle, one started
its rollout while another's StartRollout was on its way, which then tried ROLLING_OUT ->
ROLLING_OUT and crashed the reconcile. The late work must leave the cycle as the winner left it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.messages import (
    AdvanceRollout,
    CheckJob,
    FailRollout,
    Reevaluate,
    RollBack,
    StartRollout,
    WatchRollout,
)
from shared.model import CycleState
from tests.fakes import World, make_policy, make_world
from tests.unit.test_lifecycle import (
    bus_of,
    complete_job,
    registered_and_rolling,
    with_live_deployment,
)
from tests.unit.test_rollout import promoted

LATE: dict[str, Callable[[str], Any]] = {
    "StartRollout": lambda c: StartRollout(c, "late"),
    "CheckJob": lambda c: CheckJob(c, "late"),
    "Reevaluate": lambda c: Reevaluate(c, "late"),
    "AdvanceRollout": lambda c: AdvanceRollout(c, "late"),
    "WatchRollout": lambda c: WatchRollout(c, "late"),
    "RollBack": lambda c: RollBack(c, "late health alert", "late"),
    "FailRollout": lambda c: FailRollout(c, "late failure", "late"),
}
# the states each piece of work is for; in any other state it was done by someone else
FOR = {
    "StartRollout": {CycleState.REGISTERED},
    "CheckJob": {CycleState.RETRAINING},
    "Reevaluate": {CycleState.EVALUATING},
    "AdvanceRollout": {CycleState.ROLLING_OUT},
    "WatchRollout": {CycleState.PROMOTED},
    "RollBack": {CycleState.ROLLING_OUT, CycleState.PROMOTED},
    "FailRollout": {CycleState.ROLLING_OUT, CycleState.REGISTERED},
}


def at(state: str) -> tuple[World, Any]:
    """A world with one cycle in ``state``, reached through the real handlers."""
    world = make_world(make_policy(rollout__watch="10m"))
    if state == "REGISTERED":
        with_live_deployment(world)
        return world, complete_job(world)
    if state == "ROLLING_OUT":
        return world, registered_and_rolling(world)
    cycle = promoted(world)
    if state == "PROMOTED":
        return world, cycle
    bus_of(world).handle(RollBack(cycle.id, "operator", "rb"))
    return world, world.store.must(cycle.id)


STATES = ["REGISTERED", "ROLLING_OUT", "PROMOTED", "ROLLED_BACK"]
LATE_CASES = [(w, s) for w in sorted(LATE) for s in STATES if CycleState(s) not in FOR[w]]


@pytest.mark.parametrize(("work", "state"), LATE_CASES)
def test_late_work_on_a_cycle_that_moved_on_changes_nothing(work: str, state: str) -> None:
    world, cycle = at(state)
    assert cycle.state.value == state
    records, traffic = len(world.audit.records), dict(world.platform.traffic)
    bus_of(world).handle(LATE[work](cycle.id))
    after = world.store.must(cycle.id)
    assert (after.state, after.version) == (cycle.state, cycle.version)
    assert len(world.audit.records) == records
    assert world.platform.traffic == traffic
