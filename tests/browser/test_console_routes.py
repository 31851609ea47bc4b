"""The console's routes called as registered functions with real request objects (fast)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from composition.wiring import Runtime
from functions import runtime
from shared.errors import TransientError
from shared.model import AuditKind, Cycle, CycleState
from tests.conftest import KEYS
from tests.fakes import FakePlatform, World
from tests.integration.serve_proc import ROOT

CONSOLE_FUNCTIONS = {
    "console_page": "console",
    "list_models": "models",
    "verify_audit": "audit/verify",
    "model_estimates": "models/{model}/estimates",
}


def get(route: str, key: str | None = KEYS["ops-team"], method: str = "GET") -> func.HttpRequest:
    headers = {"x-functions-key": key} if key else {}
    return func.HttpRequest(method, f"http://localhost/api/{route}", headers=headers, body=b"")


def call(registered: dict[str, Any], name: str, req: func.HttpRequest) -> func.HttpResponse:
    response: func.HttpResponse = registered[name].get_user_function()(req=req)
    return response


def test_every_console_route_is_a_get_that_needs_a_function_key(
    registered: dict[str, Any], world: World
) -> None:
    for name, route in CONSOLE_FUNCTIONS.items():
        binding = registered[name].get_bindings()[0].get_dict_repr()
        assert binding["route"] == route
        assert [str(getattr(m, "value", m)) for m in binding["methods"]] == ["GET"]
        level = str(getattr(binding["authLevel"], "value", binding["authLevel"]))
        # the page checks the key itself (a browser gets a key prompt); the JSON routes via host
        assert level == ("anonymous" if name == "console_page" else "function")
        for key in (None, "wrong-key-0123456789"):
            resp = call(registered, name, get(route, key))
            assert resp.status_code == 401, name
            assert b"wrong-key" not in (resp.get_body() or b"")


def test_the_page_without_a_valid_key_is_a_key_prompt_that_says_when_the_key_was_wrong(
    registered: dict[str, Any], world: World
) -> None:
    world.store.create_cycle(
        Cycle(
            "secret-cycle-id", "credit", CycleState.TRIGGERED, datetime.now(UTC), datetime.now(UTC)
        )
    )
    missing = call(registered, "console_page", get("console", None))
    wrong = call(registered, "console_page", get("console", "wrong-key-0123456789"))
    for resp in (missing, wrong):
        assert resp.status_code == 401
        assert resp.mimetype == "text/html"
        body = (resp.get_body() or b"").decode()
        assert '<form method="get" action="console" id="key-prompt">' in body
        assert 'name="code"' in body
        assert "secret-cycle-id" not in body and "credit" not in body  # no data without a key
        assert "form-action 'self'" in resp.headers["Content-Security-Policy"]
    assert "Wrong key" not in (missing.get_body() or b"").decode()
    assert "Wrong key: that function key was not accepted" in (wrong.get_body() or b"").decode()


def test_the_page_carries_its_assets_inline_under_a_strict_csp(
    registered: dict[str, Any], world: World
) -> None:
    resp = call(registered, "console_page", get("console"))
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    html = resp.get_body().decode()
    headers = dict(resp.headers)
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    assert "{{app." not in html  # every slot filled

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    csp = headers["Content-Security-Policy"]
    assert f"script-src 'sha256-{digest(scripts[0])}'" in csp
    assert f"style-src 'sha256-{digest(styles[0])}'" in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    # nothing from elsewhere: no external script, stylesheet, font or image
    assert not re.search(r"<script[^>]+src=|<link[^>]+stylesheet|@import|url\(", html)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {"http://www.w3.org/2000/svg"}


def test_models_summarises_each_model_of_the_policy(
    registered: dict[str, Any], world: World
) -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    world.platform.set_champion("credit", "3")
    world.platform.traffic["credit-ep"] = {"credit-v3": 100}
    cycle = Cycle("credit-abc", "credit", CycleState.TRIGGERED, now, now, candidate_version="4")
    cycle.transition(CycleState.RETRAINING, now, "job submitted")
    cycle.transition(CycleState.EVALUATING, now, "job completed")
    cycle.decision = {"passed": True, "summary": "every rule passed", "rules": []}
    cycle.transition(CycleState.AWAITING_APPROVAL, now, "gate passed; awaiting approval")
    world.store.create_cycle(cycle)
    world.services.record(AuditKind.DECISION, "gate passed", model="credit", cycle=cycle.id)
    world.services.record(AuditKind.ACTION, "something done", model="credit", cycle=cycle.id)

    resp = call(registered, "list_models", get("models"))
    assert resp.status_code == 200
    [model] = json.loads(resp.get_body())["models"]
    assert model["model"] == "credit"
    assert model["mode"] == "live"
    assert model["endpoint"] == "credit-ep"
    assert model["champion"] == "3"
    assert model["traffic"] == {"credit-v3": 100}
    assert model["problems"] == []
    assert model["active_cycle"]["id"] == "credit-abc"
    assert model["active_cycle"]["state"] == "AWAITING_APPROVAL"
    assert model["last_decision"]["summary"] == "gate passed"
    assert model["last_gate"] == {
        "cycle": "credit-abc",
        "passed": True,
        "summary": "every rule passed",
    }


@dataclasses.dataclass
class UnreachablePlatform(FakePlatform):
    """A platform whose registry and endpoints do not answer."""

    def champion_version(self, model: str, endpoint: str | None) -> str | None:
        raise TransientError("registry timed out")

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        raise TransientError("endpoint timed out")


def test_models_shows_a_platform_outage_instead_of_failing(
    registered: dict[str, Any], world: World
) -> None:
    services = dataclasses.replace(world.services, platform=UnreachablePlatform())
    runtime.use(Runtime(services, dict(KEYS)))
    resp = call(registered, "list_models", get("models"))
    assert resp.status_code == 200
    [model] = json.loads(resp.get_body())["models"]
    assert model["champion"] is None and model["traffic"] is None
    assert any("registry timed out" in p for p in model["problems"])
    assert any("endpoint timed out" in p for p in model["problems"])


def test_audit_verify_reports_the_chain(registered: dict[str, Any], world: World) -> None:
    world.services.record(AuditKind.DECISION, "one")
    world.services.record(AuditKind.ACTION, "two")
    resp = call(registered, "verify_audit", get("audit/verify"))
    assert resp.status_code == 200
    assert json.loads(resp.get_body()) == {
        "ok": True,
        "records": 2,
        "first_bad_seq": None,
        "chain": None,  # which chain broke (a sharded log on Table Storage); None when intact
        "problem": "",
    }


def test_estimates_are_the_audited_checks_with_ground_truth_oldest_first(
    registered: dict[str, Any], world: World
) -> None:
    def estimates(model: str) -> func.HttpResponse:
        req = func.HttpRequest(
            "GET",
            f"http://localhost/api/models/{model}/estimates",
            headers={"x-functions-key": KEYS["ops-team"]},
            route_params={"model": model},
            body=b"",
        )
        return call(registered, "model_estimates", req)

    check = {"series": "estimate_vs_realised", "metric": "auc", "rows": 900, "covered": True}
    world.services.record(
        AuditKind.DECISION,
        "estimated auc 0.7 vs realised 0.69",
        model="credit",
        evidence={**check, "estimate": 0.7, "interval": [0.68, 0.72], "value": 0.69},
    )
    world.services.record(  # the breach's signal carries an estimate too: not a second point
        AuditKind.DECISION,
        "retraining cycle started",
        model="credit",
        evidence={"source": "estimated_performance", "estimate": 0.6, "interval": [0.5, 0.7]},
    )
    world.services.record(
        AuditKind.DECISION,
        "estimated auc 0.6 vs realised 0.5",
        model="credit",
        evidence={**check, "estimate": 0.6, "interval": [0.58, 0.62], "value": 0.5},
    )
    world.services.record(  # a value JSON cannot carry is left out, not a 500
        AuditKind.DECISION,
        "estimated auc nan",
        model="credit",
        evidence={**check, "estimate": float("nan"), "value": None},
    )
    resp = estimates("credit")
    assert resp.status_code == 200
    body = json.loads(resp.get_body())
    assert [(p["estimate"], p["low"], p["high"], p["realised"]) for p in body["points"]] == [
        (0.7, 0.68, 0.72, 0.69),
        (0.6, 0.58, 0.62, 0.5),
    ]
    assert body["metric"] is None  # this policy asks for no estimate
    assert estimates("no-such-model").status_code == 404


def test_importing_the_app_reads_no_console_file() -> None:
    code = (
        "import function_app\n"
        "from functions import console\n"
        "print(console.page.cache_info().currsize)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0"
