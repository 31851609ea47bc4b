"""Strict JSON out: never NaN or Infinity, and one record that cannot be written spares the rest.

Whatever the API, the console and ``autopilot ... --json`` print is parsed by clients that
refuse ``Infinity``; a record that cannot be written (stored by an older version that let
``1e400`` or deep nesting in) is shown as ``{"seq"/"id": ..., "unrenderable": "why"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UNRENDERABLE = "unrenderable"
_CANNOT = (ValueError, TypeError, RecursionError, OverflowError)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """``json.dumps`` that refuses NaN/Infinity (ValueError) instead of writing them."""
    return json.dumps(value, allow_nan=False, default=str, indent=indent)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A part of a document already written as JSON text."""

    text: str


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to write as JSON"
    if isinstance(exc, ValueError) and "compliant" in str(exc):
        return "holds a number that is not finite (NaN or Infinity)"
    return f"cannot be written as JSON ({type(exc).__name__})"


def encode(
    build: Callable[[], Any], ident: dict[str, Any], *, indent: int | None = None
) -> Encoded:
    """``build()`` as JSON text, or a placeholder naming ``ident`` and why it cannot be shown."""
    try:
        return Encoded(dumps(build(), indent=indent))
    except _CANNOT as exc:
        return Encoded(dumps({**ident, UNRENDERABLE: _reason(exc)}, indent=indent))


def document(value: Any, *, indent: int | None = None) -> str:
    """Write ``value``, whose dicts and lists (to two levels) may hold ``Encoded`` parts."""
    return _write(value, indent, 0)


def _write(value: Any, indent: int | None, level: int) -> str:
    if isinstance(value, Encoded):
        text = value.text
        return text.replace("\n", "\n" + " " * (indent * level)) if indent else text
    if level > 2 or not isinstance(value, dict | list):
        return _write(Encoded(dumps(value, indent=indent)), indent, level)
    if not value:
        return "{}" if isinstance(value, dict) else "[]"
    items = (
        [f"{json.dumps(str(k))}: {_write(v, indent, level + 1)}" for k, v in value.items()]
        if isinstance(value, dict)
        else [_write(v, indent, level + 1) for v in value]
    )
    if indent:
        pad = "\n" + " " * (indent * (level + 1))
        body = ("," + pad).join(items)
        inner = f"{pad}{body}\n{' ' * (indent * level)}"
    else:
        inner = ", ".join(items)
    return f"{{{inner}}}" if isinstance(value, dict) else f"[{inner}]"
