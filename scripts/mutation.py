"""Mutation testing of the decision modules: each module against the tests that exercise it.

Run through ``bash scripts/mutation.sh [MODULE...]`` (not part of CI). Each module is mutated
by mutmut in its own scratch copy under ``.mutation/`` (mutmut reads its settings from the
working directory), with forkserver isolation so the test fixture that indexes the worker's
functions once per process still sees a fresh process per mutant. Writes
``benchmarks/mutation.json`` and the survivors section of ``docs/mutation.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"
RESULTS = ROOT / "benchmarks" / "mutation.json"
DOC = ROOT / "docs" / "mutation.md"
EQUIVALENT = ROOT / "scripts" / "mutation_equivalent.txt"
PACKAGES = ["shared", "handlers", "composition", "functions", "autopilot", "embedded"]

# Each decision module and the tests that exercise it (spec tests first).
MODULES: dict[str, list[str]] = {
    "shared/gate.py": [
        "tests/unit/test_spec_gate.py",
        "tests/unit/test_non_finite_values.py",
        "tests/unit/test_gate.py",
    ],
    "shared/stats.py": [
        "tests/unit/test_spec_stats.py",
        "tests/unit/test_gate.py",
    ],
    "handlers/signals.py": [
        "tests/unit/test_spec_signals.py",
        "tests/unit/test_lifecycle.py",
        "tests/unit/test_messagebus.py",
    ],
    "handlers/rollout.py": [
        "tests/unit/test_spec_rollout_audit.py",
        "tests/unit/test_follow_up_races.py",
        "tests/unit/test_spec_rollout.py",
        "tests/unit/test_rollout.py",
        "tests/unit/test_rollout_sequential.py",
        "tests/unit/test_rollout_state.py",
        "tests/unit/test_lifecycle.py",
        # the estimated-performance guard's part in a step's verdict
        "tests/unit/test_performance.py::test_the_guard_passes_a_healthy_canary",
        "tests/unit/test_performance.py::test_the_guard_fails_a_worse_canary_with_the_estimate_as_evidence",
    ],
    "shared/normalise.py": [
        "tests/unit/test_spec_normalise.py",
        "tests/unit/test_normalise_pinned.py",
        "tests/unit/test_intake.py",
        # the property tests only check "a message or a bad event", for 15 s per mutant
        "--deselect",
        "tests/unit/test_intake.py::test_arbitrary_json_is_either_a_message_or_a_bad_event",
        "--deselect",
        "tests/unit/test_intake.py::test_arbitrary_alert_json_is_either_a_message_or_a_bad_event",
    ],
    "shared/audit_chain.py": [
        "tests/unit/test_spec_audit_chain.py",
        "tests/integration/test_sqlite_audit.py",
    ],
    "shared/sequential.py": [
        "tests/unit/test_spec_sequential.py",
        "tests/unit/test_sequential.py",
        "tests/unit/test_sequential_pinned.py",
    ],
    "shared/canary_judges.py": [
        "tests/unit/test_spec_sequential.py",
        "tests/unit/test_spec_rollout.py",
        "tests/unit/test_rollout_sequential.py",
        "tests/unit/test_canary_judges_pinned.py",
    ],
    "shared/estimation.py": [
        "tests/unit/test_spec_estimation.py",
        "tests/unit/test_estimation.py",
        "tests/unit/test_estimation_pinned.py",
    ],
    "shared/loss_estimation.py": [
        "tests/unit/test_spec_loss_estimation.py",
        "tests/unit/test_loss_estimation.py",
    ],
    "shared/estimated_performance.py": [
        "tests/unit/test_spec_estimated_performance.py",
        "tests/unit/test_performance.py",
        "tests/unit/test_estimated_performance_pinned.py",
    ],
    "shared/policy_estimate.py": [  # when an estimate is a signal (split from the policy)
        "tests/unit/test_spec_estimated_performance.py",
        "tests/unit/test_performance.py",
    ],
    "shared/lifecycle.py": [
        "tests/unit/test_spec_lifecycle.py",
        "tests/unit/test_lifecycle_pinned.py",
        "tests/unit/test_spec_signals.py",
        "tests/unit/test_lifecycle.py",
        "tests/embedded/test_cleanup.py",
    ],
    "shared/traffic.py": [
        "tests/unit/test_spec_traffic.py",
        "tests/unit/test_spec_rollout_audit.py",
        "tests/unit/test_spec_rollout.py",
        "tests/unit/test_rollout.py",
        "tests/unit/test_lifecycle.py",
    ],
    "shared/rollout_state.py": [
        "tests/unit/test_spec_rollout_state.py",
        "tests/unit/test_rollout_state.py",
        "tests/unit/test_rollout.py",
    ],
}

KILLED = {"killed", "timeout"}

# A pytest plugin loaded in mutmut's fork server and in every forked mutant run:
# - imports heavy and lazily imported modules once in the fork server, not again per mutant
#   (scipy.stats alone takes seconds to import and the decision modules import it lazily);
# - freezes the fork server's objects out of the garbage collector (gc.freeze) once it has
#   warmed up, so pytest's own gc.collect() calls at the end of every mutant run no longer walk
#   (and copy-on-write-touch) the whole inherited heap: about 40% of each mutant's CPU time;
# - runs a mutant's tests fastest first (by the durations mutmut measured in its stats run,
#   files kept together), so the usual kill by a quick test comes before the slow ones: -x
#   stops at the first failure. The same tests run; only their order changes.
PRELOAD = '''"""mutmut's fork server: preload, freeze the warmed heap, fastest tests first."""

