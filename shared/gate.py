"""The evaluation gate: may the challenger replace the champion?

Pure decision logic over the evaluation document the training job wrote, in which champion
and challenger were scored on the same held-out recent data::

    {"schema": "autopilot.evaluation/v1", "model": "...", "n": 1200,
     "champion": {"version": "3", "metrics": {"auc": 0.81}} | null,
     "challenger": {"metrics": {"auc": 0.86}},
     "examples": {...}}            # per-example results, optional here

The decision lists every rule with its observed value, threshold and pass/fail, so a reviewer
can read why without reading code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import PermanentError

if TYPE_CHECKING:
    from shared.policy import Gate, SliceCheck

EVALUATION_SCHEMA = "autopilot.evaluation/v1"


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    metric: str | None
    observed: float | None
    threshold: float | None
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class GateDecision:
    passed: bool
    has_champion: bool
    champion_version: str | None
    summary: str
    rules: tuple[RuleResult, ...]
    bootstrap: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules"] = [asdict(r) for r in self.rules]
        return data


def change_words(gain: float, unit: str = "") -> str:
    """A signed gain in words, so its direction cannot be misread: ``better by 0.012``,
    ``worse by 0.1511``, ``unchanged``; ``unit`` (e.g. ``relative``) qualifies the amount."""
    qualifier = f" ({unit})" if unit and unit != "absolute" else ""
    if gain > 0:
        return f"better by {gain:.4g}{qualifier}"
    if gain < 0:
        return f"worse by {-gain:.4g}{qualifier}"
    return "unchanged"


def _metrics(doc: dict[str, Any], side: str) -> dict[str, float] | None:
    block = doc.get(side)
    if block is None:
        return None
    if not isinstance(block, dict) or not isinstance(block.get("metrics"), dict):
        raise PermanentError(f"evaluation: '{side}.metrics' must be an object")
    out: dict[str, float] = {}
    for name, value in block["metrics"].items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise PermanentError(f"evaluation: {side} metric {name!r} is not a finite number")
        out[str(name)] = float(value)
    return out


def _metric(metrics: dict[str, float], name: str, side: str) -> float:
    if name not in metrics:
        raise PermanentError(f"evaluation: {side} has no metric {name!r} required by the gate")
    return metrics[name]


@dataclass(frozen=True, slots=True)
class _Document:
    """What the gate reads from the evaluation document."""

    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    n: int | None


def _read(doc: dict[str, Any]) -> _Document:
    if not isinstance(doc, dict):
        raise PermanentError("evaluation document must be a JSON object")
    if doc.get("schema") not in (None, EVALUATION_SCHEMA):
        raise PermanentError(f"evaluation schema {doc.get('schema')!r} is not {EVALUATION_SCHEMA}")
    challenger = _metrics(doc, "challenger")
    if challenger is None:
        raise PermanentError("evaluation has no 'challenger' block")
    champion = _metrics(doc, "champion")
    champion_block = doc.get("champion") or {}
    version = champion_block.get("version") if isinstance(champion_block, dict) else None
    if version is not None and (isinstance(version, bool) or not isinstance(version, str | int)):
        raise PermanentError("evaluation: 'champion.version' must be a string")
    champion_version = None if version is None else str(version)
    return _Document(challenger, champion, champion_version, _count(doc.get("n")))


def _count(n_raw: Any) -> int | None:
    """The document's example count ``n`` (optional); a count that is not one is refused."""
    if n_raw is None or isinstance(n_raw, bool) or not isinstance(n_raw, int | float):
        return None
    if not math.isfinite(n_raw) or n_raw < 0:
        raise PermanentError(f"evaluation: 'n' must be a count of examples, not {n_raw!r}")
    return int(n_raw)


def decide(doc: dict[str, Any], gate: Gate) -> GateDecision:
    """Apply every rule of ``gate`` to the evaluation ``doc``; PermanentError if malformed."""
    read = _read(doc)
    rules = [*_sample_rules(gate, read.n), *_floor_rules(gate, read.challenger)]
    evidence: dict[str, Any] = {}
    if read.champion is not None:
        sign = 1.0 if gate.direction == "maximize" else -1.0
        rules.append(_improvement_rule(gate, read.challenger, read.champion, sign))
        rules += _guardrail_rules(gate, read.challenger, read.champion)
        rules += _per_example_rules(doc, gate, read.n, sign, evidence)
    passed = all(r.passed for r in rules)
    return GateDecision(
        passed,
        read.champion is not None,
        read.champion_version,
        _summary(read, rules, passed),
        tuple(rules),
        evidence.get("bootstrap"),
    )


