"""Cold start: a fresh interpreter imports ``function_app`` and indexes its functions.

Each run is a new ``python -c`` process (what a new Functions worker does before its first
invocation). The child times ``import function_app`` + ``app.get_functions()`` itself and
reports its peak RSS; the parent also times the whole process (interpreter start included).

Peak RSS is the child's ``VmHWM`` (/proc/self/status): Linux carries ``ru_maxrss`` across
``exec``, so ``getrusage(RUSAGE_SELF).ru_maxrss`` in a child reports at least the *parent's*
RSS at fork time (about 100 MiB once this process has imported numpy). Both are recorded.

The baseline, measured in the same run and interleaved with it, imports ``azure.ai.ml``
eagerly first, as an app that builds its ``MLClient`` at import would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import ROOT, summary

RUNS = 7
TARGET_MEDIAN_S = 0.25
TARGET_RATIO = 5.0

_CHILD = """
import json, resource, sys, time
def hwm():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
{eager}
import function_app
names = [f.get_function_name() for f in function_app.app.get_functions()]
seconds = time.perf_counter() - t0
print(json.dumps({{
    "seconds": seconds,
    "functions": len(names),
    "modules": len(sys.modules),
    "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "vm_hwm_mb": hwm(),
    "azure_ai_ml_loaded": "azure.ai.ml" in sys.modules,
}}))
"""

VARIANTS = {
    "function_app": _CHILD.format(eager=""),
    "eager azure.ai.ml (baseline)": _CHILD.format(eager="import azure.ai.ml"),
}


def _one(code: str) -> dict[str, Any]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def run(runs: int = RUNS, *, warmup: bool = True) -> dict[str, Any]:
    """Median/p90 import+index time and peak RSS of the app and of the eager baseline."""
    if warmup:  # compile .pyc files and warm the page cache; not counted
        for code in VARIANTS.values():
            _one(code)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for _ in range(runs):  # interleaved, so background load hits both alike
        for name, code in VARIANTS.items():
            samples[name].append(_one(code))
    variants: dict[str, Any] = {}
    for name, results in samples.items():
        variants[name] = {
            "import_and_index_s": summary([r["seconds"] for r in results]),
            "process_s": summary([r["process_seconds"] for r in results]),
            "peak_rss_mb": summary([r["vm_hwm_mb"] for r in results]),
            "ru_maxrss_mb": summary([r["ru_maxrss_mb"] for r in results]),
            "modules": results[-1]["modules"],
            "functions": results[-1]["functions"],
            "azure_ai_ml_loaded": results[-1]["azure_ai_ml_loaded"],
        }
    app = variants["function_app"]["import_and_index_s"]["median"]
    eager = variants["eager azure.ai.ml (baseline)"]["import_and_index_s"]["median"]
    ratio = eager / app if app > 0 else float("inf")
    return {
        "runs": runs,
        "variants": variants,
        "ratio_eager_over_app": ratio,
        "targets": {"median_s": TARGET_MEDIAN_S, "ratio": TARGET_RATIO},
        "meets_targets": app <= TARGET_MEDIAN_S and ratio >= TARGET_RATIO,
    }
