from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions import runtime
from shared.wiring import Runtime
from tests.fakes import World, make_world

KEYS = {"ops-team": "k-ops-0123456789abcdef", "alice": "k-alice-0123456789abcdef"}


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
