#!/usr/bin/env bash
# The main job: set up, then run the service on the embedded default with the example policy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/autopilot serve --policy examples/policy.yaml "$@"
