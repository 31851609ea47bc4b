"""The routing table: deployments, live traffic and mirror, replaced whole on every change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from embedded.endpoint.model import Predictor
from shared.errors import PermanentError


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    model: str
    version: str
    predictor: Predictor = field(repr=False, compare=False)
    inject_errors: float = 0.0  # fraction of requests answered 500
    latency_ms: float = 0.0  # added to every request

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "inject_errors": self.inject_errors,
            "latency_ms": self.latency_ms,
        }


@dataclass(frozen=True, slots=True)
class Mirror:
    deployment: str
    percent: int

    def describe(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "percent": self.percent}


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Deployments, live traffic and mirror at one moment. Never changed: replaced."""

    deployments: Mapping[str, Deployment] = field(default_factory=lambda: MappingProxyType({}))
    traffic: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    mirror: Mirror | None = None

    def choose(self, draw: float) -> Deployment | None:
        """The deployment for a uniform ``draw`` in [0, 1): weighted by traffic."""
        point = draw * 100.0
        upto = 0.0
        for name, percent in self.traffic.items():
            if percent <= 0:
                continue
            upto += percent
            if point < upto:
                return self.deployments[name]
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "traffic": {name: self.traffic.get(name, 0) for name in self.deployments},
            "mirror": self.mirror.describe() if self.mirror else None,
        }


def frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def validate_traffic(traffic: Mapping[str, Any], deployments: Mapping[str, Any]) -> dict[str, int]:
    """Integer percentages (0-100) of existing deployments that sum to 100."""
    if not isinstance(traffic, Mapping):
        raise PermanentError("traffic must be an object of deployment -> percent")
    out: dict[str, int] = {}
    for name, value in traffic.items():
        if name not in deployments:
            raise PermanentError(f"traffic names unknown deployment {name!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise PermanentError(f"traffic for {name!r} must be an integer 0-100, got {value!r}")
        out[name] = value
    total = sum(out.values())
    if total != 100:
        raise PermanentError(f"traffic must sum to 100, got {total} ({out})")
    return out
