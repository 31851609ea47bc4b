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


# Worker groups for ``pytest -n 2 --dist loadscope`` (scripts/test.sh; pytest-xdist). A group's
# tests run on one worker, in order, as in one process. By default a group is a module: its
# module-scoped fixtures are made once and its tests see each other's effects as written.
# (xdist's own ``xdist_group`` marks do nothing under pytest 9.2: xdist 3.8 renames a test
# through an attribute pytest no longer reads, hence the scheduler below.)
SHARE_THE_IMPROVE_DEMO = (  # one worker, so the session's ``improve_demo`` runs once
    "tests/browser/test_console.py::",
    "tests/browser/test_console_unrenderable.py::",
    "tests/e2e/test_demo.py::test_improve_promotes_the_retrained_model",
)
EACH_APART = ("tests/e2e/test_demo.py::",)  # each scenario is its own demo run


def worker_group(nodeid: str) -> str:
    """The group of the test ``nodeid`` (``path::name[params]``)."""
    if nodeid.startswith(SHARE_THE_IMPROVE_DEMO):
        return "improve-demo"
    if nodeid.startswith(EACH_APART):
        return nodeid
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keeps SHARE_THE_IMPROVE_DEMO true: a test reading ``improve_demo`` outside it would
    make a worker run the demo again (minutes), so collection fails saying so."""
    for item in items:
        reads = "improve_demo" in getattr(item, "fixturenames", ())
        if reads != (worker_group(item.nodeid) == "improve-demo"):
            raise pytest.UsageError(
                f"{item.nodeid}: list it in tests/conftest.py SHARE_THE_IMPROVE_DEMO "
                "exactly when it uses the improve_demo fixture"
            )


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: ignored without pytest-xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` with the groups of :func:`worker_group`."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class Groups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return Groups(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test's captured output as text an xdist worker can send: hostile-input tests log
    lone surrogates (as our logs may), which execnet refuses to encode, crashing the worker
    and losing the run; they are shown as ``\\udXXX`` escapes instead."""
    outcome: Any = yield
    report = outcome.get_result()
    report.sections = [(title, _sendable(text)) for title, text in report.sections]
    if isinstance(report.longrepr, str):
        report.longrepr = _sendable(report.longrepr)


def _sendable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
