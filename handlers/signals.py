"""Drift and health signals -> cycles: dedup, cooldown, confirmation, coalescing."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.errors import AlreadyExists, Conflict, NotFound, PermanentError
from shared.lifecycle import cycle_id_for, note, publish, watching
from shared.messagebus import Services
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    HealthAlertFired,
    ManualRollback,
    ResumeCycle,
    RetrainRequested,
    RollBack,
    SignalResolved,
    StartRetraining,
)
from shared.model import AuditKind, Cycle, CycleState


def on_drift_signal(msg: DriftSignalled, svc: Services) -> None:
    _signal(msg, svc, manual=False)


def retrain(cmd: RetrainRequested, svc: Services) -> None:
    """An operator asks for retraining now: no cooldown or confirmation, still one cycle."""
    if svc.policy.model(cmd.model) is None:
        raise NotFound(f"model {cmd.model!r} is not in the policy")
    signal = DriftSignalled(
        cmd.model,
        "manual",
        f"requested by {cmd.actor}",
        cmd.event_key,
        evidence={"actor": cmd.actor, "reason": cmd.reason},
    )
    _signal(signal, svc, manual=True)


def _signal(msg: DriftSignalled, svc: Services, *, manual: bool) -> None:
    spec = svc.policy.model(msg.model)
    if spec is None:  # bindings come from the policy, so this is a policy reload race
        note(
            svc,
            AuditKind.IGNORED,
            "drift signal for a model no longer in the policy",
            model=msg.model,
            caused_by=msg.event_key,
        )
        return
    now = svc.now()
    evidence = {"source": msg.source, "signal": msg.signal, **msg.evidence}
    my_cycle_id = cycle_id_for(msg.model, msg.event_key)

    active = svc.store.active_cycle(msg.model)
    if active is not None:
        if active.id == my_cycle_id:
            # Redelivery of the event that started this cycle (e.g. after a crash): resume it.
            svc.emit(ResumeCycle(active.id, msg.event_key))
            return
        active.coalesced += 1
        svc.store.save_cycle(active)
        note(
            svc,
            AuditKind.DECISION,
            f"drift signal coalesced into active cycle ({active.coalesced} so far)",
            active,
            reason=f"{msg.model} already has an active cycle in {active.state.value}",
            evidence=evidence,
            caused_by=msg.event_key,
        )
        return

    finished = svc.store.get_cycle(my_cycle_id)
    if finished is not None:
        # This signal's own cycle ran and closed: a redelivery after its lease expired (the
        # worker died before acknowledging). Starting it again would retrain twice.
        _already_handled(svc, msg, finished)
        return

    last = svc.store.last_closed_at(msg.model)
    cooldown = svc.policy.cooldown(msg.model)
    if not manual and last is not None and now - last < timedelta(seconds=cooldown):
        until = last + timedelta(seconds=cooldown)
        note(
            svc,
            AuditKind.DECISION,
            "drift signal suppressed by cooldown",
            model=msg.model,
            reason=f"last cycle closed {last.isoformat()}; cooldown until {until.isoformat()}",
            evidence=evidence,
            caused_by=msg.event_key,
        )
        return

    svc.store.add_signal(msg.model, signal_key(msg.source, msg.signal, msg.event_key), now)
    confirm = spec.confirm
    needed = confirm.signals
    if not manual and (needed > 1 or confirm.query):
        if confirm.query:
            seen = _logged_count(svc, msg.model, confirm.query, confirm.within)
            evidence["confirmation_query_count"] = seen
            requirement = f"its Log Analytics query to count {needed} within {confirm.within:g}s"
        else:
            seen = svc.store.count_signals(msg.model, now - timedelta(seconds=confirm.within))
            requirement = f"{needed} signals within {confirm.within:g}s"
        if seen < needed:
            note(
                svc,
                AuditKind.DECISION,
                f"drift signal awaiting confirmation ({seen}/{needed})",
                model=msg.model,
                reason=f"policy requires {requirement}",
                evidence=evidence,
                caused_by=msg.event_key,
            )
            return

    if svc.policy.mode(msg.model) == "observe":
        note(
            svc,
            AuditKind.DECISION,
            "dry run: would start a retraining cycle",
            model=msg.model,
            reason="model is in observe mode; no job, registration or traffic change happens",
            evidence={**evidence, "dry_run": True, "would_create_cycle": my_cycle_id},
            caused_by=msg.event_key,
        )
        svc.store.clear_signals(msg.model)
        return

    cycle = Cycle(
        id=my_cycle_id,
        model=msg.model,
        state=CycleState.TRIGGERED,
        created_at=now,
        updated_at=now,
        trigger=svc.redactor.json(evidence),  # alert text may quote a secret
        caused_by=msg.event_key,
    )
    try:
        winner = svc.store.create_cycle(cycle)
    except AlreadyExists:  # closed between our read and this write: same as above
        finished = svc.store.get_cycle(my_cycle_id)
        if finished is None:
            raise
        _already_handled(svc, msg, finished)
        return
    if winner is not None:  # another worker opened a cycle first: coalesce into it
        raced = svc.store.get_cycle(winner)
        if raced is not None:
            raced.coalesced += 1
            svc.store.save_cycle(raced)
        note(
            svc,
            AuditKind.DECISION,
            "drift signal coalesced into a concurrently opened cycle",
            model=msg.model,
            reason=f"cycle {winner} was opened at the same moment",
            evidence=evidence,
            caused_by=msg.event_key,
        )
        return
    svc.store.clear_signals(msg.model)
    note(
        svc,
        AuditKind.DECISION,
        "retraining cycle started",
        cycle,
        actor=str(msg.evidence.get("actor", "system")) if manual else "system",
        reason=f"{msg.source} signal {msg.signal!r}",
        evidence=evidence,
        caused_by=msg.event_key,
    )
    publish(svc, cycle, "cycle.started", {"trigger": evidence})
    svc.emit(StartRetraining(cycle.id, msg.event_key))


def _logged_count(svc: Services, model: str, query: str, within: float) -> int:
    """The policy's confirmation query (its text comes from the policy, never from an event)."""
    if svc.logs is None:
        raise PermanentError(
            f"model {model!r}: confirm.query needs Log Analytics, but AUTOPILOT_LOG_WORKSPACE_ID "
            "is not set"
        )
    return svc.logs.count(query, timedelta(seconds=within))


