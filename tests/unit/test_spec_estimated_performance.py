"""What the estimated-performance guard promises during a rollout: it compares the candidate's
estimate on its own traffic with live's on live's, each calibrated on the cycle's evaluation;
it says exactly why it stands aside; and its verdict names both sides and the tolerance."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from shared.estimated_performance import GuardVerdict, guard
from shared.model import Cycle, CycleState
from shared.rollout_state import Phase, RolloutState
from tests.fakes import World, make_policy, make_world

NEW, LIVE = "credit-v2", "blue"


def scores(n: int, centre: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(s) for s in np.clip(rng.normal(centre, 0.2, n), 0.001, 0.999)]


def evaluation(n: int = 2000) -> dict[str, Any]:
    """Held-out rows: the challenger's and the champion's scores and the true labels."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, n)
    p = 1 / (1 + np.exp(-2 * x))
    labels = (rng.random(n) < p).astype(int)
    return {
        "label": labels.tolist(),
        "challenger_score": p.tolist(),
        "champion_score": (p**2).tolist(),
    }


def setup(*, examples: dict[str, Any] | None = None, **estimate: Any) -> tuple[World, Cycle]:
    block = {"metric": "auc", "max_drop": 0.05, "min_rows": 300, **estimate}
    world = make_world(make_policy(signals__estimated_performance=block))
    world.platform.evaluations["job-1"] = {
        "examples": evaluation() if examples is None else examples
    }
    now = world.clock.now()
    cycle = Cycle(
        "c-1",
        "credit",
        CycleState.ROLLING_OUT,
        now,
        now,
        job_name="job-1",
        candidate_version="2",
        rollout=RolloutState(
            endpoint="credit-ep", deployment=NEW, previous=LIVE, phase=Phase.CANARY
        ),
    )
    return world, cycle


def serve(world: World, deployment: str, values: list[float], endpoint: str = "credit-ep") -> None:
    world.scored.add(endpoint, deployment, world.clock.now() - timedelta(minutes=5), values)


def judge(world: World, cycle: Cycle, live: str | None = LIVE) -> GuardVerdict:
    now = world.clock.now()
    start = now - timedelta(hours=1)
    return guard(world.services, cycle, (NEW, start, now), (live, start, now))


def test_a_candidate_as_good_as_live_passes_and_the_evidence_names_both_sides() -> None:
    world, cycle = setup()
    serve(world, NEW, scores(400, 0.5, 2))
    serve(world, LIVE, scores(500, 0.5, 3))
    verdict = judge(world, cycle)
    assert verdict.verdict == "ok"
    evidence = verdict.evidence
    assert evidence["metric"] == "auc" and evidence["tolerance"] == 0.02
    assert (evidence["new"]["deployment"], evidence["new"]["rows"]) == (NEW, 400)
    assert (evidence["live"]["deployment"], evidence["live"]["rows"]) == (LIVE, 500)
    a, b = evidence["new"]["value"], evidence["live"]["value"]
    assert verdict.why == f"estimated auc {a:.4f} vs live {b:.4f}"


def test_a_candidate_worse_than_live_by_more_than_the_tolerance_breaches() -> None:
    world, cycle = setup()
    serve(world, NEW, scores(400, 0.5, 2)[:1] * 400)  # one score: nothing separates
    serve(world, LIVE, scores(400, 0.5, 3))
    verdict = judge(world, cycle)
    assert verdict.verdict == "breach"
    a, b = verdict.evidence["new"]["value"], verdict.evidence["live"]["value"]
    assert b - a > 0.02
    assert verdict.why.startswith(f"estimated auc {a:.4f} is ")
    assert verdict.why.endswith(f" under live's {b:.4f} (tolerance 0.02)")


def test_live_is_estimated_on_lives_own_traffic_calibrated_on_the_champion() -> None:
    """Swapping which deployment served what changes the verdict: the live side reads the
    live deployment's rows, not the endpoint's."""
    world, cycle = setup()
    serve(world, NEW, scores(400, 0.5, 3))
    serve(world, LIVE, scores(400, 0.5, 2)[:1] * 400)
    verdict = judge(world, cycle)
    assert verdict.verdict == "ok"
    assert verdict.evidence["live"]["rows"] == 400


def test_the_guard_reads_the_cycles_own_endpoint() -> None:
    world, cycle = setup()
    serve(world, NEW, scores(400, 0.5, 2), endpoint="other-ep")
    serve(world, LIVE, scores(400, 0.5, 3), endpoint="other-ep")
    verdict = judge(world, cycle)
    assert (verdict.verdict, verdict.why) == ("skip", "0/0 scored rows (new/live) < 300")


