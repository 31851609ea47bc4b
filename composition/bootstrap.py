"""The bus over the wired services and the handler maps (part of ``composition``)."""

from __future__ import annotations

from handlers import COMMAND_HANDLERS, EVENT_HANDLERS
from shared.messagebus import MessageBus, Services


def bootstrap(services: Services) -> MessageBus:
    """A bus over ``services``. Cheap: build one per invocation."""
    return MessageBus(services, EVENT_HANDLERS, COMMAND_HANDLERS)
