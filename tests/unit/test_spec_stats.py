"""What the gate's statistics promise: each metric's value on rows worked by hand, and the
paired bootstrap's interval (its level, its resampling of every row, its sign)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from shared.stats import METRICS, metric, paired_bootstrap

LABELS = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
SCORES = np.array([0.9, 0.5, 0.4, 0.2, 0.5])


@pytest.mark.parametrize(
    ("name", "labels", "scores", "expected"),
    [
        # predictions at 0.5 count as positive: 1,1,0,0,1 against 1,0,1,0,1 -> 3 of 5 right
        ("accuracy", LABELS, SCORES, 0.6),
        ("accuracy", np.array([1.0, 0.0]), np.array([0.49, 0.51]), 0.0),
        # a score of exactly 0.5 predicts the positive class
        ("accuracy", np.array([1.0, 1.0, 1.0, 0.0]), np.array([0.5, 0.5, 0.9, 0.1]), 1.0),
        ("brier", LABELS, SCORES, (0.01 + 0.25 + 0.36 + 0.04 + 0.25) / 5),
        (
            "log_loss",
            LABELS,
            SCORES,
            -(math.log(0.9) + math.log(0.5) + math.log(0.4) + math.log(0.8) + math.log(0.5)) / 5,
        ),
        # a certain wrong answer costs -log(1e-15), not infinity
        ("log_loss", np.array([0.0]), np.array([1.0]), -math.log(1 - (1 - 1e-15))),
        ("log_loss", np.array([1.0]), np.array([0.0]), -math.log(1e-15)),
        ("log_loss", np.array([1.0, 0.0]), np.array([1.0, 0.0]), 0.0),
        ("rmse", np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]), math.sqrt(5 / 3)),
        ("mae", np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]), 1.0),
        ("mae", np.array([1.0, 2.0]), np.array([0.0, 4.0]), 1.5),
        # 3 of the 4 positive/negative pairs ordered right
        ("auc", np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.1, 0.4, 0.35, 0.8]), 0.75),
        ("roc_auc", np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.1, 0.4, 0.35, 0.8]), 0.75),
        # a tie between a positive and a negative counts half
        ("auc", np.array([0.0, 1.0]), np.array([0.3, 0.3]), 0.5),
        ("auc", np.array([0.0, 0.0, 1.0]), np.array([0.2, 0.6, 0.6]), 0.75),
    ],
)
def test_each_metric_has_its_textbook_value(
    name: str, labels: np.ndarray, scores: np.ndarray, expected: float
) -> None:
    assert metric(name, labels, scores) == pytest.approx(expected, abs=1e-12)


def test_every_documented_metric_is_known() -> None:
    assert set(METRICS) == {"auc", "roc_auc", "accuracy", "log_loss", "brier", "rmse", "mae"}


def test_auc_of_a_one_class_sample_is_not_a_number() -> None:
    assert math.isnan(metric("auc", np.array([1.0, 1.0]), np.array([0.2, 0.7])))


def _reference_interval(
    labels: np.ndarray,
    new: np.ndarray,
    old: np.ndarray,
    sign: float,
    level: float,
    samples: int,
    seed: int,
) -> tuple[float, float, float, float]:
    """The percentile interval over ``samples`` paired resamples of all n rows (MAE), and the
    smallest and largest difference."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), size=(samples, len(labels)))
    diffs = sign * (
        np.abs(new[idx] - labels[idx]).mean(axis=1) - np.abs(old[idx] - labels[idx]).mean(axis=1)
    )
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high), float(diffs.min()), float(diffs.max())


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("samples", [300, 1000])
def test_the_interval_is_the_percentile_interval_at_the_requested_level(
    level: float, samples: int
) -> None:
    rng = np.random.default_rng(11)
    labels = rng.normal(0, 1, 60)
    new = labels + rng.normal(0, 0.5, 60)
    old = labels + rng.normal(0, 0.7, 60)
    boot = paired_bootstrap(
        "mae", labels, new, old, sign=-1.0, level=level, samples=samples, seed=3
    )
    low, high, smallest, largest = _reference_interval(labels, new, old, -1.0, level, samples, 3)
    assert (boot.low, boot.high) == pytest.approx((low, high), abs=1e-12)
    assert boot.level == level and boot.samples == samples and boot.seed == 3
    assert boot.estimate == pytest.approx(
        -(metric("mae", labels, new) - metric("mae", labels, old))
    )
    edges, counts = boot.histogram
    assert len(counts) == 30 and len(edges) == 31 and sum(counts) == samples
    assert edges[0] <= boot.low <= boot.high <= edges[-1]
    assert (edges[0], edges[-1]) == pytest.approx((smallest, largest))  # the bins span the range


