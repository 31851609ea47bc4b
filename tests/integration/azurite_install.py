"""Install the pinned Azurite (the Azure Storage emulator, npm) into ``.azurite/``: standard
library only, so ``scripts/setup.sh`` can run it with any Python 3.11 while pip installs the
venv (``python tests/integration/azurite_install.py``). ``tests/integration/azurite.py`` starts
the servers and calls :func:`install` itself on first use.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# 3.36+ need Node >= 21/22; 3.35.0 is the newest release for Node 20 (what these machines have).
AZURITE_VERSION = "3.35.0"
ROOT = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 300.0


class AzuriteUnavailable(RuntimeError):
    """Azurite could not be installed or started; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("AUTOPILOT_AZURITE_DIR") or ROOT / ".azurite")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AzuriteUnavailable(
            f"the Table Storage tests need Azurite, which needs Node.js and npm: `{name}` is not "
            "on PATH (install Node.js >= 18 with npm, e.g. `apt-get install nodejs npm`)"
        )
    return path


def _installed_version(folder: Path) -> str | None:
    manifest = folder / "node_modules" / "azurite" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install(folder: Path | None = None) -> Path:
    """Install the pinned Azurite into ``folder`` unless it is there; return its table script."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".gitignore").write_text("# created by tests/integration/azurite.py\n*\n")
    script = folder / "node_modules" / "azurite" / "dist" / "src" / "table" / "main.js"
    with open(folder / ".install.lock", "w") as lock:  # one installer at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(folder) == AZURITE_VERSION and script.exists():
            return script
        npm = _tool("npm")
        env = {**os.environ, "NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false"}
        command = [
            npm,
            "install",
            "--prefix",
            str(folder),
            "--no-audit",
            "--no-fund",
            "--omit=dev",
            "--loglevel=error",
            f"azurite@{AZURITE_VERSION}",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AzuriteUnavailable(
                f"`npm install azurite@{AZURITE_VERSION}` took over {INSTALL_TIMEOUT_S:.0f}s "
                "(is the npm registry reachable?)"
            ) from exc
        if done.returncode != 0 or not script.exists():
            raise AzuriteUnavailable(
                f"`npm install azurite@{AZURITE_VERSION}` into {folder} failed "
                f"(exit {done.returncode}):\n{done.stderr[-2000:]}"
            )
    return script


if __name__ == "__main__":
    try:
        install()
    except AzuriteUnavailable as exc:
        print(f"setup: could not install Azurite; the Table Storage tests will say why: {exc}")
        sys.exit(1)
