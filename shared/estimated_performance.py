"""Estimated performance (CBPE) as a retraining trigger and as a rollout guard.

The trigger runs on the reconcile timer: at most once per ``check_every`` per model (a dedup
key per interval in the state store, so concurrent timers check once), it estimates the
model's metric on the endpoint's last ``window`` of live traffic. A breach becomes a
``DriftSignalled`` and takes the same path as every other signal (dedup, cooldown,
confirmation, coalescing). The reference is the champion's evaluation: its labels and scores
calibrate the estimator, and the metric realised on them is the reference value.

The guard compares, during a canary step or the watch period, the candidate's estimate on its
own traffic with live's, each calibrated on the cycle's evaluation (candidate: the
challenger's scores; live: the champion's, on the same held-out rows).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import NotFound, PermanentError, TransientError
from shared.messagebus import Services
from shared.messages import DriftSignalled
from shared.model import Cycle, CycleState
from shared.ports import Claim

if TYPE_CHECKING:  # numpy and pydantic stay out of the function app's import (cold start)
    from shared.estimation import Calibrator, Estimate
    from shared.loss_estimation import LossEstimate, LossModel
    from shared.policy import EstimatedPerformance

log = logging.getLogger(__name__)
SOURCE = "estimated_performance"
SERIES = "estimate_vs_realised"  # marks the audit records the console plots
MAX_ROWS = 1_000_000  # newest rows read per window
MIN_LABELLED = 30  # labelled rows needed for a realised value
MAX_CYCLES_SEARCHED = 20  # newest cycles searched for the champion's evaluation


@dataclass(frozen=True, slots=True)
class Reference:
    fitted: Calibrator | LossModel  # CBPE's calibration or DLE's loss model
    value: float  # the metric realised on the reference set
    job: str


def _reference(
    examples: dict[str, Any], score_key: str, spec: EstimatedPerformance, job: str
) -> Reference | None:
    """Fit the estimator on an evaluation's per-example labels (targets) and scores
    (predictions); None when they are missing or cannot support an estimate."""
    from shared.estimation import EstimationError, fit_isotonic, realised
    from shared.loss_estimation import fit_loss_model, realised_loss

    labels, scores = examples.get("label"), examples.get(score_key)
    if not isinstance(labels, list) or not isinstance(scores, list) or not labels:
        return None
    try:
        fitted: Calibrator | LossModel
        if spec.is_loss:
            fitted = fit_loss_model(scores, labels)
            value = realised_loss(scores, labels)[spec.metric]
        else:
            fitted = fit_isotonic(scores, labels)
            value = realised(scores, labels, spec.decision_threshold)[spec.metric]
    except (EstimationError, TypeError) as exc:
        log.warning("evaluation of %s cannot fit an estimate: %s", job, exc)
        return None
    return Reference(fitted, value, job)


def _estimate(
    ref: Reference, scores: list[float], spec: EstimatedPerformance
) -> Estimate | LossEstimate:
    """CBPE or DLE, as the policy's metric asks."""
    from shared.loss_estimation import estimate_with

    return estimate_with(ref.fitted, scores, threshold=spec.decision_threshold)


def _evaluation(svc: Services, job: str) -> dict[str, Any]:
    """The job's evaluation document (a dict: both adapters raise PermanentError for any
    other JSON) and its per-example columns; {} when there is none."""
    try:
        document = svc.platform.get_evaluation(job)
    except (NotFound, PermanentError):
        return {}
    examples = document.get("examples")
    return {"document": document, "examples": examples if isinstance(examples, dict) else {}}


def champion_reference(svc: Services, model: str, spec: EstimatedPerformance) -> Reference | None:
    """The newest evaluation with per-example scores of the current champion."""
    endpoint = svc.policy.models[model].rollout
    champion = svc.platform.champion_version(model, endpoint.endpoint if endpoint else None)
    if champion is None:
        return None
    cycles = sorted(svc.store.list_cycles(model), key=lambda c: c.updated_at, reverse=True)
    for cycle in cycles[:MAX_CYCLES_SEARCHED]:  # each look is an artifact read on Azure
        if not cycle.job_name:
            continue
        found = _evaluation(svc, cycle.job_name)
        if not found:
            continue
        if cycle.state is CycleState.PROMOTED and cycle.candidate_version == champion:
            key = "challenger_score"
        elif str((found["document"].get("champion") or {}).get("version")) == champion:
            key = "champion_score"
        else:
            continue
        ref = _reference(found["examples"], key, spec, cycle.job_name)
        if ref is not None:
            return ref
    return None


