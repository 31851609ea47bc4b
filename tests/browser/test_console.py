"""The operator console in a real headless browser, over the state a real demo run left.

One ``autopilot demo --scenario improve`` run is shared by the module; then ``autopilot serve``
serves its data folder and Chromium (Debian's ``chromium`` package, driven by Playwright) opens
each page. Screenshots go to ``test-artifacts/console-*.png``.

Needs: ``apt-get install -y chromium`` and ``pip install playwright`` (no ``playwright install``:
the system Chromium is used). Without them the module is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.serve_proc import KEY, ROOT, Served, start_serve

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if os.environ.get("CI"):  # CI installs both (scripts/setup.sh): a missing one is a failure
    import playwright.sync_api as sync_api

    assert Path(CHROMIUM).exists(), "Chromium missing: scripts/setup.sh installs it"
else:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs Playwright: pip install playwright==1.65.2"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Chromium: apt-get install -y chromium", allow_module_level=True)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
MODEL = "credit-risk"
WAITING = "credit-risk-awaiting01"  # the cycle seeded to wait for approval


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, improve_demo: Path) -> Path:
    """A copy of the data folder of one real demo run (scenario improve: v2 promoted), which
    these tests extend (a cycle awaiting approval) and serve."""
    data = tmp_path_factory.mktemp("console") / "demo"
    shutil.copytree(improve_demo, data)
    return data


def seed_awaiting_approval(data: Path, demo_cycle: str) -> None:
    """Add a cycle waiting for approval, through the real SQLite adapters.

    The demo's policy asks for no approval and no confidence, so its own cycle has neither a
    pending decision nor a bootstrap. This one re-gates the demo job's real evaluation under
    ``confidence: 0.95`` and ``approval_required``, as the gate would have.
    """
    from shared.adapters.sqlite_audit import SqliteAuditLog
    from shared.adapters.sqlite_store import SqliteStateStore
    from shared.gate import decide
    from shared.model import AuditEntry, AuditKind, Cycle, CycleState
    from shared.policy import load_policy

    gate = load_policy(data / "demo-policy.yaml").models[MODEL].gate
    gate = gate.model_copy(update={"confidence": 0.95, "approval_required": True})
    [path] = (data / "platform").glob(f"jobs/autopilot-{demo_cycle}/outputs/evaluation.json")
    decision = decide(json.loads(path.read_text()), gate)
    assert decision.passed and decision.bootstrap
    now = datetime.now(UTC)
    cycle = Cycle(
        WAITING,
        MODEL,
        CycleState.TRIGGERED,
        now,
        now,
        trigger={"source": "test-fixture", "signal": "re-gate of the demo evaluation"},
        job_name=f"autopilot-{demo_cycle}",
        candidate_version=None,  # registered (and given a version) only once approved
        champion_version=decision.champion_version,
    )
    cycle.transition(CycleState.RETRAINING, now, "test fixture")
    cycle.transition(CycleState.EVALUATING, now, "test fixture")
    cycle.decision = decision.to_json()
    cycle.transition(
        CycleState.AWAITING_APPROVAL, now, f"gate passed; awaiting approval ({decision.summary})"
    )
    assert SqliteStateStore(data / "state.db").create_cycle(cycle) is None
    SqliteAuditLog(data / "audit.db").append(
        AuditEntry(
            AuditKind.DECISION,
            "gate passed; awaiting approval",
            actor="tests",
            model=MODEL,
            version=None,
            cycle=WAITING,
            reason=decision.summary,
            evidence={"gate": decision.to_json()},
        )
    )


@pytest.fixture(scope="module")
def served(demo: Path) -> Iterator[Served]:
    result = json.loads((demo / "demo-result.json").read_text())
    seed_awaiting_approval(demo, result["cycle"])
    server = start_serve(demo, demo / "demo-policy.yaml")
    # the first /api/models starts the embedded endpoint (its models load): seconds when the
    # machine is idle, over 15 s when busy; pages wait 15 s at most
    assert server.json("GET", "/api/models")[0] == 200
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo_cycle(demo: Path) -> str:
    return str(json.loads((demo / "demo-result.json").read_text())["cycle"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with (
        tempfile.TemporaryDirectory(prefix="console-chromium-") as profile,
        sync_api.sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 860},
            timezone_id="UTC",
        )
        yield context
        context.close()


class Console:
    """One browser tab on the console, recording every request and every script error."""

    def __init__(self, page: Any, served: Served) -> None:
        self.page = page
        self.served = served
        self.errors: list[str] = []
        self.requests: list[tuple[str, str]] = []
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        page.on("request", lambda req: self.requests.append((req.method, req.url)))

    def open(self, view: str, fragment: str) -> Any:
        response = self.page.goto(f"{self.served.url}/api/console?code={KEY}#{fragment}")
        assert response.status == 200
        self.ready(view)
        return response

    def ready(self, view: str) -> None:
        self.page.wait_for_selector(f'#view[data-ready="{view}"]', timeout=15_000)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"console-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(browser: Any, served: Served) -> Iterator[Console]:
    page = browser.new_page()
    tab = Console(page, served)
    yield tab
    page.close()
    assert tab.errors == []  # CSP violations and script errors show up here
    for method, url in tab.requests:  # read-only and offline: GETs to this service only
        assert method == "GET", (method, url)
        assert url.startswith(served.url + "/api/") or url.startswith("data:"), url


def api(served: Served, path: str) -> Any:
    status, body = served.json("GET", path)
    assert status == 200, (path, body)
    return body


def test_models_page_shows_the_promoted_champion(console: Console) -> None:
    console.open("models", "/models")
    row = console.page.locator(f'tr[data-model="{MODEL}"]')
    assert row.locator(".champion-version").inner_text() == "v2"
    assert "live" in row.inner_text()
    assert WAITING in row.locator(".active-cycle").inner_text()
    assert "AWAITING_APPROVAL" in row.locator(".active-cycle").inner_text()
    assert console.page.locator("#pending-count").inner_text() == "1"
    console.shot("models")


def test_cycle_page_shows_gate_table_traffic_chart_and_trail(
    console: Console, served: Served, demo_cycle: str
) -> None:
    cycle = api(served, f"/api/cycles/{demo_cycle}")["cycle"]
    console.open("cycle", f"/cycles/{demo_cycle}")
    page = console.page

    rules = page.locator("table.gate tbody tr")
    assert [rules.nth(i).get_attribute("data-rule") for i in range(rules.count())] == [
        r["rule"] for r in cycle["decision"]["rules"]
    ]
    assert page.locator('table.gate tr[data-passed="false"]').count() == 0
    assert "Gate passed" in page.locator("#gate .banner").inner_text()
    assert page.locator("svg.chart.bootstrap").count() == 0  # the demo gate asks no confidence

    chart = page.locator("#rollout svg.chart.traffic")
    assert chart.count() == 1
    areas = chart.locator("path[data-deployment]")
    deployments = {areas.nth(i).get_attribute("data-deployment") for i in range(areas.count())}
    assert deployments == {"credit-risk-v1", "credit-risk-v2"}
    legend = chart.locator("text.legend-name").all_text_contents()
    assert legend == ["credit-risk-v1 (previous)", "credit-risk-v2 (new)"]
    checks = chart.locator("circle[data-verdict]")
    assert checks.count() == len(cycle["rollout"]["checks"])
    verdicts = [checks.nth(i).get_attribute("data-verdict") for i in range(checks.count())]
    assert verdicts == [c["verdict"] for c in cycle["rollout"]["checks"]]
    # the demo's sequential judge looks until it can decide; each of the 3 steps passed
    assert set(verdicts) <= {"pass", "continue"} and verdicts.count("pass") == 3
    assert "promoted" in (chart.text_content() or "")
    # and its confidence band per step, against the tolerance
    bands = page.locator("#rollout svg.chart.band")
    assert bands.count() == 3
    tolerance = cycle["rollout"]["sequential_tolerance"]
    assert f"+{tolerance * 100:g} pp" in (bands.first.text_content() or "")
    assert bands.first.locator("polygon").count() == 1

    assert page.locator('[data-field="job"]').inner_text() == f"autopilot-{demo_cycle}"
    assert page.locator('[data-field="candidate"]').inner_text() == f"{MODEL} v2"
    trail = page.locator("ol.timeline li")
    assert trail.count() == len(api(served, f"/api/cycles/{demo_cycle}")["audit"])
    assert "retraining cycle started" in trail.first.inner_text()
    texts = trail.all_inner_texts()
    promoted = max(i for i, t in enumerate(texts) if "PROMOTED" in t)
    # the sequential judge promotes at its first look at 100%, while v1 may still drain: its
    # deletion can finish at a later tick, after the promotion
    assert all("deleted" in t for t in texts[promoted + 1 :]), texts[promoted:]
    console.shot("cycle")


def test_cycle_page_plots_the_bootstrap_with_its_interval(console: Console, served: Served) -> None:
    boot = api(served, f"/api/cycles/{WAITING}")["cycle"]["decision"]["bootstrap"]
    console.open("cycle", f"/cycles/{WAITING}")
    plot = console.page.locator("svg.chart.bootstrap")
    assert plot.count() == 1
    assert plot.locator("rect[height] title").count() == len(boot["histogram"]["counts"])
    assert f"{boot['level']:.0%} interval" in (plot.text_content() or "")
    assert ".venv/bin/autopilot approve credit-risk-awaiting01 --reason" in console.page.inner_text(
        "body"
    )
    console.shot("cycle-bootstrap")


def test_audit_page_filters_by_cycle_and_shows_the_chain_verified(
    console: Console, served: Served, demo_cycle: str
) -> None:
    console.open("audit", "/audit")
    page = console.page
    assert page.locator("#verify").get_attribute("data-ok") == "true"
    all_rows = page.locator("table.audit tbody tr[data-seq]").count()

    page.fill("input[name=cycle]", demo_cycle)
    page.press("input[name=cycle]", "Enter")
    page.wait_for_function("location.hash.includes('cycle=')")
    console.ready("audit")
    rows = page.locator("table.audit tbody tr[data-seq]")
    expected = len(api(served, f"/api/audit?cycle={demo_cycle}")["records"])
    page.wait_for_function(
        f"document.querySelectorAll('table.audit tbody tr[data-seq]').length === {expected}"
    )
    assert 0 < expected < all_rows
    cycles = {rows.nth(i).get_attribute("data-cycle") for i in range(rows.count())}
    assert cycles == {demo_cycle}
    assert {t.strip() for t in rows.locator("td.cycle").all_inner_texts()} == {demo_cycle}

    page.select_option("select[name=kind]", "action")
    page.wait_for_function("location.hash.includes('kind=action')")
    console.ready("audit")
    page.wait_for_function(
        "[...document.querySelectorAll('table.audit tbody tr[data-seq]')]"
        ".every(r => r.dataset.kind === 'action')"
    )
    console.shot("audit")


def test_approvals_page_lists_the_waiting_cycle_with_its_evidence(
    console: Console, demo_cycle: str
) -> None:
    console.open("approvals", "/approvals")
    card = console.page.locator(f'.approval[data-cycle="{WAITING}"]')
    assert card.count() == 1
    assert card.locator("table.gate tbody tr").count() >= 4
    assert card.locator('table.gate tr[data-rule="confidence"]').count() == 1
    assert card.locator("svg.chart.bootstrap").count() == 1
    text = card.inner_text()
    candidate = f"model of job autopilot-{demo_cycle} (gets its version when approved)"
    assert card.locator('[data-field="candidate"]').inner_text() == candidate
    assert "v?" not in text
    assert f".venv/bin/autopilot approve {WAITING} --reason" in text
    assert f"/api/cycles/{WAITING}/approve" in text
    assert KEY not in console.page.content()  # the page never prints the key
    console.shot("approvals")


def test_pages_update_live_without_a_reload(console: Console, served: Served) -> None:
    console.open("audit", "/audit")
    alert = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/local/alerts/{uuid.uuid4()}",
                "alertRule": "not-bound-to-any-model",
                "severity": "Sev3",
                "signalType": "Metric",
                "monitorCondition": "Fired",
                "monitoringService": "Platform",
                "firedDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {},
        },
    }
    status, _ = served.json("POST", "/api/alerts", alert)
    assert status == 200
    [latest] = api(served, "/api/audit?limit=1")["records"]
    console.page.wait_for_selector(f'tr[data-seq="{latest["seq"]}"]', timeout=8_000)


def test_without_a_key_the_console_and_its_api_answer_401(browser: Any, served: Served) -> None:
    for path in ("/api/console", "/api/models", "/api/audit/verify"):
        for key in (None, "not-the-key-0123456789"):
            status, _, _ = served.request("GET", path, key=key)
            assert status == 401, (path, key)
    page = browser.new_page()
    try:
        assert page.goto(f"{served.url}/api/console").status == 401
        assert page.goto(f"{served.url}/api/console?code=not-the-key-0123").status == 401
    finally:
        page.close()


def test_every_console_route_is_get_only(served: Served) -> None:
    for path in ("/api/console", "/api/models", "/api/audit/verify"):
        for method in ("POST", "PUT", "DELETE"):
            status, headers, _ = served.request(method, path, {})
            assert status == 405, (method, path)
            assert headers.get("Allow") == "GET"
