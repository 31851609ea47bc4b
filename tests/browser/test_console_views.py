"""What the console shows in the cases an operator met: after a rollback, a candidate waiting
for approval, guardrail wording, traffic in the audit log, a wrong key, a narrow window.

Each case is a world of fakes driven through the real handlers (as in tests/unit), served by
the local Functions host in-process over the registered functions, and opened in headless
Chromium (see test_console.py for what that needs; without it the module is skipped).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot.host import LocalHost
from composition.wiring import Runtime
from functions import runtime
from shared.messages import ManualRollback
from shared.model import CycleState
from shared.settings import DEFAULT_RECONCILE_SCHEDULE
from tests.browser import test_console  # skips this module too without Chromium/Playwright
from tests.conftest import KEYS
from tests.fakes import World, make_policy, make_world
from tests.unit.test_lifecycle import bus_of, complete_job, with_live_deployment
from tests.unit.test_rollout import promoted

pytestmark = pytest.mark.slow

KEY = KEYS["ops-team"]
ROOT = Path(__file__).resolve().parents[2]
NARROW = {"width": 400, "height": 800}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    import playwright.sync_api as sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=test_console.CHROMIUM, headless=True, args=test_console.CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Site:
    """One world served by the local host; pages opened in fresh browser contexts."""

    def __init__(self, world: World, functions: list[Any], chromium: Any) -> None:
        self.world = world
        self.chromium = chromium
        runtime.use(Runtime(world.services, dict(KEYS)))
        self.host = LocalHost(
            functions,
            keys=KEYS,
            parse_event_batch=lambda body: [],
            settings={"AUTOPILOT_RECONCILE_SCHEDULE": DEFAULT_RECONCILE_SCHEDULE},
            run_timers=False,
        )
        self.host.start()
        self.url = self.host.url
        self.errors: list[str] = []
        self.contexts: list[Any] = []

    def page(self, viewport: dict[str, int] | None = None) -> Any:
        context = self.chromium.new_context(
            viewport=viewport or {"width": 1366, "height": 860}, timezone_id="UTC"
        )
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        return page

    def open(self, view: str, fragment: str, viewport: dict[str, int] | None = None) -> Any:
        page = self.page(viewport)
        assert page.goto(f"{self.url}/api/console?code={KEY}#{fragment}").status == 200
        page.wait_for_selector(f'#view[data-ready="{view}"]', timeout=15_000)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.host.stop()
        runtime.use(None)


@pytest.fixture
def site(registered: dict[str, Any], chromium: Any) -> Iterator[Any]:
    sites: list[Site] = []

    def serve(world: World) -> Site:
        sites.append(Site(world, list(registered.values()), chromium))
        return sites[-1]

    yield serve
    for one in sites:
        one.close()
        # 401s are expected where a test opens the console with a wrong key
        assert [e for e in one.errors if "401" not in e] == []


def rolled_back() -> tuple[World, Any]:
    """v2 promoted through three healthy canary steps, then rolled back by an operator."""
    world = make_world()
    cycle = promoted(world)
    bus_of(world).handle(ManualRollback("credit", "carol", "customers complain"))
    cycle = world.store.must(cycle.id)
    assert cycle.state is CycleState.ROLLED_BACK
    return world, cycle


def awaiting_approval() -> tuple[World, Any]:
    world = make_world(make_policy(gate__approval_required=True))
    with_live_deployment(world)
    cycle = complete_job(world)
    assert cycle.state is CycleState.AWAITING_APPROVAL and cycle.candidate_version is None
    return world, cycle


def test_after_a_rollback_models_shows_the_rollback_as_the_last_decision(site: Any) -> None:
    world, _ = rolled_back()
    page = site(world).open("models", "/models")
    last = page.locator('tr[data-model="credit"] .last-decision').inner_text()
    assert "ROLLED_BACK" in last and "manual rollback by carol: customers complain" in last
    assert "healthy" not in last


def test_audit_summaries_name_traffic_as_text_not_as_python_dicts(site: Any) -> None:
    world, cycle = rolled_back()
    page = site(world).open("audit", "/audit")
    summaries = page.locator("table.audit tbody tr[data-seq]").all_inner_texts()
    new = cycle.rollout.deployment
    assert any(f"traffic blue 90%, {new} 10% on credit-ep (step 1/3)" in s for s in summaries)
    assert any(f"traffic {new} 100%, blue 0% on credit-ep (step 3/3)" in s for s in summaries)
    assert not [s for s in summaries if "{'" in s or "': " in s]


def test_a_pending_approval_names_its_candidate_not_v_question_mark(site: Any) -> None:
    world, cycle = awaiting_approval()
    page = site(world).open("approvals", "/approvals")
    card = page.locator(f'.approval[data-cycle="{cycle.id}"]')
    candidate = card.locator('[data-field="candidate"]').inner_text()
    assert candidate == f"model of job {cycle.job_name} (gets its version when approved)"
    assert "v?" not in card.inner_text()
    page = site(world).open("cycle", f"/cycles/{cycle.id}")
    assert page.locator('[data-field="candidate"]').inner_text() == candidate


def test_the_approve_command_the_console_suggests_works_as_written(site: Any) -> None:
    """The approval card's CLI line, copied as shown and run from the repository root."""
    world, cycle = awaiting_approval()
    page = site(world).open("approvals", "/approvals")
    card = page.locator(f'.approval[data-cycle="{cycle.id}"]')
    command = card.locator('[data-cmd="approve"]').inner_text()
    assert command.startswith(f".venv/bin/autopilot approve {cycle.id} --reason ")
    env = {**os.environ, "AUTOPILOT_KEY": KEY}
    done = subprocess.run(
        shlex.split(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert cycle.id in done.stdout and "approved" in done.stdout.lower()
    assert world.store.must(cycle.id).state is not CycleState.AWAITING_APPROVAL
    assert KEY not in done.stdout + done.stderr


def test_the_guardrail_row_says_better_or_worse_not_a_signed_regression(site: Any) -> None:
    world, cycle = awaiting_approval()  # accuracy 0.79 -> 0.80: better by 0.01
    page = site(world).open("cycle", f"/cycles/{cycle.id}")
    row = page.locator('table.gate tr[data-rule="guardrail"]')
    assert row.locator('[data-field="observed"]').inner_text() == "better by 0.01"
    assert row.locator('[data-field="threshold"]').inner_text() == "worse by ≤ 0.02"
    assert "accuracy 0.79 -> 0.8: better by 0.01; may be worse by at most 0.02" in row.inner_text()
    improvement = page.locator('table.gate tr[data-rule="improvement"]')
    assert improvement.locator('[data-field="observed"]').inner_text() == "better by 0.06"
    assert "regression" not in page.locator("table.gate").inner_text()
    assert "-0." not in page.locator("table.gate").inner_text()


def test_a_wrong_key_shows_the_key_prompt_saying_so_and_the_right_key_opens_it(
    site: Any,
) -> None:
    world, _ = rolled_back()
    served = site(world)
    page = served.page()
    response = page.goto(f"{served.url}/api/console?code=not-the-key-0123456789#/models")
    assert response.status == 401
    assert "Wrong key" in page.locator("#key-refused").inner_text()
    assert "not-the-key" not in page.content()
    page.fill("input[name=code]", KEY)
    page.click("button[type=submit]")
    page.wait_for_selector('#view[data-ready="models"]', timeout=15_000)
    assert page.locator('tr[data-model="credit"]').count() == 1

    page = served.page()
    assert page.goto(f"{served.url}/api/console").status == 401
    assert page.locator("#key-refused").count() == 0
    assert page.locator("form#key-prompt input[name=code]").count() == 1


CUT_OFF = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width + 1)
    problems.push("page is " + document.documentElement.scrollWidth + " px wide");
  for (const cell of document.querySelectorAll("th, td")) {
    const r = cell.getBoundingClientRect();
    if (!r.width) continue;
    const box = cell.closest(".table-scroll");
    if (!box) { problems.push("table outside a scroll box: " + cell.textContent); continue; }
    const b = box.getBoundingClientRect();
    if (b.left < -1 || b.right > width + 1) problems.push("scroll box wider than the page");
    const left = b.left - box.scrollLeft, right = left + box.scrollWidth;
    if (r.left < left - 1 || r.right > right + 1)
      problems.push("cell cut off: " + cell.textContent.slice(0, 40));
  }
  return problems;
}"""


@pytest.mark.parametrize(
    ("view", "fragment"),
    [("models", "/models"), ("audit", "/audit"), ("cycle", "/cycles/{id}")],
)
def test_in_a_400px_window_no_column_is_cut_off(site: Any, view: str, fragment: str) -> None:
    world, cycle = rolled_back()
    page = site(world).open(view, fragment.format(id=cycle.id), viewport=NARROW)
    assert page.locator("table").count() > 0
    assert page.evaluate(CUT_OFF) == []
    boxes = page.locator(".table-scroll")
    assert any(  # a wide table scrolls inside its box instead of widening the page
        boxes.nth(i).evaluate("b => b.scrollWidth > b.clientWidth") for i in range(boxes.count())
    )


def test_a_broken_chain_names_the_record_and_the_command_it_suggests_works_as_written(
    site: Any, tmp_path: Path
) -> None:
    """An audit record edited in place: the audit page's banner says which, and its CLI line,
    copied as shown and run from the repository root, reaches the same verdict."""
    from shared.adapters.sqlite_audit import SqliteAuditLog

    world = make_world()
    world.services.audit = SqliteAuditLog(tmp_path / "audit.db")
    promoted(world)
    with sqlite3.connect(tmp_path / "audit.db") as db:
        db.execute("UPDATE audit SET reason = 'nothing to see here' WHERE seq = 3")
    page = site(world).open("audit", "/audit")
    banner = page.locator("#verify")
    assert banner.get_attribute("data-ok") == "false"
    assert "Hash chain BROKEN at record #3: " in banner.inner_text()
    command = banner.locator('[data-cmd="verify"]').inner_text()
    assert command == f".venv/bin/autopilot audit verify --url {site_url(page)}"
    env = {**os.environ, "AUTOPILOT_KEY": KEY}
    done = subprocess.run(
        shlex.split(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("AUDIT CHAIN BROKEN at record 3: "), done.stdout
    assert KEY not in done.stdout + done.stderr


def site_url(page: Any) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(page.url)
    return f"{parts.scheme}://{parts.netloc}"


def test_verify_by_url_refuses_an_anchor_it_cannot_check(tmp_path: Path) -> None:
    from autopilot import cli

    code = cli.main(["audit", "verify", "--url", "http://127.0.0.1:9", "--anchor", "1:" + "0" * 64])
    assert code == 2
