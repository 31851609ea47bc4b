from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from composition.wiring import Runtime
from functions import runtime
from tests.fakes import World, make_world

KEYS = {"ops-team": "k-ops-0123456789abcdef", "alice": "k-alice-0123456789abcdef"}
# The demo's client sends a request every 10 ms instead of 50 ms (a test-only knob, see
# autopilot.demo_world.traffic_interval): each canary step reaches the request count its judge
# needs in about half the time; the judge and the policy are the demo's own.
DEMO_ENV = {**os.environ, "AUTOPILOT_DEMO_TRAFFIC_INTERVAL_S": "0.01"}


@pytest.fixture(scope="session")
def improve_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data folder of one real ``autopilot demo --scenario improve`` run (v2 promoted),
    shared by the end-to-end and browser tests. Read it; copy it to change it."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    data = tmp_path_factory.mktemp("improve-demo") / "improve"
    command = ["demo", "--scenario", "improve", "--data-dir", str(data)]
    done = subprocess.run(
        [sys.executable, "-m", "autopilot.cli", *command],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env=DEMO_ENV,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return data


@pytest.fixture(scope="session")
def registered() -> dict[str, Any]:
    """The functions function_app registers, by name (indexed once: the SDK allows one call)."""
    import function_app

    return {str(fn.get_function_name()): fn for fn in function_app.app.get_functions()}


@pytest.fixture
def world() -> Iterator[World]:
    world = make_world()
    runtime.use(Runtime(world.services, dict(KEYS)))
    yield world
    runtime.use(None)
