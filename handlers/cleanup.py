"""Deployment clean-up: a closed cycle leaves only the deployments that serve traffic.

Closing a cycle writes the deployments it no longer needs into ``rollout.cleanup`` (see
:func:`shared.lifecycle.schedule_cleanup`), in the same write that closes it, and records
``CleanUpDeployments``. :func:`run` then begins each deletion without waiting for it, and
every reconcile tick runs it again
until the platform reports the deployment gone (a missing one counts as gone). A deployment
that takes traffic, is the champion's, or is still part of another cycle's rollout is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.errors import ConcurrencyError, NotFound, PermanentError, TransientError
from shared.lifecycle import deployment_name_for, load, note
from shared.messagebus import Services
from shared.messages import CleanUpDeployments
from shared.model import AuditKind, Cycle, CycleState
from shared.rollout_state import Phase

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Outcome:
    """What one run did, audited only after the cycle's new clean-up state is saved."""

    notes: list[tuple[AuditKind, str, str, str]] = field(default_factory=list)

    def add(self, kind: AuditKind, summary: str, deployment: str, reason: str = "") -> None:
        self.notes.append((kind, summary, deployment, reason))


def on_clean_up(msg: CleanUpDeployments, svc: Services) -> None:
    """Follow-up work of a closed cycle (or the reconciler's retry of it)."""
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        run(cycle, svc, msg.event_key, msg.actor)


def run(cycle: Cycle, svc: Services, caused_by: str | None, actor: str = "system") -> None:
    """Delete (or begin deleting) the closed cycle's pending leftover deployments.

    What cannot be deleted now stays pending for the next reconcile tick. A ``kept``
    deployment (it serves traffic, or is in use) leaves the list: deleting it would be wrong.
    """
    ro = cycle.rollout
    names = list(ro.cleanup) if ro is not None else []
    if cycle.is_active or not names or ro is None:
        return
    endpoint = ro.endpoint
    try:
        traffic, champion = _read_endpoint(svc, cycle.model, endpoint)
    except (TransientError, PermanentError) as exc:  # the cycle is closed: retry next tick
        log.warning("clean-up of cycle %s deferred: %s", cycle.id, exc)
        return
    guard = _in_use(cycle, svc, endpoint)
    if champion:
        guard.setdefault(deployment_name_for(cycle.model, champion), "the champion's deployment")
    outcome = _Outcome()
    remaining: list[str] = []
    for name in names:
        if traffic is None:
            _done(cycle, "removed", name)
            outcome.add(AuditKind.ACTION, f"deployment {name} is gone", name, "endpoint gone")
            continue
        why_keep = f"it takes {traffic[name]}% of the traffic" if traffic.get(name) else None
        why_keep = why_keep or guard.get(name)
        if why_keep:
            _done(cycle, "kept", name)
            outcome.add(AuditKind.DECISION, f"deployment {name} kept on {endpoint}", name, why_keep)
            continue
        state = _delete(cycle, svc, endpoint, name, outcome)
        if state == "pending":
            remaining.append(name)
        else:
            _done(cycle, state, name)
    assert cycle.rollout is not None
    cycle.rollout = cycle.rollout.cleanup_pending(tuple(remaining))
    try:
        svc.store.save_cycle(cycle)
    except ConcurrencyError:  # raced with another worker: the next tick looks again
        log.info("cycle %s changed during its clean-up; next tick will look again", cycle.id)
        return
    for kind, summary, name, reason in outcome.notes:
        evidence = {"endpoint": endpoint, "deployment": name}
        note(
            svc,
            kind,
            summary,
            cycle,
            reason=reason,
            evidence=evidence,
            caused_by=caused_by,
            actor=actor,
        )


def _read_endpoint(
    svc: Services, model: str, endpoint: str
) -> tuple[dict[str, int] | None, str | None]:
    """The endpoint's traffic (None: the endpoint is gone, and its deployments with it) and
    the model's champion version."""
    try:
        traffic: dict[str, int] | None = svc.platform.get_traffic(endpoint)
    except NotFound:
        traffic = None
    try:
        champion = svc.platform.champion_version(model, None)
    except NotFound:
        champion = None
    return traffic, champion


def _delete(cycle: Cycle, svc: Services, endpoint: str, name: str, outcome: _Outcome) -> str:
    """Begin deleting ``name``: ``removed`` once it is gone, ``pending`` while the platform
    is still deleting it or failed transiently, ``kept`` when it refuses for good."""
    assert cycle.rollout is not None
    try:
        gone = svc.platform.delete_deployment(endpoint, name)
    except NotFound:
        gone = True
    except TransientError as exc:
        cycle.rollout = cycle.rollout.deletion_failed(name)
        if (
            cycle.rollout.cleanup_failures[name] == 1
        ):  # audit the first failure; later ones are only logged
            outcome.add(
                AuditKind.ERROR,
                f"deleting deployment {name} failed; the reconciler retries it",
                name,
                str(exc),
            )
        log.warning("deleting deployment %s/%s deferred: %s", endpoint, name, exc)
        return "pending"
    except PermanentError as exc:
        outcome.add(
            AuditKind.ERROR,
            f"deployment {name} could not be deleted; remove it by hand",
            name,
            str(exc),
        )
        return "kept"
    if gone:
        outcome.add(AuditKind.ACTION, f"deployment {name} deleted from {endpoint}", name)
        return "removed"
    if name not in cycle.rollout.cleanup_started:
        cycle.rollout = cycle.rollout.deletion_started(name)
        outcome.add(
            AuditKind.ACTION,
            f"deletion of deployment {name} begun on {endpoint}; the reconciler confirms it",
            name,
        )
    return "pending"


def _done(cycle: Cycle, outcome: str, name: str) -> None:
    assert cycle.rollout is not None
    cycle.rollout = cycle.rollout.deployment_done(outcome, name)


def _in_use(cycle: Cycle, svc: Services, endpoint: str) -> dict[str, str]:
    """Deployments another cycle of the model still relies on: its rollout, or the previous
    deployment a watch period keeps warm."""
    used: dict[str, str] = {}
    for other in svc.store.list_cycles(cycle.model):
        ro = other.rollout
        if other.id == cycle.id or ro is None or ro.endpoint != endpoint:
            continue
        watching = other.state is CycleState.PROMOTED and ro.phase is Phase.WATCH
        if not (other.is_active or watching):
            continue
        for name in (ro.deployment, ro.previous):
            if name:
                used.setdefault(name, f"cycle {other.id} still uses it")
    return used