@pytest.mark.parametrize(("rows", "verdict"), [(299, "skip"), (300, "ok")])
def test_each_side_needs_min_rows(rows: int, verdict: str) -> None:
    world, cycle = setup()
    serve(world, NEW, scores(rows, 0.5, 2))
    serve(world, LIVE, scores(400, 0.5, 3))
    found = judge(world, cycle)
    assert found.verdict == verdict
    if verdict == "skip":
        assert found.why == f"{rows}/400 scored rows (new/live) < 300"
        assert found.evidence == {}


SKIPS = [
    ("no-block", "no estimated-performance guard"),
    ("no-tolerance", "no estimated-performance guard"),
    ("no-scored-log", "no estimated-performance guard"),
    ("no-job", "no estimated-performance guard"),
    ("no-live", "no live deployment to compare with"),
    ("no-evaluation", "no evaluation of job-1"),
    ("no-examples", "the evaluation has no per-example scores for both models"),
    ("no-champion-scores", "the evaluation has no per-example scores for both models"),
    ("no-challenger-scores", "the evaluation has no per-example scores for both models"),
]


@pytest.mark.parametrize(("case", "why"), SKIPS, ids=[case for case, _ in SKIPS])
def test_the_guard_says_exactly_why_it_stands_aside(case: str, why: str) -> None:
    examples = evaluation()
    if case == "no-examples":
        examples = {}
    elif case == "no-champion-scores":
        del examples["champion_score"]
    elif case == "no-challenger-scores":
        del examples["challenger_score"]
    world, cycle = setup(
        examples=examples, **({"guard_tolerance": None} if case == "no-tolerance" else {})
    )
    serve(world, NEW, scores(400, 0.5, 2))
    serve(world, LIVE, scores(400, 0.5, 3))
    live: str | None = LIVE
    if case == "no-block":
        world.services.policy = make_policy()
    elif case == "no-scored-log":
        world.services.scored = None
    elif case == "no-job":
        cycle.job_name = None
    elif case == "no-live":
        live = None
    elif case == "no-evaluation":
        del world.platform.evaluations["job-1"]
    verdict = judge(world, cycle, live)
    assert (verdict.verdict, verdict.why, verdict.evidence) == ("skip", why, {})


def test_a_loss_guard_breaches_when_the_candidates_estimated_loss_is_over_lives() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 2000)
    predictions = 2 * x
    targets = predictions + rng.normal(0, 1, 2000) * (0.1 + np.abs(x))
    examples = {
        "label": targets.tolist(),
        "challenger_score": predictions.tolist(),
        "champion_score": predictions.tolist(),
    }
    world, cycle = setup(
        examples=examples, metric="mae", max_drop=None, max_increase=0.1, guard_tolerance=0.05
    )
    serve(world, NEW, [float(v) for v in rng.normal(0, 4, 400)])  # where the errors are large
    serve(world, LIVE, [float(v) for v in rng.normal(0, 0.5, 400)])
    verdict = judge(world, cycle)
    assert verdict.verdict == "breach"
    a, b = verdict.evidence["new"]["value"], verdict.evidence["live"]["value"]
    assert verdict.why.endswith(f" over live's {b:.4f} (tolerance 0.05)") and a > b


# --- when an estimate is a drift signal (shared/policy_estimate.py) -----------------------------

