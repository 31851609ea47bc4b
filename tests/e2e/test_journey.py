"""The README's standalone tour, run as written: serve the example policy, replay every shipped
payload, retrain three times, approve (found through the data dir, and with --url), roll back.

Differences from the README, all in a test policy derived from ``examples/policy.yaml``: the
data folder is the test's, approvals are required (to walk that path), and rollout timings are
short (bake 1s, health without a traffic minimum, the sequential judge looking every second)
with a reconciler ticking every second. And the traffic kept flowing during the canary
(``score.py --requests``) is sent every 10 ms instead of every 50 ms: the judge is the
example's own and needs as many requests as there; they arrive sooner (~40 s less).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.serve_proc import ROOT, Served, start_serve

pytestmark = pytest.mark.slow

MODEL = "credit-risk"
PAYLOADS = ROOT / "examples" / "payloads"
T0 = time.monotonic()
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")}


def readme_commands() -> list[str]:
    """The commands of the README's standalone tour, in order (lines of its bash blocks)."""
    text = (ROOT / "README.md").read_text()
    tour = text.split("## Run the service alone", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", tour, re.S)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for b in blocks for line in b.splitlines()]
    return [line for line in lines if line]


class Tour:
    """Runs README command lines in the repository root against the test's data dir."""

    def __init__(self, data: Path) -> None:
        self.data = data

    def argv(self, line: str) -> list[str]:
        argv = shlex.split(line)
        if argv[0] == ".venv/bin/autopilot":
            argv = [sys.executable, "-m", "autopilot.cli", *argv[1:]]
            if argv[3:5] != ["policy", "validate"]:
                argv += ["--data-dir", str(self.data)]
        elif argv[0] == ".venv/bin/python":
            argv = [sys.executable, *argv[1:]]
            if argv[1] == "examples/score.py":
                argv += ["--data-dir", str(self.data)]
                if "--requests" in argv:  # the canary's traffic, 5x as often (see the top)
                    argv += ["--interval", "0.01"]
        return [a.replace(".autopilot/data", str(self.data / "data")) for a in argv]

    def run(self, line: str, *, expect: int = 0) -> str:
        done = subprocess.run(
            self.argv(line), cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV
        )
        assert done.returncode == expect, f"{line}\n{done.stdout}\n{done.stderr}"
        print(f"{time.monotonic() - T0:6.1f}s  {line}")  # the tour's pace, with -s
        return done.stdout

    def start(self, line: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(line), cwd=ROOT, stdout=subprocess.PIPE, text=True, env=ENV
        )


def tour_policy(data: Path) -> Path:
    policy = yaml.safe_load((ROOT / "examples" / "policy.yaml").read_text())
    spec = policy["models"][MODEL]
    spec["training"]["inputs"]["data_dir"] = str(data / "data")
    spec["gate"]["approval_required"] = True
    spec["rollout"].update(bake="1s", max_wait="30s", watch="10m")
    spec["rollout"]["sequential"]["check_every"] = "1s"  # a look each reconcile tick
    path = data / "tour-policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tour, Served]]:
    data = tmp_path_factory.mktemp("tour") / "d"
    data.mkdir()
    tour = Tour(data)
    commands = readme_commands()
    generate = next(c for c in commands if "generate_data.py" in c and "--shift" not in c)
    tour.run(generate)
    served = start_serve(
        data,
        tour_policy(data),
        keys=None,  # the key is generated into the data dir, where the CLI finds it
        env={"AUTOPILOT_RECONCILE_SCHEDULE": "*/1 * * * * *"},
    )
    try:
        yield tour, served
    finally:
        served.stop()


def wait_for(
    served: Served, cycle_id: str, states: set[str], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    cycle: dict[str, Any] = {}
    while time.monotonic() < deadline:
        key = json.loads((served.data_dir / "function_keys.json").read_text())["local"]
        status, body = served.json("GET", f"/api/cycles/{cycle_id}", key=key)
        assert status == 200, body
        cycle = body["cycle"]
        if cycle["state"] in states:
            return cycle
        time.sleep(0.25)
    raise AssertionError(f"cycle {cycle_id} stayed {cycle.get('state')}: {cycle.get('reason')}")


def cycle_of(output: str) -> str:
    match = re.search(r"cycle (\S+) is [A-Z_]+", output)
    assert match, output
    return match.group(1)


@pytest.mark.timeout(600)  # ~90 s alone; four trainings and a canary on a busy 2-core machine
def test_the_readme_tour_as_written(tour: tuple[Tour, Served]) -> None:
    run, served = tour
    commands = readme_commands()
    assert any(
        c.startswith(".venv/bin/autopilot serve --policy examples/policy.yaml") for c in commands
    )

    # every shipped payload, with the sentences the service's answers become
    replays = [c for c in commands if " replay " in c]
    assert sorted(c.split()[2] for c in replays) == sorted(
        f"examples/payloads/{p.name}"
        for p in PAYLOADS.glob("*.json")
        if p.name != "score-request.json"
    )
    said = {c.split("/")[-1]: run.run(c) for c in replays}
    assert "  processed: drift signal for model credit-risk" in said["alert-drift-fired.json"]
    assert "retraining cycle started" in said["alert-drift-fired.json"]
    for name in (
        "eventgrid-monitor-breach.json",
        "eventgrid-datadrift-v1.json",
        "cloudevents-monitor-breach.json",
    ):
        assert "drift signal coalesced into active cycle" in said[name], said[name]
    assert (
        "resolved: pending drift signals cleared for model credit-risk"
        in (said["alert-drift-resolved.json"])
    )
    assert "  ignored: no binding for alert rule 'WCUS-R2-Gen2'" in said["alert-unbound-fired.json"]

    first = json.loads(run.run(".venv/bin/autopilot cycles list --json"))
    assert [c["state"] for c in first] in (["RETRAINING"], ["EVALUATING"], ["AWAITING_APPROVAL"])
    a = first[0]["id"]
    assert first[0]["coalesced"] == 3
    wait_for(served, a, {"AWAITING_APPROVAL"})
    approve = next(c for c in commands if " approve " in c and "--url" not in c)
    approved = run.run(approve.replace("<CYCLE>", a))
    assert approved.startswith(f"approved cycle {a}; cycle {a} is REGISTERED")
    assert f"(via {served.url})" in approved
    assert wait_for(served, a, {"PROMOTED"})["state"] == "PROMOTED"
    score = next(c for c in commands if "examples/score.py" in c and "--requests" not in c)
    scored = run.run(score)
    assert re.match(r'POST http://127\.0\.0\.1:\d+/score -> \{"predictions": \[', scored)

    # three retrains in a row, each after the last closed: three new cycles
    retrain = next(c for c in commands if " retrain credit-risk " in c and "--url" not in c)
    b_out = run.run(retrain)
    assert b_out.startswith("retrain credit-risk: started a new cycle; cycle ")
    b = cycle_of(b_out)
    rejected = wait_for(served, b, {"REJECTED", "AWAITING_APPROVAL", "FAILED"})
    assert rejected["state"] == "REJECTED", rejected["reason"]  # same data: no gain

    shifted = next(c for c in commands if "generate_data.py" in c and "--shift" in c)
    run.run(shifted)
    c = cycle_of(run.run(retrain))
    wait_for(served, c, {"AWAITING_APPROVAL"})
    traffic = run.start(next(c for c in commands if "examples/score.py" in c and "--requests" in c))
    try:
        approve_url = next(c for c in commands if " approve " in c and "--url" in c)
        approve_url = approve_url.replace("<CYCLE>", c).replace("http://127.0.0.1:7071", served.url)
        out = run.run(approve_url)
        assert out.startswith(f"approved cycle {c}; cycle {c} is REGISTERED")
        promoted = wait_for(served, c, {"PROMOTED", "FAILED", "ROLLED_BACK"})
        assert promoted["state"] == "PROMOTED", promoted["reason"]
    finally:
        traffic.terminate()
        sent = traffic.communicate(timeout=10)[0]
    assert re.search(r"\d+ sent: credit-risk-", sent), sent

    rollback = next(c for c in commands if " rollback credit-risk " in c)
    out = run.run(rollback)
    assert out.startswith(f"rolled back credit-risk; cycle {c} is ROLLED_BACK")

    d = cycle_of(run.run(retrain))
    wait_for(served, d, {"AWAITING_APPROVAL"})
    deny = next(c for c in commands if " deny " in c).replace("<CYCLE>", d)
    out = run.run(deny)
    assert out.startswith(f"denied cycle {d}; cycle {d} is REJECTED")

    cycles = json.loads(run.run(".venv/bin/autopilot cycles list --json"))
    assert [(x["id"], x["state"]) for x in reversed(cycles)] == [
        (a, "PROMOTED"),
        (b, "REJECTED"),
        (c, "ROLLED_BACK"),
        (d, "REJECTED"),
    ]
    assert "audit chain intact" in run.run(".venv/bin/autopilot audit verify")
    shown = run.run(next(x for x in commands if " cycles show " in x).replace("<CYCLE>", c))
    assert shown.startswith(f"cycle {c}  model credit-risk  state ROLLED_BACK")
    recent = run.run(next(x for x in commands if " audit list --since 15m" in x))
    assert "candidate approved" in recent
    valid = run.run(next(x for x in commands if " policy validate " in x))
    assert "examples/policy.yaml: valid, 1 model(s)" in valid


def help_examples() -> list[str]:
    """Every example the commands' --help shows, but serve and demo (they bind ports or run
    the whole demo: the tour and tests/e2e/test_demo.py run those)."""
    from autopilot.cli import EXAMPLES

    return [
        line.strip()
        for name, text in EXAMPLES.items()
        if name not in ("serve", "demo")
        for line in text.splitlines()[1:]
    ]


def test_every_help_example_runs_as_written(tour: tuple[Tour, Served]) -> None:
    run, served = tour
    cycle = json.loads(run.run(".venv/bin/autopilot cycles list --json"))[0]["id"]
    head = json.loads(run.run(".venv/bin/autopilot audit verify --json"))["head"]
    anchor = json.loads(run.run(".venv/bin/autopilot audit anchor --json"))
    refusals = {"approve": "is REJECTED, not AWAITING_APPROVAL", "deny": "not AWAITING_APPROVAL"}
    refusals["rollback"] = "nothing to roll back"
    for example in help_examples():
        line = (
            example.replace("<CYCLE>", cycle)
            .replace("<SEQ:HASH printed by an earlier verify>", f"{head['seq']}:{head['hash']}")
            .replace("<aSEQ:HASH printed by audit anchor>", f"a{anchor['seq']}:{anchor['hash']}")
            .replace("http://127.0.0.1:7071", served.url)
        )
        command = line.split()[1]
        if command in refusals:  # no cycle waits for approval now, no rollout runs
            done = subprocess.run(
                run.argv(line), cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV
            )
            assert done.returncode == 2 and refusals[command] in done.stderr, done.stderr
        else:
            assert run.run(line)
