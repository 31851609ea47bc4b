"""The estimated-performance trigger and guard, pinned where a user reads them: the whole
evidence of a breach, which evaluation and which endpoint's champion calibrate it, the
policy's decision threshold, one check per interval, one model's trouble not stopping the
others, and what the log says when an evaluation cannot calibrate."""

from __future__ import annotations

import copy
import logging
import math
from datetime import timedelta
from typing import Any

import pytest

from shared.estimated_performance import champion_reference, check, check_all
from shared.estimation import estimate, fit_isotonic, realised
from shared.model import CycleState
from shared.policy import EstimatedPerformance, parse_policy
from tests.fakes import POLICY, World, make_policy, make_world
from tests.unit.test_performance import (
    ESTIMATE,
    degraded_scores,
    reference,
    world_with_champion_reference,
)
from tests.unit.test_spec_estimated_performance import (
    LIVE,
    NEW,
    Labels,
    evaluation,
    judge,
    scores,
    serve,
    setup,
    stored,
)

LOGGER = "shared.estimated_performance"


def spec_of(world: World, model: str = "credit") -> EstimatedPerformance:
    spec = world.services.policy.models[model].signals.estimated_performance
    assert spec is not None
    return spec


def test_a_breach_signal_carries_its_whole_evidence_rounded_to_six_places() -> None:
    """Both bounds breached: the signal names the metric, and its evidence holds the estimate
    and interval, the reference and its job, the window, both reasons and the estimation."""
    world = world_with_champion_reference(threshold=0.99)
    now = world.clock.now()
    traffic = degraded_scores(1000)
    world.scored.add("credit-ep", "blue", now - timedelta(minutes=1), traffic)
    signal = check(world.services, "credit", spec_of(world), "credit-ep")
    assert signal is not None
    ref = reference()
    ref_value = realised(ref["scores"], ref["label"])["auc"]
    expected = estimate(fit_isotonic(ref["scores"], ref["label"]), traffic)
    auc = expected.metric("auc")
    interval = [round(auc.low, 6), round(auc.high, 6)]
    assert interval[0] != round(auc.low, 7) and interval[1] != round(auc.high, 7)
    assert round(ref_value, 6) != round(ref_value, 7)
    assert (signal.model, signal.source, signal.signal) == (
        "credit",
        "estimated_performance",
        "estimated auc",
    )
    assert signal.event_key == f"estimated_performance|credit|{math.floor(now.timestamp() / 600)}"
    v = auc.value
    assert signal.evidence == {
        "metric": "auc",
        "estimate": round(v, 6),
        "interval": interval,
        "level": 0.95,
        "reference": round(ref_value, 6),
        "reference_job": "job-old",
        "rows": 1000,
        "window": [(now - timedelta(hours=1)).isoformat(), now.isoformat()],
        "why": f"estimated auc {v:.4f} < threshold 0.99; estimated auc {v:.4f} is "
        f"{ref_value - v:.4f} under the reference {ref_value:.4f} (max_drop 0.05)",
        "estimation": expected.evidence(),
        "realised": None,
    }


def test_the_realised_value_of_a_breach_is_audited_under_its_model() -> None:
    """40 labelled rows (15 of 20 positives and 15 of 20 negatives on the right side of one
    tie): realised AUC (225 + 150 / 2) / 400 = 0.75, audited for the model that breached."""
    world = world_with_champion_reference(ground_truth="labels.csv")
    world.services.labels = Labels([0.9] * 20 + [0.1] * 20, [1] * 15 + [0] * 20 + [1] * 5)
    world.scored.add(
        "credit-ep", "blue", world.clock.now() - timedelta(minutes=1), degraded_scores(1000)
    )
    signal = check(world.services, "credit", spec_of(world), "credit-ep")
    assert signal is not None
    assert signal.evidence["realised"]["value"] == 0.75
    assert signal.evidence["realised"]["rows"] == 40
    [note] = [r for r in world.audit.records if r.evidence.get("series")]
    assert (note.model, note.evidence["value"]) == ("credit", 0.75)


