"""What the evaluation gate promises, at each boundary: a tie never passes, a bound that is met
passes, a policy's per-example checks are never skipped, and the reasons read as they should."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from shared.errors import PermanentError
from shared.gate import change_words, decide
from shared.policy import Gate, SliceCheck
from tests.payloads import evaluation


def gate(**fields: Any) -> Gate:
    return Gate.model_validate({"primary_metric": "auc", **fields})


def rule(decision: Any, name: str, metric: str | None = None) -> Any:
    [found] = [
        r for r in decision.rules if r.rule == name and (metric is None or r.metric == metric)
    ]
    return found


# --- improvement: a tie never passes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "new", "old", "min_improvement", "passed"),
    [
        ("maximize", 0.80, 0.80, 0.0, False),  # a tie, even with no minimum
        ("maximize", 0.8001, 0.80, 0.0, True),
        ("maximize", 0.79, 0.80, 0.0, False),
        ("maximize", 0.875, 0.75, 0.125, True),  # exactly the minimum
        ("maximize", 0.8749, 0.75, 0.125, False),
        ("minimize", 0.30, 0.30, 0.0, False),
        ("minimize", 0.29, 0.30, 0.0, True),
        ("minimize", 0.31, 0.30, 0.0, False),
        ("minimize", 0.25, 0.375, 0.125, True),
        ("minimize", 0.2501, 0.375, 0.125, False),
        # the minimum as written, whatever binary floats make of it (0.85 - 0.80 is
        # 0.04999999999999993; 0.20 - 0.15 is 0.05000000000000002)
        ("maximize", 0.85, 0.80, 0.05, True),
        ("maximize", 0.90, 0.85, 0.05, True),
        ("minimize", 0.15, 0.20, 0.05, True),
        ("maximize", 0.7, 0.6, 0.1, True),  # 0.09999999999999998
        ("maximize", 0.8499999, 0.80, 0.05, False),
    ],
)
def test_improvement_must_be_strictly_better_by_at_least_the_minimum(
    direction: str, new: float, old: float, min_improvement: float, passed: bool
) -> None:
    g = gate(primary_metric="m", direction=direction, min_improvement=min_improvement)
    decision = decide(evaluation({"m": new}, {"m": old}), g)
    improvement = rule(decision, "improvement")
    assert improvement.passed is passed
    assert decision.passed is passed
    assert improvement.observed == pytest.approx(
        (new - old) * (1 if direction == "maximize" else -1)
    )
    assert improvement.threshold == min_improvement


@pytest.mark.parametrize(
    ("new", "old", "observed", "passed"),
    [
        (11.0, 10.0, 0.1, True),
        (10.5, 10.0, 0.05, True),  # exactly the relative minimum
        (10.4, 10.0, 0.04, False),
        (10.0, 10.0, 0.0, False),
        (1.0, 0.0, math.inf, True),  # any gain over zero is infinitely relative
        (0.0, 0.0, 0.0, False),
        (-1.0, 0.0, 0.0, False),
        (-9.0, -10.0, 0.1, True),  # relative to the size of the old value
    ],
)
def test_relative_improvement_is_relative_to_the_champions_size(
    new: float, old: float, observed: float, passed: bool
) -> None:
    g = gate(primary_metric="m", improvement="relative", min_improvement=0.05)
    decision = decide(evaluation({"m": new}, {"m": old}), g)
    improvement = rule(decision, "improvement")
    assert improvement.observed == pytest.approx(observed)
    assert improvement.passed is passed


def test_relative_improvement_is_worded_as_relative() -> None:
    g = gate(primary_metric="m", improvement="relative", min_improvement=0.05)
    decision = decide(evaluation({"m": 11.0}, {"m": 10.0}), g)
    assert rule(decision, "improvement").detail == (
        "m 10 -> 11 (maximize): better by 0.1 (relative); "
        "must be better by at least 0.05 (relative)"
    )


@pytest.mark.parametrize(
    ("gain", "unit", "words"),
    [
        (0.012, "", "better by 0.012"),
        (-0.1511, "", "worse by 0.1511"),
        (0.0, "", "unchanged"),
        (0.2, "relative", "better by 0.2 (relative)"),
        (-0.2, "relative", "worse by 0.2 (relative)"),
        (0.2, "absolute", "better by 0.2"),
    ],
)
def test_change_words(gain: float, unit: str, words: str) -> None:
    assert change_words(gain, unit) == words


# --- floors, ceilings, guardrails and sample size: a bound that is met passes ---


@pytest.mark.parametrize(
    ("value", "floor_passed", "ceiling_passed"),
    [(0.6, True, True), (0.5999, False, True), (0.9, True, True), (0.9001, True, False)],
)
def test_floor_and_ceiling_include_their_bound(
    value: float, floor_passed: bool, ceiling_passed: bool
) -> None:
    g = gate(primary_metric="m", floors=[{"metric": "m", "min": 0.6, "max": 0.9}])
    decision = decide(evaluation({"m": value}, None), g)
    assert rule(decision, "floor").passed is floor_passed
    assert rule(decision, "ceiling").passed is ceiling_passed
    assert rule(decision, "floor").threshold == 0.6
    assert rule(decision, "ceiling").threshold == 0.9
    assert rule(decision, "floor").detail == f"challenger m {value:.4g} must be >= 0.6"
    assert rule(decision, "ceiling").detail == f"challenger m {value:.4g} must be <= 0.9"


@pytest.mark.parametrize(
    ("direction", "new", "passed"),
    [
        ("maximize", 0.625, True),  # worse by exactly the tolerance
        ("maximize", 0.6249, False),
        ("maximize", 0.95, True),
        ("minimize", 0.625, True),
        ("minimize", 0.6251, False),
        ("minimize", 0.1, True),
    ],
)
def test_a_guardrail_allows_a_regression_up_to_its_tolerance(
    direction: str, new: float, passed: bool
) -> None:
    old = 0.75 if direction == "maximize" else 0.5
    g = gate(guardrails=[{"metric": "g", "direction": direction, "tolerance": 0.125}])
    decision = decide(evaluation({"auc": 0.9, "g": new}, {"auc": 0.8, "g": old}), g)
    guard = rule(decision, "guardrail")
    assert guard.passed is passed
    assert guard.threshold == 0.125
    assert guard.observed == pytest.approx((old - new) * (1 if direction == "maximize" else -1))


@pytest.mark.parametrize(
    ("direction", "old", "new", "passed"),
    [
        ("maximize", 0.90, 0.85, True),  # 0.90 - 0.85 is 0.05000000000000004
        ("minimize", 0.15, 0.20, True),  # 0.20 - 0.15 is 0.05000000000000002
        ("maximize", 0.90, 0.8499, False),
    ],
)
def test_a_guardrail_tolerance_as_written_is_allowed(
    direction: str, old: float, new: float, passed: bool
) -> None:
    g = gate(guardrails=[{"metric": "g", "direction": direction, "tolerance": 0.05}])
    decision = decide(evaluation({"auc": 0.9, "g": new}, {"auc": 0.8, "g": old}), g)
    assert rule(decision, "guardrail").passed is passed


@pytest.mark.parametrize(("n", "passed"), [(500, True), (499, False), (10_000, True)])
def test_min_samples_includes_its_bound(n: int, passed: bool) -> None:
    decision = decide(evaluation({"auc": 0.9}, {"auc": 0.8}, n=n), gate(min_samples=500))
    samples = rule(decision, "min_samples")
    assert samples.passed is passed
    assert (samples.observed, samples.threshold) == (float(n), 500.0)
    assert samples.detail == f"{n} evaluation examples; at least 500 required"


@pytest.mark.parametrize("n", [None, "1000", True, [1000]])
def test_an_unknown_sample_size_fails_min_samples(n: Any) -> None:
    doc = evaluation({"auc": 0.9}, {"auc": 0.8})
    doc["n"] = n
    samples = rule(decide(doc, gate(min_samples=10)), "min_samples")
    assert samples.passed is False and samples.observed is None


def test_a_float_sample_size_counts() -> None:
    doc = evaluation({"auc": 0.9}, {"auc": 0.8})
    doc["n"] = 600.0
    assert rule(decide(doc, gate(min_samples=500)), "min_samples").passed


def test_no_min_samples_means_no_sample_size_rule() -> None:
    decision = decide(evaluation({"auc": 0.9}, {"auc": 0.8}, n=1), gate())
    assert [r.rule for r in decision.rules] == ["improvement"]


# --- summary, versions and the document itself -------------------------------------------------


def test_the_summary_names_the_champion_version_and_every_failed_rule() -> None:
    g = gate(min_samples=100, guardrails=[{"metric": "acc", "tolerance": 0.0}])
    doc = evaluation({"auc": 0.7, "acc": 0.5}, {"auc": 0.8, "acc": 0.9}, n=5, champion_version="7")
    decision = decide(doc, g)
    assert decision.champion_version == "7" and decision.has_champion
    assert decision.summary == (
        "challenger vs champion v7; failed: min_samples, improvement(auc), guardrail(acc)"
    )
    ok = decide(evaluation({"auc": 0.9}, {"auc": 0.8}, champion_version="12"), gate())
    assert ok.summary == "challenger vs champion v12; every rule passed"


def test_without_a_champion_the_summary_says_only_floors_apply() -> None:
    decision = decide(evaluation({"auc": 0.5}, None), gate(floors=[{"metric": "auc", "min": 0.6}]))
    assert (
        decision.summary == "no champion yet: only floors and sample size apply; failed: floor(auc)"
    )
    assert decision.champion_version is None and not decision.has_champion


def test_the_decision_serialises_every_rule() -> None:
    decision = decide(evaluation({"auc": 0.9}, {"auc": 0.8}), gate())
    data = decision.to_json()
    assert data["passed"] is True
    assert data["rules"] == [
        {
            "rule": "improvement",
            "metric": "auc",
            "observed": pytest.approx(0.1),
            "threshold": 0.0,
            "passed": True,
            "detail": "auc 0.8 -> 0.9 (maximize): better by 0.1; must be better by at least 0",
        }
    ]
    assert data["bootstrap"] is None


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ([], "must be a JSON object"),
        (
            {"challenger": {"metrics": {"auc": True}}},
            "challenger metric 'auc' is not a finite number",
        ),
        ({"challenger": {"metrics": {"auc": math.nan}}}, "not a finite number"),
        ({"challenger": {"metrics": {"auc": math.inf}}}, "not a finite number"),
        ({"challenger": {"metrics": []}}, "'challenger.metrics' must be an object"),
        ({"challenger": "x"}, "'challenger.metrics' must be an object"),
        (
            {"challenger": {"metrics": {"auc": 0.9}}, "champion": {"metrics": {"acc": 1}}},
            "champion has no metric 'auc' required by the gate",
        ),
    ],
)
def test_malformed_documents_are_permanent_errors(doc: Any, problem: str) -> None:
    with pytest.raises(PermanentError, match=problem):
        decide(doc, gate())


def test_a_document_without_a_schema_is_read_as_version_1() -> None:
    doc = evaluation({"auc": 0.9}, {"auc": 0.8})
    del doc["schema"]
    assert decide(doc, gate()).passed


def test_integer_metrics_are_numbers() -> None:
    decision = decide(evaluation({"auc": 1}, {"auc": 0}), gate())
    assert rule(decision, "improvement").observed == 1.0


# --- per-example rules: never silently skipped ------------------------------------------------


def examples(
    labels: list[float], new: list[float], old: list[float], **segments: list[Any]
) -> dict[str, Any]:
    doc = evaluation({"auc": 0.9, "mae": 0.1}, {"auc": 0.8, "mae": 0.2}, n=len(labels))
    doc["examples"] = {
        "label": labels,
        "challenger_score": new,
        "champion_score": old,
        "segments": segments,
    }
    return doc


def separable(n: int = 200, seed: int = 1) -> dict[str, Any]:
    """The challenger ranks every example right; the champion is noise. Three regions."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(float)
    new = labels * 0.5 + rng.random(n) * 0.4
    old = rng.random(n)
    region = np.array(["north", "south", "east", "west"])[np.arange(n) // 2 % 4]
    return examples(labels.tolist(), new.tolist(), old.tolist(), region=region.tolist())


@pytest.mark.parametrize(
    ("fields", "rules"),
    [
        ({"confidence": 0.9, "bootstrap_samples": 200}, ["improvement", "confidence"]),
        (
            {"slices": [{"column": "region", "min_samples": 10}]},
            ["improvement", "slice", "slice", "slice", "slice"],
        ),
        (
            {"confidence": 0.9, "bootstrap_samples": 200, "slices": [{"column": "region"}]},
            ["improvement", "confidence", "slice", "slice", "slice", "slice"],
        ),
        ({}, ["improvement"]),
    ],
    ids=["confidence-only", "slices-only", "both", "neither"],
)
def test_confidence_or_slices_alone_are_applied(fields: dict[str, Any], rules: list[str]) -> None:
    decision = decide(separable(), gate(**fields))
    assert [r.rule for r in decision.rules] == rules
    assert decision.passed


@pytest.mark.parametrize(
    "fields",
    [{"confidence": 0.9}, {"slices": [{"column": "region"}]}],
    ids=["confidence", "slices"],
)
def test_per_example_checks_without_per_example_results_fail(fields: dict[str, Any]) -> None:
    decision = decide(evaluation({"auc": 0.9}, {"auc": 0.8}), gate(**fields))
    assert decision.passed is False
    missing = rule(decision, "per_example")
    assert missing.passed is False and missing.metric == "auc"
    assert (missing.observed, missing.threshold) == (None, None)
    assert missing.detail == (
        "the policy asks for confidence or slice checks, but the evaluation has no "
        "per-example results ('examples')"
    )


def test_a_metric_without_a_per_example_form_fails_the_gate_and_says_so() -> None:
    doc = separable()
    doc["challenger"]["metrics"]["f1"] = 0.9
    doc["champion"]["metrics"]["f1"] = 0.5
    decision = decide(doc, gate(primary_metric="f1", confidence=0.9))
    assert not decision.passed
    failed = rule(decision, "per_example")
    assert failed.passed is False and failed.metric == "f1"
    assert failed.detail.startswith("'f1' cannot be computed from per-example results; known: ")
    assert "accuracy, auc, brier, log_loss, mae, rmse, roc_auc" in failed.detail


@pytest.mark.parametrize(
    "segments",
    [{}, {"region": ["north"]}, {"other": ["x"] * 200}, {"region": "north"}],
    ids=["no-segments", "too-short", "other-column", "not-a-list"],
)
def test_a_missing_segment_column_fails_the_gate(segments: dict[str, Any]) -> None:
    doc = separable()
    doc["examples"]["segments"] = segments
    decision = decide(doc, gate(slices=[{"column": "region"}]))
    assert decision.passed is False
    missing = rule(decision, "slice")
    assert missing.detail == "segment column 'region' missing from examples"
    assert missing.passed is False and missing.metric == "auc"


def test_segments_that_are_not_an_object_fail_every_slice() -> None:
    doc = separable()
    doc["examples"]["segments"] = ["north"] * 200
    decision = decide(doc, gate(slices=[{"column": "region"}]))
    assert not decision.passed


def test_identical_models_never_pass_the_confidence_rule() -> None:
    """Identical scores give a CI of exactly [0, 0]: a lower bound of 0 does not exclude zero."""
    doc = separable()
    doc["examples"]["challenger_score"] = list(doc["examples"]["champion_score"])
    decision = decide(doc, gate(confidence=0.95, bootstrap_samples=200))
    confidence = rule(decision, "confidence")
    assert confidence.observed == 0.0 and confidence.threshold == 0.0
    assert not confidence.passed and not decision.passed


def test_the_confidence_rule_reports_its_interval_and_evidence() -> None:
    decision = decide(separable(), gate(confidence=0.9, bootstrap_samples=300, seed=5))
    confidence = rule(decision, "confidence")
    boot = decision.bootstrap
    assert boot is not None
    assert boot["metric"] == "auc" and boot["level"] == 0.9
    assert boot["samples"] == 300 and boot["seed"] == 5
    assert confidence.observed == boot["low"] > 0
    assert boot["low"] <= boot["estimate"] <= boot["high"]
    assert sum(boot["histogram"]["counts"]) == 300
    assert len(boot["histogram"]["edges"]) == 31
    assert confidence.detail == (
        f"90% paired bootstrap CI of the auc gain [{boot['low']:+.4g}, {boot['high']:+.4g}] "
        "(300 resamples, seed 5) must exclude zero"
    )


def test_a_minimised_metric_is_judged_in_its_own_direction() -> None:
    labels = [float(i % 5) for i in range(100)]
    good = [v + 0.1 for v in labels]
    bad = [v + 1.0 for v in labels]
    g = gate(primary_metric="mae", direction="minimize", confidence=0.9, bootstrap_samples=200)
    better = decide(examples(labels, good, bad), g)
    worse = decide(examples(labels, bad, good), g)
    assert rule(better, "confidence").passed and rule(better, "confidence").observed > 0
    assert not rule(worse, "confidence").passed
    assert better.bootstrap is not None and better.bootstrap["estimate"] == pytest.approx(0.9)


def slice_doc(north_new: list[float]) -> dict[str, Any]:
    """Regression on 40 rows per region; the challenger's north predictions are given."""
    labels = [1.0] * 80
    new = north_new + [1.0] * 40
    old = [1.0] * 80
    region = ["north"] * 40 + ["south"] * 40
    return examples(labels, new, old, region=region)


@pytest.mark.parametrize(("error", "passed"), [(0.03125, True), (0.0313, False), (0.0, True)])
def test_a_slice_may_be_worse_by_at_most_its_tolerance(error: float, passed: bool) -> None:
    g = gate(
        primary_metric="mae",
        direction="minimize",
        slices=[{"column": "region", "min_samples": 40, "tolerance": 0.03125}],
    )
    decision = decide(slice_doc([1.0 + error] * 40), g)
    north, south = (r for r in decision.rules if r.rule == "slice")
    assert north.passed is passed and south.passed
    assert north.observed == pytest.approx(error) and north.threshold == 0.03125
    assert north.detail == (
        f"region=north (n=40): mae {change_words(-error)}; may be worse by at most 0.03125"
    )


@pytest.mark.parametrize(("min_samples", "judged"), [(40, 2), (41, 0), (1, 2)])
def test_slices_smaller_than_their_minimum_are_not_judged(min_samples: int, judged: int) -> None:
    g = gate(
        primary_metric="mae",
        direction="minimize",
        slices=[{"column": "region", "min_samples": min_samples, "tolerance": 0.0}],
    )
    decision = decide(slice_doc([5.0] * 40), g)
    assert len([r for r in decision.rules if r.rule == "slice"]) == judged
    assert decision.passed is (judged == 0)


def test_a_one_class_slice_is_not_judged_on_auc() -> None:
    labels = [1.0] * 30 + [0.0, 1.0] * 30
    new = [0.9] * 30 + [0.1, 0.9] * 30
    old = [0.1] * 30 + [0.9, 0.1] * 30
    region = ["north"] * 30 + ["south"] * 60
    decision = decide(
        examples(labels, new, old, region=region),
        gate(slices=[{"column": "region", "min_samples": 10}]),
    )
    slices = [r for r in decision.rules if r.rule == "slice"]
    assert [r.detail.split(" ")[0] for r in slices] == ["region=south"]


def test_segment_values_are_compared_as_text() -> None:
    labels = [float(i % 2) for i in range(80)]
    region = [1] * 40 + ["1"] * 40  # the same segment written two ways
    decision = decide(
        examples(labels, labels, labels, region=region),
        gate(slices=[{"column": "region", "min_samples": 50}]),
    )
    [only] = [r for r in decision.rules if r.rule == "slice"]
    assert only.detail.startswith("region=1 (n=80)")


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda ex: ex.update(label="x"), "examples.label must be a list of n=200 numbers"),
        (lambda ex: ex["champion_score"].pop(), "examples.champion_score must be a list"),
        (lambda ex: ex.update(challenger_score=None), "examples.challenger_score must be a list"),
        (lambda ex: ex["label"].__setitem__(0, "high"), "per-example results must be numbers"),
        (lambda ex: ex["label"].__setitem__(0, [1]), "per-example results must be numbers"),
        (
            lambda ex: ex["challenger_score"].__setitem__(3, None),
            "per-example results must be numbers: null or not finite",
        ),
        (
            lambda ex: ex["champion_score"].__setitem__(5, "x"),
            "per-example results must be numbers",
        ),
        (  # a null score once became NaN and silently dropped the resamples drawing it
            lambda ex: ex["champion_score"].__setitem__(5, float("nan")),
            "per-example results must be numbers: null or not finite",
        ),
        (
            lambda ex: ex["label"].__setitem__(7, float("inf")),
            "per-example results must be numbers: null or not finite",
        ),
    ],
)
def test_malformed_per_example_results_are_permanent_errors(mutate: Any, problem: str) -> None:
    doc = separable()
    mutate(doc["examples"])
    with pytest.raises(PermanentError, match=problem):
        decide(doc, gate(confidence=0.9))


