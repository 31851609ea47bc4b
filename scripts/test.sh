#!/usr/bin/env bash
# The test command: set up, then lint, type-check and run the whole test suite. Prints how long
# each phase took and pytest's 25 slowest steps (the CI budget is tracked from these).
set -euo pipefail
cd "$(dirname "$0")/.."
phase() { echo "== $1 done in $((SECONDS - start))s"; start=$SECONDS; }
start=$SECONDS
bash scripts/setup.sh;                                      phase "set-up"
echo "== ruff check";          .venv/bin/ruff check .;         phase "ruff check"
echo "== ruff format --check"; .venv/bin/ruff format --check .; phase "ruff format"
echo "== mypy --strict";       .venv/bin/mypy .;               phase "mypy"
echo "== pytest";              .venv/bin/python -m pytest --durations=25 "$@"; phase "pytest"
echo "== total ${SECONDS}s"
