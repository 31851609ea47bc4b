"""Retraining jobs, the evaluation gate, registration of the candidate."""

from __future__ import annotations

from datetime import timedelta

from shared.errors import AlreadyExists, Conflict, NotFound, PermanentError
from shared.gate import decide
from shared.lifecycle import (
    CYCLE_TAG,
    cycle_id_for,
    is_stale,
    job_name_for,
    load,
    move,
    note,
    publish,
)
from shared.messagebus import Services
from shared.messages import (
    CheckJob,
    JobStatusChanged,
    Reevaluate,
    RegisterCandidate,
    ResumeCycle,
    StartRetraining,
)
from shared.model import AuditKind, Cycle, CycleState, JobRequest, JobStatus


def _job_request(cycle: Cycle, svc: Services) -> JobRequest:
    spec = svc.policy.models[cycle.model]
    champion = svc.platform.champion_version(
        cycle.model, spec.rollout.endpoint if spec.rollout else None
    )
    inputs: dict[str, object] = dict(spec.training.inputs)
    inputs.setdefault("model_name", cycle.model)
    if champion:
        inputs.setdefault("champion_version", champion)
    return JobRequest(
        name=cycle.job_name or job_name_for(cycle.id),
        model=cycle.model,
        experiment=spec.training.experiment,
        command=spec.training.command,
        job_file=spec.training.job_file,
        inputs=inputs,
        tags={
            CYCLE_TAG: cycle.id,
            "autopilot_model": cycle.model,
            "autopilot_trigger": str(cycle.trigger.get("signal", ""))[:256],
        },
        timeout_s=spec.training.timeout,
        environment=dict(spec.training.environment),
    )


def start_retraining(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """Record the intent (job name) first, then submit; a name conflict means 'already done'."""
    cycle.job_name = job_name_for(cycle.id)
    cycle.job_submitted_at = svc.now()
    move(
        svc,
        cycle,
        CycleState.RETRAINING,
        f"submitting training job {cycle.job_name}",
        caused_by=caused_by,
    )
    submit_job(cycle, svc, caused_by)


def submit_job(cycle: Cycle, svc: Services, caused_by: str) -> None:
    request = _job_request(cycle, svc)
    try:
        info = svc.platform.submit_job(request)
        summary = f"training job {info.name} submitted"
    except AlreadyExists:
        info = svc.platform.get_job(request.name)
        summary = f"training job {info.name} was already submitted ({info.status.value})"
    except PermanentError as exc:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"job submission failed: {exc}",
            caused_by=caused_by,
            kind=AuditKind.ERROR,
        )
        return
    note(
        svc,
        AuditKind.ACTION,
        summary,
        cycle,
        caused_by=caused_by,
        evidence={
            "job": request.name,
            "experiment": request.experiment,
            "inputs": request.inputs,
            "tags": request.tags,
        },
    )
    publish(svc, cycle, "job.submitted", {"job": request.name})


