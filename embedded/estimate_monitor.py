"""The drift monitor's second signal: the label-free performance estimate of the same window.

Azure ML model monitoring reports several signals per run (data drift, prediction drift, model
performance); the demo world's monitor (``embedded.drift.DriftMonitor``) reports data drift and,
given an ``EstimateSignal``, the model's estimated performance on the endpoint's scored traffic
of the same window (CBPE for a classifier, DLE for a regression model, as the policy's
``signals.estimated_performance`` asks), with its interval, the reference value and whether the
policy's bounds are breached. It reports; the service's own reconcile-timer check is what
starts a cycle (an alert from here too would count one breach twice toward confirmation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedded.endpoint import telemetry_path
from embedded.telemetry import TelemetryStore

if TYPE_CHECKING:
    from shared.estimation import Calibrator
    from shared.loss_estimation import LossModel
    from shared.policy import EstimatedPerformance

MAX_ROWS = 1_000_000  # newest scored rows of a window


@dataclass(frozen=True, slots=True)
class EstimateReport:
    """One window's estimate, like a data-drift report: value, bounds, breached or not."""

    metric: str
    rows: int
    min_rows: int
    reference: float
    value: float | None = None
    low: float | None = None
    high: float | None = None
    reasons: tuple[str, ...] = ()

    @property
    def enough_data(self) -> bool:
        return self.value is not None

    @property
    def breached(self) -> bool:
        return bool(self.reasons)

    def summary(self) -> str:
        """One line for the monitor's log, e.g. ``estimated auc 0.66 [0.64, 0.68] vs ...``."""
        if self.value is None:
            return f"estimated {self.metric}: {self.rows} scored rows < {self.min_rows}"
        verdict = "; ".join(self.reasons) if self.reasons else "within policy"
        return (
            f"estimated {self.metric} {self.value:.4f} [{self.low:.4f}, {self.high:.4f}] "
            f"vs reference {self.reference:.4f} on {self.rows} rows: {verdict}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "rows": self.rows,
            "min_rows": self.min_rows,
            "reference": self.reference,
            "value": self.value,
            "interval": None if self.value is None else [self.low, self.high],
            "breached": self.breached,
            "reasons": list(self.reasons),
        }


class EstimateSignal:
    """Estimates a model's performance on an endpoint's scored rows of a window."""

    def __init__(
        self,
        data_dir: Path,
        *,
        endpoint: str,
        spec: EstimatedPerformance,
        fitted: Calibrator | LossModel,
        reference: float,
        deployment: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.spec = spec
        self.fitted = fitted
        self.reference = reference
        self.deployment = deployment
        self._store = TelemetryStore(telemetry_path(data_dir.resolve()))

    def evaluate(self, start: datetime, end: datetime) -> EstimateReport:
        from shared.loss_estimation import estimate_with

        spec = self.spec
        scores = self._store.scores(
            self.endpoint, self.deployment, start.timestamp(), end.timestamp(), MAX_ROWS
        )
        base = EstimateReport(spec.metric, len(scores), spec.min_rows, self.reference)
        if len(scores) < spec.min_rows:
            return base
        interval = estimate_with(self.fitted, scores, threshold=spec.decision_threshold).metric(
            spec.metric
        )
        return EstimateReport(
            spec.metric,
            len(scores),
            spec.min_rows,
            self.reference,
            interval.value,
            interval.low,
            interval.high,
            tuple(spec.breaches(interval.value, self.reference)),
        )
