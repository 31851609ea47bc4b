"""The evaluation gate, table-driven: every rule, observed value, threshold and verdict."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import PermanentError
from shared.gate import decide
from shared.policy import Gate, SliceCheck
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


# --- per-example rules: paired bootstrap confidence and slices ------------------------------


def examples_doc(
    gain: float,
    n: int = 800,
    seed: int = 4,
    slice_penalty: float = 0.0,
) -> dict[str, Any]:
    """Synthetic scores: the challenger separates classes ``gain`` better than the champion;
    on region 'north' it is ``slice_penalty`` worse."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(float)
    region = np.where(rng.random(n) < 0.3, "north", "south")
    noise_old = rng.normal(0, 1, n)
    noise_new = 0.9 * noise_old + np.sqrt(1 - 0.81) * rng.normal(0, 1, n)
    old = 1 / (1 + np.exp(-(1.0 * (labels - 0.5) * 2 + noise_old)))
    strength = np.where(region == "north", 1.0 + gain - slice_penalty, 1.0 + gain)
    new = 1 / (1 + np.exp(-(strength * (labels - 0.5) * 2 + noise_new)))
    from shared.stats import metric

    doc = evaluation({"auc": metric("auc", labels, new)}, {"auc": metric("auc", labels, old)}, n=n)
    doc["examples"] = {
        "label": labels.tolist(),
        "challenger_score": new.tolist(),
        "champion_score": old.tolist(),
        "segments": {"region": region.tolist()},
    }
    return doc


CONFIDENT = Gate(
    primary_metric="auc",
    confidence=0.95,
    bootstrap_samples=400,
    slices=(SliceCheck(column="region", min_samples=50, tolerance=0.03),),
)


@pytest.mark.parametrize(
    ("gain", "slice_penalty", "passed", "failed_rules"),
    [
        (1.0, 0.0, True, []),
        (0.03, 0.0, False, ["confidence"]),
        (1.0, 1.5, False, ["slice"]),
    ],
    ids=["clear-improvement", "improvement-within-noise", "better-on-average-worse-on-a-slice"],
)
def test_confidence_and_slices(
    gain: float, slice_penalty: float, passed: bool, failed_rules: list[str]
) -> None:
    decision = decide(examples_doc(gain, slice_penalty=slice_penalty), CONFIDENT)
    assert [r.rule for r in decision.rules if not r.passed] == failed_rules
    assert decision.passed is passed
    assert decision.bootstrap is not None
    assert decision.bootstrap["low"] <= decision.bootstrap["estimate"] <= decision.bootstrap["high"]


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    doc = examples_doc(0.3)
    first, again = decide(doc, CONFIDENT), decide(doc, CONFIDENT)
    other = decide(doc, CONFIDENT.model_copy(update={"seed": 7}))
    assert first.bootstrap == again.bootstrap
    assert other.bootstrap != first.bootstrap


def test_confidence_without_per_example_results_fails_and_says_why() -> None:
    decision = decide(evaluation({"auc": 0.9}, {"auc": 0.8}), CONFIDENT)
    assert not decision.passed
    assert "no per-example results" in decision.rules[-1].detail


def test_auc_matches_a_reference_implementation() -> None:
    import numpy as np
    from scipy.stats import mannwhitneyu

    from shared.stats import metric

    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.3).astype(float)
    scores = np.round(rng.random(500) * 0.7 + labels * 0.3, 2)  # rounded: plenty of ties
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    positives = labels.sum()
    assert metric("auc", labels, scores) == pytest.approx(u / (positives * (500 - positives)))


@pytest.mark.parametrize(
    ("challenger", "metric", "expected"),
    [
        (  # accuracy rose by 0.1511: once "regression -0.1511 may not exceed 0.02"
            {"auc": 0.85, "accuracy": 0.9511, "log_loss": 0.44},
            "accuracy",
            "accuracy 0.8 -> 0.9511: better by 0.1511; may be worse by at most 0.02",
        ),
        (
            {"auc": 0.85, "accuracy": 0.75, "log_loss": 0.44},
            "accuracy",
            "accuracy 0.8 -> 0.75: worse by 0.05; may be worse by at most 0.02",
        ),
        (  # minimised: a higher log loss is worse
            {"auc": 0.85, "accuracy": 0.80, "log_loss": 0.55},
            "log_loss",
            "log_loss 0.45 -> 0.55: worse by 0.1; may be worse by at most 0.05",
        ),
        (
            {"auc": 0.85, "accuracy": 0.80, "log_loss": 0.45},
            "log_loss",
            "log_loss 0.45 -> 0.45: unchanged; may be worse by at most 0.05",
        ),
    ],
    ids=["better", "worse", "minimised-worse", "unchanged"],
)
def test_guardrail_wording_says_better_or_worse_never_a_signed_regression(
    challenger: dict[str, float], metric: str, expected: str
) -> None:
    decision = decide(evaluation(challenger, CHAMP, n=1000), GATE)
    [rule] = [r for r in decision.rules if r.rule == "guardrail" and r.metric == metric]
    assert rule.detail == expected
    assert "regression" not in rule.detail and "-0." not in rule.detail


@pytest.mark.parametrize(
    ("auc", "expected"),
    [
        (0.83, "auc 0.8 -> 0.83 (maximize): better by 0.03; must be better by at least 0.01"),
        (0.78, "auc 0.8 -> 0.78 (maximize): worse by 0.02; must be better by at least 0.01"),
    ],
)
def test_improvement_wording_says_better_or_worse(auc: float, expected: str) -> None:
    challenger = {"auc": auc, "accuracy": 0.80, "log_loss": 0.44}
    decision = decide(evaluation(challenger, CHAMP, n=1000), GATE)
    [rule] = [r for r in decision.rules if r.rule == "improvement"]
    assert rule.detail == expected
