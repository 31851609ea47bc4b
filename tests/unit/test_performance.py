"""Estimated performance as a trigger (reconcile timer) and as a rollout guard, on fakes."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from shared.messages import Reconcile
from shared.model import Cycle, CycleState
from tests.fakes import T0, World, make_policy, make_world
from tests.unit.test_lifecycle import HEALTHY, bus_of, registered_and_rolling

ESTIMATE = {"metric": "auc", "max_drop": 0.05, "window": "1h", "min_rows": 300}


def truth(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-(1.5 * x - 0.3)))


def reference(seed: int = 1, n: int = 4000) -> dict[str, list[float]]:
    """Labels and the (miscalibrated, monotone) scores of a model on held-out rows."""
    rng = np.random.default_rng(seed)
    p = truth(rng.normal(0, 1, n))
    return {"label": (rng.random(n) < p).astype(int).tolist(), "scores": (p**2).tolist()}


def healthy_scores(n: int, seed: int = 2) -> list[float]:
    return [float(s) for s in truth(np.random.default_rng(seed).normal(0.3, 1, n)) ** 2]


def degraded_scores(n: int, seed: int = 3) -> list[float]:
    """Traffic moved into the region where the model cannot separate the classes."""
    return [float(s) for s in truth(np.random.default_rng(seed).normal(0.2, 0.15, n)) ** 2]


def world_with_champion_reference(**estimate: Any) -> World:
    world = make_world(make_policy(signals__estimated_performance={**ESTIMATE, **estimate}))
    world.platform.champions["credit"] = "1"
    ref = reference()
    world.platform.evaluations["job-old"] = {
        "champion": {"version": "1"},
        "examples": {"label": ref["label"], "champion_score": ref["scores"]},
    }
    old = Cycle("credit-old", "credit", CycleState.REJECTED, T0, T0, job_name="job-old")
    world.store.cycles[old.id] = old.to_json()
    return world


def tick(world: World, seconds: float = 60) -> None:
    world.clock.advance(seconds)
    bus_of(world).handle(Reconcile())


def started(world: World) -> list[Cycle]:
    return [c for c in world.store.list_cycles("credit") if c.id != "credit-old"]


def test_a_breach_starts_a_cycle_whose_trigger_names_the_estimate() -> None:
    world = world_with_champion_reference()
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    tick(world)
    [cycle] = started(world)
    assert cycle.state is CycleState.RETRAINING
    trigger = cycle.trigger
    assert trigger["source"] == "estimated_performance"
    assert trigger["metric"] == "auc"
    low, high = trigger["interval"]
    assert low <= trigger["estimate"] <= high
    assert trigger["reference"] - trigger["estimate"] > 0.05
    assert trigger["rows"] == 1000
    summaries = world.audit.summaries()
    assert "retraining cycle started" in summaries


def test_too_few_rows_do_nothing() -> None:
    world = world_with_champion_reference(min_rows=2000)
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    tick(world)
    assert started(world) == []


def test_a_healthy_estimate_does_nothing() -> None:
    world = world_with_champion_reference()
    world.scored.add("credit-ep", "blue", world.clock.now(), healthy_scores(1000))
    tick(world)
    assert started(world) == []


def test_rows_older_than_the_window_are_not_estimated() -> None:
    world = world_with_champion_reference(window="10m")
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    tick(world, 11 * 60)
    assert started(world) == []


def test_an_absolute_threshold_breaches_too() -> None:
    world = world_with_champion_reference(max_drop=None, threshold=0.99)
    world.scored.add("credit-ep", "blue", world.clock.now(), healthy_scores(1000))
    tick(world)
    [cycle] = started(world)
    assert "< threshold 0.99" in cycle.trigger["why"]


def test_checks_run_once_per_interval_and_a_breach_confirms_like_any_signal() -> None:
    world = world_with_champion_reference(check_every="10m")
    world.services.policy = make_policy(
        signals__estimated_performance={**ESTIMATE, "check_every": "10m"},
        confirm={"signals": 2, "within": "1h"},
    )
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    world.clock.advance(-world.clock.now().timestamp() % 600 + 1)  # start of an interval
    tick(world, 1)
    tick(world, 60)  # same interval: not checked again
    assert started(world) == []
    waiting = [s for s in world.audit.summaries() if "awaiting confirmation" in s]
    assert waiting == ["drift signal awaiting confirmation (1/2)"]
    tick(world, 600)  # next interval: second signal confirms
    assert len(started(world)) == 1


def test_observe_mode_records_what_the_estimate_would_have_done() -> None:
    world = world_with_champion_reference()
    world.services.policy = make_policy(signals__estimated_performance=ESTIMATE, mode="observe")
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    tick(world)
    assert started(world) == []
    assert "dry run: would start a retraining cycle" in world.audit.summaries()


# -- the guard --------------------------------------------------------------------------


def canary(**estimate: Any) -> tuple[World, Any]:
    world = make_world(make_policy(signals__estimated_performance={**ESTIMATE, **estimate}))
    cycle = registered_and_rolling(world)
    ref = reference()
    assert cycle.job_name
    world.platform.evaluations[cycle.job_name]["examples"] = {
        "label": ref["label"],
        "challenger_score": ref["scores"],
        "champion_score": ref["scores"],
    }
    world.metrics.samples = {cycle.rollout.deployment: HEALTHY, "blue": HEALTHY}
    return world, cycle


def rollout_of(cycle: Cycle) -> dict[str, Any]:
    """The rollout state as it is stored (JSON)."""
    assert cycle.rollout is not None
    return cycle.rollout.to_json()


def serve(world: World, cycle: Any, new: list[float], live: list[float]) -> None:
    at = world.clock.now() + timedelta(seconds=1)
    world.scored.add("credit-ep", cycle.rollout.deployment, at, new)
    world.scored.add("credit-ep", "blue", at, live)


def test_the_guard_passes_a_healthy_canary() -> None:
    world, cycle = canary()
    serve(world, cycle, healthy_scores(800, seed=4), healthy_scores(800, seed=5))
    tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT
    assert rollout_of(cycle)["percent"] == 50
    check = rollout_of(cycle)["checks"][-1]
    assert check["verdict"] == "pass"
    assert check["estimated_performance"]["new"]["rows"] == 800


def test_the_guard_fails_a_worse_canary_with_the_estimate_as_evidence() -> None:
    world, cycle = canary()
    serve(world, cycle, degraded_scores(800), healthy_scores(800))
    tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "estimated auc" in cycle.reason and "under live" in cycle.reason
    check = rollout_of(cycle)["checks"][-1]
    perf = check["estimated_performance"]
    assert perf["live"]["value"] - perf["new"]["value"] > perf["tolerance"]


def test_the_guard_does_nothing_with_too_few_rows() -> None:
    world, cycle = canary(min_rows=1000)
    serve(world, cycle, degraded_scores(800), healthy_scores(800))
    tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT
    assert rollout_of(cycle)["checks"][-1]["estimated_performance"] is None


def test_the_guard_does_not_hide_a_health_breach() -> None:
    world, cycle = canary()
    serve(world, cycle, healthy_scores(800, seed=4), healthy_scores(800, seed=5))
    from shared.model import HealthSample

    world.metrics.samples[rollout_of(cycle)["deployment"]] = HealthSample(500, 100, 40.0)
    tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "error rate" in cycle.reason


def test_the_guard_fails_a_worse_model_during_the_watch_period() -> None:
    world, cycle = canary()
    for _ in range(3):
        serve(world, cycle, healthy_scores(800, seed=4), healthy_scores(800, seed=5))
        tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.PROMOTED
    serve(world, cycle, degraded_scores(800), [])
    tick(world, 400)  # live's window: the 400s before promotion, when blue took traffic
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "estimated performance" in cycle.reason


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"metric": "auc"}, "give 'threshold' (absolute) or 'max_drop'"),
        ({"metric": "rocauc", "max_drop": 0.1}, "metric"),
        ({"max_drop": 0.1, "min_row": 10}, "did you mean 'min_rows'"),
        ({"max_drop": 0.1, "window": "soon"}, "invalid duration"),
        ({"max_drop": 1.5}, "less than or equal to 1"),
    ],
)
def test_policy_validate_explains_each_field(block: dict[str, Any], message: str) -> None:
    from shared.errors import PolicyError

    with pytest.raises(PolicyError, match=re.escape(message)) as info:
        make_policy(signals__estimated_performance=block)
    assert "estimated_performance" in str(info.value)


def test_policy_validate_names_the_file_line_of_a_bad_field(tmp_path: Any) -> None:
    from shared.errors import PolicyError
    from shared.policy import load_policy

    path = tmp_path / "policy.yaml"
    path.write_text(
        "models:\n"
        "  credit:\n"
        "    signals:\n"
        "      estimated_performance:\n"
        "        metric: auc\n"
        "        max_drop: 0.05\n"
        "        check_evry: 10m\n"
        "    training: {experiment: e, command: [python, train.py]}\n"
        "    gate: {primary_metric: auc}\n"
        "    rollout: {endpoint: credit-ep}\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert f"{path}:7" in message and "did you mean 'check_every'" in message


def test_the_service_reads_the_local_log_offline_and_demands_the_collector_on_azure(
    tmp_path: Any,
) -> None:
    from composition.wiring import build_scored
    from embedded.metrics import LocalScoredLog
    from shared.errors import SettingsError
    from shared.settings import AppSettings

    policy = make_policy(signals__estimated_performance=ESTIMATE)
    local = AppSettings(data_dir=tmp_path, policy_path=None)
    assert isinstance(build_scored(local, policy), LocalScoredLog)
    azure = AppSettings(data_dir=tmp_path, policy_path=None, platform="azure")
    with pytest.raises(SettingsError, match="AUTOPILOT_COLLECTOR_CONTAINER_URL"):
        build_scored(azure, policy)
    assert build_scored(azure, make_policy()) is None


def test_an_outage_of_the_scored_log_is_retried_within_the_same_interval() -> None:
    world = world_with_champion_reference(check_every="10m")
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    world.scored.failures = 1
    tick(world, 1)
    assert started(world) == []
    tick(world, 1)  # same interval: the failed check did not use it up
    assert len(started(world)) == 1
    reads = world.scored.reads
    tick(world, 1)
    assert world.scored.reads == reads  # checked once this interval


def test_without_a_champion_evaluation_to_calibrate_on_nothing_happens() -> None:
    world = make_world(make_policy(signals__estimated_performance=ESTIMATE))
    world.platform.champions["credit"] = "1"
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    tick(world)
    assert world.store.list_cycles() == []


def test_the_guard_stands_aside_when_the_evaluation_has_no_per_example_scores() -> None:
    world, cycle = canary()
    world.platform.evaluations[cycle.job_name].pop("examples")
    serve(world, cycle, degraded_scores(800), healthy_scores(800))
    tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLING_OUT  # health alone passed it
    assert rollout_of(cycle)["checks"][-1]["estimated_performance"] is None


# -- ground truth -----------------------------------------------------------------------


def labelled_degraded(n: int, seed: int = 3) -> tuple[list[float], list[int]]:
    """Degraded traffic with the labels that arrive later (same concept as the reference)."""
    rng = np.random.default_rng(seed)
    p = truth(rng.normal(0.2, 0.15, n))
    return [float(s) for s in p**2], [int(y) for y in rng.random(n) < p]


def test_ground_truth_puts_the_realised_value_next_to_the_estimate(tmp_path: Any) -> None:
    path = tmp_path / "labels.csv"
    world = world_with_champion_reference(ground_truth=str(path))
    scores, labels = labelled_degraded(1000)
    at = world.clock.now()
    world.scored.add("credit-ep", "blue", at, scores)
    lines = ["time,score,label"] + [
        f"{at.isoformat()},{s},{y}" for s, y in zip(scores, labels, strict=True)
    ]
    lines += ["not-a-time,0.5,1", f"{at.isoformat()},0.5,7"]  # skipped, not trusted
    path.write_text("\n".join(lines) + "\n")
    tick(world)
    [cycle] = started(world)
    realised_now = cycle.trigger["realised"]
    assert realised_now["rows"] == 1000
    assert realised_now["estimate"] == cycle.trigger["estimate"]
    assert abs(realised_now["error"]) < 0.05  # calibration holds: the estimate is close
    notes = [r for r in world.audit.records if r.summary.startswith("estimated auc")]
    assert len(notes) == 1 and "vs realised" in notes[0].summary
    assert notes[0].evidence["value"] == realised_now["value"]


def test_ground_truth_is_recorded_on_healthy_checks_too(tmp_path: Any) -> None:
    path = tmp_path / "labels.jsonl"
    world = world_with_champion_reference(ground_truth=str(path))
    scores = healthy_scores(1000)
    at = world.clock.now()
    world.scored.add("credit-ep", "blue", at, scores)
    rng = np.random.default_rng(9)
    rows = [
        {"time": at.timestamp(), "score": s, "label": int(rng.random() < s**0.5)} for s in scores
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    tick(world)
    assert started(world) == []
    [note_] = [r for r in world.audit.records if r.summary.startswith("estimated auc")]
    assert note_.evidence["rows"] == 1000 and isinstance(note_.evidence["covered"], bool)


def test_a_missing_ground_truth_file_does_not_stop_the_trigger(tmp_path: Any) -> None:
    world = world_with_champion_reference(ground_truth=str(tmp_path / "none.csv"))
    world.scored.add("credit-ep", "blue", world.clock.now(), degraded_scores(1000))
    tick(world)
    [cycle] = started(world)
    assert cycle.trigger["realised"] is None


# -- regression: direct loss estimation (DLE) ---------------------------------------------

LOSS = {"metric": "mae", "max_increase": 0.1, "window": "1h", "min_rows": 300}


def regression_rows(n: int, shift: float, spread: float, seed: int) -> tuple[Any, Any]:
    """Predictions and targets: noise grows with |x| (tests/unit/test_loss_estimation.py)."""
    from tests.unit.test_loss_estimation import rows

    predictions, targets = rows(np.random.default_rng(seed), n, shift, spread)
    return [float(p) for p in predictions], [float(t) for t in targets]


def regression_world(**estimate: Any) -> World:
    world = make_world(make_policy(signals__estimated_performance={**LOSS, **estimate}))
    world.platform.champions["credit"] = "1"
    predictions, targets = regression_rows(5000, 0.0, 1.0, seed=1)
    world.platform.evaluations["job-old"] = {
        "champion": {"version": "1"},
        "examples": {"label": targets, "champion_score": predictions},
    }
    old = Cycle("credit-old", "credit", CycleState.REJECTED, T0, T0, job_name="job-old")
    world.store.cycles[old.id] = old.to_json()
    return world


def test_dle_a_rising_loss_starts_a_cycle_with_the_estimate_as_evidence() -> None:
    world = regression_world()
    predictions, _ = regression_rows(1000, 1.5, 0.3, seed=3)  # into the noisy region
    world.scored.add("credit-ep", "blue", world.clock.now(), predictions)
    tick(world)
    [cycle] = started(world)
    trigger = cycle.trigger
    assert trigger["metric"] == "mae" and trigger["estimation"]["method"] == "dle"
    assert trigger["estimate"] - trigger["reference"] > 0.1
    low, high = trigger["interval"]
    assert low <= trigger["estimate"] <= high
    assert "over the reference" in trigger["why"]


def test_dle_a_steady_loss_does_nothing() -> None:
    world = regression_world()
    predictions, _ = regression_rows(1000, 0.0, 1.0, seed=4)
    world.scored.add("credit-ep", "blue", world.clock.now(), predictions)
    tick(world)
    assert started(world) == []


def test_dle_an_absolute_threshold_is_the_highest_acceptable_loss() -> None:
    world = regression_world(max_increase=None, metric="rmse", threshold=0.7)
    predictions, _ = regression_rows(1000, 0.0, 1.0, seed=4)  # rmse about 0.85
    world.scored.add("credit-ep", "blue", world.clock.now(), predictions)
    tick(world)
    [cycle] = started(world)
    assert "> threshold 0.7" in cycle.trigger["why"]


def test_dle_ground_truth_puts_the_realised_loss_next_to_the_estimate(tmp_path: Any) -> None:
    path = tmp_path / "labels.jsonl"
    world = regression_world(ground_truth=str(path))
    predictions, targets = regression_rows(1000, 1.0, 0.5, seed=3)  # inside the reference
    at = world.clock.now()
    world.scored.add("credit-ep", "blue", at, predictions)
    rows = [
        {"time": at.isoformat(), "score": p, "label": t}
        for p, t in zip(predictions, targets, strict=True)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tick(world)
    [cycle] = started(world)
    truth_now = cycle.trigger["realised"]
    assert truth_now["rows"] == 1000
    assert abs(truth_now["error"]) < 0.05 * truth_now["value"]  # DLE within 5% of realised


def test_dle_guard_fails_a_canary_whose_estimated_loss_is_higher() -> None:
    world = make_world(make_policy(signals__estimated_performance={**LOSS, "guard_tolerance": 0.1}))
    cycle = registered_and_rolling(world)
    predictions, targets = regression_rows(5000, 0.0, 1.0, seed=1)
    assert cycle.job_name
    world.platform.evaluations[cycle.job_name]["examples"] = {
        "label": targets,
        "challenger_score": predictions,
        "champion_score": predictions,
    }
    world.metrics.samples = {rollout_of(cycle)["deployment"]: HEALTHY, "blue": HEALTHY}
    worse, _ = regression_rows(800, 1.5, 0.3, seed=6)
    same, _ = regression_rows(800, 0.0, 0.5, seed=7)
    serve(world, cycle, worse, same)
    tick(world, 301)
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    assert "estimated mae" in cycle.reason and "over live" in cycle.reason


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"metric": "mae", "max_drop": 0.1},
            "mae is a loss (lower is better): give 'max_increase'",
        ),
        ({"metric": "rmse"}, "give 'threshold' (the highest acceptable rmse) or 'max_increase'"),
        ({"metric": "auc", "max_increase": 0.1}, "'max_increase' is for a loss (mae, rmse)"),
        ({"method": "dle", "metric": "auc", "max_drop": 0.1}, "method 'dle' does not estimate"),
        ({"method": "cbpe", "metric": "mae", "threshold": 2}, "cbpe (binary classifiers)"),
        ({"method": "nannyml", "metric": "mae", "threshold": 2}, "method"),
        ({"metric": "auc", "threshold": 3}, "'threshold' 3: auc lies in [0, 1]"),
    ],
)
def test_policy_validate_explains_the_regression_fields(
    block: dict[str, Any], message: str
) -> None:
    from shared.errors import PolicyError

    with pytest.raises(PolicyError, match=re.escape(message)) as info:
        make_policy(signals__estimated_performance=block)
    assert "estimated_performance" in str(info.value)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("azureml://datastores/labels/paths/x.csv", "only workspaceblobstore"),
        ("azureml://datastores/workspaceblobstore/paths/../secrets.csv", "without '..'"),
        ("azureml://subscriptions/s/x.csv", "a datastore path is azureml://datastores/"),
    ],
)
def test_policy_validate_explains_a_ground_truth_datastore_path(source: str, message: str) -> None:
    from shared.errors import PolicyError

    with pytest.raises(PolicyError, match=re.escape(message)):
        make_policy(signals__estimated_performance={**ESTIMATE, "ground_truth": source})
    fine = "azureml://datastores/workspaceblobstore/paths/labels/credit/"
    policy = make_policy(signals__estimated_performance={**ESTIMATE, "ground_truth": fine})
    est = policy.models["credit"].signals.estimated_performance
    assert est is not None and est.ground_truth == fine  # kept as written, not a local path


def test_a_datastore_ground_truth_on_azure_needs_the_datastore_container(tmp_path: Any) -> None:
    from composition.wiring import build_labels
    from shared.adapters.ground_truth_blob import BlobGroundTruth
    from shared.errors import SettingsError
    from shared.settings import AppSettings, AzureSettings

    source = "azureml://datastores/workspaceblobstore/paths/labels/"
    policy = make_policy(signals__estimated_performance={**ESTIMATE, "ground_truth": source})
    azure = AppSettings(data_dir=tmp_path, policy_path=None, platform="azure")
    with pytest.raises(SettingsError, match="AUTOPILOT_COLLECTOR_CONTAINER_URL"):
        build_labels(azure, policy)
    url = "https://acct.blob.core.windows.net/azureml-blobstore-0000"
    configured = AppSettings(
        data_dir=tmp_path,
        policy_path=None,
        platform="azure",
        azure=AzureSettings(collector_container_url=url),
    )
    assert isinstance(build_labels(configured, policy).blob, BlobGroundTruth)
    assert build_labels(azure, make_policy()).blob is None  # local files need nothing
