"""Human approval of a gated candidate: who decided and why is audited."""

from __future__ import annotations

from shared.errors import Conflict, NotFound
from shared.lifecycle import move
from shared.messagebus import Services
from shared.messages import Approve, Deny, RegisterCandidate
from shared.model import AuditKind, Cycle, CycleState


def _pending(cycle_id: str, svc: Services) -> Cycle:
    cycle = svc.store.get_cycle(cycle_id)
    if cycle is None:
        raise NotFound(f"no cycle {cycle_id!r}")
    if cycle.state is not CycleState.AWAITING_APPROVAL:
        raise Conflict(f"cycle {cycle_id} is {cycle.state.value}, not AWAITING_APPROVAL")
    return cycle


def approve(cmd: Approve, svc: Services) -> None:
    cycle = _pending(cmd.cycle_id, svc)
    svc.record(
        AuditKind.DECISION,
        "candidate approved",
        actor=cmd.actor,
        model=cycle.model,
        cycle=cycle.id,
        reason=cmd.reason,
        caused_by=cmd.event_key or None,
    )
    svc.emit(RegisterCandidate(cycle.id, cmd.event_key, cmd.actor))  # handlers.training


def deny(cmd: Deny, svc: Services) -> None:
    cycle = _pending(cmd.cycle_id, svc)
    move(
        svc,
        cycle,
        CycleState.REJECTED,
        f"denied by {cmd.actor}: {cmd.reason}",
        caused_by=cmd.event_key or None,
        actor=cmd.actor,
    )
