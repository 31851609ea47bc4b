"""Event Grid delivery envelopes: parse a delivered body into event dicts, or say what is wrong.

Deliveries are always JSON arrays, in the Event Grid schema or the CloudEvents 1.0 schema
(``specversion`` present). The whole batch is validated before anything is applied, so a
malformed batch is refused whole and nothing is partially applied.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any

from shared.errors import BadEvent

MAX_BATCH_EVENTS = 5000
MAX_FIELD_CHARS = 2048
MAX_DEPTH = 64  # objects and arrays nested inside each other, the outermost counting 1
MAX_INT_DIGITS = 400  # longer integers are beyond any float (and near Python's 4,300 limit)

# A JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into decoded text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_FLOAT_MAX_INT = int(sys.float_info.max)

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


@dataclass(frozen=True, slots=True)
class _Unusable:
    """Stands in for a number that cannot be kept, until its JSON path is known."""

    problem: str


def _parse_float(text: str) -> Any:
    value = float(text)
    if math.isfinite(value):
        return value
    return _Unusable(f"number {_excerpt(text)} is beyond the range of a float")


def _parse_int(text: str) -> Any:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Unusable(f"integer of {digits} digits is beyond the range of a float")
    value = int(text)
    try:
        float(value)
    except OverflowError:
        return _Unusable(f"integer {_excerpt(text)} is beyond the range of a float")
    return value


def _excerpt(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def json_path(parts: list[str | int]) -> str:
    """``$.data.essentials["odd key"][0]``: where in a document a value sits."""
    if len(parts) > 16:  # a path through 64 levels says no more than its two ends
        return f"{json_path(parts[:8])}...{json_path(parts[-4:])[1:]}"
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _NAME.fullmatch(part):
            out.append(f".{part}")
        else:  # ensure_ascii: control characters and surrogates stay visible and harmless
            out.append(f"[{json.dumps(_excerpt(part, 40))}]")
    return "".join(out)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_json(value: Any, *, what: str = "body", max_depth: int = MAX_DEPTH) -> None:
    """Refuse what could be read but not written back or stored, naming its JSON path.

    Nesting deeper than ``max_depth``, numbers beyond a float (``1e400``, 400-digit integers),
    non-numbers (NaN) and strings holding a lone UTF-16 surrogate (``"\\ud800"``: valid JSON,
    but not storable as UTF-8). Iterative: a deep document cannot exhaust the stack.
    """
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (), 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= max_depth:
                raise BadEvent(
                    f"{what}: {json_path([*path])} is nested deeper than {max_depth} levels"
                )
            for key, child in item.items():
                if not isinstance(key, str) or _has_lone_surrogate(key):
                    raise BadEvent(
                        f"{what}: {json_path([*path])} has a key with a lone surrogate "
                        "(not valid Unicode, cannot be stored)"
                    )
                stack.append((child, (*path, key), depth + 1))
        elif isinstance(item, list):
            if depth >= max_depth:
                raise BadEvent(
                    f"{what}: {json_path([*path])} is nested deeper than {max_depth} levels"
                )
            stack.extend((child, (*path, i), depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if _has_lone_surrogate(item):
                raise BadEvent(
                    f"{what}: {json_path([*path])} holds a lone surrogate "
                    "(not valid Unicode, cannot be stored)"
                )
        elif isinstance(item, _Unusable):
            raise BadEvent(f"{what}: {json_path([*path])}: {item.problem}")
        elif isinstance(item, float) and not math.isfinite(item):
            where = json_path([*path])
            if math.isnan(item):
                raise BadEvent(f"{what}: {where} is NaN")
            raise BadEvent(f"{what}: {where}: number beyond the range of a float")
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                raise BadEvent(
                    f"{what}: {json_path([*path])} is an integer beyond the range of a float"
                ) from None


def load_json(body: bytes, *, what: str = "body") -> Any:
    """Decode a JSON request body strictly, into what can also be written back and stored.

    UTF-8, no duplicate keys, no NaN/Infinity, numbers finite as a float, nesting at most
    ``MAX_DEPTH`` deep, no lone surrogates. Raises BadEvent naming the JSON path at fault.
    """
    if not body or not body.strip():
        raise BadEvent(f"{what} is empty; expected JSON")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadEvent(f"{what} is not valid UTF-8 (byte {exc.start})") from exc

    def _no_constants(name: str) -> Any:
        raise BadEvent(f"{what} contains {name}, which is not valid JSON")

    def _decode(**hooks: Any) -> Any:
        try:
            return json.loads(
                text,
                object_pairs_hook=_reject_duplicate_keys,
                parse_constant=_no_constants,
                **hooks,
            )
        except RecursionError as exc:
            raise BadEvent(f"{what} is nested deeper than {MAX_DEPTH} levels") from exc
        except json.JSONDecodeError as exc:
            raise BadEvent(
                f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc

    big: list[str] = []  # number literals that do not fit a float, noted as they are decoded

    def note_float(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):
            big.append(literal)
        return number

    def note_int(literal: str) -> int:
        number = int(literal)
        if not -_FLOAT_MAX_INT <= number <= _FLOAT_MAX_INT:
            big.append(literal)
        return number

    try:  # in C but for the numbers; checked below, with a pass in Python only when needed
        value = _decode(parse_float=note_float, parse_int=note_int)
    except BadEvent:
        raise
    except ValueError as exc:  # an integer past int()'s 4,300 digits: decode again to name it
        check_json(_decode(parse_float=_parse_float, parse_int=_parse_int), what=what)
        raise BadEvent(f"{what}: {exc}") from exc
    strings = _SURROGATE_ESCAPE.search(text) is not None
    if big or (strings and _suspect(value, strings=True, numbers=False)):
        check_json(value, what=what)  # names the path of what it refuses
    elif _too_deep(value):  # no escape or number to look at: only the nesting
        check_json(value, what=what)
    return value


def _too_deep(value: Any) -> bool:
    """Whether objects and arrays nest more than ``MAX_DEPTH`` deep, a level at a time."""
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below += [c for c in children if type(c) is dict or type(c) is list]
        level = below
        depth += 1
    return False


def _suspect(value: Any, *, strings: bool, numbers: bool) -> bool:
    """Whether ``check_json`` would refuse ``value``: a fast pass that tracks no paths."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                return True
            if kind is dict:
                if strings and any(_has_lone_surrogate(k) for k in item):
                    return True
                children = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
        elif kind is str:
            if strings and _has_lone_surrogate(item):
                return True
        elif kind is float:
            if not math.isfinite(item):
                return True
        elif kind is int and numbers and not -_FLOAT_MAX_INT <= item <= _FLOAT_MAX_INT:
            return True
    return False


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
    if _has_lone_surrogate(value):
        raise BadEvent(
            f"event [{index}]: field {key!r} holds a lone surrogate (not valid Unicode, "
            "cannot be stored)"
        )
    return value


def check_envelope(envelope: Envelope) -> None:
    """What ``load_json`` refuses, for an event parsed elsewhere (the Functions worker)."""
    for key in ("id", "source", "type", "subject", "time"):
        if _has_lone_surrogate(getattr(envelope, key)):
            raise BadEvent(
                f"event field {key!r} holds a lone surrogate (not valid Unicode, cannot be stored)"
            )
    check_json(envelope.data, what="event data")


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


def read_delivery(body: bytes) -> tuple[list[dict[str, Any]], list[Envelope]]:
    """Validate a delivered Event Grid body (a JSON array of events of either schema).

    Returns the events as dicts, unchanged, and their envelopes. Raises BadEvent naming the
    first problem.
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
    return payload, [envelope_from_dict(event, index) for index, event in enumerate(payload)]


def parse_delivery(body: bytes) -> list[dict[str, Any]]:
    """:func:`read_delivery`'s events alone."""
    return read_delivery(body)[0]