def test_an_accuracy_guard_estimates_both_sides_at_the_policys_decision_threshold() -> None:
    world, cycle = setup(metric="accuracy", decision_threshold=0.3)
    new, live = scores(400, 0.4, 2), scores(400, 0.4, 3)
    serve(world, NEW, new)
    serve(world, LIVE, live)
    verdict = judge(world, cycle)
    ev = evaluation()
    for side, key, traffic in (("new", "challenger_score", new), ("live", "champion_score", live)):
        fitted = fit_isotonic(ev[key], ev["label"])
        at_cut = estimate(fitted, traffic, threshold=0.3).metric("accuracy").value
        at_half = estimate(fitted, traffic, threshold=0.5).metric("accuracy").value
        assert round(at_cut, 6) != round(at_half, 6)
        assert verdict.evidence[side]["value"] == round(at_cut, 6)


def test_an_accuracy_reference_is_realised_at_the_policys_decision_threshold() -> None:
    world = world_with_champion_reference(metric="accuracy", decision_threshold=0.3)
    ref = champion_reference(world.services, "credit", spec_of(world))
    expected = reference()
    at_cut = realised(expected["scores"], expected["label"], 0.3)["accuracy"]
    assert at_cut != realised(expected["scores"], expected["label"], 0.5)["accuracy"]
    assert ref is not None and ref.value == at_cut


def distinct_evaluation() -> dict[str, Any]:
    """The spec's evaluation with a champion that ranks a third of its rows backwards."""
    ev = evaluation()
    flipped = [1 - s if i % 3 == 0 else s for i, s in enumerate(ev["challenger_score"])]
    ev["champion_score"] = flipped
    assert (
        realised(flipped, ev["label"])["auc"] < realised(ev["challenger_score"], ev["label"])["auc"]
    )
    return ev


def two_evaluations(world: World) -> dict[str, Any]:
    """Version 1's evaluation (job-1, the challenger's scores) and version 3's (job-3)."""
    ev = distinct_evaluation()
    world.platform.evaluations["job-1"] = {"champion": {"version": "0"}, "examples": ev}
    world.platform.evaluations["job-3"] = {"champion": {"version": "3"}, "examples": ev}
    stored(world, "v1", CycleState.PROMOTED, "1", "job-1", age=1)
    stored(world, "v3", CycleState.REJECTED, "4", "job-3", age=2)
    return ev


def test_the_champion_is_the_version_the_endpoint_serves_before_the_registrys() -> None:
    """The registry's alias still says version 1; the endpoint serves version 3: the reference
    is version 3's (the champion's scores of job-3), not version 1's."""
    world = make_world(make_policy(signals__estimated_performance={"max_drop": 0.1}))
    ev = two_evaluations(world)
    world.platform.champions["credit"] = "1"
    world.platform.served["credit-ep"] = "3"
    ref = champion_reference(world.services, "credit", spec_of(world))
    assert ref is not None and ref.job == "job-3"
    assert ref.value == realised(ev["champion_score"], ev["label"])["auc"]


def test_without_a_rollout_the_champion_is_the_registrys() -> None:
    world = make_world(make_policy(rollout=None, signals__estimated_performance={"max_drop": 0.1}))
    ev = two_evaluations(world)
    world.platform.champions["credit"] = "1"
    ref = champion_reference(world.services, "credit", spec_of(world))
    assert ref is not None and ref.job == "job-1"
    assert ref.value == realised(ev["challenger_score"], ev["label"])["auc"]


def test_a_promoted_cycle_whose_candidate_is_no_longer_champion_gives_the_champions_scores() -> (
    None
):
    """Version 4 was promoted over version 3, then 3 was made champion again: the newest
    evaluation still scored version 3 as its champion, and that is what calibrates."""
    world = make_world(make_policy(signals__estimated_performance={"max_drop": 0.1}))
    ev = distinct_evaluation()
    world.platform.evaluations["job-4"] = {"champion": {"version": "3"}, "examples": ev}
    stored(world, "v4", CycleState.PROMOTED, "4", "job-4", age=1)
    world.platform.champions["credit"] = "3"
    ref = champion_reference(world.services, "credit", spec_of(world))
    champion = realised(ev["champion_score"], ev["label"])["auc"]
    assert ref is not None and (ref.job, ref.value) == ("job-4", champion)