def test_examples_that_are_not_an_object_are_a_permanent_error() -> None:
    doc = separable()
    doc["examples"] = [1, 2]
    with pytest.raises(PermanentError, match=r"^evaluation: 'examples' must be an object$"):
        decide(doc, gate(slices=[SliceCheck(column="region")]))


def test_per_example_rules_need_no_sample_size() -> None:
    doc = separable()
    del doc["n"]
    decision = decide(doc, gate(confidence=0.9, bootstrap_samples=200))
    assert rule(decision, "confidence").passed


def test_a_missing_column_does_not_stop_the_other_slice_checks() -> None:
    g = gate(slices=[{"column": "absent"}, {"column": "region", "min_samples": 10}])
    decision = decide(separable(), g)
    slices = [r for r in decision.rules if r.rule == "slice"]
    assert slices[0].detail == "segment column 'absent' missing from examples"
    assert [r.detail.split(" ")[0] for r in slices[1:]] == [
        "region=east",
        "region=north",
        "region=south",
        "region=west",
    ]


def test_a_small_segment_does_not_stop_the_larger_ones_being_judged() -> None:
    labels = [float(i % 2) for i in range(90)]
    region = ["a-small"] * 10 + ["b-large"] * 40 + ["c-large"] * 40
    decision = decide(
        examples(labels, labels, labels, region=region),
        gate(slices=[{"column": "region", "min_samples": 30}]),
    )
    slices = [r.detail.split(" ")[0] for r in decision.rules if r.rule == "slice"]
    assert slices == ["region=b-large", "region=c-large"]


