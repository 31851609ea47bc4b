"""Log lines cannot be forged: every record of our loggers is escaped when it is created.

Event ids, subjects, alert names and exception messages come from outside. Logged raw, a
newline in an id writes a fake log line. :func:`install` wraps the process's log record
factory so that each record of our packages has its message formatted once and escaped:
CR, LF, every other C0/C1 control character, DEL, the Unicode line and paragraph separators,
bidirectional overrides and lone surrogates become visible escapes (``\\n``, ``\\x1b``,
``\\u2028``, ``\\udc80``). An exception's message is escaped the same way; only the traceback's
own line structure is kept. The record factory, unlike a logger filter, also sees records of
child loggers, and works whatever handler prints them (``autopilot serve``'s stderr, the Azure
Functions worker, pytest's capture).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any

# Packages whose log records are escaped (their loggers and every child logger).
OUR_LOGGERS = ("autopilot", "embedded", "functions", "handlers", "shared", "function_app")

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_lock = threading.Lock()


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` on one line, with nothing a terminal or log viewer would act on."""
    return _UNSAFE.sub(_escape_char, text)


def _ours(name: object) -> bool:
    # logging.makeLogRecord calls the factory with name None, then sets the attributes
    return isinstance(name, str) and name.split(".", 1)[0] in OUR_LOGGERS


def _format_exception(exc_info: Any) -> str:
    """The traceback with each exception's message escaped (chained ones too)."""
    exc_type, value, tb = exc_info
    if value is None:
        return "".join(traceback.format_exception(exc_type, value, tb)).rstrip("\n")
    info = traceback.TracebackException(type(value), value, tb, compact=True)
    seen: set[int] = set()
    pending = [info]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        message = getattr(current, "_str", None)  # the message line(s) of this exception
        if isinstance(message, str):
            setattr(current, "_str", escape(message))  # noqa: B010 (private to traceback)
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            current.__notes__ = [escape(str(n)) for n in notes]
        pending.extend(c for c in (current.__cause__, current.__context__) if c is not None)
        pending.extend(getattr(current, "exceptions", None) or ())
    return "".join(info.format()).rstrip("\n")


def escape_record(record: logging.LogRecord) -> logging.LogRecord:
    """Format the message once, escape it, and pre-format the exception text escaped."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed call still logs, escaped, instead of raising later
        message = f"{record.msg!r} % {record.args!r}"
    record.msg = escape(message)
    record.args = ()
    if record.exc_info and not record.exc_text:
        try:
            record.exc_text = _format_exception(record.exc_info)
        except Exception:  # never let logging fail: the whole traceback on one line
            record.exc_text = escape(
                "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            )
    return record


def install() -> None:
    """Escape every record of our loggers from now on (idempotent, process-wide)."""
    with _lock:
        previous = logging.getLogRecordFactory()
        if getattr(previous, "_autopilot_escapes", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            return escape_record(record) if _ours(record.name) else record

        factory._autopilot_escapes = True  # type: ignore[attr-defined]  # marks ours for install()
        logging.setLogRecordFactory(factory)
