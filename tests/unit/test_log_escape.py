"""Escaping of log text: whatever a string holds, it comes out as one printable line."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.log_escape import escape, escape_record

# every code point, lone surrogates included (valid in JSON strings, so in event ids)
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=60)


@settings(max_examples=1000, deadline=None)
@given(ANY_TEXT)
def test_any_text_escapes_to_one_line_that_encodes_as_utf8(text: str) -> None:
    escaped = escape(text)
    assert len(escaped.splitlines()) <= 1
    escaped.encode("utf-8")  # no lone surrogate left
    assert not any(0x80 <= ord(c) <= 0x9F or ord(c) < 0x20 or ord(c) == 0x7F for c in escaped)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, ANY_TEXT)
def test_any_record_of_ours_formats_to_one_line(first: str, second: str) -> None:
    record = logging.LogRecord("functions.alerts", logging.INFO, __file__, 1, "%s / %r", None, None)
    record.args = (first, second)
    formatted = logging.Formatter("%(levelname)s %(name)s %(message)s").format(
        escape_record(record)
    )
    assert len(formatted.splitlines()) == 1
    formatted.encode("utf-8")


def test_printable_text_is_unchanged() -> None:
    text = "event 3f2a: processed — naïve 東京 ✓ C:\\path"
    assert escape(text) == text