def test_a_one_class_segment_does_not_stop_the_later_ones_being_judged() -> None:
    labels = [0.0, 1.0] * 20 + [1.0] * 20 + [0.0, 1.0] * 20
    region = ["a"] * 40 + ["b"] * 20 + ["c"] * 40
    decision = decide(
        examples(labels, labels, labels, region=region),
        gate(slices=[{"column": "region", "min_samples": 10}]),
    )
    slices = [r.detail.split(" ")[0] for r in decision.rules if r.rule == "slice"]
    assert slices == ["region=a", "region=c"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "evaluation document must be a JSON object"),
        (
            {"schema": "other/v9", "challenger": {"metrics": {}}},
            "evaluation schema 'other/v9' is not autopilot.evaluation/v1",
        ),
        ({"champion": None}, "evaluation has no 'challenger' block"),
        (
            {"challenger": {"metrics": {"acc": 0.9}}, "champion": {"metrics": {"auc": 0.8}}},
            "evaluation: challenger has no metric 'auc' required by the gate",
        ),
        (
            {"challenger": {"metrics": {"auc": 0.9}}, "champion": {"metrics": {"acc": 0.8}}},
            "evaluation: champion has no metric 'auc' required by the gate",
        ),
    ],
)
def test_a_malformed_document_says_exactly_what_is_wrong(doc: Any, message: str) -> None:
    with pytest.raises(PermanentError) as raised:
        decide(doc, gate())
    assert str(raised.value) == message


