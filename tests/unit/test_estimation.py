"""CBPE on synthetic data with known labels: estimates track realised performance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.estimation import EstimationError, estimate, fit_isotonic, realised


def world(rng: np.random.Generator, n: int, shift: float) -> tuple[Any, Any]:
    """Covariate shift only: x moves, P(y=1|x) stays; the score is a miscalibrated but
    monotone function of the true probability (so calibration has work to do)."""
    x = rng.normal(shift, 1.0, n)
    truth = 1.0 / (1.0 + np.exp(-(1.5 * x - 0.3)))
    labels = (rng.random(n) < truth).astype(float)
    scores = truth**2  # monotone, not calibrated
    return scores, labels


@pytest.fixture(scope="module")
def calibrator() -> Any:
    scores, labels = world(np.random.default_rng(1), 20_000, 0.0)
    return fit_isotonic(scores, labels)


@pytest.mark.parametrize("shift", [0.0, 0.8, -1.0])
def test_estimate_tracks_realised_performance_under_covariate_shift(
    calibrator: Any, shift: float
) -> None:
    scores, labels = world(np.random.default_rng(7), 20_000, shift)
    est = estimate(calibrator, scores, threshold=0.25)
    truth = realised(scores, labels, threshold=0.25)
    for name in ("accuracy", "f1", "auc"):
        assert est.metric(name).value == pytest.approx(truth[name], abs=0.015), name


def test_shift_that_hurts_lowers_the_estimate(calibrator: Any) -> None:
    base = estimate(calibrator, world(np.random.default_rng(2), 5000, 0.0)[0])
    # Rows pushed into the uncertain middle: the model is worse there.
    x = np.random.default_rng(3).normal(0.2, 0.15, 5000)
    middle = (1.0 / (1.0 + np.exp(-(1.5 * x - 0.3)))) ** 2
    worse = estimate(calibrator, middle)
    assert worse.metric("auc").value < base.metric("auc").value - 0.1
    assert worse.metric("accuracy").value < base.metric("accuracy").value - 0.1


def test_intervals_cover_the_realised_metric_about_as_often_as_their_level(
    calibrator: Any,
) -> None:
    rng = np.random.default_rng(11)
    hits = {"accuracy": 0, "auc": 0, "f1": 0}
    windows = 120
    for i in range(windows):
        scores, labels = world(rng, 1000, rng.uniform(-1.0, 1.0))
        est = estimate(calibrator, scores, threshold=0.25, simulations=200, seed=i)
        truth = realised(scores, labels, threshold=0.25)
        for name in hits:
            interval = est.metric(name)
            hits[name] += interval.low <= truth[name] <= interval.high
    for name, hit in hits.items():
        assert 0.85 <= hit / windows <= 1.0, (name, hit)


def test_subsampled_interval_matches_full_width(calibrator: Any) -> None:
    scores, _ = world(np.random.default_rng(5), 40_000, 0.3)
    full = estimate(calibrator, scores, max_rows=40_000)
    sub = estimate(calibrator, scores, max_rows=10_000)
    width = full.metric("auc").high - full.metric("auc").low
    assert sub.metric("auc").high - sub.metric("auc").low == pytest.approx(width, rel=0.25)
    assert sub.metric("auc").value == full.metric("auc").value


def test_calibration_is_monotone_and_recovers_probabilities(calibrator: Any) -> None:
    grid = np.linspace(0, 1, 101)
    mapped = calibrator(grid)
    assert np.all(np.diff(mapped) >= 0)
    # score = truth**2, so calibrated probability of score 0.49 is about 0.7
    assert calibrator(np.array([0.49]))[0] == pytest.approx(0.7, abs=0.05)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "one class"),
        ([0.1, float("nan")], [0, 1], "finite"),
        ([], [], "no rows"),
        ([0.1, 0.2], [0, 2], "0 or 1"),
    ],
)
def test_unusable_reference_is_refused_with_a_reason(
    scores: list[float], labels: list[float], message: str
) -> None:
    with pytest.raises(EstimationError, match=message):
        fit_isotonic(scores, labels)


@pytest.mark.parametrize("seed", range(5))
def test_expected_auc_with_certain_labels_is_the_realised_auc_ties_included(seed: int) -> None:
    from shared.estimation import expected_auc

    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(500), 1)  # many ties
    labels = (rng.random(500) < scores).astype(float)
    assert expected_auc(scores, labels) == pytest.approx(realised(scores, labels)["auc"], abs=1e-12)