BREACHES = [
    # block, estimate, reference, reasons
    ({"max_drop": 0.25}, 0.5, 0.75, []),  # exactly max_drop under (exact in binary): no breach
    (
        {"max_drop": 0.05},
        0.84,
        0.90,
        ["estimated auc 0.8400 is 0.0600 under the reference 0.9000 (max_drop 0.05)"],
    ),
    ({"max_drop": 0.05}, 0.99, 0.90, []),  # better than the reference
    # exactly max_drop as the user reads it, though 0.90 - 0.85 is 0.05000000000000004
    ({"max_drop": 0.05}, 0.85, 0.90, []),
    ({"max_drop": 0.1}, 0.7, 0.8, []),  # 0.8 - 0.7 = 0.10000000000000009
    (
        {"max_drop": 0.05},
        0.8499,
        0.90,
        ["estimated auc 0.8499 is 0.0501 under the reference 0.9000 (max_drop 0.05)"],
    ),
    ({"metric": "mae", "max_increase": 0.1}, 0.3, 0.2, []),  # 0.3 - 0.2 = 0.09999999999999998
    ({"metric": "mae", "max_increase": 0.2}, 0.3, 0.1, []),  # 0.3 - 0.1 = 0.19999999999999998
    ({"metric": "mae", "max_increase": 0.1}, 0.7, 0.6, []),  # 0.7 - 0.6 = 0.09999999999999998
    ({"metric": "mae", "max_increase": 0.3}, 0.4, 0.1, []),  # 0.4 - 0.1 = 0.30000000000000004
    ({"threshold": 0.8}, 0.8, 0.95, []),  # at the threshold: acceptable
    ({"threshold": 0.8}, 0.7999, 0.95, ["estimated auc 0.7999 < threshold 0.8"]),
    (
        {"threshold": 0.8, "max_drop": 0.1},
        0.7,
        0.9,
        [
            "estimated auc 0.7000 < threshold 0.8",
            "estimated auc 0.7000 is 0.2000 under the reference 0.9000 (max_drop 0.1)",
        ],
    ),
    ({"metric": "mae", "threshold": 2.0}, 2.0, 1.0, []),  # a loss at its highest acceptable
    ({"metric": "mae", "threshold": 2.0}, 2.01, 1.0, ["estimated mae 2.0100 > threshold 2"]),
    ({"metric": "rmse", "max_increase": 0.5}, 1.5, 1.0, []),
    (
        {"metric": "rmse", "max_increase": 0.5},
        1.6,
        1.0,
        ["estimated rmse 1.6000 is 0.6000 over the reference 1.0000 (max_increase 0.5)"],
    ),
    ({"metric": "rmse", "max_increase": 0.5}, 0.2, 1.0, []),  # a falling loss is better
]


@pytest.mark.parametrize(("block", "value", "reference", "reasons"), BREACHES)
def test_an_estimate_breaches_only_past_its_policys_bounds_and_says_which(
    block: dict[str, Any], value: float, reference: float, reasons: list[str]
) -> None:
    policy = make_policy(signals__estimated_performance={"metric": "auc", **block})
    spec = policy.models["credit"].signals.estimated_performance
    assert spec is not None
    assert spec.breaches(value, reference) == reasons


@pytest.mark.parametrize(
    ("metric", "baseline", "value", "worse"),
    [("auc", 0.9, 0.8, 0.1), ("auc", 0.8, 0.9, -0.1), ("mae", 1.0, 1.5, 0.5), ("rmse", 2, 1, -1)],
)
def test_worse_is_a_score_falling_or_a_loss_rising(
    metric: str, baseline: float, value: float, worse: float
) -> None:
    bound = {"max_drop": 0.1} if metric == "auc" else {"max_increase": 0.1}
    policy = make_policy(signals__estimated_performance={"metric": metric, **bound})
    spec = policy.models["credit"].signals.estimated_performance
    assert spec is not None
    assert spec.worse_by(baseline, value) == pytest.approx(worse)
    assert spec.is_loss is (metric != "auc")


def test_the_realised_value_next_to_the_estimate_uses_the_policys_decision_threshold(
    tmp_path: Any,
) -> None:
    """Accuracy depends on where the cut is: the audited realised accuracy is the one at the
    policy's ``decision_threshold``, as the estimate's is."""
    from shared.estimation import realised
    from tests.unit.test_performance import labelled_degraded, tick, world_with_champion_reference

    path = tmp_path / "labels.csv"
    world = world_with_champion_reference(
        metric="accuracy",
        max_drop=None,
        threshold=0.0,
        decision_threshold=0.3,
        ground_truth=str(path),
    )
    values, labels = labelled_degraded(600)
    at = world.clock.now()
    world.scored.add("credit-ep", "blue", at, values)
    rows = [f"{at.isoformat()},{s},{y}" for s, y in zip(values, labels, strict=True)]
    path.write_text("\n".join(["time,score,label", *rows]) + "\n")
    tick(world)
    [note_] = [r for r in world.audit.records if r.summary.startswith("estimated accuracy")]
    expected = realised(values, labels, 0.3)["accuracy"]
    assert expected != realised(values, labels, 0.5)["accuracy"]
    assert note_.evidence["value"] == round(expected, 6)


# --- the realised value audited next to the estimate ------------------------------------------


class Labels:
    """Late labels as the ground-truth reader returns them (or an unreadable source)."""

    def __init__(self, scores: list[float], labels: list[Any], fail: bool = False) -> None:
        self.rows, self.fail = (scores, labels), fail
        self.asked: list[bool] = []

    def read(self, path: str, start: Any, end: Any, *, binary: bool) -> Any:
        from shared.ground_truth import Labelled

        self.asked.append(binary)
        if self.fail:
            raise OSError("no such file")
        return Labelled(list(self.rows[0]), list(self.rows[1]), 0)


