"""Our lifecycle events as CloudEvents 1.0, published to an Event Grid custom topic.

Each event gets its id once, so a retried send carries the same id and subscribers can drop
the duplicate. Authentication is Microsoft Entra ID (``DefaultAzureCredential`` by default,
needs the "EventGrid Data Sender" role) or a topic access key.

azure-eventgrid 4.22's public ``EventGridPublisherClient`` hands a basic (custom) topic to its
``_legacy`` client without the client options (transport, retry settings), so the SDK's own
retries could not be switched off and tests could not inject a transport. We build that basic
topic client directly; it is the same class the public one uses.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from shared import retry as retries
from shared.errors import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

log = logging.getLogger(__name__)

SOURCE = "/autopilot"


class EventGridCloudEventPublisher:
    """``EventPublisher`` to an Event Grid custom topic in the CloudEvents 1.0 schema.

    ``topic_endpoint`` is the topic's endpoint, e.g.
    ``https://<topic>.<region>-1.eventgrid.azure.net/api/events``.
    """

    def __init__(
        self,
        topic_endpoint: str,
        *,
        credential: TokenCredential | None = None,
        key: str | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        retry: retries.RetryPolicy = retries.WRITE_IDEMPOTENT,
        source: str = SOURCE,
    ) -> None:
        if not topic_endpoint:
            raise SettingsError("Event Grid topic endpoint is empty")
        if credential is not None and key:
            raise SettingsError("give the Event Grid publisher a credential or a key, not both")
        self.topic_endpoint = topic_endpoint
        self.source = source
        self._credential = credential
        self._key = key
        self._transport = transport
        self._retry = retry
        self._client: Any = None

    def __repr__(self) -> str:  # never show the key
        auth = "key" if self._key else "entra-id"
        return f"EventGridCloudEventPublisher({self.topic_endpoint!r}, auth={auth})"

    @property
    def client(self) -> Any:
        if self._client is None:
            from azure.core.credentials import AzureKeyCredential
            from azure.eventgrid._legacy import EventGridPublisherClient

            credential: Any
            if self._key:
                credential = AzureKeyCredential(self._key)
            elif self._credential is not None:
                credential = self._credential
            else:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            kwargs: dict[str, Any] = {"retry_total": 0}
            if self._transport is not None:
                kwargs["transport"] = self._transport
            self._client = EventGridPublisherClient(self.topic_endpoint, credential, **kwargs)
        return self._client

    def publish(self, event_type: str, subject: str, data: dict[str, Any]) -> None:
        from azure.core.messaging import CloudEvent

        # Same JSON the outbox writes: datetimes and other values as strings.
        payload = json.loads(json.dumps(data, default=str))
        event = CloudEvent(
            source=self.source,
            type=event_type,
            subject=subject,
            data=payload,
            datacontenttype="application/json",
        )
        retries.call_with_retry(
            self._retry, self.client.send, [event], what=f"publish {event_type} event"
        )
        log.info("published %s for %s (id %s)", event_type, subject, event.id)
