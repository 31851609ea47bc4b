"""The typed rollout state: cycles stored before it (JSON dicts) still load, run and keep what
this version does not know; its phases move only as the rollout allows."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite_store import SqliteStateStore
from shared.errors import InvalidTransition
from shared.model import Cycle, CycleState
from shared.rollout_state import Phase, RolloutState
from tests.fakes import make_world
from tests.unit.test_lifecycle import HEALTHY, registered_and_rolling, tick

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def old_canary(deployment: str, at: datetime) -> dict[str, Any]:
    """A canary at 10% as the dict-based rollout wrote it, with a key from another version
    (``future_key``) and without the optional keys it had not needed yet (checks, clean-up)."""
    return {
        "endpoint": "credit-ep",
        "deployment": deployment,
        "previous": "blue",
        "previous_traffic": {"blue": 100},
        "previous_champion": "1",
        "phase": "canary",
        "step": 0,
        "step_started_at": at.isoformat(),
        "steps": [{"percent": 10, "at": at.isoformat(), "traffic": {deployment: 10, "blue": 90}}],
        "pending_step": None,
        "traffic_failures": 0,
        "percent": 10,
        "next_check_at": (at + timedelta(minutes=5)).isoformat(),
        "mirror_off_pending": False,
        "future_key": {"kept": True},
    }


def test_an_old_shaped_rollout_loads_typed_and_keeps_unknown_keys() -> None:
    ro = RolloutState.from_json(old_canary("credit-v2", T0))
    assert (ro.phase, ro.step, ro.percent, ro.previous) == (Phase.CANARY, 0, 10, "blue")
    assert ro.step_started_at == T0 and ro.next_check_at == T0 + timedelta(minutes=5)
    assert ro.steps[0].traffic == {"credit-v2": 10, "blue": 90} and ro.steps[0].at == T0
    assert (ro.checks, ro.cleanup, ro.in_progress, ro.rolling_back) == ((), (), None, None)
    assert ro.to_json()["future_key"] == {"kept": True}
    assert RolloutState.from_json(ro.to_json()) == ro
    # missing keys take the defaults the dict's readers assumed
    bare = RolloutState.from_json({"endpoint": "e"})
    assert (bare.phase, bare.step, bare.deployment, bare.steps) == (Phase.CREATING, -1, "", ())


def test_an_old_shaped_cycle_stored_in_sqlite_loads(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    cycle = Cycle("c1", "credit", CycleState.REGISTERED, T0, T0, candidate_version="2")
    assert store.create_cycle(cycle) is None
    body = {**cycle.to_json(), "rollout": old_canary("credit-v2", T0), "version": 1}
    with sqlite3.connect(tmp_path / "state.db") as db:  # the row as the old code wrote it
        db.execute("UPDATE cycles SET body = ? WHERE id = 'c1'", (json.dumps(body),))
    loaded = store.get_cycle("c1")
    assert loaded is not None and loaded.rollout is not None
    assert loaded.rollout.phase is Phase.CANARY and loaded.rollout.percent == 10
    assert loaded.rollout.extra == {"future_key": {"kept": True}}
    empty = {**body, "rollout": {}}  # nothing ever wrote {} but it read as no rollout
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE cycles SET body = ? WHERE id = 'c1'", (json.dumps(empty),))
    reread = store.get_cycle("c1")
    assert reread is not None and reread.rollout is None


def test_a_rollout_stored_in_the_old_shape_carries_on() -> None:
    """A cycle mid-canary, stored as a dict by the previous version, steps on after the
    upgrade and keeps the key it does not know."""
    world = make_world()
    cycle = registered_and_rolling(world)
    assert cycle.rollout is not None
    new = cycle.rollout.deployment
    started = cycle.rollout.step_started_at
    assert started is not None
    stored = {**cycle.to_json(), "rollout": old_canary(new, started)}
    world.store.cycles[cycle.id] = stored  # the fake store keeps cycles as their JSON
    world.metrics.samples = {new: HEALTHY, "blue": HEALTHY}
    cycle = tick(world)
    assert cycle.rollout is not None
    assert cycle.rollout.percent == 50 and [c.verdict for c in cycle.rollout.checks] == ["pass"]
    assert cycle.to_json()["rollout"]["future_key"] == {"kept": True}


@pytest.mark.parametrize(
    ("phase", "move"),
    [
        (Phase.DONE, lambda ro: ro.rolled_back()),
        (Phase.ROLLED_BACK, lambda ro: ro.failed()),
        (Phase.WATCH, lambda ro: ro.in_step(1, 50, T0, {})),
        (Phase.FAILED, lambda ro: ro.restoring("x", None)),
    ],
)
def test_a_phase_change_the_rollout_does_not_allow_is_refused(phase: Phase, move: Any) -> None:
    ro = RolloutState.from_json({"endpoint": "e", "deployment": "d", "phase": phase.value})
    with pytest.raises(InvalidTransition, match=f"rollout: {phase.value} -> "):
        move(ro)
