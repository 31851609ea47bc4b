"""Drift and health signals -> cycles: dedup, cooldown, confirmation, coalescing."""

from __future__ import annotations

from datetime import timedelta

from handlers import rollout, training
from handlers.cycles import cycle_id_for, note, publish
from shared.messagebus import Services
from shared.messages import DriftSignalled, EventIgnored, HealthAlertFired, SignalResolved
from shared.model import AuditKind, Cycle, CycleState


def on_drift_signal(msg: DriftSignalled, svc: Services) -> None:
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
            training.resume_if_stalled(active, svc, msg.event_key)
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

    last = svc.store.last_closed_at(msg.model)
    cooldown = svc.policy.cooldown(msg.model)
    if last is not None and now - last < timedelta(seconds=cooldown):
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

    svc.store.add_signal(msg.model, msg.event_key, now)
    needed = spec.confirm.signals
    if needed > 1:
        seen = svc.store.count_signals(msg.model, now - timedelta(seconds=spec.confirm.within))
        if seen < needed:
            note(
                svc,
                AuditKind.DECISION,
                f"drift signal awaiting confirmation ({seen}/{needed})",
                model=msg.model,
                reason=f"policy requires {needed} signals within {spec.confirm.within:g}s",
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
        trigger=evidence,
        caused_by=msg.event_key,
    )
    winner = svc.store.create_cycle(cycle)
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
    cycle.version += 1  # create_cycle stored version 0; mirror the store's bump
    note(
        svc,
        AuditKind.DECISION,
        "retraining cycle started",
        cycle,
        reason=f"{msg.source} signal {msg.signal!r}",
        evidence=evidence,
        caused_by=msg.event_key,
    )
    publish(svc, cycle, "cycle.started", {"trigger": evidence})
    training.start_retraining(cycle, svc, msg.event_key)


def on_signal_resolved(msg: SignalResolved, svc: Services) -> None:
    cleared = svc.store.clear_signals(msg.model)
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
    active = svc.store.active_cycle(msg.model)
    if active is not None and active.state is CycleState.ROLLING_OUT:
        rollout.roll_back(
            active,
            svc,
            f"health alert {msg.signal!r} fired during rollout",
            msg.event_key,
            evidence=msg.evidence,
        )
        return
    note(
        svc,
        AuditKind.DECISION,
        "health alert recorded; no rollout in progress",
        model=msg.model,
        reason=f"alert {msg.signal!r}",
        evidence=msg.evidence,
        caused_by=msg.event_key,
    )


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
