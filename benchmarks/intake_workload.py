"""The intake benchmark's workload: a policy of many models and an event storm as a workspace
produces it (redeliveries, other teams' runs, unbound and bound drift signals)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from shared.policy import Policy, parse_policy
from tests.fakes import FakePlatform

AML = "Microsoft.MachineLearningServices."
TOPIC = (
    "/subscriptions/6a3a1b0c-1d2e-4f50-9a8b-0c1d2e3f4a5b/resourceGroups/ml-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/ml-prod-ws"
)

BATCH_SIZE = 100


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of a batch (the rest after ``duplicate`` is new events)."""

    duplicate: float = 0.5  # redelivery of an event already processed
    running: float = 0.2  # RunStatusChanged Running/Finalizing of someone's job: not terminal
    foreign_done: float = 0.05  # RunCompleted of a job no cycle submitted
    deployed: float = 0.05  # ModelDeployed: recorded only
    unbound_drift: float = 0.1  # v2 monitor breach / v1 drift of a monitor no model is bound to
    drift: float = 0.1  # bound drift signal: starts a cycle or coalesces into the active one

    def kinds(self) -> list[tuple[str, float]]:
        return [(k, v) for k, v in asdict(self).items() if v > 0]


def model_name(i: int) -> str:
    return f"m{i:04d}"


def policy_data(models: int, *, mode: str = "live") -> dict[str, Any]:
    """A policy with ``models`` models, each bound to its own monitor, v1 drift monitor and
    alert rule. Cooldown 0, so a model whose cycle closed can start the next at once."""
    specs: dict[str, Any] = {}
    for i in range(models):
        name = model_name(i)
        specs[name] = {
            "signals": {
                "drift_alerts": [f"{name}-drift"],
                "monitors": [{"name": f"{name}-monitor"}],
                "datadrift": [f"{name}-datadrift"],
            },
            "training": {
                "experiment": f"{name}-retrain",
                "command": ["{python}", "-c", "pass"],
            },
            "gate": {"primary_metric": "auc"},
            "rollout": {"endpoint": f"{name}-ep"},
        }
    return {"version": 1, "defaults": {"mode": mode, "cooldown": "0s"}, "models": specs}


def build_policy(models: int, *, mode: str = "live") -> Policy:
    return parse_policy(policy_data(models, mode=mode), f"bench-{models}-{mode}")


class EventStream:
    """A reproducible stream of Azure ML events (Event Grid schema, camelCase data)."""

    def __init__(self, models: int, mix: Mix | None = None, seed: int = 7) -> None:
        self.models = models
        self.mix = mix or Mix()
        self.rng = random.Random(seed)
        self.delivered: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []  # job-failed events for our submitted jobs
        self.counts: Counter[str] = Counter()
        self._kinds, self._weights = zip(*self.mix.kinds(), strict=True)
        self._seen_jobs: set[str] = set()
        self.last_kinds: list[str] = []

    def _id(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _run(
        self,
        run_id: str,
        status: str | None,
        *,
        experiment: str,
        tags: dict[str, str] | None = None,
        event_type: str = "RunStatusChanged",
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "experimentId": self._id(),
            "experimentName": experiment,
            "runId": run_id,
            "runType": "azureml.scriptrun",
            "runTags": tags or {},
            "runProperties": {
                "_azureml.ComputeTargetType": "amlcompute",
                "ContentSnapshotId": self._id(),
                "azureml.git.repository_uri": "https://example.invalid/team/repo.git",
                "azureml.git.branch": "main",
                "mlflow.source.git.commit": f"{self.rng.getrandbits(160):040x}",
                "ProcessInfoFile": "azureml-logs/process_info.json",
                "ProcessStatusFile": "azureml-logs/process_status.json",
            },
        }
        if status is not None:
            data["runStatus"] = status
        return {
            "topic": TOPIC,
            "subject": f"experiments/{data['experimentId']}/runs/{run_id}",
            "eventType": AML + event_type,
            "eventTime": "2026-01-01T12:00:00.0000000Z",
            "id": self._id(),
            "data": data,
            "dataVersion": "2",
            "metadataVersion": "1",
        }

    def _new(self, kind: str) -> dict[str, Any]:
        rng = self.rng
        model = model_name(rng.randrange(self.models))
        if kind == "running":
            status = rng.choice(("Running", "Finalizing", "Queued", "Preparing"))
            return self._run(f"team_job_{self._id()[:13]}", status, experiment="team-experiment")
        if kind == "foreign_done":
            return self._run(
                f"team_job_{self._id()[:13]}", None, experiment="team", event_type="RunCompleted"
            )
        if kind == "deployed":
            return {
                "topic": TOPIC,
                "subject": "endpoints/team-endpoint",
                "eventType": AML + "ModelDeployed",
                "eventTime": "2026-01-01T12:00:00Z",
                "id": self._id(),
                "data": {
                    "serviceName": "team-endpoint",
                    "serviceComputeType": "Managed",
                    "modelIds": "team_model:3,team_model:4",
                    "serviceTags": {"area": "ops"},
                    "serviceProperties": {},
                },
                "dataVersion": "2",
                "metadataVersion": "1",
            }
        monitor = "other-team-monitor" if kind == "unbound_drift" else f"{model}-monitor"
        if rng.random() < 0.5:  # v2 model monitor breach
            return self._run(
                f"{monitor}-run-{self._id()[:8]}",
                "Failed",
                experiment=monitor,
                tags={
                    "azureml_modelmonitor_threshold_breached": f"Monitor {monitor} signal "
                    "data-drift has failed due to one or more features violating thresholds"
                },
            )
        drift = "other-team-datadrift" if kind == "unbound_drift" else f"{model}-datadrift"
        return {
            "topic": TOPIC,
            "subject": f"datadrifts/{self._id()}/runs/{self._id()}",
            "eventType": AML + "DatasetDriftDetected",
            "eventTime": "2026-01-01T12:00:00Z",
            "id": self._id(),
            "data": {
                "dataDriftId": self._id(),
                "dataDriftName": drift,
                "runId": self._id(),
                "baseDatasetId": self._id(),
                "targetDatasetId": self._id(),
                "driftCoefficient": round(rng.uniform(0.3, 0.9), 6),
                "startTime": "2026-01-01T00:00:00+00:00",
                "endTime": "2026-01-02T00:00:00+00:00",
            },
            "dataVersion": "2",
            "metadataVersion": "1",
        }

    def note_jobs(self, platform: FakePlatform) -> None:
        """Queue a job-failed event (next batch) for every job the platform accepted."""
        for request in platform.submitted:
            if request.name in self._seen_jobs:
                continue
            self._seen_jobs.add(request.name)
            self.failures.append(
                self._run(request.name, "Failed", experiment=request.experiment, tags=request.tags)
            )

    def batch(self, size: int) -> list[dict[str, Any]]:
        """The next ``size`` events; their kinds are in ``last_kinds``."""
        events: list[dict[str, Any]] = []
        kinds: list[str] = []
        self.last_kinds = kinds
        while self.failures and len(events) < size:
            events.append(self.failures.pop())
            kinds.append("job_failed")
            self.counts["job_failed"] += 1
        while len(events) < size:
            kind = self.rng.choices(self._kinds, self._weights)[0]
            if kind == "duplicate":
                if not self.delivered:
                    continue
                events.append(self.delivered[self.rng.randrange(len(self.delivered))])
            else:
                event = self._new(kind)
                self.delivered.append(event)
                events.append(event)
            kinds.append(kind)
            self.counts[kind] += 1
        return events
