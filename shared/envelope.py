"""Event Grid delivery envelopes: parse a delivered body into event dicts, or say what is wrong.

Deliveries are always JSON arrays, in the Event Grid schema or the CloudEvents 1.0 schema
(``specversion`` present). The whole batch is validated before anything is applied, so a
malformed batch is refused whole and nothing is partially applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.errors import BadEvent

MAX_BATCH_EVENTS = 5000
MAX_FIELD_CHARS = 2048

_EVENTGRID_REQUIRED = ("id", "eventType", "subject", "data")
_CLOUDEVENTS_REQUIRED = ("id", "source", "type", "specversion")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # in C; only when keys collapsed, find which (rare)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadEvent(f"duplicate JSON key {key!r}")
            seen.add(key)
    return result


def load_json(body: bytes, *, what: str = "body") -> Any:
    """Decode a JSON request body strictly: UTF-8, no duplicate keys, no NaN."""
    if not body or not body.strip():
        raise BadEvent(f"{what} is empty; expected JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadEvent(f"{what} is not valid UTF-8 (byte {exc.start})") from exc

    def _no_constants(name: str) -> Any:
        raise BadEvent(f"{what} contains {name}, which is not valid JSON")

    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_no_constants
        )
    except RecursionError as exc:
        raise BadEvent(f"{what} is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise BadEvent(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


@dataclass(frozen=True, slots=True)
class Envelope:
    """One delivered event, schema-independent. ``data`` is untrusted."""

    schema: str  # "eventgrid" | "cloudevents"
    id: str
    source: str
    type: str
    subject: str
    time: str
    data: Any

    @property
    def dedup_key(self) -> str:
        """Source, type, subject and id together: ids alone are not trusted to be unique."""
        return "|".join((self.source, self.type, self.subject, self.id))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
        }


def _text(event: dict[str, Any], key: str, index: int, *, required: bool) -> str:
    value = event.get(key)
    if value is None:
        if required:
            raise BadEvent(f"event [{index}]: missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise BadEvent(
            f"event [{index}]: field {key!r} must be a string, got {type(value).__name__}"
        )
    if len(value) > MAX_FIELD_CHARS:
        raise BadEvent(f"event [{index}]: field {key!r} is longer than {MAX_FIELD_CHARS} chars")
    return value


def envelope_from_dict(event: Any, index: int = 0) -> Envelope:
    """Validate one event dict of either schema and return its envelope."""
    if not isinstance(event, dict):
        raise BadEvent(f"event [{index}] must be a JSON object, got {type(event).__name__}")
    if "specversion" in event:
        version = event.get("specversion")
        if version != "1.0":
            raise BadEvent(f"event [{index}]: unsupported CloudEvents specversion {version!r}")
        for key in _CLOUDEVENTS_REQUIRED:
            _text(event, key, index, required=True)
        return Envelope(
            schema="cloudevents",
            id=_text(event, "id", index, required=True),
            source=_text(event, "source", index, required=True),
            type=_text(event, "type", index, required=True),
            subject=_text(event, "subject", index, required=False),
            time=_text(event, "time", index, required=False),
            data=event.get("data"),
        )
    for key in _EVENTGRID_REQUIRED:
        if key not in event:
            raise BadEvent(f"event [{index}]: missing field {key!r}")
    return Envelope(
        schema="eventgrid",
        id=_text(event, "id", index, required=True),
        source=_text(event, "topic", index, required=False),
        type=_text(event, "eventType", index, required=True),
        subject=_text(event, "subject", index, required=True),
        time=_text(event, "eventTime", index, required=False),
        data=event.get("data"),
    )


def parse_delivery(body: bytes) -> list[dict[str, Any]]:
    """Validate a delivered Event Grid body (a JSON array of events of either schema).

    Returns the events as dicts, unchanged. Raises BadEvent naming the first problem.
    """
    payload = load_json(body, what="Event Grid delivery")
    if isinstance(payload, dict) and "specversion" in payload:
        payload = [payload]  # CloudEvents without batching arrive as one object
    if not isinstance(payload, list):
        raise BadEvent(
            f"Event Grid delivery must be a JSON array of events, got {type(payload).__name__}"
        )
    if not payload:
        raise BadEvent("Event Grid delivery is an empty array")
    if len(payload) > MAX_BATCH_EVENTS:
        raise BadEvent(
            f"Event Grid delivery has {len(payload)} events; at most {MAX_BATCH_EVENTS} allowed"
        )
    for index, event in enumerate(payload):
        envelope_from_dict(event, index)
    return payload