import gc
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

for _name in (
    "numpy", "scipy.stats", "pydantic", "yaml", "shared.stats", "shared.gate",
    "shared.sequential", "shared.estimation", "shared.normalise", "shared.audit_chain",
    "handlers.signals", "handlers.rollout", "shared.canary_judges", "shared.rollout_state",
    "shared.loss_estimation", "shared.estimated_performance", "shared.lifecycle",
    "shared.policy_estimate",
):
    try:
        importlib.import_module(_name)
    except ImportError:
        pass


def _durations() -> dict[str, float]:
    try:
        return dict(json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"])
    except (OSError, ValueError, KeyError):
        return {}


def pytest_collection_modifyitems(items: list[Any]) -> None:
    known = _durations()
    if not known:
        return
    per_file: dict[str, float] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        per_file[path] = per_file.get(path, 0.0) + known.get(item.nodeid, 0.0)
    order = {id(item): n for n, item in enumerate(items)}
    items.sort(
        key=lambda i: (
            per_file[i.nodeid.split("::", 1)[0]],
            i.nodeid.split("::", 1)[0],
            known.get(i.nodeid, 0.0),
            order[id(i)],
        )
    )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    gc.collect()
    gc.freeze()
'''


@dataclass(frozen=True)
class Outcome:
    """One module's counts, its survivors (name -> changed lines) and the marked equivalents."""

    module: str
    counts: dict[str, int]
    survivors: dict[str, str]
    equivalent: dict[str, str]
    seconds: float  # wall time of the run
    cpu_seconds: float | None = None  # user + sys of mutmut and every process it waited for
    load: float | None = None  # the 1-minute load average at the end (other work on the box)

    @property
    def generated(self) -> int:
        return sum(self.counts.values())

    @property
    def unchecked(self) -> int:
        """Mutants a stopped run never got to (its score is then over the checked ones)."""
        return self.counts.get("not checked", 0)

    @property
    def score(self) -> float:
        caught = sum(self.counts.get(s, 0) for s in KILLED)
        base = self.generated - self.unchecked - len(self.equivalent)
        return 100.0 * caught / base if base else 100.0


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


def _slug(module: str) -> str:
    return module.replace("/", "__").removesuffix(".py")


def _prepare(module: str, tests: list[str]) -> Path:
    """A fresh scratch copy of the repository with mutmut's settings for ``module``."""
    work = SCRATCH / _slug(module)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files = _tracked_files()
    for name in files:
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    samples = ROOT.parent / "shared" / "samples"  # the public sample payloads tests read
    if samples.is_dir():
        shutil.copytree(samples, work / "shared" / "samples")
    (work / "mutation_preload.py").write_text(PRELOAD, encoding="utf-8")
    tops = sorted({name.split("/")[0] for name in files} | {"mutation_preload.py"})
    sources = [p for p in PACKAGES if p in tops] + ["function_app.py"]
    also = [t for t in tops if t not in sources and t not in {"tests", "pyproject.toml"}]
    settings = {
        "source_paths": sources,
        "only_mutate": [module],
        "also_copy": also,
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "mutation_preload"],
        "process_isolation": "forkserver",
        "use_git_change_detection": False,
        "timeout_multiplier": 10.0,
        "timeout_constant": 5.0,
    }
    lines = ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    with (work / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return work


def _equivalents() -> list[tuple[str, str, str]]:
    """Marked equivalent mutants from scripts/mutation_equivalent.txt, one per line:
    ``function<TAB>changed text<TAB>why``; a survivor of ``function`` (its mangled name, e.g.
    ``shared.stats.x__auc``) whose change contains the text is equivalent."""
    marks: list[tuple[str, str, str]] = []
    if EQUIVALENT.exists():
        for line in EQUIVALENT.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                function, text, why = (part.strip() for part in line.split("\t", 2))
                marks.append((function, text, why))
    return marks


def _equivalent(name: str, change: str, marks: list[tuple[str, str, str]]) -> str | None:
    for function, text, why in marks:
        if name.startswith(function + "__mutmut_") and text in change:
            return why
    return None


def _describe(names: list[str]) -> dict[str, str]:
    """The changed lines of each named mutant (run inside a scratch copy)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    out: dict[str, str] = {}
    for name in names:
        diff = get_diff_for_mutant(name)
        changed = [
            line
            for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        out[name] = " / ".join(" ".join(line.split()) for line in changed)
    return out


def _run_module(module: str, children: int) -> Outcome:
    """Mutate ``module`` in a fresh scratch copy, then read the outcome."""
    tests = [
        t
        for t in MODULES[module]
        if t.startswith("-") or "::" in t or (ROOT / t).exists() or not t.startswith("tests/")
    ]
    started = time.monotonic()
    work = _prepare(module, tests)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    mutmut = ROOT / ".venv" / "bin" / "mutmut"
    log = work / "mutmut.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(mutmut), "run", "--max-children", str(children)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        # wait4: this run's own CPU (mutmut and every process it waited for), even while
        # another module runs beside it
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"mutmut failed on {module} (exit {code}); log: {log}")
    timing = {
        "seconds": round(time.monotonic() - started),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime),
        "load": round(os.getloadavg()[0], 1),
    }
    (work / "timing.json").write_text(json.dumps(timing) + "\n")
    return _outcome(module)


def _outcome(module: str) -> Outcome:
    """Read the results of the last run of ``module`` from its scratch copy."""
    from mutmut.stats import status_by_exit_code

    work = SCRATCH / _slug(module)
    meta_path = work / "mutants" / (module + ".meta")
    timing: dict[str, float] = {}
    if (work / "timing.json").exists():
        timing = json.loads((work / "timing.json").read_text())
    elif (work / "seconds.txt").exists():  # a run by an older copy of this script
        timing = {"seconds": float((work / "seconds.txt").read_text())}
    else:  # older still: from the scratch copy's file times
        seconds = meta_path.stat().st_mtime - (work / "pyproject.toml").stat().st_mtime
        timing = {"seconds": seconds}
    meta = json.loads(meta_path.read_text())
    counts: dict[str, int] = {}
    surviving: list[str] = []
    for name, code in sorted(meta["exit_code_by_key"].items()):
        status = status_by_exit_code[code]
        counts[status] = counts.get(status, 0) + 1
        if status not in KILLED and status != "not checked":
            surviving.append(name)
    described = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--describe", *surviving],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    survivors = json.loads(described)
    marks = _equivalents()
    equivalent = {
        name: why
        for name, change in survivors.items()
        if (why := _equivalent(name, change, marks)) is not None
    }
    return Outcome(
        module,
        counts,
        survivors,
        equivalent,
        timing["seconds"],
        timing.get("cpu_seconds"),
        timing.get("load"),
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(outcomes: list[Outcome]) -> str:
    head = ["module", "generated", "killed", "survived", "timeout", "no tests", "equivalent"]
    head.append("not checked")
    lines = [_row([*head, "score", "seconds", "cpu s", "load"]), _row(["---"] * (len(head) + 4))]
    for o in outcomes:
        c = o.counts
        lines.append(
            _row(
                [
                    o.module,
                    str(o.generated),
                    str(c.get("killed", 0)),
                    str(c.get("survived", 0)),
                    str(c.get("timeout", 0)),
                    str(c.get("no tests", 0)),
                    str(len(o.equivalent)),
                    str(o.unchecked),
                    f"{o.score:.1f}%",
                    f"{o.seconds:.0f}",
                    "" if o.cpu_seconds is None else f"{o.cpu_seconds:.0f}",
                    "" if o.load is None else f"{o.load:.1f}",
                ]
            )
        )
    return "\n".join(lines)


def _section(o: Outcome) -> str:
    lines = [f"<!-- module: {o.module} -->", f"### {o.module}", ""]
    lines.append(
        f"{o.generated} mutants, score {o.score:.1f}% "
        f"({len(o.survivors) - len(o.equivalent)} surviving, {len(o.equivalent)} equivalent)."
    )
    if o.unchecked:
        lines.append(f"Partial run: {o.unchecked} mutants not checked; the score is over the rest.")
    lines.append("")
    for name, change in o.survivors.items():
        short = name.split(".", 2)[-1] if "." in name else name
        if name in o.equivalent:
            lines.append(f"- equivalent `{short}`: `{change}` — {o.equivalent[name]}")
        else:
            lines.append(f"- survived `{short}`: `{change}`")
    lines.append(f"<!-- end: {o.module} -->")
    return "\n".join(lines)


HEADER = """# Mutation testing

`bash scripts/mutation.sh [MODULE...]` (not part of CI) runs mutmut 3.8.1 over each decision
module, against the tests that exercise it (the list is `MODULES` in `scripts/mutation.py`),
each in its own scratch copy under `.mutation/` with forkserver isolation. `--report`
re-reads the last run without mutating. Two modules run side by side (`--jobs`, default 2),
each with one mutant worker (`--children`, default 1), longest first by their last recorded
CPU seconds: both cores stay busy through each run's serial set-up.
Score = (killed + timeout) / (generated - equivalent). A mutant no test covers ("no tests")
counts as a survivor.

Equivalent mutants (no input can tell them apart from the code) are marked in
`scripts/mutation_equivalent.txt` with their reason, listed below as such and left out of the
score. Every other survivor is listed as `survived`.

Run time. Each module's wall time, the CPU seconds of the whole process tree (mutmut, its
fork server and every mutant run) and the 1-minute load average at its end are recorded
below and in `benchmarks/mutation.json`. Wall times taken while other work shares the
machine are inflated (see the load), CPU seconds less so (still by up to about half: the
signals module took 94 CPU s at load 8, and 141 at load 15 with 20 more tests); on an
idle 2-core machine a whole run takes at most about the sum of the CPU seconds / 2. A
module without figures has not been run by this version of the script. Most of a mutant's cost is
pytest starting up in a forked process, not the tests; the fork server therefore preloads the
heavy modules, freezes its warmed heap out of the garbage collector (pytest calls
`gc.collect()` at the end of every session, which otherwise walks and copies the whole
inherited heap: about 40% of each mutant's CPU), and runs each mutant's tests fastest first
(`-x` stops at the first failure). None of this changes which tests run or what they assert.

Measured on 2026-11-30 with 5-7 other sessions on the machine (load 10-16, so no idle figure
could be taken): `shared/normalise.py` by the old and the new script started together, side by
side, used the same CPU (73 s each) in which the old one checked 147 mutants and the new one
258; over the last 80 s, 0.34 against 0.21 CPU seconds per mutant (-38%). A forked pytest run
of one fast test in the warmed fork server: 0.17 CPU s before, 0.10 s with the frozen heap.
The two modules with the slowest tests, run side by side at load 5-9: `shared/gate.py`
180 CPU s and `shared/stats.py` 68 CPU s (their last idle wall times, two workers each, were
254 s and 206 s). Taking CPU seconds / 2 for the modules run by this script and the old idle
wall times scaled by 0.62 for the others (rollout, canary_judges, audit_chain, normalise,
sequential), a full run of the 13 modules on an idle machine is estimated at 13-17 minutes.

Generated by `scripts/mutation.py`; the figures are also in `benchmarks/mutation.json`.
A module of `MODULES` missing from the table has not been measured yet; "not checked" counts
the mutants of a run that was stopped before it got to them.
"""


def _summary(results: dict[str, dict[str, float]]) -> str:
    head = ["module", "score", "survived", "equivalent", "not checked", "wall s", "cpu s", "load"]
    lines = [_row(head), _row(["---"] * len(head))]
    for module, r in sorted(results.items()):
        cells = [module, f"{r['score']:.1f}%", str(r["survived"]), str(r["equivalent"])]
        cells.append(str(r.get("not_checked", 0)))
        cells += [str(r.get(key, "")) for key in ("seconds", "cpu_seconds", "load")]
        lines.append(_row(cells))
    return "\n".join(lines)


def _write(outcomes: list[Outcome]) -> None:
    """Merge ``outcomes`` into benchmarks/mutation.json and docs/mutation.md (other modules'
    entries and sections are kept as the last run left them)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for o in outcomes:
        results[o.module] = {
            "score": round(o.score, 1),
            "survived": len(o.survivors) - len(o.equivalent),
            "equivalent": len(o.equivalent),
        }
        if o.unchecked:  # a stopped run: the score is over the mutants it checked
            results[o.module]["not_checked"] = o.unchecked
        results[o.module]["seconds"] = round(o.seconds)
        if o.cpu_seconds is not None:
            results[o.module]["cpu_seconds"] = round(o.cpu_seconds)
        if o.load is not None:
            results[o.module]["load"] = o.load
    results = dict(sorted(results.items()))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    sections: dict[str, str] = {}
    for module in results:
        start, end = f"<!-- module: {module} -->", f"<!-- end: {module} -->"
        if start in old and end in old:
            sections[module] = start + old.split(start, 1)[1].split(end, 1)[0] + end
    for o in outcomes:
        sections[o.module] = _section(o)
    body = "\n\n".join(sections[m] for m in results if m in sections)
    summary = _summary(results)
    DOC.write_text(f"{HEADER}\n{summary}\n\n## Survivors\n\n{body}\n", encoding="utf-8")


def _longest_first(modules: list[str]) -> list[str]:
    """Modules by their last recorded CPU seconds, longest first (unknown ones first of all), so
    the shortest run last and the two job slots finish close together."""
    last = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

    def cost(module: str) -> float:
        return float(last.get(module, {}).get("cpu_seconds", float("inf")))

    return sorted(modules, key=cost, reverse=True)


def _run_all(modules: list[str], jobs: int, children: int) -> Iterator[Outcome]:
    """Mutate ``modules``, ``jobs`` at a time, yielding each outcome as it is known. Two
    modules side by side, one mutant worker each, keep both cores busy through each run's
    serial set-up (generating mutants, mutmut's stats and clean runs)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running = [pool.submit(_run_module, module, children) for module in modules]
        try:
            for done in as_completed(running):
                yield done.result()
        except BaseException:
            for future in running:  # a failed run stops the modules not yet started
                future.cancel()
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all)")
    parser.add_argument(
        "--jobs", type=int, default=2, help="modules mutated at the same time (default 2)"
    )
    parser.add_argument(
        "--children", type=int, default=1, help="parallel mutant workers per module (default 1)"
    )
    parser.add_argument(
        "--report", action="store_true", help="report the last run's results without mutating"
    )
    parser.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.describe:
        print(json.dumps(_describe(args.modules)))
        return
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        raise SystemExit(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    started = time.monotonic()
    outcomes = []
    runs: Iterable[Outcome]
    if args.report:
        runs = [_outcome(module) for module in modules]
    else:
        runs = _run_all(_longest_first(modules), args.jobs, args.children)
    for outcome in runs:
        print(f"{outcome.module}: {outcome.score:.1f}% in {outcome.seconds:.0f} s", flush=True)
        outcomes.append(outcome)
        _write([outcome])  # each module's result is kept as soon as it is known
    table = _table(outcomes)
    print(table)
    cpu = sum(o.cpu_seconds or 0.0 for o in outcomes)
    print(f"wall time {time.monotonic() - started:.0f} s, cpu {cpu:.0f} s")


if __name__ == "__main__":
    main()