def test_a_floor_on_a_metric_the_challenger_lacks_names_the_challenger() -> None:
    doc = evaluation({"auc": 0.9}, None)
    with pytest.raises(PermanentError) as raised:
        decide(doc, gate(floors=[{"metric": "recall", "min": 0.5}]))
    assert str(raised.value) == "evaluation: challenger has no metric 'recall' required by the gate"


def test_every_rule_names_its_metric_and_observed_value() -> None:
    g = gate(
        primary_metric="mae",
        direction="minimize",
        confidence=0.9,
        bootstrap_samples=200,
        slices=[{"column": "region", "min_samples": 40}],
        floors=[{"metric": "mae", "min": 0.0, "max": 0.5}],
    )
    doc = slice_doc([1.0] * 40)
    doc["challenger"]["metrics"]["mae"] = 0.125
    decision = decide(doc, g)
    by_rule = {(r.rule, r.detail.split(" ")[0]): r for r in decision.rules}
    assert {r.metric for r in decision.rules} == {"mae"}
    floor, ceiling = rule(decision, "floor"), rule(decision, "ceiling")
    assert (floor.observed, ceiling.observed) == (0.125, 0.125)
    assert rule(decision, "confidence").metric == "mae"
    assert by_rule[("slice", "region=north")].metric == "mae"


@pytest.mark.parametrize(
    ("challenger", "champion", "message"),
    [
        (
            {"auc": 0.9},
            {"auc": 0.8, "acc": 0.7},
            "evaluation: challenger has no metric 'acc' required by the gate",
        ),
        (
            {"auc": 0.9, "acc": 0.7},
            {"auc": 0.8},
            "evaluation: champion has no metric 'acc' required by the gate",
        ),
    ],
)
def test_a_guardrail_on_a_missing_metric_names_the_side_that_lacks_it(
    challenger: dict[str, float], champion: dict[str, float], message: str
) -> None:
    with pytest.raises(PermanentError) as raised:
        decide(evaluation(challenger, champion), gate(guardrails=[{"metric": "acc"}]))
    assert str(raised.value) == message
