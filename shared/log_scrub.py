"""No secret reaches a log line: every log record is scrubbed when it is created and again,
if it changed, before any handler gets it.

Platform errors quote request URLs (an Azure SDK error echoes ``...&sig=...``), a training
job's stderr can echo a secret, and anyone may log them: our modules, the Azure SDK, tenacity,
the Functions worker. :func:`install` wraps the process's log record factory (on top of
:mod:`shared.log_escape`'s) so that each record, of any logger, has its message formatted once
and scrubbed by the service's :class:`~shared.redact.Redactor`, and its exception text and
stack info formatted and scrubbed as well. A record factory, unlike a filter on a handler, also
covers handlers added later (the Functions worker adds its own to the root logger after
start-up) and loggers that do not propagate; a ``logging.Filter`` would cover neither.

What the factory cannot see is scrubbed by a hook on ``logging.Handler.handle`` (every handler,
whenever added): the fields a call passes with ``extra=`` (set after the factory returns;
``%(field)s`` and JSON formatters print them) and records no factory made (a ``LogRecord``
built directly or by ``logging.makeLogRecord`` and handed to ``Logger.handle`` or a handler).
A record the factory scrubbed and nothing changed since costs the hook a few comparisons.

An exception that leaves a Functions trigger never passes through Python's logging: the worker
sends its message and traceback to the host, which logs them. :func:`errors_scrubbed` (around
each trigger's work) lets it leave as it is when what it says holds no secret, and otherwise
logs it here (scrubbed) and raises one with the scrubbed message instead. An uncaught exception
(``sys.excepthook``, ``threading.excepthook``, ``sys.unraisablehook`` print it to stderr) is
handed on to the previous hook as it is, or as a :class:`ScrubbedError` with its scrubbed
traceback when what it says holds a secret.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any

from shared import log_escape
from shared.errors import TransientError
from shared.redact import NO_SECRETS, Redactor

# What a record says instead of text that could not be scrubbed: never the raw text.
WITHHELD = "[log text withheld: it could not be scrubbed of secrets]"

log = logging.getLogger(__name__)
_FORMATTER = logging.Formatter()  # the stock traceback layout, as a handler would print it
_lock = threading.Lock()
# A record's own attributes (and those Formatters add); any other was passed with ``extra=``
# or set by someone else, and a formatter may print it.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",  # every Formatter sets it from the (scrubbed) message before printing it
    "asctime",
    "taskName",  # Python 3.12
}
_DEPTH = 16  # an extra nested deeper than this is scrubbed as its text


class _Scrubbing:
    """The redactor the installed factory uses; :func:`install` replaces it."""

    redactor: Redactor = NO_SECRETS


class _Last(threading.local):
    """The record this thread scrubbed last (a weak reference) and what it held then (see
    :func:`scrub_handled`)."""

    seen: tuple[Callable[[], object], tuple[Any, ...]] = (type(None), (None,))  # no record yet


_last = _Last()


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


def _shown(value: Any) -> str:
    """What a formatter may print of ``value`` (``%(x)s``, ``%(x)r``, a JSON formatter's)."""
    if isinstance(value, dict | list | tuple):
        return repr(value)  # holds the repr of every item
    return f"{value}\n{value!r}"


def _masked(value: Any, redactor: Redactor, depth: int) -> Any:
    """``value`` with every string in it masked: dicts (keys too), lists and tuples keep their
    shape; any other object whose text needs masking becomes its masked text."""
    if isinstance(value, str):
        return _clean(value, redactor)
    if _plain(value):
        return value
    if depth < _DEPTH and isinstance(value, dict):
        return {
            _masked(key, redactor, depth + 1): _masked(item, redactor, depth + 1)
            for key, item in value.items()
        }
    if depth < _DEPTH and type(value) in (list, tuple):
        return type(value)(_masked(item, redactor, depth + 1) for item in value)
    return _clean(str(value), redactor) if redactor.needs(_shown(value)) else value


def _scrub_extras(record: logging.LogRecord, redactor: Redactor) -> None:
    """Mask every attribute of ``record`` that is not one of a record's own (``extra=``): one
    look at all their text together, a closer one only when that finds something."""
    attributes = record.__dict__
    if attributes.keys() <= _STANDARD:
        return
    extras = [name for name in attributes.keys() - _STANDARD if not _plain(attributes[name])]
    texts = []
    for name in extras:
        value = attributes[name]
        try:
            texts.append(value if isinstance(value, str) else _shown(value))
        except Exception:  # unprintable: a formatter could not print it either
            attributes[name] = WITHHELD
    if not texts or not redactor.needs("\n".join(texts)):
        return
    for name in extras:
        try:
            attributes[name] = _masked(attributes[name], redactor, 0)
        except Exception:  # a container that changed or cannot be copied
            attributes[name] = WITHHELD


def _plain(value: object) -> bool:
    """A value whose text holds no secret (what a formatter prints of a number or None)."""
    return value is None or type(value) in (int, float, bool)


def _withhold(record: logging.LogRecord, error: Exception) -> None:
    record.msg = f"{WITHHELD} ({type(error).__name__})"
    record.args = ()
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    with suppress(Exception):
        attributes = record.__dict__
        for name in attributes.keys() - _STANDARD:
            attributes[name] = WITHHELD


def _state(record: logging.LogRecord) -> tuple[Any, ...]:
    """What a record holds that the scrub masks, and its number of attributes but for those a
    Formatter adds from the rest (more: an extra field was added)."""
    attributes = record.__dict__
    return (
        record.msg,
        record.args,
        record.exc_text,
        record.stack_info,
        id(record.exc_info),
        len(attributes) - ("message" in attributes) - ("asctime" in attributes),
    )


def _remember(record: logging.LogRecord) -> None:
    try:  # weakly: a record's traceback keeps frames (and their locals) alive
        _last.seen = (weakref.ref(record), _state(record))
    except Exception:  # a record that cannot be weakly referenced is scrubbed each time
        _last.seen = _Last.seen


def scrub_record(record: logging.LogRecord, redactor: Redactor) -> logging.LogRecord:
    """``record`` with its message, exception text, stack info and extra fields scrubbed;
    never raises."""
    try:
        _scrub(record, redactor)
        _scrub_extras(record, redactor)
    except Exception as exc:  # logging must not fail, nor print what it could not check
        _withhold(record, exc)
    _remember(record)
    return record


def scrub_handled(record: logging.LogRecord) -> None:
    """Before a handler gets ``record``: scrub it, unless it is the record this thread scrubbed
    last and holds what it held then; only its extra fields when just attributes were added
    (``Logger.makeRecord`` sets ``extra=`` fields after the factory has returned)."""
    redactor = _Scrubbing.redactor
    last, held = _last.seen
    try:
        now = _state(record) if last() is record else ()
        if now == held:
            return
        whole = not now or now[:-1] != held[:-1]
    except Exception:  # not shaped like a record: scrub_record withholds what it cannot read
        whole = True
    if whole:
        scrub_record(record, redactor)
        return
    try:
        _scrub_extras(record, redactor)
    except Exception as exc:  # never fail a log call, nor print what was not checked
        _withhold(record, exc)
    _remember(record)


def current() -> Redactor:
    """The redactor log records are scrubbed with now."""
    return _Scrubbing.redactor


def install(redactor: Redactor | None = None) -> None:
    """Scrub every log record from now on with ``redactor`` (default: the secrets of this
    process's environment), and escape ours (:mod:`shared.log_escape`); scrub what uncaught
    exceptions print. Process-wide and idempotent: installing again only replaces the
    secrets."""
    chosen = Redactor.from_env(os.environ) if redactor is None else redactor
    with _lock:
        _Scrubbing.redactor = chosen
        log_escape.install()  # beneath ours: the scrub sees (and masks) the escaped text
        _install_handler_hook()
        _install_excepthooks()
        previous = logging.getLogRecordFactory()
        if getattr(previous, "_autopilot_scrubs", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return scrub_record(previous(*args, **kwargs), _Scrubbing.redactor)

        factory._autopilot_scrubs = True  # type: ignore[attr-defined]  # marks ours for install()
        factory._autopilot_escapes = True  # type: ignore[attr-defined]  # log_escape's is beneath
        logging.setLogRecordFactory(factory)


def _ours(hook: object) -> bool:
    return bool(getattr(hook, "_autopilot_scrubs", False))


def _install_handler_hook() -> None:
    """Every handler, whenever added, scrubs a record before its filters and ``emit``."""
    handle = logging.Handler.handle
    if _ours(handle):
        return

    @functools.wraps(handle)
    def scrubbing_handle(self: logging.Handler, record: logging.LogRecord) -> Any:
        scrub_handled(record)
        return handle(self, record)

    scrubbing_handle._autopilot_scrubs = True  # type: ignore[attr-defined]  # marks it as ours
    logging.Handler.handle = scrubbing_handle  # type: ignore[method-assign]  # every subclass's


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


def _scrubbed_error(error: BaseException | None, tb: TracebackType | None) -> ScrubbedError | None:
    """None when what ``error`` says holds no secret; else a :class:`ScrubbedError` saying its
    whole traceback, scrubbed. Never raises (a hook that raises has its input printed raw)."""
    redactor = _Scrubbing.redactor
    if error is None or not _says_secret(error, redactor):
        return None
    try:
        text = "".join(traceback.format_exception(type(error), error, tb)).rstrip("\n")
        return ScrubbedError(_clean(text, redactor))
    except Exception:  # unprintable, or the scrub failed: say nothing of it
        return ScrubbedError(WITHHELD)


def _scrubbing_excepthook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def excepthook(
        kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> Any:
        scrubbed = _scrubbed_error(error, tb)
        if scrubbed is None:
            return previous(kind, error, tb)
        return previous(ScrubbedError, scrubbed, None)

    return excepthook


def _scrubbing_thread_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def excepthook(args: threading.ExceptHookArgs) -> Any:
        scrubbed = _scrubbed_error(args.exc_value, args.exc_traceback)
        if scrubbed is None:
            return previous(args)
        return previous(threading.ExceptHookArgs([ScrubbedError, scrubbed, None, args.thread]))

    return excepthook


def _scrubbing_unraisable_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def unraisablehook(args: Any) -> Any:  # sys.UnraisableHookArgs, built only by Python
        scrubbed = _scrubbed_error(args.exc_value, args.exc_traceback)
        message, about = args.err_msg, args.object
        with suppress(Exception):  # a repr that fails: Python's own hook says so
            said = f"{args.err_msg or 'Exception ignored in'}: {args.object!r}"
            if _Scrubbing.redactor.needs(said):  # what it was ignored in (a repr) holds one
                message, about = _clean(said, _Scrubbing.redactor), None
        if scrubbed is None and message is args.err_msg:
            return previous(args)
        kind, error, tb = args.exc_type, args.exc_value, args.exc_traceback
        if scrubbed is not None:
            kind, error, tb = ScrubbedError, scrubbed, None
        return previous(type(args)((kind, error, tb, message, about)))

    return unraisablehook


def _install_excepthooks() -> None:
    """Uncaught exceptions (main thread, other threads, ``__del__`` and the like) reach the
    hook that was there before, scrubbed; each hook is wrapped once."""
    if not _ours(sys.excepthook):
        sys.excepthook = _marked(_scrubbing_excepthook(sys.excepthook))
    if not _ours(threading.excepthook):
        threading.excepthook = _marked(_scrubbing_thread_hook(threading.excepthook))
    if not _ours(sys.unraisablehook):
        sys.unraisablehook = _marked(_scrubbing_unraisable_hook(sys.unraisablehook))


def _marked(hook: Callable[..., Any]) -> Callable[..., Any]:
    hook._autopilot_scrubs = True  # type: ignore[attr-defined]  # marks it as ours
    return hook
