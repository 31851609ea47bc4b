#!/usr/bin/env bash
# The test command: set up, then lint, type-check and run the whole test suite. Prints how long
# each phase took and pytest's 25 slowest steps (the CI budget is tracked from these).
# pytest runs on two workers (pytest-xdist; most of the slow tests wait on subprocesses and
# timers): a module's tests stay together on one worker (tests/conftest.py: worker_group);
# TEST_WORKERS=0 runs them in one process. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
phase() { echo "== $1 done in $((SECONDS - start))s"; start=$SECONDS; }
start=$SECONDS
bash scripts/setup.sh;                                      phase "set-up"
echo "== ruff check";          .venv/bin/ruff check .;         phase "ruff check"
echo "== ruff format --check"; .venv/bin/ruff format --check .; phase "ruff format"
echo "== mypy --strict";       .venv/bin/mypy .;               phase "mypy"
echo "== pytest";              .venv/bin/python -m pytest --durations=25 \
  -n "${TEST_WORKERS:-2}" --dist loadscope "$@"; phase "pytest"
echo "== total ${SECONDS}s"