def test_a_check_is_not_repeated_in_its_interval_after_its_delivery_lease() -> None:
    """check_every 10m, delivery lease 5m: 6 minutes later, in the same interval, the finished
    check is not run again (no second read, no second signal)."""
    world = world_with_champion_reference()
    assert world.services.settings.delivery_lease_s == 300
    world.clock.advance(-world.clock.now().timestamp() % 600 + 1)  # start of an interval
    world.scored.add(
        "credit-ep", "blue", world.clock.now() - timedelta(minutes=1), degraded_scores(1000)
    )
    assert check(world.services, "credit", spec_of(world), "credit-ep") is not None
    world.clock.advance(360)
    assert check(world.services, "credit", spec_of(world), "credit-ep") is None
    assert world.scored.reads == 1


def policy_of(models: dict[str, dict[str, Any]]) -> Any:
    """The test policy with ``models`` before ``credit`` (which has the estimate block)."""
    data = copy.deepcopy(POLICY)
    credit = data["models"]["credit"]
    credit["signals"]["estimated_performance"] = dict(ESTIMATE)
    data["models"] = {**models, "credit": credit}
    return parse_policy(data, "test-policy")


def model(name: str, estimated: bool, endpoint: str | None) -> dict[str, Any]:
    block: dict[str, Any] = copy.deepcopy(POLICY["models"]["credit"])
    block["signals"] = {"drift_alerts": [f"{name}-drift"]}
    if estimated:
        block["signals"]["estimated_performance"] = dict(ESTIMATE)
    if endpoint is None:
        del block["rollout"]
    else:
        block["rollout"]["endpoint"] = endpoint
    return block


def test_models_without_a_block_or_an_endpoint_are_passed_over_and_the_rest_checked() -> None:
    world = world_with_champion_reference()
    world.services.policy = policy_of(
        {"plain": model("plain", False, "plain-ep"), "no-rollout": model("no-rollout", True, None)}
    )
    world.scored.add(
        "credit-ep", "blue", world.clock.now() - timedelta(minutes=1), degraded_scores(1000)
    )
    found = check_all(world.services)
    assert [s.model for s in found] == ["credit"]


def test_one_models_outage_defers_only_that_model_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = world_with_champion_reference()
    world.services.policy = policy_of({"first": model("first", True, "first-ep")})
    world.scored.add(
        "credit-ep", "blue", world.clock.now() - timedelta(minutes=1), degraded_scores(1000)
    )
    world.scored.failures = 1  # the first read (model "first") fails
    found = check_all(world.services)
    assert [s.model for s in found] == ["credit"]
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert warnings == ["estimated performance of first deferred: blob storage unavailable"]


@pytest.mark.parametrize("case", ["no-champion-scores", "no-labels"])
def test_an_evaluation_without_scores_or_labels_skips_without_blaming_it(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing to fit is not a failed fit: the guard stands aside and logs no warning."""
    examples = evaluation()
    if case == "no-champion-scores":
        del examples["champion_score"]
    else:
        examples["label"] = []
    world, cycle = setup(examples=examples)
    serve(world, NEW, scores(400, 0.5, 2))
    serve(world, LIVE, scores(400, 0.5, 3))
    verdict = judge(world, cycle)
    assert verdict.why == "the evaluation has no per-example scores for both models"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_non_finite_evaluation_score_skips_and_the_log_says_what_is_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    examples = evaluation()
    examples["challenger_score"][0] = float("nan")
    world, cycle = setup(examples=examples)
    serve(world, NEW, scores(400, 0.5, 2))
    serve(world, LIVE, scores(400, 0.5, 3))
    verdict = judge(world, cycle)
    assert (verdict.verdict, verdict.evidence) == ("skip", {})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "evaluation of job-1 cannot fit an estimate: "
        "reference scores: scores must be finite numbers"
    ]
