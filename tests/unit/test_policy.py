"""Policy validation: precise messages naming file, model and field; the example is valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.errors import PolicyError
from shared.policy import load_policy, parse_duration, parse_policy
from tests.fakes import POLICY

ROOT = Path(__file__).resolve().parents[2]


def test_example_policy_is_valid() -> None:
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    assert policy.models


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"gate": {}}, "model 'credit': field 'gate.primary_metric': Field required"),
        ({"rollout": {"endpoint": "ep", "steps": [50, 10, 100]}}, "steps must strictly increase"),
        ({"rollout": {"endpoint": "ep", "steps": [10, 50]}}, "last step must be 100"),
        ({"cooldown": "soon"}, "field 'cooldown'"),
        ({"training": {"experiment": "x"}}, "give 'command'"),
        (
            {"gate": {"primary_metric": "auc", "floors": [{"metric": "auc"}]}},
            "needs 'min' or 'max'",
        ),
        ({"unknown_field": 1}, "field 'unknown_field': Extra inputs are not permitted"),
    ],
)
def test_invalid_policies_name_model_and_field(patch: dict[str, Any], message: str) -> None:
    data = {"models": {"credit": {**POLICY["models"]["credit"], **patch}}}
    with pytest.raises(PolicyError) as info:
        parse_policy(data, "policy.yaml")
    assert "policy.yaml" in str(info.value)
    assert message in str(info.value)


def test_a_signal_bound_to_two_models_is_refused() -> None:
    credit = POLICY["models"]["credit"]
    data = {"models": {"credit": credit, "fraud": credit}}
    with pytest.raises(PolicyError, match="bound to both 'credit' and 'fraud'"):
        parse_policy(data, "p.yaml")


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(30, 30.0), ("90s", 90.0), ("5m", 300.0), ("6h", 21600.0), ("1d", 86400.0), ("250ms", 0.25)],
)
def test_durations(raw: Any, seconds: float) -> None:
    assert parse_duration(raw) == seconds
