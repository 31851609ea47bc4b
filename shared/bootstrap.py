"""The composition root: the one place that picks adapters and wires the bus."""

from __future__ import annotations

from handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from shared.messagebus import MessageBus, Services


def bootstrap(services: Services) -> MessageBus:
    """A bus over ``services``. Cheap: build one per invocation."""
    return MessageBus(services, EVENT_HANDLERS, COMMAND_HANDLERS)
