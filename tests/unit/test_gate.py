"""The evaluation gate, table-driven: every rule, observed value, threshold and verdict."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import PermanentError
from shared.gate import decide
from shared.policy import Gate
from tests.payloads import evaluation

GATE = Gate.model_validate(
    {
        "primary_metric": "auc",
        "min_improvement": 0.01,
        "min_samples": 500,
        "guardrails": [
            {"metric": "accuracy", "tolerance": 0.02},
            {"metric": "log_loss", "direction": "minimize", "tolerance": 0.05},
        ],
        "floors": [{"metric": "auc", "min": 0.7}, {"metric": "log_loss", "max": 0.7}],
    }
)
CHAMP = {"auc": 0.80, "accuracy": 0.80, "log_loss": 0.45}


@pytest.mark.parametrize(
    ("challenger", "champion", "n", "passed", "failed_rules"),
    [
        ({"auc": 0.83, "accuracy": 0.80, "log_loss": 0.44}, CHAMP, 1000, True, []),
        ({"auc": 0.805, "accuracy": 0.80, "log_loss": 0.44}, CHAMP, 1000, False, ["improvement"]),
        ({"auc": 0.80, "accuracy": 0.80, "log_loss": 0.44}, CHAMP, 1000, False, ["improvement"]),
        ({"auc": 0.85, "accuracy": 0.75, "log_loss": 0.44}, CHAMP, 1000, False, ["guardrail"]),
        ({"auc": 0.85, "accuracy": 0.80, "log_loss": 0.55}, CHAMP, 1000, False, ["guardrail"]),
        ({"auc": 0.85, "accuracy": 0.80, "log_loss": 0.44}, CHAMP, 100, False, ["min_samples"]),
        ({"auc": 0.75, "accuracy": 0.70, "log_loss": 0.6}, None, 1000, True, []),
        ({"auc": 0.65, "accuracy": 0.70, "log_loss": 0.6}, None, 1000, False, ["floor"]),
        ({"auc": 0.75, "accuracy": 0.70, "log_loss": 0.9}, None, 1000, False, ["ceiling"]),
    ],
    ids=[
        "clear-improvement",
        "within-min-improvement",
        "no-change",
        "accuracy-regresses",
        "log-loss-regresses",
        "too-few-samples",
        "no-champion-floors-pass",
        "no-champion-floor-fails",
        "no-champion-ceiling-fails",
    ],
)
def test_gate_rules(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    n: int,
    passed: bool,
    failed_rules: list[str],
) -> None:
    decision = decide(evaluation(challenger, champion, n=n), GATE)
    assert decision.passed is passed
    assert [r.rule for r in decision.rules if not r.passed] == failed_rules
    assert decision.has_champion is (champion is not None)
    for rule in decision.rules:
        assert rule.detail  # every rule says what it observed and against what


def test_no_champion_applies_floors_only_and_says_so() -> None:
    decision = decide(evaluation({"auc": 0.75, "accuracy": 0.7, "log_loss": 0.5}, None), GATE)
    assert {r.rule for r in decision.rules} == {"min_samples", "floor", "ceiling"}
    assert "no champion" in decision.summary


def test_relative_improvement() -> None:
    gate = Gate(
        primary_metric="rmse", direction="minimize", improvement="relative", min_improvement=0.05
    )
    ok = decide(evaluation({"rmse": 9.0}, {"rmse": 10.0}), gate)
    small = decide(evaluation({"rmse": 9.8}, {"rmse": 10.0}), gate)
    assert ok.passed and ok.rules[0].observed == pytest.approx(0.1)
    assert not small.passed


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"challenger": {"metrics": {"auc": "high"}}}, "not a finite number"),
        ({"challenger": {"metrics": {"accuracy": 0.9}}, "champion": None}, "no metric 'auc'"),
        ({"champion": None}, "no 'challenger'"),
        ({"schema": "other/v9", "challenger": {"metrics": {}}}, "schema"),
    ],
)
def test_malformed_evaluations_are_permanent_errors(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(PermanentError, match=problem):
        decide(doc, GATE)
