"""The service layer every handler uses: move a cycle and leave evidence, the names it
derives (job, deployment, cycle id), and the queries over cycles that several handlers need."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from shared.errors import ConcurrencyError, PermanentError, TransientError
from shared.messagebus import Services, stable_suffix
from shared.messages import CycleWork, EventIgnored, FailRollout
from shared.model import AuditKind, Cycle, CycleState
from shared.rollout_state import Phase, RolloutState

log = logging.getLogger(__name__)

CYCLE_TAG = "autopilot_cycle"  # the job/model tag naming the cycle that produced it
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def slug(text: str, limit: int) -> str:
    """Lower-case letters, digits and hyphens only: safe as an Azure resource name part."""
    return _UNSAFE.sub("-", text.lower()).strip("-")[:limit].strip("-") or "x"


def is_stale(cycle: Cycle, svc: Services) -> bool:
    """No progress recorded for longer than the settings' stale_after_s."""
    return svc.now() - cycle.updated_at > timedelta(seconds=svc.settings.stale_after_s)


def job_name_for(cycle_id: str) -> str:
    """Deterministic job name: a second submit for the same cycle conflicts instead of running."""
    return f"autopilot-{cycle_id}"


def deployment_name_for(model: str, version: str) -> str:
    """Deterministic deployment name per model version (Azure: 3-32 chars, starts with a letter)."""
    suffix = f"-v{slug(version, 8)}"
    base = slug(model, 32 - len(suffix))
    if not base[0].isalpha():
        base = "m" + base[: 31 - len(suffix)]
    return base + suffix


def cycle_id_for(model: str, event_key: str) -> str:
    """Deterministic cycle id from the event that started it, so a redelivery finds it again."""
    return f"{slug(model, 40)}-{stable_suffix(event_key, 10)}"


def move(
    svc: Services,
    cycle: Cycle,
    state: CycleState,
    reason: str,
    *,
    caused_by: str | None = None,
    kind: AuditKind = AuditKind.DECISION,
    evidence: dict[str, Any] | None = None,
    actor: str = "system",
) -> None:
    """Transition, persist (optimistic), audit, publish. ConcurrencyError if raced."""
    before = cycle.state
    reason = svc.redactor.text(reason)  # job errors can echo a secret: never store it
    cycle.transition(state, svc.now(), reason)
    if not cycle.is_active:
        schedule_cleanup(cycle)  # intent, written with the close: the reconciler retries it
    svc.store.save_cycle(cycle)
    svc.record(
        kind,
        f"cycle {before.value} -> {state.value}",
        actor=actor,
        model=cycle.model,
        version=cycle.candidate_version,
        cycle=cycle.id,
        reason=reason,
        evidence=evidence or {},
        caused_by=caused_by,
    )
    publish(svc, cycle, f"cycle.{state.value.lower()}", {"reason": reason})


def leftover_deployments(cycle: Cycle) -> list[str]:
    """Deployments a closed cycle no longer needs: the candidate after a rollback or failure;
    after a promotion, the previous one once no watch period keeps it warm."""
    ro = cycle.rollout
    if cycle.is_active or ro is None or not ro.endpoint:
        return []
    if cycle.state is CycleState.PROMOTED:
        name = None if ro.phase is Phase.WATCH else ro.previous
    else:
        name = ro.deployment
    return [name] if name else []


def schedule_cleanup(cycle: Cycle) -> None:
    """Add the closed cycle's leftover deployments to its pending clean-up list
    (``rollout.cleanup``); ``handlers.cleanup`` deletes them."""
    ro = cycle.rollout
    if ro is None:
        return
    pending = list(ro.cleanup)
    done = set(ro.removed) | set(ro.kept)
    for name in leftover_deployments(cycle):
        if name not in pending and name not in done:
            pending.append(name)
    if pending:
        cycle.rollout = ro.cleanup_pending(tuple(pending))


