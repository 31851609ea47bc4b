"""Numbers JSON cannot hold (NaN, +-Infinity) that come from the platform's side (a training
job's evaluation document, a metric) never reach the audit log as such: they are written as
null, so every record stays readable by the API, the console and ``--json`` (which refuse NaN).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.json_out import dumps
from shared.model import CycleState
from shared.redact import Redactor
from tests import payloads
from tests.fakes import make_world
from tests.unit.test_lifecycle import BETTER, CHAMPION, complete_job


def finite_copy(value: Any) -> Any:
    """What a user expects to read back: the same value, non-finite numbers as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_copy(v) for v in value]
    return value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)


@given(json_values)
def test_any_value_recorded_is_writable_as_strict_json_and_otherwise_unchanged(value: Any) -> None:
    clean = Redactor(["hunter2-secret"]).json(value)
    text = dumps(clean)  # strict: raises on NaN or Infinity
    assert json.loads(text) == json.loads(json.dumps(finite_copy(value)))


def _evaluate(world: Any, document: dict[str, Any]) -> Any:
    def the_document(job: str) -> dict[str, Any]:
        return document

    world.platform.get_evaluation = the_document
    return complete_job(world)


def test_infinity_in_an_evaluation_document_is_audited_readably() -> None:
    world = make_world()
    evaluation = payloads.evaluation(BETTER, CHAMPION, n=1000)
    evaluation["challenger"]["extra"] = {"loss": float("inf"), "note": float("nan")}
    evaluation["n_by_segment"] = [float("-inf"), 3]
    cycle = _evaluate(world, evaluation)
    assert cycle.state is CycleState.REGISTERED  # the gate judged the metrics, which are fine
    records = [r for r in world.audit.records if r.cycle == cycle.id]
    for record in records:
        dumps(record.to_json())  # every record readable as strict JSON


@pytest.mark.parametrize(
    "n",
    [float("nan"), float("inf"), float("-inf"), -1, -0.5],
    ids=["nan", "inf", "-inf", "-1", "-0.5"],
)
def test_an_example_count_that_is_not_one_fails_the_cycle_with_the_reason(n: float) -> None:
    """Not a crash that is retried for ever: the cycle fails and says why."""
    world = make_world()
    cycle = _evaluate(world, payloads.evaluation(BETTER, CHAMPION, n=n))  # type: ignore[arg-type]  # the job wrote it
    assert cycle.state is CycleState.FAILED
    assert cycle.reason.startswith(
        "evaluation unusable: evaluation: 'n' must be a count of examples"
    )
    for record in world.audit.records:
        dumps(record.to_json())


@pytest.mark.parametrize("version", [{"v": 1}, [1], 1.5, True])
def test_a_champion_version_that_is_not_a_name_fails_the_cycle(version: Any) -> None:
    world = make_world()
    evaluation = payloads.evaluation(BETTER, CHAMPION)
    evaluation["champion"]["version"] = version
    cycle = _evaluate(world, evaluation)
    assert cycle.state is CycleState.FAILED
    assert "'champion.version' must be a string" in cycle.reason


def test_a_numeric_champion_version_reads_as_its_name() -> None:
    world = make_world()
    evaluation = payloads.evaluation(BETTER, CHAMPION)
    evaluation["champion"]["version"] = 7
    cycle = _evaluate(world, evaluation)
    assert cycle.state is CycleState.REGISTERED and cycle.champion_version == "7"