def check_all(svc: Services) -> list[DriftSignalled]:
    """Reconcile hook: run the due estimated-performance checks; the breaches, as signals."""
    found: list[DriftSignalled] = []
    if svc.scored is None:
        return found
    for model, spec in svc.policy.models.items():
        est = spec.signals.estimated_performance
        if est is None or spec.rollout is None:
            continue
        try:
            signal = check(svc, model, est, spec.rollout.endpoint)
        except TransientError as exc:
            log.warning("estimated performance of %s deferred: %s", model, exc)
            continue
        if signal is not None:
            found.append(signal)
    return found


def check(
    svc: Services, model: str, spec: EstimatedPerformance, endpoint: str
) -> DriftSignalled | None:
    """One check if this ``check_every`` interval has not had one; a breach is a signal."""
    assert svc.scored is not None
    now = svc.now()
    interval = math.floor(now.timestamp() / spec.check_every)
    check_key = f"{SOURCE}|{model}|{interval}"
    claim = svc.store.claim_delivery(check_key, now, svc.settings.delivery_lease_s)
    if claim not in (Claim.NEW, Claim.RETRY):
        return None
    try:
        signal = _breach(svc, model, spec, endpoint, now, check_key)
    except BaseException:
        svc.store.release_delivery(check_key)
        raise
    svc.store.finish_delivery(check_key, now)
    return signal


def _breach(
    svc: Services,
    model: str,
    spec: EstimatedPerformance,
    endpoint: str,
    now: datetime,
    check_key: str,
) -> DriftSignalled | None:
    assert svc.scored is not None
    start = now - timedelta(seconds=spec.window)
    scores = svc.scored.scores(endpoint, None, start, now, MAX_ROWS)
    if len(scores) < spec.min_rows:
        log.info("%s: %d scored rows < %d for an estimate", model, len(scores), spec.min_rows)
        return None
    ref = champion_reference(svc, model, spec)
    if ref is None:
        log.info("%s: no champion evaluation with per-example scores to calibrate", model)
        return None
    result = _estimate(ref, scores, spec)
    value = result.metric(spec.metric).value
    truth = _realised(svc, model, spec, (start, now), result.metric(spec.metric), ref.value)
    reasons = spec.breaches(value, ref.value)
    if not reasons:
        log.info("%s: estimated %s %.4f within policy", model, spec.metric, value)
        return None
    interval = result.metric(spec.metric)
    evidence = {
        "metric": spec.metric,
        "estimate": round(value, 6),
        "interval": [round(interval.low, 6), round(interval.high, 6)],
        "level": result.level,
        "reference": round(ref.value, 6),
        "reference_job": ref.job,
        "rows": result.rows,
        "window": [start.isoformat(), now.isoformat()],
        "why": "; ".join(reasons),
        "estimation": result.evidence(),
        "realised": truth,
    }
    return DriftSignalled(model, SOURCE, f"estimated {spec.metric}", check_key, evidence)


def _realised(
    svc: Services,
    model: str,
    spec: EstimatedPerformance,
    window: tuple[datetime, datetime],
    interval: Any,
    reference: float,
) -> dict[str, Any] | None:
    """With a ``ground_truth`` source: the metric realised on the window's labelled rows,
    audited next to the estimate (so users can see how far to trust it; the console plots
    these records, marked ``series: estimate_vs_realised``, on the model's page)."""
    start, end = window
    estimated = float(interval.value)
    if not spec.ground_truth:
        return None
    from shared.ground_truth import GroundTruthReader

    reader = svc.labels or GroundTruthReader()
    try:
        labelled = reader.read(spec.ground_truth, start, end, binary=not spec.is_loss)
    except (OSError, TransientError) as exc:  # the estimate still counts; the next check retries
        log.warning("%s: ground truth %s unreadable: %s", model, spec.ground_truth, exc)
        return None
    one_class = not spec.is_loss and len(set(labelled.labels)) < 2
    if len(labelled.labels) < MIN_LABELLED or one_class:
        return {"rows": len(labelled.labels), "value": None}
    value = _realised_value(spec, labelled.scores, labelled.labels)
    if value is None:
        return None
    truth = {
        "rows": len(labelled.labels),
        "value": round(value, 6),
        "estimate": round(estimated, 6),
        "interval": [round(interval.low, 6), round(interval.high, 6)],
        "error": round(estimated - value, 6),
        "covered": bool(interval.low <= value <= interval.high),
    }
    from shared.lifecycle import note
    from shared.model import AuditKind

    note(
        svc,
        AuditKind.DECISION,
        f"estimated {spec.metric} {estimated:.4f} vs realised {value:.4f}",
        model=model,
        reason=f"{len(labelled.labels)} labelled rows from {spec.ground_truth}",
        evidence={
            "source": SOURCE,
            "series": SERIES,
            "metric": spec.metric,
            "window": [start.isoformat(), end.isoformat()],
            "reference": round(reference, 6),
            **truth,
        },
    )
    return truth


