"""No secret reaches a log line: every log record is scrubbed when it is created.

Platform errors quote request URLs (an Azure SDK error echoes ``...&sig=...``), a training
job's stderr can echo a secret, and anyone may log them: our modules, the Azure SDK, tenacity,
the Functions worker. :func:`install` wraps the process's log record factory (on top of
:mod:`shared.log_escape`'s) so that each record, of any logger, has its message formatted once
and scrubbed by the service's :class:`~shared.redact.Redactor`, and its exception text and
stack info formatted and scrubbed as well. A record factory, unlike a filter on a handler, also
covers handlers added later (the Functions worker adds its own to the root logger after
start-up) and loggers that do not propagate; a ``logging.Filter`` would cover neither.

An exception that leaves a Functions trigger never passes through Python's logging: the worker
sends its message and traceback to the host, which logs them. :func:`errors_scrubbed` (around
each trigger's work) lets it leave as it is when what it says holds no secret, and otherwise
logs it here (scrubbed) and raises one with the scrubbed message instead.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shared import log_escape
from shared.errors import TransientError
from shared.redact import NO_SECRETS, Redactor

# What a record says instead of text that could not be scrubbed: never the raw text.
WITHHELD = "[log text withheld: it could not be scrubbed of secrets]"

log = logging.getLogger(__name__)
_FORMATTER = logging.Formatter()  # the stock traceback layout, as a handler would print it
_lock = threading.Lock()


class _Scrubbing:
    """The redactor the installed factory uses; :func:`install` replaces it."""

    redactor: Redactor = NO_SECRETS


def _clean(text: str, redactor: Redactor) -> str:
    masked = redactor.text(text)
    if masked != text and redactor.holds_secret(masked):
        return WITHHELD  # masking could not get it out: say so rather than print it
    return masked


def _scrub(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: the handler would print msg and args raw
        message = f"{record.msg} (arguments that did not fit: {record.args!r})"
    record.msg = _clean(message, redactor)
    record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = _FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        masked = _clean(record.exc_text, redactor)
        if masked != record.exc_text:
            record.exc_text = masked  # every Formatter prints exc_text as it is
            error = record.exc_info[1] if record.exc_info else None
            if error is not None and _says_secret(error, redactor):
                record.exc_info = None  # a handler that formats it itself would print it raw
    if record.stack_info:
        record.stack_info = _clean(record.stack_info, redactor)


def scrub_record(record: logging.LogRecord, redactor: Redactor) -> logging.LogRecord:
    """``record`` with its message, exception text and stack info scrubbed; never raises."""
    try:
        _scrub(record, redactor)
    except Exception as exc:  # logging must not fail, nor print what it could not check
        record.msg = f"{WITHHELD} ({type(exc).__name__})"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
    return record


def current() -> Redactor:
    """The redactor log records are scrubbed with now."""
    return _Scrubbing.redactor


def install(redactor: Redactor | None = None) -> None:
    """Scrub every log record from now on with ``redactor`` (default: the secrets of this
    process's environment), and escape ours (:mod:`shared.log_escape`). Process-wide and
    idempotent: installing again only replaces the secrets."""
    chosen = Redactor.from_env(os.environ) if redactor is None else redactor
    with _lock:
        _Scrubbing.redactor = chosen
        log_escape.install()  # beneath ours: the scrub sees (and masks) the escaped text
        previous = logging.getLogRecordFactory()
        if getattr(previous, "_autopilot_scrubs", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return scrub_record(previous(*args, **kwargs), _Scrubbing.redactor)

        factory._autopilot_scrubs = True  # type: ignore[attr-defined]  # marks ours for install()
        factory._autopilot_escapes = True  # type: ignore[attr-defined]  # log_escape's is beneath
        logging.setLogRecordFactory(factory)


def _messages(exc: BaseException) -> str:
    """What the traceback of ``exc`` says besides code: its message, notes and those of the
    exceptions chained to it or grouped in it."""
    seen: set[int] = set()
    pending, said = [exc], []
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        said.append(f"{type(item).__name__}: {item}")
        if isinstance(item, SyntaxError):  # its traceback quotes the offending text
            said.append(f"{item.filename} {item.text}")
        said.extend(str(note) for note in getattr(item, "__notes__", None) or ())
        pending.extend(c for c in (item.__cause__, item.__context__) if c is not None)
        pending.extend(getattr(item, "exceptions", None) or ())
    return "\n".join(said)


def _says_secret(exc: BaseException, redactor: Redactor) -> bool:
    """Whether what ``exc`` says (not the code lines of its traceback) needs scrubbing; True
    when it cannot be printed, so cannot be checked."""
    try:
        said = _messages(exc)
    except Exception:
        return True
    return redactor.text(said) != said


class ScrubbedError(Exception):
    """An error that left a trigger, raised instead of one whose text held a secret."""


@contextmanager
def errors_scrubbed() -> Iterator[None]:
    """Around a trigger's work: an exception whose message (or a chained one's) holds a secret
    leaves as a :class:`ScrubbedError` (a ``TransientError`` as one, with its Retry-After) with
    the scrubbed message and no chain, after it is logged, scrubbed; any other as it is."""
    try:
        yield
    except Exception as exc:
        redactor = _Scrubbing.redactor
        if not _says_secret(exc, redactor):
            raise
        try:
            message = str(exc)
        except Exception:  # an unprintable exception
            message = ""
        if log.isEnabledFor(logging.ERROR):  # scrubbed here too, installed or not
            info = (type(exc), exc, exc.__traceback__)
            failed = "invocation failed"
            record = log.makeRecord(log.name, logging.ERROR, __file__, 0, failed, (), info)
            log.handle(scrub_record(record, redactor))
        text = _clean(message, redactor)
        if isinstance(exc, TransientError):  # still one a retry may fix (Event Grid, the host)
            raise TransientError(text, retry_after=exc.retry_after) from None
        raise ScrubbedError(f"{type(exc).__name__}: {text}") from None