def resume_if_stalled(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """A redelivered start event found its own cycle: finish what a crash may have cut short."""
    if cycle.state is CycleState.TRIGGERED:
        if not svc.audit.query(cycle=cycle.id, limit=1):  # crashed before saying it started
            note(
                svc,
                AuditKind.DECISION,
                "retraining cycle started",
                cycle,
                reason="resumed: the first attempt stopped before submitting the job",
                evidence=cycle.trigger,
                caused_by=caused_by,
            )
        start_retraining(cycle, svc, caused_by)
        return
    if cycle.state is CycleState.RETRAINING and cycle.job_name:
        try:
            svc.platform.get_job(cycle.job_name)
        except NotFound:
            submit_job(cycle, svc, caused_by)
            return
    note(
        svc,
        AuditKind.IGNORED,
        "duplicate of the signal that started this cycle",
        cycle,
        caused_by=caused_by,
    )


def on_job_status(msg: JobStatusChanged, svc: Services) -> None:
    cycle = svc.store.find_cycle_by_job(msg.job_name)
    if cycle is None:
        cycle_id = msg.tags.get(CYCLE_TAG)
        cycle = svc.store.get_cycle(cycle_id) if cycle_id else None
    if cycle is None:
        adopted = _adopt_foreign_job(msg, svc)
        if adopted is None:
            note(
                svc,
                AuditKind.IGNORED,
                f"job {msg.job_name} is not one of ours",
                reason="no cycle submitted this job, and no model's policy adopts completed jobs "
                f"of experiment {msg.experiment!r} (training.accept_foreign_jobs)",
                evidence={"status": msg.status, "experiment": msg.experiment},
                caused_by=msg.event_key,
            )
            return
        cycle = adopted
    if cycle.state is not CycleState.RETRAINING:
        note(
            svc,
            AuditKind.IGNORED,
            f"job {msg.job_name} {msg.status}: already handled",
            cycle,
            reason=f"cycle is {cycle.state.value}",
            caused_by=msg.event_key,
        )
        return
    finish_job(cycle, svc, JobStatus(msg.status), msg.event_key)


def _adopt_foreign_job(msg: JobStatusChanged, svc: Services) -> Cycle | None:
    """A completed job of a model's training experiment, run by someone else (a team's own
    pipeline), becomes a candidate when the policy opts in: it is gated like our own."""
    if msg.status != JobStatus.COMPLETED.value or not msg.experiment:
        return None
    model = next(
        (
            name
            for name, spec in svc.policy.models.items()
            if spec.training.accept_foreign_jobs and spec.training.experiment == msg.experiment
        ),
        None,
    )
    if model is None:
        return None
    now = svc.now()
    cycle = Cycle(
        id=cycle_id_for(model, msg.event_key),
        model=model,
        state=CycleState.TRIGGERED,
        created_at=now,
        updated_at=now,
        trigger={"source": "foreign_job", "signal": msg.job_name, "experiment": msg.experiment},
        caused_by=msg.event_key,
    )
    holder = svc.store.create_cycle(cycle)
    if holder is not None:
        note(
            svc,
            AuditKind.DECISION,
            f"foreign job {msg.job_name} not adopted",
            model=model,
            reason=f"{model} already has an active cycle ({holder})",
            caused_by=msg.event_key,
        )
        return None
    cycle.job_name = msg.job_name
    cycle.job_submitted_at = now
    move(
        svc,
        cycle,
        CycleState.RETRAINING,
        f"adopted completed job {msg.job_name} of experiment {msg.experiment} as a candidate",
        caused_by=msg.event_key,
    )
    return cycle


def finish_job(
    cycle: Cycle,
    svc: Services,
    status: JobStatus,
    caused_by: str,
    kind: AuditKind = AuditKind.DECISION,
) -> None:
    if status is JobStatus.COMPLETED:
        move(
            svc,
            cycle,
            CycleState.EVALUATING,
            f"job {cycle.job_name} completed",
            caused_by=caused_by,
            kind=kind,
        )
        evaluate(cycle, svc, caused_by)
        return
    error = ""
    if cycle.job_name:
        try:
            error = svc.platform.get_job(cycle.job_name).error
        except NotFound:
            error = "job not found on the platform"
    move(
        svc,
        cycle,
        CycleState.FAILED,
        f"job {cycle.job_name} {status.value.lower()}" + (f": {error}" if error else ""),
        caused_by=caused_by,
        kind=kind,
    )


def evaluate(cycle: Cycle, svc: Services, caused_by: str) -> None:
    """Gate the candidate on the evaluation its job wrote; reject, await approval or register."""
    spec = svc.policy.models[cycle.model]
    assert cycle.job_name
    try:
        document = svc.platform.get_evaluation(cycle.job_name)
        decision = decide(document, spec.gate)
    except PermanentError as exc:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"evaluation unusable: {exc}",
            caused_by=caused_by,
            kind=AuditKind.ERROR,
        )
        return
    cycle.decision = svc.redactor.json(decision.to_json())  # the job wrote its inputs
    cycle.champion_version = decision.champion_version
    evidence = {"gate": cycle.decision, "n": document.get("n")}
    publish(
        svc,
        cycle,
        "gate.passed" if decision.passed else "gate.failed",
        {"summary": decision.summary},
    )
    if not decision.passed:
        move(
            svc,
            cycle,
            CycleState.REJECTED,
            f"gate rejected: {decision.summary}",
            caused_by=caused_by,
            evidence=evidence,
        )
        return
    if spec.gate.approval_required:
        move(
            svc,
            cycle,
            CycleState.AWAITING_APPROVAL,
            f"gate passed; awaiting approval ({decision.summary})",
            caused_by=caused_by,
            evidence=evidence,
        )
        return
    note(
        svc,
        AuditKind.DECISION,
        "gate passed",
        cycle,
        reason=decision.summary,
        evidence=evidence,
        caused_by=caused_by,
    )
    register_candidate(cycle, svc, caused_by)