def realised_record(
    labels: Labels, interval: tuple[float, float, float], **block: Any
) -> tuple[Any, World]:
    from shared.estimated_performance import _realised
    from shared.estimation import Interval

    est = {"metric": "accuracy", "max_drop": 0.1, "ground_truth": "labels.csv", **block}
    world = make_world(make_policy(signals__estimated_performance=est))
    world.services.labels = labels
    spec = world.services.policy.models["credit"].signals.estimated_performance
    assert spec is not None
    now = world.clock.now()
    window = (now - timedelta(hours=1), now)
    truth = _realised(world.services, "credit", spec, window, Interval(*interval), 0.912345678)
    return truth, world


# 40 rows: 30 right at the 0.5 cut, 10 wrong: realised accuracy 0.75
ROWS = Labels([0.9] * 20 + [0.1] * 20, [1] * 15 + [0] * 5 + [0] * 15 + [1] * 5)


@pytest.mark.parametrize(
    ("interval", "covered"),
    [
        ((0.8, 0.75, 0.85), True),  # on the low end: inside
        ((0.7, 0.65, 0.75), True),  # on the high end: inside
        ((0.8, 0.7500001, 0.85), False),
        ((0.7, 0.65, 0.7499999), False),
    ],
)
def test_the_realised_value_says_whether_the_interval_covered_it(
    interval: tuple[float, float, float], covered: bool
) -> None:
    truth, world = realised_record(ROWS, interval)
    assert truth == {
        "rows": 40,
        "value": 0.75,
        "estimate": round(interval[0], 6),
        "interval": [round(interval[1], 6), round(interval[2], 6)],
        "error": round(interval[0] - 0.75, 6),
        "covered": covered,
    }
    [note_] = world.audit.records
    assert (note_.kind, note_.model) == ("decision", "credit")
    spec = world.services.policy.models["credit"].signals.estimated_performance
    assert spec is not None
    assert note_.reason == f"40 labelled rows from {spec.ground_truth}"
    now = world.clock.now()
    assert note_.evidence == {
        "source": "estimated_performance",
        "series": "estimate_vs_realised",  # the console plots these records
        "metric": "accuracy",
        "window": [(now - timedelta(hours=1)).isoformat(), now.isoformat()],
        "reference": 0.912346,
        **truth,
    }


def test_the_realised_record_is_rounded_to_six_places() -> None:
    truth, _ = realised_record(ROWS, (0.123456789, 0.0123456789, 0.987654321))
    assert truth["interval"] == [0.012346, 0.987654]
    assert truth["estimate"] == 0.123457 and truth["error"] == round(0.123456789 - 0.75, 6)


