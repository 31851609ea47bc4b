"""The offline ``Metrics`` adapter: deployment health from what the local endpoint recorded.

Reads ``endpoints/telemetry.db`` under the platform's data folder (written by the endpoint,
possibly in another process). Standard library only: this runs inside the service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from embedded.endpoint import telemetry_path
from embedded.telemetry import MinuteStats, TelemetryStore
from shared.model import HealthSample
from shared.sequential import RequestSample


def epoch(at: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


class LocalMetrics:
    """``Metrics`` over the embedded endpoints of the platform whose data folder is
    ``data_dir`` (the same folder ``LocalMLPlatform`` was given)."""

    def __init__(self, data_dir: Path) -> None:
        self.store = TelemetryStore(telemetry_path(data_dir.resolve()))

    def deployment_health(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> HealthSample:
        """Requests and 5xx errors summed over ``[start, end)``, p95 latency over all of them
        (live and mirrored requests alike: a shadow deployment's health is its mirrored load)."""
        stats = self.store.window(endpoint, deployment, epoch(start), epoch(end))
        return HealthSample(stats.requests, stats.errors, stats.percentile(95))

    def deployment_requests(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> RequestSample:
        """Every request in ``[start, end)`` as the endpoint recorded it (live and mirrored)."""
        stats = self.store.window(endpoint, deployment, epoch(start), epoch(end))
        return RequestSample(stats.requests, stats.errors, stats.latencies_ms)

    def per_minute(
        self, endpoint: str, deployment: str, start: datetime, end: datetime
    ) -> list[MinuteStats]:
        """Request count, error count and latency p50/p95/p99 per minute."""
        return self.store.per_minute(endpoint, deployment, epoch(start), epoch(end))


class LocalScoredLog:
    """``ScoredLog`` over the scores the embedded endpoints recorded for live rows."""

    def __init__(self, data_dir: Path) -> None:
        self.store = TelemetryStore(telemetry_path(data_dir.resolve()))

    def scores(
        self, endpoint: str, deployment: str | None, start: datetime, end: datetime, limit: int
    ) -> list[float]:
        return self.store.scores(endpoint, deployment, epoch(start), epoch(end), limit)
