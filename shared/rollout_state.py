"""The rollout state of a cycle: a typed value with a ``Phase``, changed only by its transitions.

A cycle stores it as JSON (``Cycle.to_json``) in the shape earlier versions wrote, so cycles
stored before this type existed still load: a missing key takes its default and a key this
version does not know is kept as it was (``extra``) and written back.

Each transition returns a new state; a phase change the rollout does not allow raises
``InvalidTransition`` (as ``Cycle.transition`` does for the cycle's own state).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.errors import InvalidTransition

JSON = dict[str, Any]


class Phase(enum.StrEnum):
    """Where a rollout stands; ``failed``, ``done`` and ``rolled_back`` end it."""

    CREATING = "creating"  # the new deployment is being created at 0% traffic
    SHADOW = "shadow"  # live traffic mirrored to it, responses discarded
    CANARY = "canary"  # a share of live traffic, step by step
    RESTORING = "restoring"  # failing safe: the previous deployment not back at 100% yet
    FAILED = "failed"
    WATCH = "watch"  # promoted; the previous deployment kept warm until ``watch_until``
    DONE = "done"
    ROLLED_BACK = "rolled_back"


_P = Phase
ALLOWED_PHASES: dict[Phase, frozenset[Phase]] = {
    _P.CREATING: frozenset({_P.SHADOW, _P.CANARY, _P.RESTORING, _P.FAILED, _P.ROLLED_BACK}),
    _P.SHADOW: frozenset({_P.CANARY, _P.RESTORING, _P.FAILED, _P.ROLLED_BACK}),
    _P.CANARY: frozenset({_P.CANARY, _P.WATCH, _P.DONE, _P.RESTORING, _P.FAILED, _P.ROLLED_BACK}),
    _P.RESTORING: frozenset({_P.RESTORING, _P.FAILED, _P.ROLLED_BACK}),
    _P.WATCH: frozenset({_P.DONE, _P.ROLLED_BACK}),
    _P.FAILED: frozenset(),
    _P.DONE: frozenset(),
    _P.ROLLED_BACK: frozenset(),
}


def traffic_text(traffic: Mapping[str, int]) -> str:
    """``{'m-v2': 90, 'm-v1': 10}`` as ``m-v2 90%, m-v1 10%`` (largest share first)."""
    if not traffic:
        return "no traffic"
    ordered = sorted(traffic.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} {percent}%" for name, percent in ordered)


def _time(raw: Any) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True, slots=True)
class Step:
    """One traffic change of the rollout (the shadow step mirrors ``mirror`` percent)."""

    percent: int
    at: datetime
    traffic: Mapping[str, int]
    mirror: int | None = None

    def to_json(self) -> JSON:
        data: JSON = {"percent": self.percent}
        if self.mirror is not None:
            data["mirror"] = self.mirror
        data.update(at=self.at.isoformat(), traffic=dict(self.traffic))
        return data

    @classmethod
    def from_json(cls, data: JSON) -> Step:
        at = _time(data.get("at"))
        assert at is not None, "a rollout step records when it began"
        return cls(data.get("percent", 0), at, dict(data.get("traffic") or {}), data.get("mirror"))


@dataclass(frozen=True, slots=True)
class Check:
    """One look at a running step: its verdict and why, and the evidence the console draws
    (window, percent, the samples or the sequential judge's bounds) in ``evidence``."""

    at: datetime
    verdict: str
    why: str
    evidence: JSON = field(default_factory=dict)

    @property
    def sequential(self) -> bool:
        return bool(self.evidence.get("analysis") == "sequential")

    @property
    def step(self) -> int | None:
        step = self.evidence.get("step")
        return step if isinstance(step, int) else None

    @property
    def new_requests(self) -> int | None:
        count = self.evidence.get("new_requests")
        return count if isinstance(count, int) else None

    def bounds(self) -> JSON:
        """The sequential look as the decision's evidence lists it (``bounds``)."""
        keys = ("errors", "latency", "new_requests", "live_requests")
        return {"at": self.at.isoformat(), **{k: self.evidence[k] for k in keys}}

    def to_json(self) -> JSON:
        return {
            "at": self.at.isoformat(),
            **self.evidence,
            "verdict": self.verdict,
            "why": self.why,
        }

    @classmethod
    def from_json(cls, data: JSON) -> Check:
        rest = {k: v for k, v in data.items() if k not in ("at", "verdict", "why")}
        at = _time(data.get("at"))
        assert at is not None, "a health check records when it ran"
        return cls(at, str(data.get("verdict", "")), str(data.get("why", "")), rest)


@dataclass(frozen=True, slots=True)
class RollingBack:
    """A rollback whose traffic change was still running: the reconciler finishes it."""

    reason: str
    evidence: JSON
    actor: str = "system"

    def to_json(self) -> JSON:
        return {"reason": self.reason, "evidence": self.evidence, "actor": self.actor}


# keys written even when None (as earlier versions did); other None values are left out
_ALWAYS = (
    "endpoint",
    "deployment",
    "previous",
    "previous_traffic",
    "previous_champion",
    "phase",
    "step",
    "step_started_at",
    "steps",
)
_TIMES = ("step_started_at", "next_check_at", "promoted_at", "watch_until")


@dataclass(frozen=True, slots=True)
class RolloutState:
    """Where one cycle's blue/green rollout stands (``Cycle.rollout``)."""

    endpoint: str = ""
    deployment: str = ""
    previous: str | None = None  # the deployment live traffic goes back to
    previous_traffic: Mapping[str, int] = field(default_factory=dict)
    previous_champion: str | None = None
    phase: Phase = Phase.CREATING
    step: int = -1  # index of the canary step (-1: none yet)
    step_started_at: datetime | None = None
    steps: tuple[Step, ...] = ()
    percent: int | None = None  # the new deployment's share now
    next_check_at: datetime | None = None
    in_progress: str | None = None  # a platform operation still running
    pending_step: int | None = None  # the step a retried traffic change must apply
    traffic_failures: int = 0
    mirror_off_pending: bool = False
    restore_attempts: int = 0
    failed_because: str = ""
    failed_evidence: JSON | None = None
    rolling_back: RollingBack | None = None
    checks: tuple[Check, ...] = ()
    held: int | None = None  # step held past the sequential judge's max_bake
    sequential_tolerance: float | None = None
    promoted_at: datetime | None = None
    watch_until: datetime | None = None
    cleanup: tuple[str, ...] = ()  # leftover deployments still to delete
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    cleanup_failures: Mapping[str, int] = field(default_factory=dict)
    cleanup_started: tuple[str, ...] = ()
    extra: JSON = field(default_factory=dict)  # keys this version does not know, kept

    # -- transitions ---------------------------------------------------------------------

    @classmethod
    def begin(
        cls,
        endpoint: str,
        deployment: str,
        previous: str | None,
        previous_traffic: Mapping[str, int],
        previous_champion: str | None,
    ) -> RolloutState:
        """A new rollout: the deployment is being created at 0% traffic."""
        return cls(endpoint, deployment, previous, dict(previous_traffic), previous_champion)

    def _to(self, phase: Phase, **changes: Any) -> RolloutState:
        if phase is not self.phase and phase not in ALLOWED_PHASES[self.phase]:
            raise InvalidTransition(f"rollout: {self.phase.value} -> {phase.value} is not allowed")
        return dataclasses.replace(self, phase=phase, **changes)

    def waiting_for(self, what: str) -> RolloutState:
        """A platform operation runs on; the reconciler's next tick checks it."""
        return dataclasses.replace(self, in_progress=what)

    def traffic_unconfirmed(self) -> RolloutState:
        return dataclasses.replace(self, traffic_failures=self.traffic_failures + 1)

    def traffic_confirmed(self) -> RolloutState:
        return dataclasses.replace(self, traffic_failures=0, in_progress=None)

    def platform_done(self) -> RolloutState:
        return dataclasses.replace(self, in_progress=None)

    def applying_step(self, index: int) -> RolloutState:
        return dataclasses.replace(self, pending_step=index)

    def in_shadow(self, at: datetime, mirror: int) -> RolloutState:
        """Live traffic mirrored to the new deployment; the previous one serves it all."""
        assert self.previous is not None
        step = Step(0, at, {self.previous: 100}, mirror)
        return self._to(Phase.SHADOW, step_started_at=at, percent=0, steps=(*self.steps, step))

    def in_step(
        self, index: int, percent: int, at: datetime, traffic: Mapping[str, int]
    ) -> RolloutState:
        """Canary step ``index`` confirmed: the new deployment takes ``percent``."""
        return self._to(
            Phase.CANARY,
            pending_step=None,
            step=index,
            percent=percent,
            step_started_at=at,
            steps=(*self.steps, Step(percent, at, dict(traffic))),
        )

    def due(self, at: datetime | None) -> RolloutState:
        """When the rollout must be looked at next (None: no check is due)."""
        return dataclasses.replace(self, next_check_at=at)

    def mirror_off(self, pending: bool) -> RolloutState:
        return dataclasses.replace(self, mirror_off_pending=pending)

    def restoring(self, because: str, evidence: JSON | None) -> RolloutState:
        """Failing safe, the restore not confirmed yet: counted, retried every tick."""
        return self._to(
            Phase.RESTORING,
            restore_attempts=self.restore_attempts + 1,
            failed_because=because,
            failed_evidence=evidence or {},
        )

    def failed(self) -> RolloutState:
        return self._to(Phase.FAILED)

    def promoted(self, at: datetime, watch_until: datetime | None) -> RolloutState:
        """Promoted: watched until ``watch_until`` (previous kept warm), or done."""
        phase = Phase.WATCH if watch_until is not None else Phase.DONE
        return self._to(phase, promoted_at=at, watch_until=watch_until, next_check_at=None)

    def watch_over(self) -> RolloutState:
        return self._to(Phase.DONE, next_check_at=None)

    def rollback_pending(self, pending: RollingBack) -> RolloutState:
        return dataclasses.replace(self, rolling_back=pending)

    def rolled_back(self) -> RolloutState:
        return self._to(Phase.ROLLED_BACK, rolling_back=None, in_progress=None)

    def checked(self, check: Check) -> RolloutState:
        return dataclasses.replace(self, checks=(*self.checks, check))

    def with_checks(self, checks: tuple[Check, ...]) -> RolloutState:
        return dataclasses.replace(self, checks=checks)

    def holding(self, step: int) -> RolloutState:
        return dataclasses.replace(self, held=step)

    def judged_with(self, tolerance: float) -> RolloutState:
        return dataclasses.replace(self, sequential_tolerance=tolerance)

    def cleanup_pending(self, names: tuple[str, ...]) -> RolloutState:
        return dataclasses.replace(self, cleanup=names)

    def deployment_done(self, outcome: str, name: str) -> RolloutState:
        """``name`` leaves clean-up as ``removed`` or ``kept``."""
        if outcome == "removed":
            added = self.removed if name in self.removed else (*self.removed, name)
            return dataclasses.replace(self, removed=added)
        assert outcome == "kept", outcome
        added = self.kept if name in self.kept else (*self.kept, name)
        return dataclasses.replace(self, kept=added)

    def deletion_failed(self, name: str) -> RolloutState:
        failures = {**self.cleanup_failures, name: self.cleanup_failures.get(name, 0) + 1}
        return dataclasses.replace(self, cleanup_failures=failures)

    def deletion_started(self, name: str) -> RolloutState:
        return dataclasses.replace(self, cleanup_started=(*self.cleanup_started, name))

    # -- queries -------------------------------------------------------------------------

    @property
    def judging(self) -> bool:
        """A shadow or canary step runs and is judged."""
        return self.phase in (Phase.SHADOW, Phase.CANARY)

    def traffic_for(self, percent: int) -> dict[str, int]:
        """The endpoint's traffic with the new deployment at ``percent``."""
        traffic = {self.deployment: percent}
        if self.previous and percent < 100:
            traffic[self.previous] = 100 - percent
        elif self.previous:
            traffic[self.previous] = 0
        return traffic

    def stage(self) -> str:
        """The running stage in words: ``shadow`` or ``canary at N%``."""
        return "shadow" if self.phase is Phase.SHADOW else f"canary at {self.percent}%"

    # -- JSON at the boundary ------------------------------------------------------------

    def to_json(self) -> JSON:
        data: JSON = {**self.extra}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and (value is not None or f.name in _ALWAYS):
                data[f.name] = _dump(f.name, value)
        return data

    @classmethod
    def from_json(cls, data: JSON) -> RolloutState:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: _load(k, v) for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)


