"""``load_json`` refuses what cannot be written back or stored, naming the JSON path; strict
JSON out writes one record that cannot be written as a placeholder, the rest unchanged."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.envelope import MAX_DEPTH, check_json, load_json
from shared.errors import BadEvent
from shared.json_out import Encoded, document, encode


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1e308, "b": -0.0, "c": 1e-400, "d": 2e-324}', {"a": 1e308, "b": -0.0, "c": 0.0}),
        (b'{"s": "\\ud83d\\ude00"}', {"s": "\U0001f600"}),  # a surrogate pair is one character
        (b'{"n": 1' + b"0" * 307 + b"}", {"n": 10**307}),
    ],
)
def test_what_fits_in_a_float_and_in_utf8_is_accepted(
    body: bytes, expected: dict[str, Any]
) -> None:
    value = load_json(body)
    assert {k: value[k] for k in expected} == expected
    json.dumps(value, allow_nan=False)  # and it can be written back


@pytest.mark.parametrize(
    ("body", "path", "why"),
    [
        (b'{"a": {"b": [0, 1e400]}}', "$.a.b[1]", "beyond the range of a float"),
        (b'{"a": -1e309}', "$.a", "beyond the range of a float"),
        (b'{"a": 1' + b"0" * 309 + b"}", "$.a", "beyond the range of a float"),
        (b'{"a": ' + b"9" * 4301 + b"}", "$.a", "4301 digits"),
        (b'{"odd key": "\\ud800"}', '$["odd key"]', "lone surrogate"),
        (b'{"a": {"\\udfff": 1}}', "$.a", "lone surrogate"),
        (b'[{"id": "x\\udc00y"}]', "$[0].id", "lone surrogate"),
    ],
)
def test_what_cannot_be_written_or_stored_is_refused_naming_its_path(
    body: bytes, path: str, why: str
) -> None:
    with pytest.raises(BadEvent) as caught:
        load_json(body)
    assert f"body: {path}" in str(caught.value) and why in str(caught.value)


def test_nesting_is_limited_to_max_depth_levels() -> None:
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    for depth in (MAX_DEPTH + 1, 900, 200_000):
        with pytest.raises(BadEvent, match=f"nested deeper than {MAX_DEPTH} levels"):
            load_json(b"[" * depth + b"]" * depth)


def nest(depth: int, kinds: list[bool], siblings: int) -> Any:
    """Objects (True) and arrays (False) ``depth`` deep, with ``siblings`` shallow neighbours
    at every level, so the document has far more brackets than levels."""
    inner: Any = "]}" * 3  # brackets inside strings are not nesting
    for level in range(depth):
        neighbours = [{"x": [1, 2]} for _ in range(siblings)]
        if kinds[level % len(kinds)]:
            inner = {"k": inner, **{f"n{i}": n for i, n in enumerate(neighbours)}}
        else:
            inner = [*neighbours, inner]
    return inner


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(min_value=MAX_DEPTH - 5, max_value=MAX_DEPTH + 2),
    kinds=st.lists(st.booleans(), min_size=1, max_size=5),
    siblings=st.integers(min_value=0, max_value=3),
    width=st.integers(min_value=1, max_value=40),
)
def test_nesting_is_judged_by_levels_not_by_the_number_of_brackets(
    depth: int, kinds: list[bool], siblings: int, width: int
) -> None:
    deepest = nest(depth, kinds, siblings)
    body = json.dumps([nest(3, kinds, siblings) for _ in range(width)] + [deepest]).encode()
    levels = 1 + depth + (2 if siblings else 0)  # the batch's array; a neighbour's {"x": [..]}
    if levels > MAX_DEPTH:
        with pytest.raises(BadEvent, match=f"nested deeper than {MAX_DEPTH} levels"):
            load_json(body)
    else:
        assert load_json(body)[-1] == deepest


def test_check_json_walks_a_deep_document_without_recursion() -> None:
    deep: Any = 1
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    with pytest.raises(BadEvent, match="nested deeper"):
        check_json(deep)
    check_json([float("1e308"), {"k": "v"}])
    with pytest.raises(BadEvent, match=r"\$\[0\] is NaN"):
        check_json([float("nan")])


def test_a_record_that_cannot_be_written_is_a_placeholder_and_the_rest_is_intact() -> None:
    records = [
        encode(lambda: {"seq": 1, "x": 1.5}, {"seq": 1}),
        encode(lambda: {"seq": 2, "x": float("inf")}, {"seq": 2}),
        encode(lambda: {"seq": 3, "x": object()}, {"seq": 3}),
    ]
    text = document({"records": records, "note": "ok"})

    def refuse(name: str) -> Any:
        raise AssertionError(name)

    out = json.loads(text, parse_constant=refuse)
    assert out["records"][0] == {"seq": 1, "x": 1.5}
    assert out["records"][1]["seq"] == 2 and "not finite" in out["records"][1]["unrenderable"]
    assert out["records"][2]["x"].startswith("<object")  # written as text (default=str)
    assert out["note"] == "ok"
    indented = document({"records": records}, indent=2)
    assert json.loads(indented, parse_constant=refuse) == {"records": out["records"]}
    assert isinstance(records[0], Encoded)


NUMBER = st.builds(
    lambda sign, digits, fraction, exponent: f"{sign}{digits}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.from_regex(r"\A(0|[1-9][0-9]{0,4}|[1-9][0-9]{305,310})\Z"),
    st.sampled_from(["", ".5", ".000123"]),
    st.one_of(st.just(""), st.from_regex(r"\A[eE][+-]?[0-9]{1,4}\Z")),
)


@settings(max_examples=200, deadline=None)
@given(number=NUMBER, hex_id=st.from_regex(r"\A[0-9a-f]{1,12}e[0-9]{3,5}[0-9a-f]{0,12}\Z"))
def test_a_number_is_refused_exactly_when_it_does_not_fit_a_float(number: str, hex_id: str) -> None:
    """Whatever the strings around it look like (hex ids with ``e`` and digits in them)."""
    body = f'[{{"id": "{hex_id}", "v": {number}, "w": [{number}]}}]'.encode()
    fits = math.isfinite(float(number))
    if fits:
        assert load_json(body)[0]["id"] == hex_id
    else:
        with pytest.raises(BadEvent, match="beyond the range of a float"):
            load_json(body)
