"""The embedded endpoint's scored-input log: live rows' scores, read back for estimation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from embedded.endpoint import EndpointServer
from embedded.metrics import LocalScoredLog
from tests.embedded.test_endpoint import fake_loader


def test_live_scores_are_kept_per_deployment_and_mirrored_outputs_are_not(
    tmp_path: Path,
) -> None:
    server = EndpointServer("ep", tmp_path, loader=fake_loader, seed=1, flush_interval_s=60)
    server.start()
    server.add_deployment("blue", "demo", "1")  # scores x * 1
    server.add_deployment("green", "demo", "2")  # scores x * 2
    server.set_traffic({"blue": 100})
    server.set_mirror("green", 100)
    try:
        status, _ = server.score({"rows": [{"x": 0.1}, {"x": 0.2}, {"x": 0.7}]})
        assert status == 200
        server.score({"rows": [{"x": 3}]})  # 3.0: a regression prediction is kept (DLE)
        server.score({"rows": [{"x": 0.9}]}, pinned="green")  # 1.8: a prediction (DLE) too
        server.score({"rows": [{"x": 0.4}]}, pinned="green")
        time.sleep(0.2)  # the mirrored call runs on a pool
    finally:
        server.stop()  # flushes
    log = LocalScoredLog(tmp_path)
    now = datetime.now(UTC)
    window = (now - timedelta(minutes=1), now + timedelta(seconds=1))
    assert log.scores("ep", "blue", *window, 100) == [0.1, 0.2, 0.7, 3.0]
    assert log.scores("ep", "green", *window, 100) == [1.8, 0.8]  # mirrored one is not live
    assert sorted(log.scores("ep", None, *window, 100)) == [0.1, 0.2, 0.7, 0.8, 1.8, 3.0]
    assert log.scores("ep", "blue", *window, 2) == [0.7, 3.0]
    assert log.scores("ep", "blue", now + timedelta(seconds=1), now + timedelta(minutes=1), 9) == []
