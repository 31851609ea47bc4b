#!/usr/bin/env bash
# The benchmarks: set up (plus the benchmark-only dependencies: Evidently, matplotlib,
# pyinstrument), then `python -m benchmarks` with any arguments given (e.g. --quick, intake).
# Prints markdown tables, writes benchmarks/results.json and docs/img/benchmark-scaling.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp=.venv/.autopilot-bench-installed
want=$(sha256sum benchmarks/requirements.txt | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bench: installing benchmarks/requirements.txt into .venv"
  .venv/bin/python -m pip install --quiet -r benchmarks/requirements.txt
  echo "$want" > "$stamp"
fi
export DO_NOT_TRACK=1 ITERATIVE_DO_NOT_TRACK=1  # Evidently's usage telemetry off
exec .venv/bin/python -m benchmarks "$@"
