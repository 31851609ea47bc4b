"""Hypothesis strategies for hostile and arbitrary intake payloads, shared by the fuzz tests.

They reach all of JSON's space, not only what ``json.dumps`` writes: strings with lone
surrogates, NUL and other control characters and non-BMP text; numbers at and beyond the
limits of a float and of Python's int-from-string (``1e309``, ``-1e400``, 4,300+ digit
integers, ``-0.0``); nesting from shallow to far beyond ``MAX_DEPTH``. Such numbers and
nestings are drawn as ``raw(...)`` markers that ``encode`` writes into the JSON text verbatim.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from tests import payloads

AML_TYPES = [
    payloads.AML + t
    for t in (
        "ModelRegistered",
        "RunCompleted",
        "RunStatusChanged",
        "DatasetDriftDetected",
        "ModelDeployed",
    )
]

_RAW = "\x00\x01raw:"
_RAW_START, _RAW_END = '"\\u0000\\u0001raw:', '\\u0000"'  # as json.dumps writes the marker


def raw(json_text: str) -> str:
    """A marker ``encode`` replaces by ``json_text`` itself (a number or nesting as written)."""
    return f"{_RAW}{json_text}\x00"


def encode(value: Any, *, ensure_ascii: bool = True) -> bytes:
    """``value`` as a JSON body, ``raw`` markers written verbatim. Without ``ensure_ascii`` a
    lone surrogate is written as its (invalid) UTF-8 bytes, as a broken client would."""
    first, *rest = json.dumps(value, ensure_ascii=ensure_ascii).split(_RAW_START)
    out = [first]
    for part in rest:
        end = part.index(_RAW_END)
        out += [json.loads(f'"{part[:end]}"'), part[end + len(_RAW_END) :]]  # unescaped
    return "".join(out).encode("utf-8", "surrogatepass")


# Every code point, lone surrogates (category Cs) included, and the awkward ones often.
AWKWARD_TEXT = ["\ud800", "\udfff", "a\udc00b", "\ud83d", "\x00", "\n\r", "\x1b[31m", "\u2028"]
AWKWARD_TEXT += ["😀", "\U0010ffff", "\ufeff", "é" * 3, "\u202e", "", " "]
any_text: st.SearchStrategy[str] = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.sampled_from(AWKWARD_TEXT),
    st.lists(st.sampled_from(AWKWARD_TEXT), min_size=1, max_size=4).map("".join),
)

# Numbers as JSON text at and beyond what a float or Python's int() can hold.
EDGE_NUMBERS = [
    "1e308",
    "1e309",
    "-1e400",
    "1E400",
    "1e-400",
    "-0.0",
    "-0",
    "0e99999999",
    "1e99999999999999999999",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "2e-324",
    "1" + "0" * 308,
    "1" + "0" * 309,
    "9" * 4300,
    "9" * 4301,
    "-" + "9" * 20_000,
    "0." + "1" * 5000,
]
edge_numbers: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(EDGE_NUMBERS).map(raw),
    st.integers(min_value=300, max_value=6000).map(lambda n: raw("7" * n)),
    st.integers(min_value=300, max_value=400).map(lambda e: raw(f"1.5e{e}")),
)
numbers: st.SearchStrategy[Any] = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
    edge_numbers,
)


def _nested(depth: int, leaf: str, kind: str) -> str:
    if kind == "list":
        return raw("[" * depth + leaf + "]" * depth)
    return raw('{"a":' * depth + leaf + "}" * depth)


# Nesting from a few levels to far beyond the limit: 1 MiB holds ~500,000 levels of "[".
deep_values: st.SearchStrategy[str] = st.builds(
    _nested,
    st.one_of(
        st.integers(min_value=1, max_value=70),
        st.sampled_from([63, 64, 65, 490, 1000, 3000, 100_000, 500_000]),
    ),
    st.sampled_from(["1", "null", '"x"', "1e400"]),
    st.sampled_from(["list", "dict"]),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | numbers | any_text | deep_values,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)

events: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(max_size=10), any_text),
        "eventType": st.one_of(st.sampled_from([*AML_TYPES, "x"]), any_text),
        "subject": st.one_of(st.text(max_size=20), any_text),
        "data": json_values,
    },
    optional={"topic": json_values, "eventTime": json_values, "specversion": json_values},
)

# Non-ASCII digits ('²'.isdigit() is True, int('²') raises) and other awkward header numbers.
# Written as escapes: superscripts, Arabic-Indic, mathematical bold and fullwidth digits.
ODD_DIGITS = "\u00b2\u00b3\u00b9\u0660\u0661\u0662\u0663\u0665\u0667\U0001d7d7\uff10\uff11\uff12"
header_numbers: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(["\u00b2", "\u0661\u0662", "\U0001d7d7", "1\u00b2", " 5", "5 ", "+5", "-1"]),
    st.sampled_from(["0x10", "1_0", "", "9" * 40, "\uff15"]),
    st.text(st.sampled_from("0123456789 +-_." + ODD_DIGITS), max_size=8),
)


def _real_event(kind: int, ident: str) -> dict[str, Any]:
    if kind == 0:
        return payloads.model_registered("credit-risk", "7", {"stage": "candidate"}, ident)
    if kind == 1:
        return payloads.monitor_breach(event_id=ident)
    return payloads.run_event("run-1", "Completed", event_id=ident)


@st.composite
def near_valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A real Azure ML event (so it reaches the store's claim) with hostile values put in:
    its id, subject or type, or any field of its data."""
    event = _real_event(draw(st.integers(0, 2)), draw(st.one_of(st.uuids().map(str), any_text)))
    for key in draw(st.lists(st.sampled_from(["id", "subject", "eventType", "topic"]), max_size=2)):
        event[key] = draw(any_text)
    data = event["data"]
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=2)):
        data[key] = draw(json_values)
    if draw(st.booleans()):
        event = payloads.to_cloudevent(event)
    return event
