#!/usr/bin/env bash
# The main job: set up, then run the closed loop on the embedded default (about 70 seconds).
# Extra arguments go to `autopilot demo`, e.g. --scenario worse | unhealthy, --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/autopilot demo "$@"
