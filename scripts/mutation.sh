#!/usr/bin/env bash
# Mutation testing of the decision modules (not part of CI): bash scripts/mutation.sh [MODULE...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/mutation.py "$@"
