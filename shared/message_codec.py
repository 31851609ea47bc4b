"""Messages as JSON text, for intents kept in the outbox (``shared.ports.Outbox``).

Every message is a frozen dataclass of JSON values (names, keys, evidence read from JSON), so
its fields and its class name are enough to rebuild it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, cast

from shared import messages
from shared.messages import Message

_TYPES: dict[str, type[Message]] = {
    name: cls
    for name, cls in vars(messages).items()
    if isinstance(cls, type) and issubclass(cls, Message) and dataclasses.is_dataclass(cls)
}


def encode(message: Message) -> str:
    name = type(message).__name__
    if _TYPES.get(name) is not type(message):
        raise TypeError(f"{name} is not a message of shared.messages")
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(cast(Any, message))}
    return json.dumps({"type": name, "fields": fields}, separators=(",", ":"), default=str)


def decode(text: str) -> Message:
    data: dict[str, Any] = json.loads(text)
    cls = _TYPES.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown message type {data.get('type')!r} in the outbox")
    return cls(**data["fields"])
