"""HTTP-trigger route templates, matched the way the Functions host (ASP.NET routing) does.

Supported: literal segments (case-insensitive), ``{name}`` parameters, parameters inside a
segment (``{name}.{ext}``), optional ``{name?}`` and defaulted ``{name=value}`` trailing
parameters, catch-all ``{*rest}``, and these constraints: ``int``, ``long``, ``alpha``,
``bool``, ``guid``, ``decimal``/``double``/``float``, ``minlength(n)``, ``maxlength(n)``,
``length(n)``/``length(a,b)``, ``min(n)``, ``max(n)``, ``range(a,b)``. Any other constraint
(``regex(...)``, ``datetime``, ...) is ignored and reported in ``RouteTemplate.ignored``.

When several templates match a path, the most specific wins, segment by segment: literal,
then mixed segment, then constrained parameter, then plain parameter, then catch-all.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

Check = Callable[[str], bool]

_PARAM = re.compile(r"\{([^{}]+)\}")
_CALL = re.compile(r"(\w+)\((.*)\)")
# ASP.NET inbound route precedence per segment: smaller is more specific.
_LITERAL, _MIXED, _CONSTRAINED, _PARAMETER, _CATCH_ALL = 1, 2, 3, 4, 5


def _integer(bits: int) -> Check:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: str) -> bool:
        # ASCII digits, bounded: r"\d" also matches "²", and int("²") raises
        return re.fullmatch(r"[+-]?[0-9]{1,20}", value) is not None and low <= int(value) <= high

    return check


def _number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Check] = {
    "int": _integer(32),
    "long": _integer(64),
    "alpha": lambda v: v.isascii() and v.isalpha(),
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _guid,
    "decimal": _number,
    "double": _number,
    "float": _number,
}


def _numbers(args: str) -> list[int]:
    return [int(a.strip()) for a in args.split(",")]


def _constraint(text: str) -> Check | None:
    """A check for one constraint, or None when this host does not enforce it."""
    if text.lower() in _SIMPLE:
        return _SIMPLE[text.lower()]
    call = _CALL.fullmatch(text)
    if call is None:
        return None
    name, args = call.group(1).lower(), call.group(2)
    try:
        nums = _numbers(args)
    except ValueError:
        return None
    bounds: dict[str, Callable[[list[int]], Check]] = {
        "minlength": lambda n: lambda v: len(v) >= n[0],
        "maxlength": lambda n: lambda v: len(v) <= n[0],
        "length": lambda n: lambda v: n[0] <= len(v) <= n[-1],
        "min": lambda n: lambda v: _integer(64)(v) and int(v) >= n[0],
        "max": lambda n: lambda v: _integer(64)(v) and int(v) <= n[0],
        "range": lambda n: lambda v: _integer(64)(v) and n[0] <= int(v) <= n[-1],
    }
    make = bounds.get(name)
    return make(nums) if make else None


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    checks: tuple[Check, ...]
    optional: bool
    default: str | None
    catch_all: bool

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


@dataclass(frozen=True, slots=True)
class _Segment:
    pattern: re.Pattern[str]  # full match of one decoded path segment
    params: tuple[_Param, ...]
    rank: int

    @property
    def single(self) -> _Param | None:
        """The parameter when this segment is exactly one ``{param}``."""
        return self.params[0] if self.rank in (_CONSTRAINED, _PARAMETER, _CATCH_ALL) else None


def _parse_param(spec: str, template: str, ignored: list[str]) -> _Param:
    catch_all = spec.startswith("*")
    spec = spec.lstrip("*")
    default: str | None = None
    if "=" in spec:
        spec, default = spec.split("=", 1)
    optional = spec.endswith("?")
    spec = spec.rstrip("?")
    name, *constraints = spec.split(":")
    if not re.fullmatch(r"\w+", name):
        raise ValueError(f"route {template!r}: bad parameter name {name!r}")
    checks: list[Check] = []
    for text in constraints:
        check = _constraint(text)
        if check is None:
            ignored.append(f"{name}:{text}")
        else:
            checks.append(check)
    return _Param(name, tuple(checks), optional or default is not None, default, catch_all)


def _parse_segment(text: str, template: str, ignored: list[str]) -> _Segment:
    pieces = _PARAM.split(text)  # literal, param, literal, param, ..., literal
    params = [_parse_param(spec, template, ignored) for spec in pieces[1::2]]
    if not params:
        return _Segment(re.compile(re.escape(text), re.IGNORECASE), (), _LITERAL)
    if len(params) == 1 and pieces[0] == "" and pieces[2] == "":
        param = params[0]
        rank = _CATCH_ALL if param.catch_all else _CONSTRAINED if param.checks else _PARAMETER
        return _Segment(re.compile(r"(.+)", re.DOTALL), (param,), rank)
    if any(p.catch_all or p.optional for p in params):
        raise ValueError(f"route {template!r}: {text!r} mixes text with an optional parameter")
    regex = ""
    for index, piece in enumerate(pieces):
        # Greedy groups find the literals from the right, as ASP.NET matches complex segments.
        regex += re.escape(piece) if index % 2 == 0 else "(.+)"
    return _Segment(re.compile(regex, re.IGNORECASE | re.DOTALL), tuple(params), _MIXED)


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """A parsed route template; ``match`` a request path (below the route prefix) against it."""

    text: str
    segments: tuple[_Segment, ...]
    ignored: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> RouteTemplate:
        ignored: list[str] = []
        raw = text.strip("/")
        segments = tuple(_parse_segment(s, text, ignored) for s in raw.split("/")) if raw else ()
        for index, segment in enumerate(segments):
            later = segments[index + 1 :]
            single = segment.single
            if single and single.catch_all and later:
                raise ValueError(f"route {text!r}: a catch-all parameter must be last")
            if (
                single
                and single.optional
                and any(not (s.single and s.single.optional) for s in later)
            ):
                raise ValueError(f"route {text!r}: only trailing parameters may be optional")
        return cls(text, segments, tuple(ignored))

    @property
    def precedence(self) -> tuple[int, ...]:
        """Sort key: smaller is more specific and wins when several templates match."""
        return tuple(s.rank for s in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a raw request path (percent-encoded, no prefix), or None."""
        trimmed = path.strip("/")
        parts = [unquote(p) for p in trimmed.split("/")] if trimmed else []
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            single = segment.single
            if single is not None and single.catch_all:
                rest = "/".join(parts[index:])
                if rest or single.default is not None:
                    value = rest or str(single.default)
                    if rest and not single.accepts(rest):
                        return None
                    values[single.name] = value
                return values
            if index >= len(parts):
                if single is None or not single.optional:
                    return None
                if single.default is not None:
                    values[single.name] = single.default
                continue
            found = segment.pattern.fullmatch(parts[index])
            if found is None:
                return None
            for param, value in zip(segment.params, found.groups(), strict=True):
                if not param.accepts(value):
                    return None
                values[param.name] = value
        return values if len(parts) <= len(self.segments) else None
