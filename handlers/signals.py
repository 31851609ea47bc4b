"""Drift and health signals -> cycles: dedup, cooldown, confirmation, coalescing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import AlreadyExists, Conflict, NotFound, PermanentError
from shared.lifecycle import cycle_id_for, ignored_record, note, publish, watching
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

if TYPE_CHECKING:
    from shared.policy import ModelPolicy


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


@dataclass(frozen=True, slots=True)
class _Signal:
    """One drift signal on its way to a cycle, with what every guard reads."""

    msg: DriftSignalled
    svc: Services
    manual: bool  # an operator's request: no cooldown, no confirmation
    spec: ModelPolicy
    now: datetime
    evidence: dict[str, Any]  # audited with every decision (a confirmation count may join it)
    cycle_id: str  # the cycle this signal opens (deterministic: a redelivery finds it)


def _signal(msg: DriftSignalled, svc: Services, *, manual: bool) -> None:
    """Dedup, cooldown, confirmation, coalescing: the first guard that stops the signal
    audits why; a signal no guard stops opens a cycle."""
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
    evidence = {"source": msg.source, "signal": msg.signal, **msg.evidence}
    cycle_id = cycle_id_for(msg.model, msg.event_key)
    signal = _Signal(msg, svc, manual, spec, svc.now(), evidence, cycle_id)
    for stops in _GUARDS:
        if stops(signal):
            return
    _open_cycle(signal)


def _joins_active_cycle(s: _Signal) -> bool:
    """A cycle is open: its own trigger again resumes it; any other signal is coalesced."""
    active = s.svc.store.active_cycle(s.msg.model)
    if active is None:
        return False
    if active.id == s.cycle_id:
        # Redelivery of the event that started this cycle (e.g. after a crash): resume it.
        s.svc.emit(ResumeCycle(active.id, s.msg.event_key))
        return True
    active.coalesced += 1
    s.svc.store.save_cycle(active)
    note(
        s.svc,
        AuditKind.DECISION,
        f"drift signal coalesced into active cycle ({active.coalesced} so far)",
        active,
        reason=f"{s.msg.model} already has an active cycle in {active.state.value}",
        evidence=s.evidence,
        caused_by=s.msg.event_key,
    )
    return True


def _already_ran(s: _Signal) -> bool:
    """This signal's own cycle ran and closed: a redelivery after its lease expired (the
    worker died before acknowledging). Starting it again would retrain twice."""
    finished = s.svc.store.get_cycle(s.cycle_id)
    if finished is None:
        return False
    _already_handled(s.svc, s.msg, finished)
    return True


def _in_cooldown(s: _Signal) -> bool:
    last = s.svc.store.last_closed_at(s.msg.model)
    cooldown = s.svc.policy.cooldown(s.msg.model)
    if s.manual or last is None or s.now - last >= timedelta(seconds=cooldown):
        return False
    until = last + timedelta(seconds=cooldown)
    note(
        s.svc,
        AuditKind.DECISION,
        "drift signal suppressed by cooldown",
        model=s.msg.model,
        reason=f"last cycle closed {last.isoformat()}; cooldown until {until.isoformat()}",
        evidence=s.evidence,
        caused_by=s.msg.event_key,
    )
    return True


def _unconfirmed(s: _Signal) -> bool:
    """Record the signal as pending; stop it while the policy's confirmation is not met."""
    msg = s.msg
    s.svc.store.add_signal(msg.model, signal_key(msg.source, msg.signal, msg.event_key), s.now)
    confirm = s.spec.confirm
    needed = confirm.signals
    if s.manual or not (needed > 1 or confirm.query):
        return False
    if confirm.query:
        seen = _logged_count(s.svc, msg.model, confirm.query, confirm.within)
        s.evidence["confirmation_query_count"] = seen
        requirement = f"its Log Analytics query to count {needed} within {confirm.within:g}s"
    else:
        seen = s.svc.store.count_signals(msg.model, s.now - timedelta(seconds=confirm.within))
        requirement = f"{needed} signals within {confirm.within:g}s"
    if seen >= needed:
        return False
    note(
        s.svc,
        AuditKind.DECISION,
        f"drift signal awaiting confirmation ({seen}/{needed})",
        model=msg.model,
        reason=f"policy requires {requirement}",
        evidence=s.evidence,
        caused_by=msg.event_key,
    )
    return True


def _observe_only(s: _Signal) -> bool:
    if s.svc.policy.mode(s.msg.model) != "observe":
        return False
    note(
        s.svc,
        AuditKind.DECISION,
        "dry run: would start a retraining cycle",
        model=s.msg.model,
        reason="model is in observe mode; no job, registration or traffic change happens",
        evidence={**s.evidence, "dry_run": True, "would_create_cycle": s.cycle_id},
        caused_by=s.msg.event_key,
    )
    s.svc.store.clear_signals(s.msg.model)
    return True


# In order; each audits why it stops the signal.
_GUARDS: tuple[Callable[[_Signal], bool], ...] = (
    _joins_active_cycle,
    _already_ran,
    _in_cooldown,
    _unconfirmed,
    _observe_only,
)


def _open_cycle(s: _Signal) -> None:
    """Open the signal's cycle (one per model: a concurrent one wins) and start retraining."""
    msg, svc, evidence = s.msg, s.svc, s.evidence
    cycle = Cycle(
        id=s.cycle_id,
        model=msg.model,
        state=CycleState.TRIGGERED,
        created_at=s.now,
        updated_at=s.now,
        trigger=svc.redactor.json(evidence),  # alert text may quote a secret
        caused_by=msg.event_key,
    )
    try:
        winner = svc.store.create_cycle(cycle)
    except AlreadyExists:  # closed between our read and this write: same as above
        finished = svc.store.get_cycle(s.cycle_id)
        if finished is None:
            raise
        _already_handled(svc, msg, finished)
        return
    if winner is not None:  # another worker opened a cycle first: coalesce into it
        _coalesce_into_winner(s, winner)
        return
    svc.store.clear_signals(msg.model)
    note(
        svc,
        AuditKind.DECISION,
        "retraining cycle started",
        cycle,
        actor=str(msg.evidence.get("actor", "system")) if s.manual else "system",
        reason=f"{msg.source} signal {msg.signal!r}",
        evidence=evidence,
        caused_by=msg.event_key,
    )
    publish(svc, cycle, "cycle.started", {"trigger": evidence})
    svc.emit(StartRetraining(cycle.id, msg.event_key))  # handlers.training


def _coalesce_into_winner(s: _Signal, winner: str) -> None:
    raced = s.svc.store.get_cycle(winner)
    if raced is not None:
        raced.coalesced += 1
        s.svc.store.save_cycle(raced)
    note(
        s.svc,
        AuditKind.DECISION,
        "drift signal coalesced into a concurrently opened cycle",
        model=s.msg.model,
        reason=f"cycle {winner} was opened at the same moment",
        evidence=s.evidence,
        caused_by=s.msg.event_key,
    )


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
    kind, summary, fields = ignored_record(msg)
    svc.record(kind, summary, actor="system", version=None, cycle=None, **fields)
