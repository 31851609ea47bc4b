"""Event normalisation: delivered Azure ML events and Azure Monitor alerts -> bus messages.

Everything here treats the payload as untrusted data: values are read case-insensitively,
type-checked and length-limited, and bound to a model only through the policy. Nothing in
a payload chooses a command, a path or a deployment target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.envelope import Envelope
from shared.errors import BadEvent
from shared.messages import (
    DriftSignalled,
    EventIgnored,
    HealthAlertFired,
    JobStatusChanged,
    Message,
    ModelRegistered,
    SignalResolved,
)
from shared.run_status import azure_run_status

if TYPE_CHECKING:
    from shared.policy import Policy

AML = "Microsoft.MachineLearningServices."
MONITOR_BREACH_TAG = "azureml_modelmonitor_threshold_breached"
MAX_TEXT = 4096


class CIDict:
    """Read-only, case-insensitive view of a JSON object (docs: PascalCase, real: camelCase)."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self._data = {str(k).lower(): v for k, v in data.items()}
        self.where = where

    def raw(self, key: str) -> Any:
        return self._data.get(key.lower())

    def text(self, key: str) -> str | None:
        """The value of ``key`` as bounded text; None when null or absent."""
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise BadEvent(f"{self.where}: {key!r} must be a string, got {type(value).__name__}")
        text = str(value)
        if len(text) > MAX_TEXT:
            raise BadEvent(f"{self.where}: {key!r} is longer than {MAX_TEXT} characters")
        return text

    def required(self, key: str) -> str:
        """As ``text``, but null or absent is a bad event naming the key."""
        text = self.text(key)
        if text is None:
            raise BadEvent(f"{self.where}: missing {key!r}")
        return text

    def mapping(self, key: str) -> dict[str, str]:
        """A string-to-string map such as runTags; null/absent is empty."""
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise BadEvent(f"{self.where}: {key!r} must be an object, got {type(value).__name__}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, dict | list):
                continue  # nested values are not tags
            text = "" if v is None else str(v)
            out[str(k)[:256]] = text[:MAX_TEXT]
        return out

    def obj(self, key: str) -> CIDict | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise BadEvent(f"{self.where}: {key!r} must be an object, got {type(value).__name__}")
        return CIDict(value, f"{self.where}.{key}")


def _data(envelope: Envelope) -> CIDict:
    if not isinstance(envelope.data, dict):
        raise BadEvent(
            f"{envelope.type} event {envelope.id!r}: 'data' must be an object, "
            f"got {type(envelope.data).__name__}"
        )
    return CIDict(envelope.data, f"{envelope.type.removeprefix(AML)} event data")


def normalise_azureml(envelope: Envelope, policy: Policy) -> Message:
    """Turn one Azure ML system event into a message. Raises BadEvent for malformed data."""
    reader = _AZUREML.get(envelope.type)
    if reader is None:
        return EventIgnored(envelope.type or "(none)", "event type not handled", envelope.dedup_key)
    return reader(envelope, policy)


def _model_registered(envelope: Envelope, policy: Policy) -> Message:
    data = _data(envelope)
    name = data.required("modelName")
    version = data.required("modelVersion")
    return ModelRegistered(name, version, data.mapping("modelTags"), envelope.dedup_key)


def _run_completed(envelope: Envelope, policy: Policy) -> Message:
    return _run_event(envelope, policy, completed=True)


def _run_status_changed(envelope: Envelope, policy: Policy) -> Message:
    return _run_event(envelope, policy, completed=False)


def _run_event(envelope: Envelope, policy: Policy, *, completed: bool) -> Message:
    """A run that ended (a job of ours, or one to adopt), or a model monitor's breach."""
    key = envelope.dedup_key
    data = _data(envelope)
    run_id = data.required("runId")
    tags = data.mapping("runTags")
    experiment = data.text("experimentName") or ""
    breach = next((v for k, v in tags.items() if k.lower() == MONITOR_BREACH_TAG), None)
    if breach is not None:
        return _monitor_breach(envelope, policy, data, breach, run_id, experiment)
    if completed:
        status = "Completed"
    else:
        raw_status = data.required("runStatus")
        known = azure_run_status(raw_status)
        if known is None or not known.is_terminal:
            return EventIgnored(
                envelope.type, f"run status {raw_status.lower()!r} is not terminal", key
            )
        status = known.value
    return JobStatusChanged(run_id, status, tags, key, experiment)


def _monitor_breach(
    envelope: Envelope, policy: Policy, data: CIDict, breach: str, run_id: str, experiment: str
) -> Message:
    """v2 model monitoring: a breach is a drift signal of the model bound to the monitor."""
    key = envelope.dedup_key
    texts = [breach, experiment, run_id, *data.mapping("runProperties").values()]
    binding = policy.bind_monitor(texts)
    if binding is None:
        return EventIgnored(
            envelope.type,
            "model monitor breach bound to no model in the policy",
            key,
            evidence={"breach": breach, "experiment": experiment},
        )
    return DriftSignalled(
        binding.model,
        "model_monitor",
        experiment or run_id,
        key,
        evidence={"breach": breach, "run_id": run_id},
    )


def _dataset_drift(envelope: Envelope, policy: Policy) -> Message:
    """v1 data drift: a drift signal of the model bound to the drift monitor."""
    data = _data(envelope)
    name = data.required("dataDriftName")
    binding = policy.bind_datadrift(name)
    evidence = {
        k: data.text(k)
        for k in ("dataDriftId", "runId", "driftCoefficient", "startTime", "endTime")
    }
    if binding is None:
        return EventIgnored(
            envelope.type,
            f"data drift monitor {name!r} is bound to no model",
            envelope.dedup_key,
            evidence=evidence,
        )
    return DriftSignalled(binding.model, "datadrift", name, envelope.dedup_key, evidence=evidence)


def _model_deployed(envelope: Envelope, policy: Policy) -> Message:
    data = _data(envelope)
    return EventIgnored(
        envelope.type,
        "deployments are driven by rollouts; recorded only",
        envelope.dedup_key,
        evidence={"service": data.text("serviceName"), "models": data.text("modelIds")},
    )


# Azure ML event type -> its reader
_AZUREML: dict[str, Callable[[Envelope, Policy], Message]] = {
    AML + "ModelRegistered": _model_registered,
    AML + "RunCompleted": _run_completed,
    AML + "RunStatusChanged": _run_status_changed,
    AML + "DatasetDriftDetected": _dataset_drift,
    AML + "ModelDeployed": _model_deployed,
}


# --- Azure Monitor common alert schema ------------------------------------------------------


def _alert_evidence(essentials: CIDict, context: Any) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        k: essentials.text(k)
        for k in ("alertId", "severity", "signalType", "firedDateTime", "resolvedDateTime")
    }
    if isinstance(context, dict):
        condition = context.get("condition")
        if isinstance(condition, dict):
            all_of = condition.get("allOf")
            if isinstance(all_of, list):
                evidence["conditions"] = all_of[:50]
            if "windowSize" in condition:
                evidence["window"] = condition.get("windowSize")
        for k in ("conditionType", "properties"):
            if context.get(k) is not None:
                evidence[k] = context.get(k)
    return evidence