def register_candidate(cycle: Cycle, svc: Services, caused_by: str, actor: str = "system") -> None:
    assert cycle.job_name
    tags = {
        CYCLE_TAG: cycle.id,
        "autopilot_job": cycle.job_name,
        "autopilot_trigger": str(cycle.trigger.get("signal", ""))[:256],
        "autopilot_gate": "passed",
    }
    try:
        version = svc.platform.register_model(cycle.model, cycle.job_name, tags)
    except PermanentError as exc:
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"registration failed: {exc}",
            caused_by=caused_by,
            kind=AuditKind.ERROR,
        )
        return
    cycle.candidate_version = version
    move(
        svc,
        cycle,
        CycleState.REGISTERED,
        f"registered {cycle.model} v{version}",
        caused_by=caused_by,
        kind=AuditKind.ACTION,
        evidence={"tags": tags},
        actor=actor,
    )
    publish(svc, cycle, "model.registered", {"version": version})
    if svc.policy.models[cycle.model].rollout is None:
        svc.platform.set_champion(cycle.model, version)
        move(
            svc,
            cycle,
            CycleState.PROMOTED,
            "no rollout in the policy: registered is final",
            caused_by=caused_by,
        )


def job_overdue(cycle: Cycle, svc: Services) -> bool:
    spec = svc.policy.models.get(cycle.model)
    if spec is None or cycle.job_submitted_at is None:
        return False
    return svc.now() - cycle.job_submitted_at > timedelta(seconds=spec.training.timeout)


def check_job(cycle: Cycle, svc: Services, key: str) -> None:
    """The reconciler's look at a RETRAINING cycle's job: submit a lost one, finish a done
    one (its event may have been lost), fail one past its timeout."""
    assert cycle.job_name
    try:
        info = svc.platform.get_job(cycle.job_name)
    except NotFound:
        if is_stale(cycle, svc):  # intent recorded, submission lost (crash): submit it now
            submit_job(cycle, svc, key)
        return
    if info.status.is_terminal:
        finish_job(cycle, svc, info.status, key, kind=AuditKind.RECONCILED)
    elif job_overdue(cycle, svc):
        move(
            svc,
            cycle,
            CycleState.FAILED,
            f"job {cycle.job_name} still {info.status.value} past its timeout",
            caused_by=key,
            kind=AuditKind.RECONCILED,
        )


# --- follow-up work the bus runs (each reads its cycle again) -----------------------------


def on_start_retraining(msg: StartRetraining, svc: Services) -> None:
    """Start a TRIGGERED cycle's job. Run again (an outbox intent performed a second time,
    after a crash or an outage), it finds the cycle moved on and resumes it instead."""
    cycle = load(svc, msg.cycle_id)
    if cycle is None:
        return
    if cycle.state is CycleState.TRIGGERED:
        start_retraining(cycle, svc, msg.event_key)
    else:
        resume_if_stalled(cycle, svc, msg.event_key)


def on_resume(msg: ResumeCycle, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id)
    if cycle is not None:
        resume_if_stalled(cycle, svc, msg.event_key)


def on_check_job(msg: CheckJob, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id, CycleState.RETRAINING)
    if cycle is not None:
        check_job(cycle, svc, msg.event_key)


def on_reevaluate(msg: Reevaluate, svc: Services) -> None:
    cycle = load(svc, msg.cycle_id, CycleState.EVALUATING)
    if cycle is not None:
        svc.store.save_cycle(cycle)  # claim it (version bump) before redoing the evaluation
        evaluate(cycle, svc, msg.event_key)


def on_register(msg: RegisterCandidate, svc: Services) -> None:
    """An approved candidate. A re-run after a lost race finds it no longer awaiting
    approval, as a re-run of the approval would."""
    cycle = load(svc, msg.cycle_id)
    if cycle is None:
        raise NotFound(f"no cycle {msg.cycle_id!r}")
    if cycle.state is not CycleState.AWAITING_APPROVAL:
        raise Conflict(f"cycle {cycle.id} is {cycle.state.value}, not AWAITING_APPROVAL")
    register_candidate(cycle, svc, msg.event_key, actor=msg.actor)