def _summary(read: _Document, rules: list[RuleResult], passed: bool) -> str:
    failed = [r.rule + (f"({r.metric})" if r.metric else "") for r in rules if not r.passed]
    if read.champion is None:
        lead = "no champion yet: only floors and sample size apply"
    else:
        lead = f"challenger vs champion v{read.champion_version}"
    return f"{lead}; " + ("every rule passed" if passed else "failed: " + ", ".join(failed))


def _sample_rules(gate: Gate, n: int | None) -> list[RuleResult]:
    if not gate.min_samples:
        return []
    return [
        RuleResult(
            "min_samples",
            None,
            float(n) if n is not None else None,
            float(gate.min_samples),
            n is not None and n >= gate.min_samples,
            f"{n} evaluation examples; at least {gate.min_samples} required",
        )
    ]


def _floor_rules(gate: Gate, challenger: dict[str, float]) -> list[RuleResult]:
    """Floors (``min``) and ceilings (``max``) on the challenger's own metrics."""
    rules: list[RuleResult] = []
    for floor in gate.floors:
        value = _metric(challenger, floor.metric, "challenger")
        bounds = (("floor", floor.min, ">="), ("ceiling", floor.max, "<="))
        for rule, limit, op in bounds:
            if limit is None:
                continue
            ok = value >= limit if op == ">=" else value <= limit
            detail = f"challenger {floor.metric} {value:.4g} must be {op} {limit:g}"
            rules.append(RuleResult(rule, floor.metric, value, limit, ok, detail))
    return rules


def _improvement_rule(
    gate: Gate, challenger: dict[str, float], champion: dict[str, float], sign: float
) -> RuleResult:
    """The primary metric must be better than the champion's by ``min_improvement``."""
    new = _metric(challenger, gate.primary_metric, "challenger")
    old = _metric(champion, gate.primary_metric, "champion")
    gain = (new - old) * sign
    if gate.improvement == "relative":
        observed = gain / abs(old) if old else math.inf if gain > 0 else 0.0
        unit = "relative"
    else:
        observed = gain
        unit = "absolute"
    return RuleResult(
        "improvement",
        gate.primary_metric,
        observed,
        gate.min_improvement,
        gain > 0 and _at_least(observed, gate.min_improvement),
        f"{gate.primary_metric} {old:.4g} -> {new:.4g} ({gate.direction}): "
        f"{change_words(observed, unit)}; must be better by at least "
        f"{gate.min_improvement:g}{'' if unit == 'absolute' else ' (' + unit + ')'}",
    )


def _at_least(observed: float, minimum: float) -> bool:
    """``observed >= minimum``, a difference equal to its bound as written included
    (0.85 - 0.80 is 0.04999999999999993 in binary floats): minimum gains, tolerances."""
    return observed >= minimum or math.isclose(observed, minimum, rel_tol=1e-9, abs_tol=1e-12)


def _guardrail_rules(
    gate: Gate, challenger: dict[str, float], champion: dict[str, float]
) -> list[RuleResult]:
    """Other metrics may be worse than the champion's by at most their tolerance."""
    rules: list[RuleResult] = []
    for guard in gate.guardrails:
        g_sign = 1.0 if guard.direction == "maximize" else -1.0
        g_new = _metric(challenger, guard.metric, "challenger")
        g_old = _metric(champion, guard.metric, "champion")
        regression = (g_old - g_new) * g_sign
        rules.append(
            RuleResult(
                "guardrail",
                guard.metric,
                regression,
                guard.tolerance,
                _at_least(guard.tolerance, regression),
                f"{guard.metric} {g_old:.4g} -> {g_new:.4g}: {change_words(-regression)}; "
                f"may be worse by at most {guard.tolerance:g}",
            )
        )
    return rules


def _examples(doc: dict[str, Any], n: int | None) -> dict[str, Any] | None:
    examples = doc.get("examples")
    if examples is None:
        return None
    if not isinstance(examples, dict):
        raise PermanentError("evaluation: 'examples' must be an object")
    for key in ("label", "challenger_score", "champion_score"):
        values = examples.get(key)
        if not isinstance(values, list) or (n is not None and len(values) != n):
            raise PermanentError(f"evaluation: examples.{key} must be a list of n={n} numbers")
    return examples


