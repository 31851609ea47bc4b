"""WebhookEventSink delivers like Event Grid: at least once, retried, never blocking."""

from __future__ import annotations

import socket
import time

from embedded.events import (
    AZUREML_TOPIC,
    DeliveryPolicy,
    ListEventSink,
    WebhookEventSink,
    azureml_event,
)
from tests.embedded.conftest import Receiver, wait_until

FAST = DeliveryPolicy(max_attempts=5, initial_backoff_s=0.02, max_backoff_s=0.1, timeout_s=2.0)
WEBHOOK = "/runtime/webhooks/eventgrid?functionName=azureml_events"


def _event(n: int = 1) -> dict[str, object]:
    return azureml_event(
        "Microsoft.MachineLearningServices.RunStatusChanged",
        f"experiments/1/runs/job-{n}",
        {"runId": f"job-{n}", "runStatus": "Completed"},
    )


def test_event_grid_envelope() -> None:
    event = _event()
    assert set(event) == {
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    }
    assert event["topic"] == AZUREML_TOPIC
    assert str(event["eventTime"]).endswith("Z")
    assert (event["dataVersion"], event["metadataVersion"]) == ("2", "1")
    assert _event()["id"] != event["id"]


def test_retries_until_accepted(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    sink = WebhookEventSink(receiver.url + WEBHOOK, "k-123", policy=FAST)
    event = _event()
    sink.emit(event)
    assert sink.flush(10)
    sink.close()
    assert len(receiver.received) == 3
    headers, body = receiver.received[-1]
    assert body == [event]  # one event per delivery, as a JSON array
    assert headers["x-functions-key"] == "k-123"
    assert headers["aeg-event-type"] == "Notification"
    assert (sink.delivered, sink.dropped) == (1, 0)


def test_bad_request_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    sink = WebhookEventSink(receiver.url + WEBHOOK, "k", policy=FAST)
    sink.emit(_event())
    assert sink.flush(10)
    sink.close()
    assert len(receiver.received) == 1
    assert (sink.delivered, sink.dropped) == (0, 1)


def test_throttling_is_retried(receiver: Receiver) -> None:
    receiver.statuses = [429, 408]
    sink = WebhookEventSink(receiver.url + WEBHOOK, "k", policy=FAST)
    sink.emit(_event())
    assert sink.flush(10)
    sink.close()
    assert len(receiver.received) == 3 and sink.delivered == 1


def test_down_service_never_blocks_and_gives_up() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = WebhookEventSink(f"http://127.0.0.1:{port}{WEBHOOK}", "k", policy=FAST)
    started = time.monotonic()
    for n in range(20):
        sink.emit(_event(n))
    assert time.monotonic() - started < 0.5  # emit only queues
    assert wait_until(lambda: sink.dropped == 20, timeout=15)
    assert sink.attempts == 20 * FAST.max_attempts
    sink.close()


def test_close_gives_up_on_what_it_cannot_deliver_in_time(receiver: Receiver) -> None:
    receiver.statuses = [500] * 100
    slow = DeliveryPolicy(max_attempts=100, initial_backoff_s=5.0, timeout_s=2.0)
    sink = WebhookEventSink(receiver.url + WEBHOOK, "k", policy=slow)
    sink.emit(_event())
    started = time.monotonic()
    sink.close(timeout=0.3)
    assert time.monotonic() - started < 3
    assert sink.dropped == 1
    sink.emit(_event())  # after close: dropped, not raised
    assert sink.dropped == 2


def test_list_sink_keeps_events_in_order() -> None:
    sink = ListEventSink()
    first, second = _event(1), _event(2)
    sink.emit(first)
    sink.emit(second)
    assert sink.events == [first, second]
    assert sink.of_type("RunStatusChanged") == [first, second]
    assert sink.wait_for(lambda events: len(events) == 2, timeout=0.1)