def parse_alert(payload: Any, policy: Policy) -> Message:
    """Turn one common-alert-schema payload into a message. Raises BadEvent if malformed."""
    if not isinstance(payload, dict):
        raise BadEvent(f"alert must be a JSON object, got {type(payload).__name__}")
    schema = payload.get("schemaId")
    if schema != "azureMonitorCommonAlertSchema":
        raise BadEvent(f"alert schemaId must be 'azureMonitorCommonAlertSchema', got {schema!r}")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise BadEvent("alert: missing object 'data'")
    essentials = CIDict(data, "alert.data").obj("essentials")
    if essentials is None:
        raise BadEvent("alert: missing object 'data.essentials'")
    alert_id = essentials.required("alertId")
    rule = essentials.required("alertRule")
    rule_id = essentials.text("alertRuleId") or ""
    condition = essentials.required("monitorCondition")
    if condition not in ("Fired", "Resolved"):
        raise BadEvent(f"alert: monitorCondition must be 'Fired' or 'Resolved', got {condition!r}")
    when = essentials.text("resolvedDateTime" if condition == "Resolved" else "firedDateTime")
    key = "|".join(("azure-monitor", condition, alert_id, when or ""))
    evidence = _alert_evidence(essentials, data.get("alertContext"))
    evidence["rule"] = rule
    binding = policy.bind_alert(rule, rule_id)
    if binding is None:
        return EventIgnored(
            f"alert.{condition}",
            f"alert rule {rule!r} is bound to no model",
            key,
            evidence=evidence,
        )
    if condition == "Resolved" and binding.kind == "health":
        # Pending signals are drift signals: an endpoint's health recovering says nothing
        # about drift, and a rollback it caused is never undone.
        return EventIgnored(
            f"alert.{condition}",
            f"health alert rule {rule!r} resolved: nothing to undo, pending drift signals kept",
            key,
            model=binding.model,
            evidence=evidence,
        )
    if condition == "Resolved":
        return SignalResolved(binding.model, "alert", rule, key, evidence=evidence)
    if binding.kind == "health":
        return HealthAlertFired(binding.model, rule, key, evidence=evidence)
    return DriftSignalled(binding.model, "alert", rule, key, evidence=evidence)