@pytest.mark.parametrize(("rows", "value"), [(29, None), (30, 0.5)])
def test_a_realised_value_needs_thirty_labelled_rows(rows: int, value: float | None) -> None:
    labels = Labels([0.9] * rows, [1, 0] * (rows // 2) + [1] * (rows % 2))
    truth, _ = realised_record(labels, (0.5, 0.4, 0.6))
    assert truth is not None and truth["rows"] == rows
    assert truth["value"] == (None if value is None else pytest.approx(value, abs=0.02))


def test_one_class_of_labels_has_no_realised_score_but_a_loss_needs_none() -> None:
    one_class = Labels([0.9] * 40, [1] * 40)
    truth, world = realised_record(one_class, (0.5, 0.4, 0.6))
    assert truth == {"rows": 40, "value": None} and world.audit.records == []
    assert one_class.asked == [True]
    loss = Labels([1.0] * 40, [3.0] * 40)
    truth, _ = realised_record(loss, (2.0, 1.5, 2.5), metric="mae", max_drop=None, max_increase=0.5)
    assert truth is not None and truth["value"] == 2.0 and loss.asked == [False]


def test_unreadable_labels_leave_the_estimate_alone_and_say_which_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    truth, world = realised_record(Labels([], [], fail=True), (0.5, 0.4, 0.6))
    assert truth is None and world.audit.records == []
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    spec = world.services.policy.models["credit"].signals.estimated_performance
    assert spec is not None
    assert warning.getMessage() == (
        f"credit: ground truth {spec.ground_truth} unreadable: no such file"
    )


def test_a_candidate_estimated_exactly_as_live_passes_even_with_no_tolerance() -> None:
    same = evaluation()
    same["champion_score"] = same["challenger_score"]
    world, cycle = setup(examples=same, guard_tolerance=0.0)
    traffic = scores(400, 0.5, 2)
    serve(world, NEW, traffic)
    serve(world, LIVE, traffic)
    verdict = judge(world, cycle)
    assert verdict.verdict == "ok"
    assert verdict.evidence["new"]["value"] == verdict.evidence["live"]["value"]


def test_an_evaluation_that_cannot_calibrate_is_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    one_class = evaluation()
    one_class["label"] = [1] * len(one_class["label"])
    world, cycle = setup(examples=one_class)
    serve(world, NEW, scores(400, 0.5, 2))
    serve(world, LIVE, scores(400, 0.5, 3))
    verdict = judge(world, cycle)
    assert verdict.why == "the evaluation has no per-example scores for both models"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and all(w.startswith("evaluation of job-1 cannot fit") for w in warnings)


# --- the trigger: what it tells an operator, and which evaluation calibrates it ------------------


def test_a_check_that_finds_nothing_says_why_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """An operator reading the log learns why no estimate was made, or what it was."""
    import logging

    from shared.estimated_performance import check
    from tests.unit.test_performance import healthy_scores, world_with_champion_reference

    caplog.set_level(logging.INFO, logger="shared.estimated_performance")
    world = world_with_champion_reference(min_rows=300)
    spec = world.services.policy.models["credit"].signals.estimated_performance
    assert spec is not None
    at = world.clock.now() - timedelta(minutes=1)
    world.scored.add("credit-ep", "blue", at, healthy_scores(299))
    assert check(world.services, "credit", spec, "credit-ep") is None
    world.clock.advance(spec.check_every)
    world.scored.add("credit-ep", "blue", at, healthy_scores(1))
    assert check(world.services, "credit", spec, "credit-ep") is None
    world.clock.advance(spec.check_every)
    world.platform.champions["credit"] = "9"  # no evaluation of version 9
    assert check(world.services, "credit", spec, "credit-ep") is None
    messages = [r.getMessage() for r in caplog.records if r.name == "shared.estimated_performance"]
    assert messages[0] == "credit: 299 scored rows < 300 for an estimate"
    assert re.fullmatch(r"credit: estimated auc 0\.\d{4} within policy", messages[1])
    assert messages[2] == "credit: no champion evaluation with per-example scores to calibrate"


def stored(
    world: World,
    cid: str,
    state: CycleState,
    version: str,
    job: str | None,
    age: int,
    model: str = "credit",
) -> None:
    at = world.clock.now() - timedelta(hours=age)
    cycle = Cycle(cid, model, state, at, at, job_name=job, candidate_version=version)
    world.store.cycles[cid] = cycle.to_json()


def test_the_reference_is_the_newest_evaluation_that_scored_the_champion() -> None:
    """Cycles are searched newest first: one without a job or an evaluation is passed over;
    a promoted cycle whose candidate is the champion gives its challenger's scores, any other
    evaluation the champion's scores if it names the champion's version."""
    from shared.estimated_performance import champion_reference

    world = make_world(make_policy(signals__estimated_performance={"max_drop": 0.1}))
    world.platform.champions["credit"] = "3"
    ev = evaluation()
    stored(world, "fraud", CycleState.PROMOTED, "3", "job-fraud", age=0, model="fraud")
    world.platform.evaluations["job-fraud"] = {"champion": {"version": "3"}, "examples": ev}
    stored(world, "no-job", CycleState.FAILED, "4", None, age=1)
    stored(world, "no-evaluation", CycleState.REJECTED, "4", "job-lost", age=2)
    stored(world, "other-champion", CycleState.REJECTED, "4", "job-old-champion", age=3)
    world.platform.evaluations["job-old-champion"] = {"champion": {"version": "2"}, "examples": ev}
    stored(world, "promoted", CycleState.PROMOTED, "3", "job-promoted", age=4)
    world.platform.evaluations["job-promoted"] = {"champion": {"version": "2"}, "examples": ev}
    stored(world, "older", CycleState.REJECTED, "5", "job-older", age=5)
    world.platform.evaluations["job-older"] = {"champion": {"version": "3"}, "examples": ev}
    spec = world.services.policy.models["credit"].signals.estimated_performance
    assert spec is not None
    ref = champion_reference(world.services, "credit", spec)
    assert ref is not None and ref.job == "job-promoted"
    from shared.estimation import Calibrator, fit_isotonic, realised

    fitted = fit_isotonic(ev["challenger_score"], ev["label"])
    assert ref.value == realised(ev["challenger_score"], ev["label"])["auc"]
    assert isinstance(ref.fitted, Calibrator)
    assert np.array_equal(ref.fitted.values, fitted.values)
    del world.platform.evaluations["job-promoted"]
    older = champion_reference(world.services, "credit", spec)
    assert older is not None and older.job == "job-older"
    assert older.value == realised(ev["champion_score"], ev["label"])["auc"]
