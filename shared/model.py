"""Domain records: the retraining cycle and its state machine, audit records, platform values.

A *cycle* is one retraining attempt for one model, from the drift signal to promotion,
rejection, rollback or failure. It is persisted by the state store and changed only through
:func:`Cycle.transition`, which refuses moves the state machine does not allow.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime

from shared.errors import InvalidTransition as InvalidTransition  # re-exported
from shared.rollout_state import JSON as JSON
from shared.rollout_state import RolloutState


class CycleState(enum.StrEnum):
    TRIGGERED = "TRIGGERED"
    RETRAINING = "RETRAINING"
    EVALUATING = "EVALUATING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    REGISTERED = "REGISTERED"
    ROLLING_OUT = "ROLLING_OUT"
    PROMOTED = "PROMOTED"
    REJECTED = "REJECTED"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"

    @property
    def is_active(self) -> bool:
        return self not in CLOSED_STATES


CLOSED_STATES = frozenset(
    {CycleState.PROMOTED, CycleState.REJECTED, CycleState.ROLLED_BACK, CycleState.FAILED}
)

_S = CycleState
ALLOWED_TRANSITIONS: dict[CycleState, frozenset[CycleState]] = {
    _S.TRIGGERED: frozenset({_S.RETRAINING, _S.FAILED}),
    _S.RETRAINING: frozenset({_S.EVALUATING, _S.FAILED}),
    _S.EVALUATING: frozenset({_S.REJECTED, _S.AWAITING_APPROVAL, _S.REGISTERED, _S.FAILED}),
    _S.AWAITING_APPROVAL: frozenset({_S.REGISTERED, _S.REJECTED, _S.FAILED}),
    _S.REGISTERED: frozenset({_S.ROLLING_OUT, _S.PROMOTED, _S.FAILED}),
    _S.ROLLING_OUT: frozenset({_S.PROMOTED, _S.ROLLED_BACK, _S.FAILED}),
    _S.PROMOTED: frozenset({_S.ROLLED_BACK}),
    _S.REJECTED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Transition:
    state: CycleState
    at: datetime
    reason: str


@dataclass(slots=True)
class Cycle:
    """One retraining cycle of one model. ``version`` guards concurrent updates."""

    id: str
    model: str
    state: CycleState
    created_at: datetime
    updated_at: datetime
    trigger: JSON = field(default_factory=dict)
    caused_by: str = ""
    dry_run: bool = False
    job_name: str | None = None
    job_submitted_at: datetime | None = None
    candidate_version: str | None = None
    champion_version: str | None = None
    decision: JSON | None = None
    rollout: RolloutState | None = None
    coalesced: int = 0
    reason: str = ""
    history: list[Transition] = field(default_factory=list)
    version: int = 0

    @property
    def is_active(self) -> bool:
        return self.state.is_active

    @property
    def candidate(self) -> str:
        """The candidate model in words: its registered version once there is one, else the
        job that trains it and why it has no version (yet)."""
        if self.candidate_version:
            return f"v{self.candidate_version}"
        if not self.job_name:
            return "none yet (no training job)"
        tail = {
            CycleState.RETRAINING: "being trained",
            CycleState.EVALUATING: "being evaluated",
            CycleState.AWAITING_APPROVAL: "gets its version when approved",
            CycleState.REJECTED: "not registered: rejected",
        }.get(self.state, "not registered")
        return f"model of job {self.job_name} ({tail})"

    def transition(self, new_state: CycleState, at: datetime, reason: str) -> None:
        if new_state not in ALLOWED_TRANSITIONS[self.state]:
            raise InvalidTransition(
                f"cycle {self.id}: {self.state.value} -> {new_state.value} is not allowed"
            )
        self.state = new_state
        self.updated_at = at
        self.reason = reason
        self.history.append(Transition(new_state, at, reason))

    def to_json(self) -> JSON:
        """A JSON-ready view. Nested dicts are shared, not copied: serialise it, do not keep it
        (``dataclasses.asdict`` deep-copies and was a third of the intake's cost)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["state"] = self.state.value
        data["rollout"] = self.rollout.to_json() if self.rollout is not None else None
        for key in ("created_at", "updated_at", "job_submitted_at"):
            value = getattr(self, key)
            data[key] = value.isoformat() if value else None
        data["history"] = [
            {"state": t.state.value, "at": t.at.isoformat(), "reason": t.reason}
            for t in self.history
        ]
        return data

    def to_view(self) -> JSON:
        """``to_json`` plus what readers want spelled out (``candidate`` in words); for API
        answers, never stored (a store reading it back would refuse the unknown field)."""
        return {**self.to_json(), "candidate": self.candidate}

    @classmethod
    def from_json(cls, data: JSON) -> Cycle:
        values = dict(data)
        values["state"] = CycleState(values["state"])
        raw_rollout = values.get("rollout")  # {} was written by nothing but is read as none
        values["rollout"] = RolloutState.from_json(raw_rollout) if raw_rollout else None
        for key in ("created_at", "updated_at", "job_submitted_at"):
            raw = values.get(key)
            values[key] = datetime.fromisoformat(raw) if raw else None
        values["history"] = [
            Transition(CycleState(t["state"]), datetime.fromisoformat(t["at"]), t["reason"])
            for t in values.get("history", [])
        ]
        return cls(**values)


class AuditKind(enum.StrEnum):
    EVENT_RECEIVED = "event_received"
    DECISION = "decision"
    ACTION = "action"
    ERROR = "error"
    IGNORED = "ignored"
    REJECTED = "rejected"
    RECONCILED = "reconciled"
    ANCHOR = "anchor"  # a record of the anchor chain: every chain's head at one moment


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a caller asks the audit log to append; the log adds seq, time and hashes."""

    kind: AuditKind
    summary: str
    actor: str = "system"
    model: str | None = None
    version: str | None = None
    cycle: str | None = None
    reason: str = ""
    evidence: JSON = field(default_factory=dict)
    caused_by: str | None = None
    # ``evidence``'s canonical JSON when the caller already encoded it (``Services.entry``):
    # the log hashes and stores this text as it is instead of encoding the evidence again.
    evidence_json: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit record. ``hash`` covers every other field plus ``prev_hash``."""

    seq: int
    time: datetime
    kind: AuditKind
    summary: str
    actor: str
    model: str | None
    version: str | None
    cycle: str | None
    reason: str
    evidence: JSON
    caused_by: str | None
    prev_hash: str
    hash: str
    # Which of the audit log's chains holds the record (0 = the first; structural, so not
    # hashed: records written before sharding keep their hashes).
    chain: int = 0

    def to_json(self) -> JSON:
        """A JSON-ready view; ``evidence`` is shared, not copied (``asdict`` deep-copies it,
        recursively: a deeply nested evidence raised RecursionError)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["time"] = self.time.isoformat()
        data["kind"] = self.kind.value
        return data


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int
    first_bad_seq: int | None = None
    problem: str = ""
    chain: str | None = None  # the chain of the first bad record: "0", "1", ... or "anchor"


class JobStatus(enum.StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True, slots=True)
class JobRequest:
    """Everything the platform needs to run one training job. Built from the policy only."""

    name: str
    model: str
    experiment: str
    command: tuple[str, ...] = ()
    job_file: str | None = None
    inputs: JSON = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 3600.0
    # training.environment: name -> value, or None = passed through from the service's env
    environment: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobInfo:
    name: str
    status: JobStatus
    tags: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class HealthSample:
    """Request health of one deployment over one window."""

    requests: int
    errors: int
    latency_p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0
