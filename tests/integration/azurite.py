"""Azurite, the Azure Storage emulator, for integration tests: the Table and Blob services.

On first use the pinned ``azurite`` npm package is installed into ``.azurite/`` at the
repository root (``AUTOPILOT_AZURITE_DIR`` overrides; the folder ignores itself in git). The
server's own script is started with ``node`` (so the PID we stop is the server's, not an npm
wrapper's), bound to 127.0.0.1 on a free port, in memory, with telemetry off. Without
``node``/``npm`` the tests that need it fail with a message saying so; they never skip.

Use the session fixtures ``azurite`` (the connection string) and ``azurite_server`` (import both
into a test module, or list this module in the root conftest's ``pytest_plugins`` so every
module shares one server), or :func:`running_azurite` directly. ``azurite_blob`` is the
connection string of a Blob service started the same way (its own process and port).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.azurite_install import (  # re-exported: the installer
    AZURITE_VERSION,
    AzuriteUnavailable,
    _tool,
    install,
)

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development account key (not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def connection_string(port: int, service: str = "table") -> str:
    endpoint = "BlobEndpoint" if service == "blob" else "TableEndpoint"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"{endpoint}=http://127.0.0.1:{port}/{ACCOUNT};"
    )


@dataclass
class AzuriteServer:
    """A running Azurite Table (or Blob) service."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    command: list[str]
    version: str = AZURITE_VERSION
    service: str = "table"

    @property
    def connection_string(self) -> str:
        return connection_string(self.port, self.service)

    def log(self) -> str:
        try:
            return (self.workdir / "azurite.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_azurite(folder: Path | None = None, service: str = "table") -> AzuriteServer:
    """Install if needed, start the Table (or Blob) service on a free loopback port, wait until
    ready."""
    if service not in ("table", "blob"):
        raise ValueError(f"unknown Azurite service {service!r}")
    node = _tool("node")
    script = install(folder).parents[1] / service / "main.js"
    problem = ""
    for _ in range(3):  # a free port can be taken between our probe and the server's bind
        port = _free_port()
        workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
        log = open(workdir / "azurite.log", "wb")  # noqa: SIM115 - the server writes to it
        command = [
            node,
            str(script),
            f"--{service}Host",
            "127.0.0.1",
            f"--{service}Port",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ]
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        server = AzuriteServer(process, port, workdir, command, service=service)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _accepts(port):
                return server
            time.sleep(0.05)
        problem = server.log()
        server.stop()
    raise AzuriteUnavailable(f"Azurite did not start on 127.0.0.1; its output:\n{problem}")


@contextlib.contextmanager
def running_azurite(folder: Path | None = None) -> Iterator[AzuriteServer]:
    server = start_azurite(folder)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """One Azurite Table service for the test session; fails (never skips) without Node."""
    try:
        server = start_azurite()
    except AzuriteUnavailable as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(azurite_server: AzuriteServer) -> str:
    """The connection string of the session's Azurite Table service."""
    return azurite_server.connection_string


@pytest.fixture(scope="session")
def azurite_blob() -> Iterator[str]:
    """The connection string of an Azurite Blob service for the session; fails without Node."""
    try:
        server = start_azurite(service="blob")
    except AzuriteUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.connection_string
    finally:
        server.stop()
