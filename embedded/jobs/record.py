"""A job's record: what ``job.json`` holds, and the rule for job names."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from embedded.events import utc_iso
from shared.model import JobInfo, JobStatus

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")


@dataclass(slots=True)
class JobRecord:
    """What ``job.json`` holds."""

    name: str
    model: str
    experiment: str
    argv: list[str]
    inputs: dict[str, Any]
    tags: dict[str, str]
    timeout_s: float
    # policy-declared variables: a value, or None = pass through from the service's environment
    environment: dict[str, str | None] = field(default_factory=dict)
    status: str = JobStatus.QUEUED.value
    error: str = ""
    experiment_id: str = ""
    exit_code: int | None = None
    pid: int | None = None
    pid_start: str | None = None  # the process's start time: tells it from a reused pid
    runner_pid: int = field(default_factory=os.getpid)
    created_at: str = field(default_factory=utc_iso)
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)

    def info(self) -> JobInfo:
        return JobInfo(self.name, self.job_status, dict(self.tags), self.error)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRecord:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
