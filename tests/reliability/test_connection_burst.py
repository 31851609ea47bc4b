"""A burst of 1,000 connections at once to a real ``autopilot serve``: every one answered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.concurrency import HTTP_KEY, burst
from benchmarks.intake import policy_data
from tests.integration.serve_proc import start_serve

pytestmark = pytest.mark.slow


def test_a_thousand_concurrent_connections_are_all_answered(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps(policy_data(3, mode="observe")))
    server = start_serve(tmp_path / "data", policy, keys=f"bench={HTTP_KEY}")
    try:
        result = burst(server.url, 1000, timeout_s=20.0)
        status, health = server.json("GET", "/api/health", key=None)
    finally:
        server.stop()
    print(f"burst of 1000 connections: {result.report()}")
    assert dict(result.outcomes) == {"200": 1000}  # none reset, refused or timed out
    assert status == 200 and health
