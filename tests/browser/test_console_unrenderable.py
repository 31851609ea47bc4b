"""The console over records an older version stored that cannot be written as JSON (issue 13).

A copy of the demo's data folder gets a cycle whose stored body holds ``Infinity`` (written
straight into SQLite) and an audit record with ``inf`` evidence. Before, ``/api/cycles``
answered ``Infinity`` and the home, cycle and audit pages rendered empty; now each page shows
the rest as before and the bad record as an "unrenderable" row naming it.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.model import AuditEntry, AuditKind
from tests.browser.test_console import Console, browser  # noqa: F401 - fixture, used by name
from tests.integration.serve_proc import Served, start_serve
from tests.integration.test_sqlite_store import new_cycle

pytestmark = pytest.mark.slow
BAD = "legacy-poisoned"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, improve_demo: Path) -> Iterator[Served]:
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore

    data = tmp_path_factory.mktemp("unrenderable") / "demo"
    shutil.copytree(improve_demo, data)
    cycle = new_cycle(BAD, "legacy-model")
    cycle.trigger = {"source": "alert", "properties": {"x": "PLACEHOLDER"}}
    assert SqliteStateStore(data / "state.db").create_cycle(cycle) is None
    with sqlite3.connect(data / "state.db") as db:
        db.execute("UPDATE cycles SET body = replace(body, '\"PLACEHOLDER\"', 'Infinity')")
    SqliteAuditLog(data / "audit.db").append(
        AuditEntry(AuditKind.EVENT_RECEIVED, "legacy", cycle=BAD, evidence={"x": 1e999})
    )
    server = start_serve(data, data / "demo-policy.yaml")
    yield server
    server.stop()


@pytest.fixture
def console(browser: Any, served: Served) -> Iterator[Console]:  # noqa: F811 - the fixture
    page = browser.new_page()
    tab = Console(page, served)
    yield tab
    page.close()
    assert tab.errors == []


def test_the_home_page_lists_the_good_cycles_and_the_bad_one_as_unrenderable(
    console: Console, served: Served
) -> None:
    status, body = served.json("GET", "/api/cycles")
    assert status == 200
    good = [c["id"] for c in body["cycles"] if "unrenderable" not in c]
    assert good
    console.open("models", "/models")
    page = console.page
    assert page.locator(f'tr.unrenderable[data-cycle="{BAD}"]').count() == 1
    assert "unrenderable" in page.locator(f'tr[data-cycle="{BAD}"]').inner_text()
    assert page.locator(f'table.cycles tr[data-cycle="{good[0]}"]').count() == 1


def test_the_cycle_page_says_why_and_still_shows_the_audit_trail(console: Console) -> None:
    console.open("cycle", f"/cycles/{BAD}")
    page = console.page
    assert "cannot be shown" in page.locator("#unrenderable").inner_text()
    assert page.locator("ol.timeline li.unrenderable").count() == 1


def test_the_audit_page_shows_the_other_records(console: Console, served: Served) -> None:
    console.open("audit", "/audit")
    page = console.page
    assert page.locator("table.audit tbody tr.unrenderable").count() == 1
    assert page.locator("table.audit tbody tr[data-seq]").count() > 1
