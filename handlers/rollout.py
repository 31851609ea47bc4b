"""Blue/green rollout: new deployment at 0%, canary steps with health checks, promote or roll back.

Steps advance on the reconcile tick once their bake time has passed. Health of the new
deployment is compared with the live one over the same window; too little traffic means
wait, not pass. Every traffic change is read back to confirm it took effect.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from handlers.cycles import deployment_name_for, move, note, publish
from shared.errors import AlreadyExists, PermanentError, TransientError
from shared.messagebus import Services
from shared.messages import ModelRegistered
from shared.model import AuditKind, Cycle, CycleState, HealthSample

if TYPE_CHECKING:
    from shared.policy import Health

CYCLE_TAG = "autopilot_cycle"


def on_model_registered(msg: ModelRegistered, svc: Services) -> None:
    cycle_id = msg.tags.get(CYCLE_TAG)
    cycle = svc.store.get_cycle(cycle_id) if cycle_id else None
    if cycle is None or cycle.model != msg.model:
        note(
            svc,
            AuditKind.IGNORED,
            f"model {msg.model} v{msg.version} registered elsewhere",
            model=msg.model,
            reason="not registered by one of our cycles",
            caused_by=msg.event_key,
        )
        return
    if cycle.state is not CycleState.REGISTERED or cycle.candidate_version != msg.version:
        note(
            svc,
            AuditKind.IGNORED,
            f"registration of v{msg.version} already handled",
            cycle,
            reason=f"cycle is {cycle.state.value}",
            caused_by=msg.event_key,
        )
        return
    start_rollout(cycle, svc, msg.event_key)


def _set_and_confirm(svc: Services, endpoint: str, traffic: dict[str, int]) -> None:
    svc.platform.set_traffic(endpoint, traffic)
    actual = {k: v for k, v in svc.platform.get_traffic(endpoint).items() if v}
    wanted = {k: v for k, v in traffic.items() if v}
    if actual != wanted:
        raise TransientError(f"endpoint {endpoint}: traffic is {actual}, expected {wanted}")


def start_rollout(cycle: Cycle, svc: Services, caused_by: str) -> None:
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None and cycle.candidate_version
    busy = [
        other.id
        for other in svc.store.list_cycles(active_only=True)
        if other.id != cycle.id
        and other.state is CycleState.ROLLING_OUT
        and (other.rollout or {}).get("endpoint") == spec.endpoint
    ]
    if busy:
        note(
            svc,
            AuditKind.DECISION,
            f"rollout waits: endpoint {spec.endpoint} is busy",
            cycle,
            reason=f"cycle {busy[0]} is rolling out there; one rollout per endpoint",
            caused_by=caused_by,
        )
        return
    deployment = deployment_name_for(cycle.model, cycle.candidate_version)
    current = svc.platform.get_traffic(spec.endpoint)
    live = max(current, key=lambda d: current[d]) if any(current.values()) else None
    if live == deployment:
        live = None
    cycle.rollout = {
        "endpoint": spec.endpoint,
        "deployment": deployment,
        "previous": live,
        "previous_traffic": current,
        "step": -1,
        "step_started_at": None,
        "steps": [],
    }
    move(
        svc,
        cycle,
        CycleState.ROLLING_OUT,
        f"creating deployment {deployment} on {spec.endpoint} at 0% traffic",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
    )
    resume(cycle, svc, caused_by)


def resume(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """Create the (deterministically named) deployment if needed and enter the first step."""
    ro = cycle.rollout
    assert ro is not None and cycle.candidate_version
    try:
        svc.platform.create_deployment(
            ro["endpoint"], ro["deployment"], cycle.model, cycle.candidate_version
        )
    except AlreadyExists:
        pass  # created before a crash or by a concurrent worker: the name is deterministic
    except PermanentError as exc:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"deployment failed: {exc}",
            caused_by=caused_by,
            kind=AuditKind.ERROR,
        )
        return
    publish(
        svc,
        cycle,
        "rollout.started",
        {"deployment": ro["deployment"], "previous": ro.get("previous")},
    )
    _enter_step(cycle, svc, 0, caused_by)


def _traffic_for(cycle: Cycle, percent: int) -> dict[str, int]:
    ro = cycle.rollout or {}
    traffic = {ro["deployment"]: percent}
    if ro.get("previous") and percent < 100:
        traffic[ro["previous"]] = 100 - percent
    elif ro.get("previous"):
        traffic[ro["previous"]] = 0
    return traffic


def _enter_step(
    cycle: Cycle, svc: Services, index: int, caused_by: str, kind: AuditKind = AuditKind.ACTION
) -> None:
    spec = svc.policy.models[cycle.model].rollout
    assert spec is not None and cycle.rollout is not None
    steps = spec.steps if cycle.rollout.get("previous") else (100,)
    percent = steps[index]
    traffic = _traffic_for(cycle, percent)
    _set_and_confirm(svc, spec.endpoint, traffic)
    now = svc.now()
    cycle.rollout["step"] = index
    cycle.rollout["percent"] = percent
    cycle.rollout["step_started_at"] = now.isoformat()
    cycle.rollout["steps"].append({"percent": percent, "at": now.isoformat(), "traffic": traffic})
    svc.store.save_cycle(cycle)
    note(
        svc,
        kind,
        f"traffic {traffic} on {spec.endpoint} (step {index + 1}/{len(steps)})",
        cycle,
        evidence={"traffic": traffic},
        caused_by=caused_by,
    )
    publish(svc, cycle, "rollout.step", {"traffic": traffic})
    if not cycle.rollout.get("previous"):
        _promote(cycle, svc, caused_by, "first deployment of this model on the endpoint")


def _verdict(new: HealthSample, old: HealthSample | None, health: Health) -> tuple[str, str]:
    """('pass' | 'wait' | 'breach', why)."""
    if new.requests < health.min_requests:
        return "wait", f"{new.requests} requests < {health.min_requests} needed for a verdict"
    if new.error_rate > health.max_error_rate:
        return "breach", f"error rate {new.error_rate:.2%} > {health.max_error_rate:.2%}"
    if old is not None and old.requests:
        increase = new.error_rate - old.error_rate
        if increase > health.max_error_rate_increase:
            return "breach", (
                f"error rate {new.error_rate:.2%} exceeds live "
                f"{old.error_rate:.2%} by more than "
                f"{health.max_error_rate_increase:.2%}"
            )
    p95 = new.latency_p95_ms
    if (
        p95 is not None
        and health.max_latency_p95_ms is not None
        and p95 > health.max_latency_p95_ms
    ):
        return "breach", f"p95 latency {p95:.0f} ms > {health.max_latency_p95_ms:.0f} ms"
    if (
        p95 is not None
        and old is not None
        and old.latency_p95_ms
        and health.max_latency_ratio
        and p95 > old.latency_p95_ms * health.max_latency_ratio
    ):
        return "breach", (
            f"p95 latency {p95:.0f} ms > {health.max_latency_ratio:g}x live "
            f"{old.latency_p95_ms:.0f} ms"
        )
    return "pass", f"{new.requests} requests, error rate {new.error_rate:.2%}"


def _health(
    svc: Services, endpoint: str, deployment: str | None, start: datetime, end: datetime
) -> HealthSample | None:
    if not deployment:
        return None
    return svc.metrics.deployment_health(endpoint, deployment, start, end)


def advance(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """One reconcile tick of a rollout: hold, wait for traffic, step on, promote or roll back."""
    spec = svc.policy.models[cycle.model].rollout
    ro = cycle.rollout
    if spec is None or ro is None or ro.get("step", -1) < 0:
        return
    now = svc.now()
    started = datetime.fromisoformat(ro["step_started_at"])
    if now - started < timedelta(seconds=spec.bake):
        return
    new = _health(svc, spec.endpoint, ro["deployment"], started, now)
    old = _health(svc, spec.endpoint, ro.get("previous"), started, now)
    assert new is not None
    verdict, why = _verdict(new, old, spec.health)
    evidence: dict[str, Any] = {
        "window": [started.isoformat(), now.isoformat()],
        "percent": ro.get("percent"),
        "new": _sample(new),
        "live": _sample(old) if old else None,
        "verdict": verdict,
    }
    ro.setdefault("checks", []).append({"at": now.isoformat(), **evidence, "why": why})
    if verdict == "breach":
        roll_back(
            cycle,
            svc,
            f"canary breach at {ro.get('percent')}%: {why}",
            caused_by,
            evidence=evidence,
        )
        return
    if verdict == "wait":
        if now - started > timedelta(seconds=spec.bake + spec.max_wait):
            roll_back(
                cycle,
                svc,
                f"not enough traffic for a verdict within the wait: {why}",
                caused_by,
                evidence=evidence,
            )
        return
    note(
        svc,
        AuditKind.DECISION,
        f"step {ro['step'] + 1} healthy at {ro.get('percent')}%",
        cycle,
        reason=why,
        evidence=evidence,
        caused_by=caused_by,
    )
    if ro.get("percent") == 100:
        _promote(cycle, svc, caused_by, why)
    else:
        _enter_step(cycle, svc, ro["step"] + 1, caused_by)


def _sample(sample: HealthSample) -> dict[str, Any]:
    return {
        "requests": sample.requests,
        "errors": sample.errors,
        "error_rate": round(sample.error_rate, 6),
        "latency_p95_ms": sample.latency_p95_ms,
    }


def _promote(cycle: Cycle, svc: Services, caused_by: str, why: str) -> None:
    assert cycle.candidate_version
    svc.platform.set_champion(cycle.model, cycle.candidate_version)
    move(
        svc,
        cycle,
        CycleState.PROMOTED,
        f"promoted {cycle.model} v{cycle.candidate_version}: {why}",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
    )


def roll_back(
    cycle: Cycle,
    svc: Services,
    reason: str,
    caused_by: str,
    *,
    evidence: dict[str, Any] | None = None,
) -> None:
    """Return every request to the previous deployment in one step, then close the cycle."""
    ro = cycle.rollout or {}
    endpoint = ro.get("endpoint")
    previous = ro.get("previous")
    if endpoint and previous:
        _set_and_confirm(svc, endpoint, {previous: 100, ro["deployment"]: 0})
    move(
        svc,
        cycle,
        CycleState.ROLLED_BACK,
        f"rolled back: {reason}",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
        evidence={**(evidence or {}), "restored": {previous: 100} if previous else None},
    )