def _realised_value(
    spec: EstimatedPerformance, scores: list[float], labels: list[float]
) -> float | None:
    """The policy's metric realised on labelled rows; None when it cannot be computed."""
    from shared.estimation import EstimationError, realised
    from shared.loss_estimation import realised_loss

    try:
        return (
            realised_loss(scores, labels)
            if spec.is_loss
            else realised(scores, labels, spec.decision_threshold)
        )[spec.metric]
    except EstimationError:
        return None


Verdict = Literal["ok", "breach", "skip"]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    verdict: Verdict
    why: str
    evidence: dict[str, Any] = field(default_factory=dict)


def guard(
    svc: Services,
    cycle: Cycle,
    new: tuple[str, datetime, datetime],
    live: tuple[str | None, datetime, datetime],
) -> GuardVerdict:
    """Candidate's estimate on its own traffic against live's (each a (deployment, start, end)).

    ``skip`` when the policy has no guard, a side has too few rows, or nothing calibrates.
    """
    est = svc.policy.models[cycle.model].signals.estimated_performance
    if est is None or est.guard_tolerance is None or svc.scored is None or not cycle.job_name:
        return GuardVerdict("skip", "no estimated-performance guard")
    endpoint = cycle.rollout.endpoint if cycle.rollout is not None else ""
    new_dep, new_start, new_end = new
    live_dep, live_start, live_end = live
    if not live_dep:
        return GuardVerdict("skip", "no live deployment to compare with")
    found = _evaluation(svc, cycle.job_name)
    if not found:
        return GuardVerdict("skip", f"no evaluation of {cycle.job_name}")
    new_ref = _reference(found["examples"], "challenger_score", est, cycle.job_name)
    live_ref = _reference(found["examples"], "champion_score", est, cycle.job_name)
    if new_ref is None or live_ref is None:
        return GuardVerdict("skip", "the evaluation has no per-example scores for both models")
    new_scores = svc.scored.scores(endpoint, new_dep, new_start, new_end, MAX_ROWS)
    live_scores = svc.scored.scores(endpoint, live_dep, live_start, live_end, MAX_ROWS)
    if min(len(new_scores), len(live_scores)) < est.min_rows:
        return GuardVerdict(
            "skip",
            f"{len(new_scores)}/{len(live_scores)} scored rows (new/live) < {est.min_rows}",
        )
    metric = est.metric
    mine = _estimate(new_ref, new_scores, est)
    theirs = _estimate(live_ref, live_scores, est)
    a, b = mine.metric(metric).value, theirs.metric(metric).value
    evidence = {
        "metric": metric,
        "new": {"deployment": new_dep, **mine.metric(metric).as_dict(), "rows": mine.rows},
        "live": {"deployment": live_dep, **theirs.metric(metric).as_dict(), "rows": theirs.rows},
        "tolerance": est.guard_tolerance,
    }
    if est.worse_by(b, a) > est.guard_tolerance:
        why = (
            f"estimated {metric} {a:.4f} is {est.worse_by(b, a):.4f} "
            f"{'over' if est.is_loss else 'under'} live's {b:.4f} "
            f"(tolerance {est.guard_tolerance:g})"
        )
        return GuardVerdict("breach", why, evidence)
    return GuardVerdict("ok", f"estimated {metric} {a:.4f} vs live {b:.4f}", evidence)