def test_a_wider_level_gives_a_wider_interval() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(200) < 0.5).astype(float)
    new, old = rng.random(200), rng.random(200)
    kw: dict[str, Any] = {"sign": 1.0, "samples": 500, "seed": 9}
    narrow = paired_bootstrap("brier", labels, new, old, level=0.8, **kw)
    wide = paired_bootstrap("brier", labels, new, old, level=0.99, **kw)
    assert wide.low < narrow.low < narrow.high < wide.high


@pytest.mark.parametrize("row", [0, 1, 2])
def test_every_row_can_be_drawn(row: int) -> None:
    """The only difference between the models is on one row: resamples that draw it show it."""
    labels = np.zeros(3)
    old = np.zeros(3)
    new = np.zeros(3)
    new[row] = 3.0  # challenger is wrong by 3 on this row only
    boot = paired_bootstrap("mae", labels, new, old, sign=-1.0, level=0.9, samples=2000, seed=5)
    assert boot.low < 0.0  # some resamples drew the row (at least once in 10%)
    assert boot.high == 0.0  # and some did not
    assert boot.estimate == pytest.approx(-1.0)


def test_resamples_where_the_metric_is_undefined_are_left_out() -> None:
    """AUC needs both classes: resamples with one class only are dropped, not counted."""
    labels = np.array([1.0, 0.0, 0.0, 0.0])
    new = np.array([0.9, 0.1, 0.2, 0.3])
    old = np.array([0.1, 0.5, 0.2, 0.3])
    boot = paired_bootstrap("auc", labels, new, old, sign=1.0, level=0.9, samples=1000, seed=1)
    # the positive row is missed with probability (3/4)^4 ~ 32%, every negative with (1/4)^4
    assert 600 < boot.samples < 760
    assert sum(boot.histogram[1]) == boot.samples
    assert math.isfinite(boot.low) and math.isfinite(boot.high)


def test_no_defined_resample_gives_no_interval() -> None:
    labels = np.ones(5)
    scores = np.linspace(0.1, 0.9, 5)
    boot = paired_bootstrap(
        "auc", labels, scores, scores[::-1], sign=1.0, level=0.9, samples=200, seed=1
    )
    assert boot.samples == 0
    assert math.isnan(boot.low) and math.isnan(boot.high)
    assert boot.histogram == ((), ())


def test_large_samples_are_drawn_in_chunks_without_changing_the_answer() -> None:
    rng = np.random.default_rng(4)
    labels = rng.normal(0, 1, 40)
    new, old = labels + rng.normal(0, 0.3, 40), labels + rng.normal(0, 0.4, 40)
    args = ("mae", labels, new, old)
    kw: dict[str, Any] = {"sign": -1.0, "level": 0.9, "samples": 1001, "seed": 8}
    whole = paired_bootstrap(*args, chunk=5000, **kw)
    chunked = paired_bootstrap(*args, **kw)
    assert chunked == whole
    assert chunked.samples == 1001


def test_a_challenger_better_by_the_same_amount_on_every_row_gets_an_interval() -> None:
    """Differences equal up to rounding once crashed the histogram ("too many bins")."""
    labels = np.array([float(i % 5) for i in range(100)])
    boot = paired_bootstrap(
        "mae", labels, labels + 0.1, labels + 1.0, sign=-1.0, level=0.9, samples=200, seed=1
    )
    assert boot.low == pytest.approx(0.9) and boot.high == pytest.approx(0.9)
    edges, counts = boot.histogram
    assert sum(counts) == 200 and len(edges) == 31
    assert edges[0] == pytest.approx(0.4) and edges[-1] == pytest.approx(1.4)