def _already_handled(svc: Services, msg: DriftSignalled, finished: Cycle) -> None:
    note(
        svc,
        AuditKind.IGNORED,
        "drift signal already handled: the cycle it started has closed",
        finished,
        reason=f"cycle {finished.id} ended {finished.state.value}; this is a redelivery of "
        "its trigger",
        caused_by=msg.event_key,
    )


def signal_scope(source: str, signal: str) -> str:
    """The unambiguous key prefix of one source's signal (a JSON pair, so no name can fake it)."""
    return json.dumps([source, signal])


def signal_key(source: str, signal: str, event_key: str) -> str:
    """A pending signal's key: its source and signal, then the event that raised it."""
    return signal_scope(source, signal) + event_key


def on_signal_resolved(msg: SignalResolved, svc: Services) -> None:
    """A Resolved alert clears the pending signals of that source and signal only."""
    cleared = svc.store.clear_signals(msg.model, signal_scope(msg.source, msg.signal))
    note(
        svc,
        AuditKind.DECISION,
        f"signal resolved; {cleared} pending signal(s) cleared",
        model=msg.model,
        reason=f"{msg.source} {msg.signal!r} resolved",
        evidence=msg.evidence,
        caused_by=msg.event_key,
    )


def on_health_alert(msg: HealthAlertFired, svc: Services) -> None:
    """During a rollout or the watch period after promotion, a bound alert rolls back."""
    active = svc.store.active_cycle(msg.model)
    if active is not None and active.state is CycleState.ROLLING_OUT:
        why = f"health alert {msg.signal!r} fired during rollout"
        svc.emit(RollBack(active.id, why, msg.event_key, msg.evidence))
        return
    for promoted in watching(svc, msg.model):
        why = f"health alert {msg.signal!r} fired during the watch period after promotion"
        svc.emit(RollBack(promoted.id, why, msg.event_key, msg.evidence))
        return
    note(
        svc,
        AuditKind.DECISION,
        "health alert recorded; no rollout or watch period in progress",
        model=msg.model,
        reason=f"alert {msg.signal!r}",
        evidence=msg.evidence,
        caused_by=msg.event_key,
    )


def manual_rollback(cmd: ManualRollback, svc: Services) -> None:
    """An operator's instant rollback to the last good deployment, audited with their name."""
    if svc.policy.model(cmd.model) is None:
        raise NotFound(f"model {cmd.model!r} is not in the policy")
    active = svc.store.active_cycle(cmd.model)
    candidates = [active] if active and active.state is CycleState.ROLLING_OUT else []
    candidates += watching(svc, cmd.model)
    if not candidates:
        raise Conflict(
            f"nothing to roll back for {cmd.model}: no rollout in progress and no promotion "
            "within its watch period (the previous deployment is removed after the watch)"
        )
    why = f"manual rollback by {cmd.actor}: {cmd.reason or 'no reason given'}"
    svc.emit(RollBack(candidates[0].id, why, cmd.event_key, actor=cmd.actor))


def on_ignored(msg: EventIgnored, svc: Services) -> None:
    note(
        svc,
        AuditKind.IGNORED,
        f"{msg.event_type} ignored",
        model=msg.model,
        reason=msg.reason,
        evidence=msg.evidence,
        caused_by=msg.event_key,
    )
