"""The ``estimated_performance`` signal of a model's policy: CBPE or DLE on the scored
inputs, as a retraining trigger and as a rollout guard."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shared.policy_fields import Duration, _Strict
from shared.settings import app_path


class EstimatedPerformance(_Strict):
    """Label-free performance estimate on the scored-input log: CBPE for binary classifiers
    (``shared.estimation``; metric auc, accuracy or f1), DLE for regression models
    (``shared.loss_estimation``; metric mae or rmse, lower is better).

    A trigger: every ``check_every``, the last ``window`` of live traffic is estimated; worse
    than ``threshold``, or worse than the reference (the champion's evaluation) by more than
    ``max_drop`` (a score falling) or ``max_increase`` (a loss rising), it is a drift signal.
    A guard: during canary steps and the watch period, a new deployment whose estimate is worse
    than live's by more than ``guard_tolerance`` fails the step.
    """

    method: Literal["cbpe", "dle"] | None = None  # None: from the metric
    metric: Literal["auc", "accuracy", "f1", "mae", "rmse"] = "auc"
    threshold: float | None = Field(default=None, ge=0)
    max_drop: float | None = Field(default=None, ge=0, le=1)
    max_increase: float | None = Field(default=None, ge=0)
    window: Duration = 3600.0
    min_rows: int = Field(default=500, ge=30, le=10_000_000)
    check_every: Duration = 600.0
    decision_threshold: float = Field(default=0.5, gt=0, lt=1)  # score >= this predicts 1
    guard_tolerance: float | None = Field(default=0.02, ge=0)  # None: no guard
    # labels that arrived later (CSV/JSONL with time, score, label): realised vs estimated
    ground_truth: str | None = Field(default=None, min_length=1)

    @field_validator("ground_truth")
    @classmethod
    def _app_relative(cls, value: str | None) -> str | None:
        """A local path (relative: from the app root) or a workspace blob datastore path."""
        from shared.ground_truth import WORKSPACE_DATASTORE, datastore_path

        if not value:
            return value
        if not value.lower().startswith("azureml:"):
            return str(app_path(value))
        found = datastore_path(value)
        if found is None:
            raise ValueError(
                f"{value!r}: a datastore path is azureml://datastores/{WORKSPACE_DATASTORE}/"
                "paths/<file.csv|file.jsonl|folder/>"
            )
        store, path = found
        if store != WORKSPACE_DATASTORE:
            raise ValueError(
                f"datastore {store!r}: only {WORKSPACE_DATASTORE} (the container of "
                "AUTOPILOT_COLLECTOR_CONTAINER_URL) is read"
            )
        if ".." in path.split("/") or path.startswith("/"):
            raise ValueError(f"{path!r}: a path inside the datastore, without '..'")
        return value

    @property
    def is_loss(self) -> bool:
        """Regression loss (DLE): lower is better."""
        return self.metric in LOSS_METRICS

    @model_validator(mode="after")
    def _has_a_bound(self) -> EstimatedPerformance:
        method = "dle" if self.is_loss else "cbpe"
        if self.method is not None and self.method != method:
            raise ValueError(
                f"method {self.method!r} does not estimate {self.metric!r}: "
                + (
                    "dle (regression) estimates mae or rmse"
                    if self.method == "dle"
                    else "cbpe (binary classifiers) estimates auc, accuracy or f1"
                )
            )
        if self.is_loss:
            if self.max_drop is not None:
                raise ValueError(
                    f"{self.metric} is a loss (lower is better): give 'max_increase' over the "
                    "reference, not 'max_drop'"
                )
            if self.threshold is None and self.max_increase is None:
                raise ValueError(
                    "give 'threshold' (the highest acceptable "
                    f"{self.metric}) or 'max_increase' (over the reference)"
                )
        else:
            if self.max_increase is not None:
                raise ValueError(
                    f"'max_increase' is for a loss (mae, rmse); {self.metric} falls when the "
                    "model gets worse: give 'max_drop'"
                )
            if self.threshold is None and self.max_drop is None:
                raise ValueError("give 'threshold' (absolute) or 'max_drop' (under the reference)")
            for name in ("threshold", "guard_tolerance"):
                value = getattr(self, name)
                if value is not None and value > 1:
                    raise ValueError(f"'{name}' {value:g}: {self.metric} lies in [0, 1]")
        if self.window <= 0 or self.check_every <= 0:
            raise ValueError("'window' and 'check_every' must be longer than 0s")
        return self

    def worse_by(self, baseline: float, value: float) -> float:
        """How much worse ``value`` is than ``baseline`` (positive = worse): a score falling,
        a loss rising."""
        return value - baseline if self.is_loss else baseline - value

    def breaches(self, value: float, reference: float) -> list[str]:
        """Why an estimate ``value`` breaches this policy (none: within it), against the
        reference value (the champion's evaluation)."""
        reasons = []
        if self.threshold is not None and self.worse_by(self.threshold, value) > 0:
            side = ">" if self.is_loss else "<"
            reasons.append(
                f"estimated {self.metric} {value:.4f} {side} threshold {self.threshold:g}"
            )
        worse = self.worse_by(reference, value)
        if self.max_drop is not None and _beyond(worse, self.max_drop):
            reasons.append(
                f"estimated {self.metric} {value:.4f} is {worse:.4f} under the "
                f"reference {reference:.4f} (max_drop {self.max_drop:g})"
            )
        if self.max_increase is not None and _beyond(worse, self.max_increase):
            reasons.append(
                f"estimated {self.metric} {value:.4f} is {worse:.4f} over the "
                f"reference {reference:.4f} (max_increase {self.max_increase:g})"
            )
        return reasons


def _beyond(worse: float, limit: float) -> bool:
    """``worse`` past ``limit``, a difference exactly at it not: 0.90 - 0.85 is
    0.05000000000000004 in binary, which the user wrote as max_drop 0.05."""
    return worse > limit and not math.isclose(worse, limit, rel_tol=1e-9, abs_tol=1e-12)


LOSS_METRICS = ("mae", "rmse")
