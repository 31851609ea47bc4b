"""Mergeable quantile summaries of many numeric columns at once, in bounded memory.

A summary holds, per column, at most ``points`` weighted values (sorted, a ``points x k``
matrix: values and weights; unused slots have weight 0 and value +inf). A block of rows
becomes one summary with one vectorised sort; summaries are merged like a binary counter
(two of the same level make one of the next), so a stream of ``c`` chunks keeps at most
``log2(c) + 1`` summaries. Every reduction to ``points`` values moves a rank by at most
``total weight / points``, so the rank error is below ``(levels + 1) / points`` of the rows
(0.6 % for 1,024 points and 32 chunks; typically far less), whatever the row count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Summary:
    """Sorted weighted values per column (column j: ``values[:, j]``, ``weights[:, j]``)."""

    values: FloatArray
    weights: FloatArray

    @property
    def totals(self) -> FloatArray:
        out: FloatArray = self.weights.sum(axis=0)
        return out


def of_block(
    block: FloatArray, points: int, finite: npt.NDArray[np.bool_] | None = None
) -> Summary:
    """The summary of a rows x k block (NaN or infinite = missing; ``finite`` if known).
    Sorts ``block`` in place."""
    rows, k = block.shape
    finite = np.isfinite(block) if finite is None else finite
    counts = finite.sum(axis=0)
    np.putmask(block, ~finite, np.inf)
    block.sort(axis=0)
    if rows <= points:
        return Summary(block.copy(), np.isfinite(block).astype(np.float64))
    # Point i of column j stands for ranks [i f/points, (i+1) f/points) of its f values.
    index = ((np.arange(points)[:, None] + 0.5) * counts[None, :] / points).astype(np.int64)
    values = np.take_along_axis(block, np.minimum(index, rows - 1), axis=0)
    weights = np.broadcast_to(counts / points, (points, k)).astype(np.float64)
    values[:, counts == 0] = np.inf
    return Summary(values, weights)


def merge(a: Summary, b: Summary, points: int) -> Summary:
    values = np.vstack([a.values, b.values])
    weights = np.vstack([a.weights, b.weights])
    order = np.argsort(values, axis=0, kind="stable")
    merged = Summary(
        np.take_along_axis(values, order, axis=0), np.take_along_axis(weights, order, axis=0)
    )
    return _reduce(merged, points)


def _reduce(summary: Summary, points: int) -> Summary:
    """At most ``points`` values per column: those at evenly spaced weighted ranks."""
    rows, k = summary.values.shape
    if rows <= points:
        return summary
    cumulative = np.cumsum(summary.weights, axis=0)
    totals = cumulative[-1]
    targets = (np.arange(points, dtype=np.float64)[:, None] + 0.5) / points * totals[None, :]
    # One searchsorted over all columns: shift column j by j * span so they stay in order.
    span = float(totals.max()) + 1.0
    shift = np.arange(k, dtype=np.float64) * span
    flat = (cumulative + shift[None, :]).T.ravel()
    found = np.searchsorted(flat, (targets + shift[None, :]).T.ravel(), side="left")
    index = np.clip(found.reshape(k, points).T - np.arange(k)[None, :] * rows, 0, rows - 1)
    values = np.take_along_axis(summary.values, index, axis=0)
    weights = np.broadcast_to(totals / points, (points, k)).copy()
    empty = totals <= 0
    values[:, empty] = np.inf
    weights[:, empty] = 0.0
    return Summary(values, weights)


class Stream:
    """Summaries of a stream of blocks, merged as a binary counter (bounded memory)."""

    def __init__(self, columns: int, points: int) -> None:
        self.columns = columns
        self.points = points
        self._levels: list[Summary | None] = []

    def add(self, block: FloatArray, finite: npt.NDArray[np.bool_] | None = None) -> None:
        """Add a block (sorted in place)."""
        carry = of_block(block, self.points, finite)
        for level, held in enumerate(self._levels):
            if held is None:
                self._levels[level] = carry
                return
            carry = merge(held, carry, self.points)
            self._levels[level] = None
        self._levels.append(carry)

    def column(self, j: int) -> tuple[FloatArray, FloatArray]:
        """Column j's sorted values and their weights (weight > 0 only)."""
        held = [s for s in self._levels if s is not None]
        if not held:
            return np.empty(0), np.empty(0)
        values = np.concatenate([s.values[:, j] for s in held])
        weights = np.concatenate([s.weights[:, j] for s in held])
        keep = weights > 0
        values, weights = values[keep], weights[keep]
        order = np.argsort(values, kind="stable")
        return values[order], weights[order]


def weighted_quantiles(values: FloatArray, weights: FloatArray, probs: FloatArray) -> FloatArray:
    """Quantiles interpolated between the weighted points' mid-ranks (like numpy's linear)."""
    cumulative = np.cumsum(weights)
    mid = (cumulative - weights / 2) / cumulative[-1]
    out: FloatArray = np.interp(probs, mid, values)
    return out


def weighted_order_statistics(
    values: FloatArray, weights: FloatArray, probs: FloatArray
) -> FloatArray:
    """The value whose cumulative weight first reaches each prob (numpy's inverted_cdf)."""
    cumulative = np.cumsum(weights) / weights.sum()
    index = np.clip(np.searchsorted(cumulative, probs, side="left"), 0, len(values) - 1)
    out: FloatArray = values[index]
    return out


def integer_counts(weights: FloatArray) -> npt.NDArray[np.int64]:
    """Weights rounded to integers that keep their (rounded) total."""
    edges = np.round(np.concatenate([[0.0], np.cumsum(weights)]))
    out: npt.NDArray[np.int64] = np.diff(edges).astype(np.int64)
    return out
