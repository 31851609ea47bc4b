"""The local endpoint over real HTTP: traffic split, mirror, faults, metrics, live traffic shifts.

Deployments here load a tiny stand-in model (the MLflow loading path is covered by
``test_platform_mlflow``); everything else is the real server, store and adapters.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from embedded.endpoint import BadInput, EndpointServer, Predictor
from embedded.metrics import LocalMetrics
from embedded.platform import LocalMLPlatform
from shared.errors import AlreadyExists, NotFound, PermanentError


class Doubler:
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        if any("x" not in row for row in rows):
            raise BadInput("every row needs 'x'")
        return [float(row["x"]) * self.factor for row in rows]


def fake_loader(model: str, version: str) -> Predictor:
    if version == "404":
        raise NotFound(f"model {model} version {version} does not exist")
    return Doubler(float(version))


def call(
    url: str,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(
        url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def score(url: str, x: float = 1.0, **headers: str) -> tuple[int, Any, dict[str, str]]:
    return call(url, "/score", {"rows": [{"x": x}]}, headers=headers)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EndpointServer]:
    server = EndpointServer("ep", tmp_path, loader=fake_loader, seed=7, flush_interval_s=0.1)
    server.start()
    server.add_deployment("blue", "demo", "1")
    server.add_deployment("green", "demo", "2")
    server.set_traffic({"blue": 100})
    yield server
    server.stop()


def test_scores_rows_and_names_the_deployment(server: EndpointServer) -> None:
    status, body, headers = call(server.url, "/score", {"rows": [{"x": 1}, {"x": 2.5}]})
    assert status == 200
    assert body == {"predictions": [1.0, 2.5], "deployment": "blue"}
    assert headers["azureml-model-deployment"] == "blue"
    assert call(server.url, "/score", [{"x": 3}])[1]["predictions"] == [3.0]  # bare list
    assert call(server.url, "/score", {"rows": "nope"})[0] == 400
    status, body, _ = call(server.url, "/score", {"rows": [{"y": 1}]})  # the model refuses
    assert (status, body["deployment"]) == (400, "blue")
    # the deployment header pins a deployment, as on Azure ML
    assert score(server.url, 2, **{"azureml-model-deployment": "green"})[1] == {
        "predictions": [4.0],
        "deployment": "green",
    }
    assert call(server.url, "/traffic", method="GET")[1] == {
        "traffic": {"blue": 100, "green": 0},
        "mirror": None,
    }


def test_traffic_split_is_honoured(server: EndpointServer) -> None:
    server.set_traffic({"blue": 70, "green": 30})
    seen = Counter(score(server.url)[1]["deployment"] for _ in range(400))
    assert set(seen) == {"blue", "green"}
    assert 120 - 40 <= seen["green"] <= 120 + 40  # binomial sd ~ 9


def test_mirror_copies_traffic_and_records_its_metrics(server: EndpointServer) -> None:
    server.set_mirror("green", 50)
    started = datetime.now(UTC)
    answers = Counter(score(server.url, i)[1]["deployment"] for i in range(200))
    assert answers == {"blue": 200}  # mirrored answers are dropped
    time.sleep(0.3)
    server.flush()
    metrics = LocalMetrics(server.data_dir)
    end = datetime.now(UTC) + timedelta(seconds=1)
    green = metrics.deployment_health("ep", "green", started, end)
    assert 100 - 35 <= green.requests <= 100 + 35
    assert green.errors == 0 and green.latency_p95_ms is not None
    assert metrics.deployment_health("ep", "blue", started, end).requests == 200
    # the sequential judge's per-request view agrees with the health summary
    rows_green = metrics.deployment_requests("ep", "green", started, end)
    assert (rows_green.requests, rows_green.errors) == (green.requests, green.errors)
    assert len(rows_green.latencies_ms) == green.requests
    assert all(ms >= 0 for ms in rows_green.latencies_ms)
    minutes = metrics.per_minute("ep", "green", started - timedelta(minutes=1), end)
    assert sum(m.mirrored for m in minutes) == green.requests
    # only live traffic is logged for the drift monitor
    rows = server._telemetry.inputs("ep", started.timestamp(), end.timestamp())
    assert len(rows) == 200 and {r["x"] for r in rows} == set(range(200))


def test_injected_faults_show_in_metrics_per_minute(server: EndpointServer) -> None:
    started = datetime.now(UTC)
    server.set_traffic({"green": 100})
    server.set_faults("green", inject_errors=0.5, latency_ms=20)
    statuses = Counter(score(server.url)[0] for _ in range(60))
    assert set(statuses) == {200, 500}
    server.flush()
    end = datetime.now(UTC) + timedelta(seconds=1)
    health = LocalMetrics(server.data_dir).deployment_health("ep", "green", started, end)
    assert health.requests == 60
    assert health.errors == statuses[500]
    assert 0.25 <= health.error_rate <= 0.75
    assert health.latency_p95_ms is not None and health.latency_p95_ms >= 20
    minutes = LocalMetrics(server.data_dir).per_minute("ep", "green", started, end)
    assert sum(m.requests for m in minutes) == 60
    assert sum(m.errors for m in minutes) == statuses[500]
    for minute in minutes:
        assert minute.p50_ms is not None and minute.p95_ms is not None
        assert minute.p99_ms is not None and minute.p50_ms <= minute.p95_ms <= minute.p99_ms
    # outside the window: nothing
    before = LocalMetrics(server.data_dir).deployment_health(
        "ep", "green", started - timedelta(hours=1), started
    )
    assert before.requests == 0 and before.latency_p95_ms is None


def test_traffic_shifts_never_fail_a_request(server: EndpointServer) -> None:
    failures: list[Any] = []
    served: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            status, body, _ = score(server.url)
            if status != 200:
                failures.append((status, body))
            else:
                served[body["deployment"]] += 1

    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    splits = [{"blue": 100}, {"blue": 50, "green": 50}, {"green": 100}, {"blue": 10, "green": 90}]
    deadline = time.monotonic() + 1.5
    shifts = 0
    while time.monotonic() < deadline:
        server.set_traffic(splits[shifts % len(splits)])
        if shifts % 5 == 0:  # deployments come and go too, at 0% traffic
            server.add_deployment("canary", "demo", "3")
            server.remove_deployment("canary")
        shifts += 1
        time.sleep(0.005)
    stop.set()
    for thread in clients:
        thread.join()
    assert failures == []
    assert shifts > 50 and sum(served.values()) > 100
    assert set(served) == {"blue", "green"}


def test_admin_routes_need_the_token_and_validate(server: EndpointServer) -> None:
    body = {"traffic": {"blue": 50, "green": 50}}
    assert call(server.url, "/admin/traffic", body, method="PUT")[0] == 401
    bad = {"Authorization": "Bearer wrong"}
    assert call(server.url, "/admin/traffic", body, method="PUT", headers=bad)[0] == 401
    auth = {"Authorization": f"Bearer {server.token}"}
    assert call(server.url, "/admin/traffic", body, method="PUT", headers=auth)[0] == 200
    for traffic in ({"blue": 60, "green": 60}, {"blue": 100, "nope": 0}, {"blue": 99.5}):
        status, answer, _ = call(
            server.url, "/admin/traffic", {"traffic": traffic}, method="PUT", headers=auth
        )
        assert status == 400, answer
    with pytest.raises(AlreadyExists):
        server.add_deployment("blue", "demo", "1")
    with pytest.raises(NotFound):
        server.add_deployment("red", "demo", "404")
    with pytest.raises(PermanentError, match="set it to 0 first"):
        server.remove_deployment("blue")


def test_restarted_endpoint_restores_its_deployments(tmp_path: Path) -> None:
    first = EndpointServer("ep", tmp_path, loader=fake_loader)
    first.start()
    first.add_deployment("blue", "demo", "1")
    first.add_deployment("green", "demo", "2")
    first.set_traffic({"blue": 20, "green": 80})
    first.set_faults("green", inject_errors=0.25)
    first.stop()
    second = EndpointServer("ep", tmp_path, loader=fake_loader)
    second.start()
    try:
        assert second.token == first.token
        assert dict(second.routing.traffic) == {"blue": 20, "green": 80}
        assert second.routing.deployments["green"].inject_errors == 0.25
        assert score(second.url)[0] in (200, 500)
    finally:
        second.stop()


def test_platform_drives_endpoints_over_http(tmp_path: Path) -> None:
    """The platform finds a running endpoint through its state file and uses its admin API."""
    server = EndpointServer("ep", tmp_path, loader=fake_loader, seed=3)
    server.start()
    platform = LocalMLPlatform(tmp_path)
    try:
        assert platform.ensure_endpoint("ep") == server.url  # alive: not started again
        assert platform.endpoint_url("ep") == server.url
        platform.create_deployment("ep", "blue", "demo", "1")
        platform.create_deployment("ep", "green", "demo", "2")
        with pytest.raises(AlreadyExists):
            platform.create_deployment("ep", "blue", "demo", "1")
        with pytest.raises(NotFound):
            platform.create_deployment("ep", "red", "demo", "404")
        assert platform.get_traffic("ep") == {"blue": 0, "green": 0}
        platform.set_traffic("ep", {"blue": 90, "green": 10})
        assert platform.get_traffic("ep") == {"blue": 90, "green": 10}
        for bad in ({"blue": 90}, {"blue": 90, "red": 10}, {"blue": -10, "green": 110}):
            with pytest.raises(PermanentError):
                platform.set_traffic("ep", bad)
        platform.set_mirror("ep", {"green": 20})
        assert platform.get_mirror("ep") == {"green": 20}
        with pytest.raises(PermanentError):
            platform.set_mirror("ep", {"green": 20, "blue": 10})
        platform.set_mirror("ep", {})
        assert platform.get_mirror("ep") == {}
        platform.set_faults("ep", "green", inject_errors=1.0)
        assert server.routing.deployments["green"].inject_errors == 1.0
        with pytest.raises(PermanentError):  # still takes traffic
            platform.delete_deployment("ep", "green")
        platform.set_traffic("ep", {"blue": 100})
        assert platform.delete_deployment("ep", "green") is True
        assert platform.delete_deployment("ep", "green") is True  # already gone: done
        assert platform.get_traffic("ep") == {"blue": 100}
        with pytest.raises(NotFound):
            platform.get_traffic("other")
    finally:
        platform.close()
        server.stop()


def test_platform_restarts_a_dead_endpoint_from_its_state(tmp_path: Path) -> None:
    server = EndpointServer("ep", tmp_path, loader=fake_loader)
    url = server.start()
    server.add_deployment("blue", "demo", "1")
    server.set_traffic({"blue": 100})
    server.stop()
    platform = LocalMLPlatform(tmp_path)
    platform._load_model = fake_loader  # type: ignore[method-assign]
    try:
        assert platform.get_traffic("ep") == {"blue": 100}  # restarted on demand
        new_url = platform.endpoint_url("ep")
        assert new_url != url or score(new_url)[0] == 200
        assert score(new_url)[1]["deployment"] == "blue"
    finally:
        platform.close()


def test_platform_can_create_endpoints_on_first_use(tmp_path: Path) -> None:
    platform = LocalMLPlatform(tmp_path, create_endpoints=True)
    try:
        assert platform.get_traffic("fresh") == {}
        assert platform.endpoint_url("fresh").startswith("http://127.0.0.1:")
        assert score(platform.endpoint_url("fresh"))[0] == 503  # nothing deployed yet
    finally:
        platform.close()