def _per_example_rules(
    doc: dict[str, Any], gate: Gate, n: int | None, sign: float, evidence: dict[str, Any]
) -> list[RuleResult]:
    """Confidence (paired bootstrap) and slice rules: they need per-example results."""
    if gate.confidence is None and not gate.slices:
        return []
    found = _scored_examples(doc, gate, n)
    if isinstance(found, RuleResult):
        return [found]
    rules: list[RuleResult] = []
    if gate.confidence is not None:
        rules.append(_confidence_rule(gate, found, sign, evidence))
    for check in gate.slices:
        rules += _slice_rules(check, gate.primary_metric, found, sign)
    return rules


def _unusable(metric: str, detail: str) -> RuleResult:
    return RuleResult("per_example", metric, None, None, False, detail)


@dataclass(frozen=True, slots=True)
class _Scored:
    """The per-example results as arrays: labels, challenger and champion scores."""

    examples: dict[str, Any]
    labels: Any  # numpy arrays (numpy stays out of the module's import)
    new: Any
    old: Any


def _scored_examples(doc: dict[str, Any], gate: Gate, n: int | None) -> _Scored | RuleResult:
    """The examples as arrays, or the failed rule saying why they cannot be used."""
    examples = _examples(doc, n)
    metric_name = gate.primary_metric
    if examples is None:
        return _unusable(
            metric_name,
            "the policy asks for confidence or slice checks, but the evaluation "
            "has no per-example results ('examples')",
        )
    import numpy as np

    from shared import stats

    if metric_name not in stats.METRICS:
        return _unusable(
            metric_name,
            f"{metric_name!r} cannot be computed from per-example results; "
            f"known: {', '.join(sorted(stats.METRICS))}",
        )
    try:
        labels = np.asarray(examples["label"], dtype=np.float64)
        new = np.asarray(examples["challenger_score"], dtype=np.float64)
        old = np.asarray(examples["champion_score"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"evaluation: per-example results must be numbers: {exc}") from exc
    if not all(np.isfinite(values).all() for values in (labels, new, old)):
        # null becomes NaN here, and a NaN row would silently drop every resample drawing it
        raise PermanentError("evaluation: per-example results must be numbers: null or not finite")
    return _Scored(examples, labels, new, old)


def _confidence_rule(
    gate: Gate, scored: _Scored, sign: float, evidence: dict[str, Any]
) -> RuleResult:
    """The paired-bootstrap interval of the gain must exclude zero (kept in ``evidence``)."""
    from shared import stats

    assert gate.confidence is not None
    metric_name = gate.primary_metric
    boot = stats.paired_bootstrap(
        metric_name,
        scored.labels,
        scored.new,
        scored.old,
        sign=sign,
        level=gate.confidence,
        samples=gate.bootstrap_samples,
        seed=gate.seed,
    )
    evidence["bootstrap"] = {
        "metric": metric_name,
        "estimate": boot.estimate,
        "low": boot.low,
        "high": boot.high,
        "level": boot.level,
        "samples": boot.samples,
        "seed": boot.seed,
        "histogram": {"edges": list(boot.histogram[0]), "counts": list(boot.histogram[1])},
    }
    return RuleResult(
        "confidence",
        metric_name,
        boot.low,
        0.0,
        boot.low > 0,
        f"{boot.level:.0%} paired bootstrap CI of the {metric_name} gain "
        f"[{boot.low:+.4g}, {boot.high:+.4g}] ({boot.samples} resamples, seed {boot.seed}) "
        "must exclude zero",
    )


def _slice_rules(
    check: SliceCheck, metric_name: str, scored: _Scored, sign: float
) -> list[RuleResult]:
    """Each large enough value of a segment column may be worse by at most the tolerance."""
    import numpy as np

    from shared import stats

    segments = scored.examples.get("segments") or {}
    column = segments.get(check.column) if isinstance(segments, dict) else None
    labels, new, old = scored.labels, scored.new, scored.old
    if not isinstance(column, list) or len(column) != len(labels):
        detail = f"segment column {check.column!r} missing from examples"
        return [RuleResult("slice", metric_name, None, None, False, detail)]
    rules: list[RuleResult] = []
    values = np.asarray([str(v) for v in column])
    for value in sorted(set(values.tolist())):
        mask = values == value
        size = int(mask.sum())
        if size < check.min_samples:
            continue
        gain = sign * (
            stats.metric(metric_name, labels[mask], new[mask])
            - stats.metric(metric_name, labels[mask], old[mask])
        )
        if not math.isfinite(gain):
            continue  # e.g. AUC of a one-class slice
        rules.append(
            RuleResult(
                "slice",
                metric_name,
                -gain,
                check.tolerance,
                _at_least(check.tolerance, -gain),
                f"{check.column}={value} (n={size}): {metric_name} {change_words(gain)}; "
                f"may be worse by at most {check.tolerance:g}",
            )
        )
    return rules
