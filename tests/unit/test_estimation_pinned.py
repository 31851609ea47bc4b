"""Label-free estimation pinned against independent computations: the expected confusion
matrix and AUC by enumerating every labelling of small windows, the intervals of the default
settings by redoing the documented draws by hand, and the boundaries (one row, one class,
missing scores, a column of scores)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from shared.estimation import Calibrator, EstimationError, Z, estimate, expected_auc, realised


def enumerated(probs: list[float], predicted: list[bool]) -> dict[str, float]:
    """E[tp], E[fp], E[fn], E[tn] and E[accuracy] over all 2**n labellings, y_i ~ Bernoulli(p_i)."""
    out = dict.fromkeys(("tp", "fp", "fn", "tn", "accuracy"), 0.0)
    for labels in itertools.product((0, 1), repeat=len(probs)):
        weight = math.prod(p if y else 1 - p for p, y in zip(probs, labels, strict=True))
        for y, hit in zip(labels, predicted, strict=True):
            key = ("tp" if y else "fp") if hit else ("fn" if y else "tn")
            out[key] += weight
        right = sum(bool(y) == hit for y, hit in zip(labels, predicted, strict=True))
        out["accuracy"] += weight * right / len(probs)
    return out


def weighted_auc(scores: list[float], probs: list[float]) -> float:
    """AUC of the ROC whose row i is p_i of a positive and 1 - p_i of a negative: every
    (positive share, negative share) pair, a tie (the row with itself too) counting half."""
    above = total = 0.0
    for s_i, p_i in zip(scores, probs, strict=True):
        for s_j, p_j in zip(scores, probs, strict=True):
            pair = p_i * (1 - p_j)
            total += pair
            above += pair * (1.0 if s_i > s_j else 0.5 if s_i == s_j else 0.0)
    return above / total


WINDOWS = [
    # knots, values, scores, threshold
    ([0.0, 0.4, 0.8], [0.1, 0.6, 0.95], [0.9, 0.5, 0.1, 0.5, 0.7], 0.5),  # ties at the cut
    ([0.0], [0.1], [0.6, 0.7, 0.8], 0.5),  # all predicted 1, 0.3 expected positives
    ([0.0], [0.5], [0.2], 0.5),  # one row predicted 0: expected misses, no hits
    ([0.0, 0.25, 0.5], [0.7, 0.8, 0.95], [0.2, 0.3, 0.9, 0.3], 0.5),  # 0.55 expected negatives
    ([0.0, 0.5], [0.0, 0.6], [0.1, 0.9, 0.95], 0.92),  # a certain negative, cut between
]


@pytest.mark.parametrize(("knots", "values", "scores", "threshold"), WINDOWS)
def test_the_expected_confusion_matrix_is_the_mean_over_every_labelling(
    knots: list[float], values: list[float], scores: list[float], threshold: float
) -> None:
    cal = Calibrator(np.array(knots), np.array(values))
    probs = [float(cal(np.array([s]))[0]) for s in scores]
    want = enumerated(probs, [s >= threshold for s in scores])
    est = estimate(cal, scores, threshold=threshold, simulations=20)
    assert est.rows == len(scores)
    for key in ("tp", "fp", "fn", "tn"):
        assert est.confusion[key] == pytest.approx(want[key], abs=1e-12), key
    assert est.metric("accuracy").value == pytest.approx(want["accuracy"], abs=1e-12)
    tp, fp, fn = want["tp"], want["fp"], want["fn"]
    assert est.metric("f1").value == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    assert est.metric("auc").value == pytest.approx(weighted_auc(scores, probs), abs=1e-12)


@pytest.mark.parametrize(
    ("probs", "auc"),
    [
        ([0.1, 0.2, 0.3], None),  # under one expected positive
        ([0.9, 0.8, 0.95], None),  # under one expected negative
        ([0.5], 0.5),  # one row: it ties with itself
        ([0.3, 0.3, 0.3, 0.3], 0.5),  # the same chance everywhere: no ranking power
    ],
)
def test_expected_auc_is_defined_for_any_share_of_expected_classes(
    probs: list[float], auc: float | None
) -> None:
    scores = [0.1 * (i + 1) for i in range(len(probs))]
    got = expected_auc(np.array(scores), np.array(probs))
    assert got == pytest.approx(weighted_auc(scores, probs) if auc is None else auc, abs=1e-12)


def test_one_row_gives_point_intervals_where_no_draw_can_rank() -> None:
    """One row predicted 1 at p = 0.5: each draw's F1 and accuracy are its label (1 or 0),
    so their spreads are equal; no draw has both classes, so the AUC interval is a point."""
    cal = Calibrator(np.array([0.0]), np.array([0.5]))
    est = estimate(cal, [0.9], simulations=400, seed=6)
    acc, f1, auc = est.metric("accuracy"), est.metric("f1"), est.metric("auc")
    assert (acc.value, f1.value) == pytest.approx((0.5, 2 / 3))
    assert f1.high - f1.value == pytest.approx(acc.high - acc.value, abs=1e-12)
    # the spread of 400 fair coin flips is close to 0.5
    assert acc.high - acc.value == pytest.approx(Z[0.95] * 0.5, rel=0.05)
    assert auc.value == auc.low == auc.high == 0.5


def accuracy_half_width(
    cal: Calibrator,
    scores: np.typing.NDArray[np.float64],
    *,
    threshold: float,
    simulations: int,
    max_rows: int,
    seed: int,
) -> float:
    """The documented procedure by hand: rows resampled (rng ``seed``) if over ``max_rows``,
    labels drawn from Bernoulli(p) (rng ``seed + 1``), sd scaled by sqrt(rows used / rows)."""
    s = np.sort(scores)
    n = s.size
    use = np.random.default_rng(seed).integers(0, n, max_rows) if n > max_rows else np.arange(n)
    draws = np.random.default_rng(seed + 1).random((simulations, use.size)) < cal(s[use])
    accuracy = (draws == (s[use] >= threshold)).mean(axis=1)
    return Z[0.95] * float(np.std(accuracy)) * math.sqrt(use.size / n)


CAL = Calibrator(np.array([0.0, 0.5]), np.array([0.3, 0.7]))


def test_the_default_interval_is_100_draws_over_at_most_5000_rows_from_seed_0() -> None:
    """The guard calls ``estimate`` with its defaults: the audited interval must be the one
    these documented settings give, reproducibly (5001 rows: one more than are simulated)."""
    scores = np.random.default_rng(12).random(5001)
    est = estimate(CAL, scores)
    want = accuracy_half_width(CAL, scores, threshold=0.5, simulations=100, max_rows=5000, seed=0)
    interval = est.metric("accuracy")
    assert interval.high - interval.value == pytest.approx(want, rel=1e-9)
    assert estimate(CAL, scores).metric("auc") == est.metric("auc")


@pytest.mark.parametrize(("rows", "max_rows"), [(60, 60), (61, 60), (200, 50)])
def test_rows_are_resampled_only_beyond_max_rows(rows: int, max_rows: int) -> None:
    scores = np.random.default_rng(rows).random(rows)
    est = estimate(CAL, scores, simulations=50, max_rows=max_rows, seed=3)
    want = accuracy_half_width(
        CAL, scores, threshold=0.5, simulations=50, max_rows=max_rows, seed=3
    )
    assert est.metric("accuracy").high - est.metric("accuracy").value == pytest.approx(
        want, rel=1e-9
    )


def test_a_missing_score_is_refused_as_not_finite() -> None:
    with pytest.raises(EstimationError, match="production scores: scores must be finite"):
        estimate(CAL, [0.2, None, 0.9])
    with pytest.raises(EstimationError, match="labels: scores must be finite"):
        realised([0.2, 0.9], [1, None])


def test_a_column_of_scores_or_a_single_score_reads_as_rows() -> None:
    flat = estimate(CAL, [0.9, 0.1, 0.6], simulations=20)
    column = estimate(CAL, [[0.9], [0.1], [0.6]], simulations=20)
    assert column.evidence() == flat.evidence()
    single = estimate(CAL, 0.9, simulations=20)
    assert single.rows == 1 and single.confusion == pytest.approx(
        {"tp": 0.7, "fp": 0.3, "fn": 0.0, "tn": 0.0}
    )


def test_undefined_metrics_are_nan_without_numpy_warnings() -> None:
    """A one-class window is an expected case, not a numpy 0/0: no RuntimeWarning per window."""
    rare = Calibrator(np.array([0.0]), np.array([0.02]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in (0.0, 1.0):
            assert math.isnan(expected_auc(np.array([0.1, 0.2]), np.array([p, p])))
        assert math.isnan(realised([0.1, 0.2], [0, 0])["auc"])
        assert math.isnan(realised([0.1, 0.2], [1, 1])["auc"])
        est = estimate(rare, np.linspace(0.0, 1.0, 5), simulations=50)  # most draws: no 1s
    assert np.isfinite(est.metric("auc").low)
