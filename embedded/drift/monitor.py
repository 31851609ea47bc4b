"""The monitor loop: checks an endpoint's logged inputs and fires or resolves one alert."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from embedded.drift.alerts import alert_payload
from embedded.drift.sketch import BaselineSketch, rows_to_columns
from embedded.drift.statistics import DriftReport, Thresholds, compare
from embedded.endpoint import telemetry_path
from embedded.estimate_monitor import EstimateReport, EstimateSignal
from embedded.events import Poster, urllib_post, utc_iso
from embedded.files import read_json, write_json_atomic
from embedded.telemetry import TelemetryStore

log = logging.getLogger("embedded.drift")


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """The outcome of one check: the report and what was sent (if anything)."""

    report: DriftReport
    action: Literal["fired", "resolved", "none", "insufficient-data"]
    alert: dict[str, Any] | None = None
    delivered: bool | None = None
    status: int | None = None
    error: str = ""
    estimate: EstimateReport | None = None  # the label-free estimate of the same window


class DriftMonitor:
    """Checks an endpoint's logged inputs against a baseline and alerts like Azure Monitor.

    The alert is stateful: ``Fired`` once when a window drifts, ``Resolved`` once when a later
    window is clean (with the same alert id); nothing is sent in between. A delivery that fails
    leaves the state unchanged, so the next check sends it again. State lives in
    ``data_dir/drift/<rule>.json``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        model: str,
        endpoint: str,
        baseline: BaselineSketch,
        alert_url: str | None = None,
        key: str = "",
        thresholds: Thresholds | None = None,
        window_s: float = 3600.0,
        min_samples: int = 1000,
        deployment: str | None = None,
        severity: str = "Sev2",
        rule: str | None = None,
        post: Poster | None = None,
        timeout_s: float = 10.0,
        estimate: EstimateSignal | None = None,
    ) -> None:
        self.estimate = estimate
        self.data_dir = data_dir.resolve()
        self.model = model
        self.endpoint = endpoint
        self.baseline = baseline
        self.alert_url = alert_url
        self._key = key
        self.thresholds = thresholds or Thresholds()
        self.window_s = window_s
        self.min_samples = min_samples
        self.deployment = deployment
        self.severity = severity
        self.rule = rule or f"autopilot-drift-{model}"
        self._post = post or urllib_post
        self._timeout_s = timeout_s
        self._store = TelemetryStore(telemetry_path(self.data_dir))
        self._state_path = self.data_dir / "drift" / f"{self.rule}.json"
        self._lock = threading.Lock()

    def _state(self) -> dict[str, Any]:
        try:
            state = read_json(self._state_path)
        except (FileNotFoundError, ValueError):
            return {"condition": "Resolved"}
        return state if isinstance(state, dict) else {"condition": "Resolved"}

    def _save_state(self, state: dict[str, Any]) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._state_path, state)

    @property
    def firing(self) -> bool:
        return self._state().get("condition") == "Fired"

    def evaluate(self, start: datetime, end: datetime) -> DriftReport:
        rows = self._store.inputs(
            self.endpoint, start.timestamp(), end.timestamp(), deployment=self.deployment
        )
        columns = rows_to_columns(rows, self.baseline.features)
        return compare(self.baseline, columns, self.thresholds, min_samples=self.min_samples)

    def _send(self, payload: dict[str, Any]) -> tuple[bool, int | None, str]:
        if not self.alert_url:
            return True, None, ""
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "x-functions-key": self._key}
        try:
            status = self._post(self.alert_url, body, headers, self._timeout_s)
        except OSError as exc:
            log.warning("drift alert %s not delivered: %s", self.rule, exc)
            return False, None, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return True, status, ""
        log.warning("drift alert %s not delivered: HTTP %s", self.rule, status)
        return False, status, f"HTTP {status}"

    def check(self, end: datetime | None = None, start: datetime | None = None) -> DriftCheck:
        """Check the window ending at ``end`` (default now); fire or resolve as needed; with an
        ``estimate`` signal, report the label-free estimate of the same window too."""
        end = end or datetime.now(UTC)
        start = start or end - timedelta(seconds=self.window_s)
        result = self._check_drift(end, start)
        if self.estimate is None:
            return result
        return dataclasses.replace(result, estimate=self.estimate.evaluate(start, end))

    def _check_drift(self, end: datetime, start: datetime) -> DriftCheck:
        with self._lock:
            report = self.evaluate(start, end)
            if not report.enough_data:
                return DriftCheck(report, "insufficient-data")
            state = self._state()
            firing = state.get("condition") == "Fired"
            if report.drifted == firing:
                return DriftCheck(report, "none")
            if report.drifted:
                alert_id = str(uuid.uuid4())
                payload = alert_payload(
                    rule=self.rule,
                    model=self.model,
                    endpoint=self.endpoint,
                    report=report,
                    condition="Fired",
                    alert_id=alert_id,
                    fired_at=end,
                    window_start=start,
                    window_end=end,
                    severity=self.severity,
                )
                delivered, status, error = self._send(payload)
                if delivered:
                    self._save_state(
                        {"condition": "Fired", "alertId": alert_id, "firedDateTime": utc_iso(end)}
                    )
                return DriftCheck(report, "fired", payload, delivered, status, error)
            alert_id = str(state.get("alertId") or uuid.uuid4())
            fired_raw = state.get("firedDateTime")
            fired_at = (
                datetime.fromisoformat(fired_raw.replace("Z", "+00:00")) if fired_raw else end
            )
            payload = alert_payload(
                rule=self.rule,
                model=self.model,
                endpoint=self.endpoint,
                report=report,
                condition="Resolved",
                alert_id=alert_id,
                fired_at=fired_at,
                window_start=start,
                window_end=end,
                severity=self.severity,
                resolved_at=end,
            )
            delivered, status, error = self._send(payload)
            if delivered:
                self._save_state(
                    {"condition": "Resolved", "alertId": alert_id, "resolvedDateTime": utc_iso(end)}
                )
            return DriftCheck(report, "resolved", payload, delivered, status, error)

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Check every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                result = self.check()
                log.info(
                    "drift check %s: %s (%d rows, drifted: %s)",
                    self.rule,
                    result.action,
                    result.report.n,
                    ", ".join(result.report.drifted_features) or "none",
                )
                if result.estimate is not None:
                    log.info("drift check %s: %s", self.rule, result.estimate.summary())
            except Exception:
                log.exception("drift check %s failed", self.rule)
            stop.wait(interval_s)
