"""The service in process (``LocalHost.handle``) over the fakes, SQLite or Azurite stores."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from autopilot.host import LocalHost
from autopilot.serve import event_batch_validator
from composition.wiring import Runtime
from functions import alerts, api, azureml_events, console, reconcile, runtime
from tests.conftest import KEYS
from tests.fakes import World, make_world

KEY = KEYS["ops-team"]
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=azureml_events"


@dataclass
class Hosted:
    backend: str
    host: LocalHost
    world: World
    runtime: Runtime

    def call(
        self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """One request, in process; this host's services become the current runtime first."""
        runtime.use(self.runtime)
        status, _, data = self.host.handle(
            method, target, {"x-functions-key": KEY, **(headers or {})}, body
        )
        return status, data


def stores(backend: str, folder: Path, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """A state store and audit log of ``backend`` ("sqlite" or "azurite"), fresh."""
    if backend == "sqlite":
        from shared.adapters.sqlite_audit import SqliteAuditLog
        from shared.adapters.sqlite_store import SqliteStateStore

        return SqliteStateStore(folder / "state.db"), SqliteAuditLog(folder / "audit.db")
    from shared.adapters.table_audit import TableAuditLog
    from shared.adapters.table_store import TableStateStore
    from tests.integration.test_table_backends import fresh_prefix

    connection = request.getfixturevalue("azurite")
    prefix = fresh_prefix()
    return (
        TableStateStore(connection, table_prefix=prefix),
        TableAuditLog(connection, table_prefix=prefix),
    )


def host_on(backend: str, folder: Path, request: pytest.FixtureRequest) -> Hosted:
    """Every blueprint of the app on a LocalHost; ``runtime`` points at it (undo with
    ``runtime.use(None)``)."""
    app = func.FunctionApp()
    for blueprint in (azureml_events.bp, alerts.bp, reconcile.bp, api.bp, console.bp):
        app.register_functions(blueprint)
    world = make_world()
    if backend != "fakes":
        store, audit = stores(backend, folder, request)
        world.services = replace(world.services, store=store, audit=audit)
    current = Runtime(world.services, dict(KEYS))
    runtime.use(current)
    host = LocalHost(
        app,
        keys=KEYS,
        run_timers=False,
        settings={"AUTOPILOT_RECONCILE_SCHEDULE": "0 0 * * * *"},
        parse_event_batch=event_batch_validator(lambda: world.services.policy),
    )
    return Hosted(backend, host, world, current)
