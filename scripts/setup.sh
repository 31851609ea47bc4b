#!/usr/bin/env bash
# Create .venv and install the project with its dev/test dependencies. Idempotent: re-installs
# only when a requirements file or pyproject.toml changed. Needs Python 3.11 (python3.11 or python3).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)'; then
  echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 2
fi
# Azurite (the Table Storage emulator, npm) for the Table Storage tests: installed into .azurite/
# once, in the background while pip works (standard library only); the tests start and stop it
# on a loopback port. Without npm the Table Storage tests fail saying why.
azurite_pid=
if command -v npm >/dev/null; then
  "$PYTHON" tests/integration/azurite_install.py &
  azurite_pid=$!
  trap 'wait "$azurite_pid" 2>/dev/null || true' EXIT  # never left running if set-up fails
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing Debian's chromium for the browser tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
stamp=.venv/.autopilot-installed
want=$(cat requirements.txt requirements-dev.txt requirements-worker.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing dependencies into .venv (first run takes a minute)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  # The Functions worker library, for the worker-indexing test (see requirements-worker.txt).
  .venv/bin/python -m pip install --quiet --no-deps --ignore-requires-python \
    -r requirements-worker.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
# Azurite has been installing meanwhile (started above); its failure does not fail set-up.
if [ -n "$azurite_pid" ]; then
  wait "$azurite_pid" || true
fi