def _dump(name: str, value: Any) -> Any:
    if name in _TIMES:
        return _iso(value)
    if name in ("steps", "checks"):
        return [item.to_json() for item in value]
    if name in ("cleanup", "removed", "kept", "cleanup_started"):
        return list(value)
    if name in ("previous_traffic", "cleanup_failures"):
        return dict(value)
    if name == "rolling_back":
        return value.to_json() if value else None
    if name == "phase":
        return value.value
    return value


def _load(name: str, raw: Any) -> Any:
    if name in _TIMES:
        return _time(raw)
    if name == "phase":
        return Phase(raw) if raw else Phase.CREATING
    if name == "steps":
        return tuple(Step.from_json(s) for s in raw or ())
    if name == "checks":
        return tuple(Check.from_json(c) for c in raw or ())
    if name in ("cleanup", "removed", "kept", "cleanup_started"):
        return tuple(raw or ())
    if name in ("previous_traffic", "cleanup_failures"):
        return dict(raw or {})
    if name == "rolling_back":
        return (
            RollingBack(raw["reason"], raw.get("evidence") or {}, raw.get("actor", "system"))
            if raw
            else None
        )
    if name in ("traffic_failures", "restore_attempts"):
        return int(raw or 0)
    if name == "mirror_off_pending":
        return bool(raw)
    if name in ("endpoint", "deployment", "failed_because"):
        return raw or ""
    return raw