def publish(svc: Services, cycle: Cycle, event_type: str, data: dict[str, Any]) -> None:
    """Publish a lifecycle event; a publisher outage never stops the lifecycle (it is logged)."""
    payload = {"cycle": cycle.id, "model": cycle.model, "state": cycle.state.value, **data}
    payload = svc.redactor.json(payload)  # it leaves the service: no configured secret in it
    try:
        svc.publisher.publish(f"Autopilot.{event_type}", f"models/{cycle.model}", payload)
    except Exception:
        log.exception("publishing %s for cycle %s failed", event_type, cycle.id)


def note(
    svc: Services,
    kind: AuditKind,
    summary: str,
    cycle: Cycle | None = None,
    *,
    model: str | None = None,
    reason: str = "",
    evidence: dict[str, Any] | None = None,
    caused_by: str | None = None,
    actor: str = "system",
) -> None:
    """Audit something about a cycle (or a model) without changing state."""
    svc.record(
        kind,
        summary,
        actor=actor,
        model=cycle.model if cycle else model,
        version=cycle.candidate_version if cycle else None,
        cycle=cycle.id if cycle else None,
        reason=reason,
        evidence=evidence or {},
        caused_by=caused_by,
    )


def watching(svc: Services, model: str | None = None) -> list[Cycle]:
    """Promoted cycles still in their watch period (their previous deployment is kept warm)."""
    return [
        c
        for c in svc.store.list_cycles(model)
        if c.state is CycleState.PROMOTED
        and c.rollout is not None
        and c.rollout.phase is Phase.WATCH
    ]


def with_leftovers(svc: Services) -> list[Cycle]:
    """Closed cycles whose leftover deployments are not all deleted yet."""
    return [
        c
        for c in svc.store.list_cycles()
        if not c.is_active and c.rollout is not None and c.rollout.cleanup
    ]


def load(svc: Services, cycle_id: str, *states: CycleState) -> Cycle | None:
    """The cycle a follow-up message names, as stored now; None when it is gone or, given
    ``states``, no longer in one of them: another worker did this work between the look that
    asked for it and now (the work would otherwise be done twice, or refused as an invalid
    transition)."""
    cycle = svc.store.get_cycle(cycle_id)
    if cycle is not None and states and cycle.state not in states:
        log.info(
            "cycle %s is %s now: work for %s left to the worker that moved it",
            cycle_id,
            cycle.state.value,
            "/".join(s.value for s in states),
        )
        return None
    return cycle


def rollout_of(cycle: Cycle) -> RolloutState:
    """The cycle's rollout state (a rollout handler's cycle always has one)."""
    assert cycle.rollout is not None, f"cycle {cycle.id} has no rollout"
    return cycle.rollout


def contain_cycle_errors(exc: Exception, work: Any, svc: Services) -> None:
    """The guard of the work on one cycle: an outage waits for the next tick; a permanent
    error closes the cycle safely (retrying every tick cannot help); anything else is a bug
    and goes on up."""
    assert isinstance(work, CycleWork)
    cycle_id, key = work.cycle_id, work.event_key
    if isinstance(exc, TransientError):  # one cycle's outage must not stall the others
        log.warning("reconcile of cycle %s deferred: %s", cycle_id, exc)
    elif isinstance(exc, ConcurrencyError):
        log.info("cycle %s changed while reconciling; next tick will look again", cycle_id)
    elif isinstance(exc, PermanentError):
        fresh = svc.store.get_cycle(cycle_id)
        if fresh is None or not fresh.is_active:
            return
        if fresh.state is CycleState.ROLLING_OUT:
            svc.emit(FailRollout(cycle_id, str(exc), key))
        else:
            move(svc, fresh, CycleState.FAILED, str(exc), caused_by=key, kind=AuditKind.ERROR)
    else:
        raise exc


def ignored_record(msg: EventIgnored) -> tuple[AuditKind, str, dict[str, Any]]:
    """The audit record of an ignored event (a delivered batch writes it with the receipts)."""
    fields = {
        "model": msg.model,
        "reason": msg.reason,
        "evidence": msg.evidence or {},
        "caused_by": msg.event_key,
    }
    return AuditKind.IGNORED, f"{msg.event_type} ignored", fields
