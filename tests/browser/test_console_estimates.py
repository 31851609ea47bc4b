"""The model page plots the label-free estimate against the realised value over time.

A world of fakes whose policy estimates AUC with a ground-truth file; three reconcile checks,
ten minutes apart, each on new scored traffic whose labels arrived; then the model page in
headless Chromium (see test_console.py; without Chromium/Playwright the module is skipped).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.browser import test_console  # noqa: F401  (skips this module without Chromium)
from tests.browser.test_console_views import chromium, site  # noqa: F401  (fixtures)
from tests.unit.test_performance import (
    labelled_degraded,
    tick,
    truth,
    world_with_champion_reference,
)

pytestmark = pytest.mark.slow


def labelled_healthy(n: int, seed: int) -> tuple[list[float], list[int]]:
    rng = np.random.default_rng(seed)
    p = truth(rng.normal(0.3, 1, n))
    return [float(s) for s in p**2], [int(y) for y in rng.random(n) < p]


def shown_as(value: float) -> str:
    """How the console writes a number: four significant digits."""
    text = repr(float(f"{value:.4g}"))
    return text[:-2] if text.endswith(".0") else text


def test_the_model_page_shows_estimated_and_realised_after_checks_with_ground_truth(
    site: Any,  # noqa: F811  (the fixture imported above)
    tmp_path: Any,
) -> None:
    labels = tmp_path / "labels.csv"
    world = world_with_champion_reference(
        ground_truth=str(labels), window="10m", check_every="10m", min_rows=300
    )
    lines = ["time,score,label"]
    windows = [labelled_healthy(800, 11), labelled_healthy(800, 12), labelled_degraded(800, 13)]
    for scores, ys in windows:
        world.clock.advance(600)  # the next check interval, with its own traffic
        at = world.clock.now()
        world.scored.add("credit-ep", "blue", at, scores)
        lines += [f"{at.isoformat()},{s},{y}" for s, y in zip(scores, ys, strict=True)]
        labels.write_text("\n".join(lines) + "\n")
        tick(world, 1)
    notes = [r.evidence for r in world.audit.records if "vs realised" in r.summary]
    assert len(notes) == 3

    page = site(world).open("models", "/models")
    page.click('tr[data-model="credit"] a[data-field="model-link"]')
    page.wait_for_selector('#view[data-ready="model"]', timeout=15_000)
    chart = page.locator("#estimates svg.chart.estimates")
    assert chart.count() == 1
    assert chart.locator('[data-series="estimate"] [data-point="estimate"]').count() == 3
    assert chart.locator('[data-series="realised"] [data-point="realised"]').count() == 3
    assert chart.locator('[data-series="interval"]').count() == 1
    assert chart.locator('[data-series="reference"]').count() == 1
    # the table holds what the audit log recorded, newest first
    shown = page.locator("table.estimates tbody tr").all()
    assert len(shown) == 3
    for row, note in zip(shown, reversed(notes), strict=True):
        assert row.locator('[data-field="realised"]').inner_text() == shown_as(note["value"])
        low, high = note["interval"]
        assert row.locator('[data-field="estimate"]').inner_text() == (
            f"{shown_as(note['estimate'])} [{shown_as(low)}, {shown_as(high)}]"
        )
    summary = page.locator("#estimate-summary").inner_text()
    covered = sum(1 for n in notes if n["covered"])
    assert f"in {covered} of 3" in summary
    # the degraded window's estimate sits below the first healthy one's, as realised does
    assert notes[2]["estimate"] < notes[0]["estimate"] and notes[2]["value"] < notes[0]["value"]
