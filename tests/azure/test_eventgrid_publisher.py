"""EventGridCloudEventPublisher through the real azure-eventgrid client, answered locally.

The publish call is ``POST <topic endpoint>?api-version=2018-01-01`` with a JSON array of
CloudEvents ("Publish events to Azure Event Grid custom topics using access keys": access key
in the ``aeg-sas-key`` header; Entra ID as a bearer token). Event Grid answers 200, empty.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.adapters.eventgrid_publisher import EventGridCloudEventPublisher
from shared.errors import PermanentError, SettingsError, TransientError
from shared.ports import EventPublisher
from shared.retry import WRITE_IDEMPOTENT
from tests.azure.fake_arm import Drop, FakeAzure, FakeCredential, Reply

TOPIC_HOST = "autopilot-events.westeurope-1.eventgrid.azure.net"
TOPIC = f"https://{TOPIC_HOST}/api/events"
EVENTGRID_SCOPE = "https://eventgrid.azure.net/.default"
KEY = "fake-topic-key-0123456789abcdef0123456789abcdef="


def test_publish_sends_one_cloudevent_with_entra_id(
    fake: FakeAzure, credential: FakeCredential
) -> None:
    fake.add("POST", "/api/events", Reply(200), host=TOPIC_HOST)
    publisher: EventPublisher = EventGridCloudEventPublisher(
        TOPIC, credential=credential, transport=fake.transport()
    )

    publisher.publish(
        "Autopilot.CyclePromoted",
        "models/churn/versions/5",
        {"cycle": "c1", "at": datetime(2026, 1, 1, tzinfo=UTC), "score": 0.91},
    )

    (call,) = fake.calls("POST", host=TOPIC_HOST)
    assert call.api_version == "2018-01-01"
    assert call.headers["Content-Type"].startswith("application/cloudevents-batch+json")
    assert call.headers["Authorization"] == "Bearer " + credential.token_for(EVENTGRID_SCOPE)
    assert credential.scopes == [(EVENTGRID_SCOPE,)]
    (event,) = call.json()
    assert event["specversion"] == "1.0"
    assert event["source"] == "/autopilot"
    assert event["type"] == "Autopilot.CyclePromoted"
    assert event["subject"] == "models/churn/versions/5"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"cycle": "c1", "at": "2026-01-01 00:00:00+00:00", "score": 0.91}
    assert event["id"] and event["time"]


def test_publish_with_an_access_key(fake: FakeAzure) -> None:
    fake.add("POST", "/api/events", Reply(200), host=TOPIC_HOST)
    publisher = EventGridCloudEventPublisher(TOPIC, key=KEY, transport=fake.transport())

    publisher.publish("Autopilot.CycleStarted", "models/churn", {"cycle": "c2"})

    (call,) = fake.calls("POST", host=TOPIC_HOST)
    assert call.headers["aeg-sas-key"] == KEY
    assert "Authorization" not in call.headers
    assert KEY not in repr(publisher)


def test_a_retried_publish_keeps_the_event_id(fake: FakeAzure, credential: FakeCredential) -> None:
    fake.add(
        "POST",
        "/api/events",
        Reply(503, {"error": {"code": "ServiceUnavailable", "message": "busy"}}),
        Drop(),
        Reply(200),
        host=TOPIC_HOST,
    )
    publisher = EventGridCloudEventPublisher(
        TOPIC, credential=credential, transport=fake.transport()
    )

    publisher.publish("Autopilot.RolledBack", "models/churn/versions/5", {"cycle": "c3"})

    calls = fake.calls("POST", host=TOPIC_HOST)
    assert len(calls) == 3
    assert len({c.json()[0]["id"] for c in calls}) == 1


def test_publish_throttled_until_the_budget_ends_is_transient(
    fake: FakeAzure, credential: FakeCredential
) -> None:
    fake.add(
        "POST",
        "/api/events",
        Reply(429, {"error": {"code": "TooManyRequests", "message": "slow"}}, {"Retry-After": "2"}),
        host=TOPIC_HOST,
    )
    publisher = EventGridCloudEventPublisher(
        TOPIC, credential=credential, transport=fake.transport()
    )
    with pytest.raises(TransientError) as caught:
        publisher.publish("Autopilot.RolledBack", "models/churn", {})
    assert caught.value.retry_after == 2.0
    assert len(fake.calls("POST")) == WRITE_IDEMPOTENT.attempts


def test_publish_rejected_is_permanent(fake: FakeAzure) -> None:
    fake.add(
        "POST",
        "/api/events",
        Reply(401, {"error": {"code": "Unauthorized", "message": "key is not authorized"}}),
        host=TOPIC_HOST,
    )
    publisher = EventGridCloudEventPublisher(TOPIC, key=KEY, transport=fake.transport())
    with pytest.raises(PermanentError) as caught:
        publisher.publish("Autopilot.RolledBack", "models/churn", {})
    assert KEY not in str(caught.value)
    assert len(fake.calls("POST")) == 1


def test_publisher_settings_are_checked(credential: FakeCredential) -> None:
    with pytest.raises(SettingsError):
        EventGridCloudEventPublisher("")
    with pytest.raises(SettingsError):
        EventGridCloudEventPublisher(TOPIC, credential=credential, key=KEY)
