"""Azure ML run (job) statuses and what they mean to a cycle: one table for events and polls.

The names are azure-ai-ml's run-history statuses (``operations/_run_history_constants.py``).
Its ``TERMINAL_STATUSES`` are Completed, Failed, Canceled, NotResponding and Paused. We end a
cycle on the first four (NotResponding: the run stopped sending heartbeats; counted as failed).
Paused is left open: only a user pauses a job and may resume it, and the policy's job timeout
ends a cycle whose job stays paused.
"""

from __future__ import annotations

from shared.model import JobStatus

AZURE_RUN_STATUS: dict[str, JobStatus] = {
    "NotStarted": JobStatus.QUEUED,
    "Queued": JobStatus.QUEUED,
    "Preparing": JobStatus.QUEUED,
    "Provisioning": JobStatus.QUEUED,
    "Starting": JobStatus.QUEUED,
    "Scheduled": JobStatus.QUEUED,
    "Paused": JobStatus.QUEUED,
    "Running": JobStatus.RUNNING,
    "Finalizing": JobStatus.RUNNING,
    "CancelRequested": JobStatus.RUNNING,
    "Completed": JobStatus.COMPLETED,
    "Failed": JobStatus.FAILED,
    "NotResponding": JobStatus.FAILED,
    "Canceled": JobStatus.CANCELED,
}
_BY_LOWER = {name.lower(): status for name, status in AZURE_RUN_STATUS.items()}


def azure_run_status(name: str) -> JobStatus | None:
    """Our status for an Azure ML run status name (any case); None if the name is unknown."""
    return _BY_LOWER.get(name.strip().lower())
