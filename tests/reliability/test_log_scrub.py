"""No secret reaches a log line, whoever logs it (``shared/log_scrub.py``).

Every record is scrubbed when it is created: our modules, a foreign library (the Azure SDK's
loggers), exception messages and chained causes in tracebacks, stack info, malformed logging
calls, and handlers added after start-up (as the Functions worker adds its own). The last test
drives a real path: the service built by ``composition.wiring.build_services`` from an
environment holding secrets, whose reconciler logs a platform outage quoting a SAS URL.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import log_escape, log_scrub
from shared.errors import PermanentError, TransientError
from shared.model import Cycle
from shared.redact import Redactor
from tests.conftest import KEYS
from tests.fakes import FakeStore, World

CONFIGURED = "abc123SECRETvalue"  # a configured secret (e.g. the SAS signature of a setting)
UNCONFIGURED = "unconfiguredSig0042xyz"  # a signature no setting holds: masked by its shape
URL = f"https://acct.blob.core.windows.net/c/b?sv=2021&sig={CONFIGURED}"
OTHER_URL = f"https://acct.blob.core.windows.net/c/b?sv=2021&se=2026&sig={UNCONFIGURED}"
CLIENT_SECRET = "client-secret-value-0042"  # a configured secret written bare, not name=value
SECRETS = [CONFIGURED, UNCONFIGURED, CLIENT_SECRET]

# every code point, lone surrogates included
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
ANY_SECRET = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), min_size=8, max_size=24
)


@contextmanager
def process_hooks_restored() -> Iterator[None]:
    """Afterwards the process's record factory, ``Handler.handle``, exception hooks and
    secrets are what they were before."""
    saved = (logging.getLogRecordFactory(), logging.Handler.handle, log_scrub.current())
    hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook)
    try:
        yield
    finally:
        logging.setLogRecordFactory(saved[0])
        logging.Handler.handle = saved[1]  # type: ignore[method-assign]
        log_scrub._Scrubbing.redactor = saved[2]
        sys.excepthook, threading.excepthook, sys.unraisablehook = hooks


@pytest.fixture
def scrubbing() -> Iterator[None]:
    """The scrub installed with the two configured secrets; the process's hooks restored."""
    with process_hooks_restored():
        log_scrub.install(Redactor([CONFIGURED, CLIENT_SECRET]))
        yield


@pytest.fixture
def written() -> Iterator[io.StringIO]:
    """What a plain handler added to the root logger after start-up writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert "***" in text


def raise_chained() -> None:
    try:
        raise ConnectionError(f"connection to {OTHER_URL} reset")
    except ConnectionError as cause:
        raise TransientError(f"GET {URL}: 503; client secret {CLIENT_SECRET}") from cause


def test_a_secret_passed_as_an_argument_by_our_module_is_masked(
    scrubbing: None, written: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("shared.lifecycle")
    log.warning("reconcile of cycle %s deferred: %s", "c-1", f"GET {URL} failed")
    log.warning("token %s and %s", CLIENT_SECRET, OTHER_URL)
    text = written.getvalue()
    assert_clean(text)
    assert "deferred: GET https://acct.blob.core.windows.net/c/b?sv=2021&sig=*** failed" in text
    assert f"token *** and {OTHER_URL.replace(UNCONFIGURED, '***')}" in text
    assert_clean(caplog.text)  # pytest's own handler sees the scrubbed record too


def test_an_exception_and_its_cause_in_a_traceback_are_masked(
    scrubbing: None, written: io.StringIO
) -> None:
    log = logging.getLogger("handlers.cleanup")
    try:
        raise_chained()
    except TransientError:
        log.exception("clean-up of %s failed", "cycle c-1")
    text = written.getvalue()
    assert_clean(text)
    assert "Traceback (most recent call last):" in text  # still a traceback, with its cause
    assert "The above exception was the direct cause of the following exception:" in text
    # a credential part is masked up to its delimiter (here the colon went with it)
    assert "GET https://acct.blob.core.windows.net/c/b?sv=2021&sig=*** 503; " in text
    assert "client secret ***" in text


def test_a_foreign_loggers_message_exception_and_stack_are_masked(
    scrubbing: None, written: io.StringIO
) -> None:
    sdk = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    sdk.warning("Request URL: '%s'", URL)
    try:
        raise_chained()
    except TransientError as exc:
        logging.getLogger("tenacity").error("giving up on %s", URL, exc_info=exc, stack_info=True)
    sdk.warning(f"formatted before logging: {OTHER_URL} {CLIENT_SECRET}")
    text = written.getvalue()
    assert_clean(text)
    assert "Request URL: 'https://acct.blob.core.windows.net/c/b?sv=2021&sig=***'" in text
    assert "Stack (most recent call last):" in text
    assert "The above exception was the direct cause" in text


def test_a_handler_that_formats_the_exception_itself_never_gets_it(
    scrubbing: None,
) -> None:
    """An exception whose text needed masking is dropped from the record (its scrubbed
    traceback stays in ``exc_text``, which every Formatter prints); a clean one is kept, also
    when a code line of its traceback looks like a credential part (``event_key=model``)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger = logging.getLogger("azure.identity")
    logger.addHandler(handler)
    try:
        try:
            raise_chained()
        except TransientError:
            logger.exception("token request failed")
        try:
            raise ValueError("nothing secret here")
        except ValueError:
            logger.exception("plain failure")
        refusing = BrokenStore()
        refusing.error = PermanentError("refused")
        try:
            refusing.list_cycles("model-1")
        except PermanentError:
            logger.exception("listing failed")
    finally:
        logger.removeHandler(handler)
    leaked, plain, listing = records
    assert leaked.exc_info is None and leaked.exc_text is not None
    assert_clean(leaked.exc_text)
    assert plain.exc_info is not None and plain.exc_text is not None
    assert "ValueError: nothing secret here" in plain.exc_text
    assert listing.exc_info is not None  # only a code line of its traceback was masked
    assert "event_key=***" in str(listing.exc_text)


def test_records_of_non_propagating_loggers_are_masked_too(scrubbing: None) -> None:
    stream = io.StringIO()
    logger = logging.getLogger("azure.functions.worker_like")
    logger.propagate = False
    logger.addHandler(logging.StreamHandler(stream))
    try:
        logger.warning("binding failed for %s", URL)
    finally:
        logger.propagate = True
        logger.handlers.clear()
    assert_clean(stream.getvalue())


def test_a_malformed_call_logs_something_safe_and_nothing_raw(
    scrubbing: None, written: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

        def __repr__(self) -> str:
            return f"Unprintable({URL})"

    log = logging.getLogger("somelib")
    log.warning("wrong arg count %s %s", URL)  # logging would print msg and args raw
    log.warning("an object: %s", Unprintable())
    text = written.getvalue()
    assert_clean(text)
    assert "wrong arg count" in text and "an object" in text
    assert capsys.readouterr().err == ""  # no "--- Logging error ---" with the raw args


def test_a_failing_scrub_withholds_the_text() -> None:
    class Broken(Redactor):
        def text(self, value: str) -> str:
            raise RuntimeError("scrubber broke")

    record = logging.LogRecord("somelib", logging.ERROR, __file__, 1, "at %s", (URL,), None)
    scrubbed = log_scrub.scrub_record(record, Broken([CONFIGURED]))
    assert scrubbed.getMessage() == f"{log_scrub.WITHHELD} (RuntimeError)"
    assert CONFIGURED not in logging.Formatter().format(scrubbed)


def test_installing_again_replaces_the_secrets_and_never_wraps_twice(
    scrubbing: None, written: io.StringIO
) -> None:
    factory = logging.getLogRecordFactory()
    log_scrub.install(Redactor(["second-secret-0001"]))
    log_escape.install()  # the escape is beneath the scrub: not installed again on top
    assert logging.getLogRecordFactory() is factory
    log = logging.getLogger("functions.alerts")
    log.warning("old %s, new %s", CLIENT_SECRET, "second-secret-0001\nFORGED")
    assert written.getvalue().strip().endswith(f"old {CLIENT_SECRET}, new ***\\nFORGED")


def test_a_secret_holding_a_line_break_is_masked_in_our_escaped_records(
    scrubbing: None, written: io.StringIO
) -> None:
    """Our records are escaped before they are scrubbed: the escaped form is masked."""
    secret = "multi\nline-secret\x1b0042"
    log_scrub.install(Redactor([secret]))
    logging.getLogger("handlers.training").warning("stderr: %s", f"[{secret}]")
    logging.getLogger("somelib").warning("stderr: %s", f"[{secret}]")
    text = written.getvalue()
    assert secret not in text and log_escape.escape(secret) not in text
    assert "stderr: [***]" in text


class JsonFields(logging.Formatter):
    """A JSON log formatter as structured-logging setups use: the message and every field
    passed with ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        own = vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message"}
        fields = {k: v for k, v in vars(record).items() if k not in own}
        return json.dumps({"message": record.getMessage(), **fields}, default=str)


class Collect(logging.Handler):
    """Keeps the records it is handed, as a handler that reads their fields would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("logger_name", ["azure.storage.blob", "shared.lifecycle"])
def test_fields_passed_with_extra_are_masked_whatever_prints_them(
    logger_name: str, scrubbing: None
) -> None:
    """``extra=`` fields become record attributes after the factory has run; ``%(field)s``
    and JSON formatters print them. Strings are masked, also inside dicts (keys too) and
    lists, and an object whose text holds a secret becomes its masked text; the rest keeps
    its shape and type."""
    stream, collect = io.StringIO(), Collect()
    printed = logging.StreamHandler(stream)
    printed.setFormatter(logging.Formatter("%(message)s url=%(url)s request=%(request)r"))
    as_json = logging.StreamHandler(stream)
    as_json.setFormatter(JsonFields())
    logger = logging.getLogger(logger_name)
    for handler in (printed, as_json, collect):  # all added after the scrub was installed
        logger.addHandler(handler)
    request = {
        "headers": {"Authorization": f"Bearer {CLIENT_SECRET}", "Accept": "json"},
        "query": [f"sig={UNCONFIGURED}", "sv=2021"],
        "attempt": 2,
        CONFIGURED: "a secret as a key",
    }
    try:
        logger.warning(
            "upload failed",
            extra={
                "url": URL,
                "request": request,
                "error": ConnectionError(f"reset by {OTHER_URL}"),
                "status": 503,
                "elapsed": 0.25,
            },
        )
    finally:
        for handler in (printed, as_json, collect):
            logger.removeHandler(handler)
    text = stream.getvalue()
    assert_clean(text)
    assert "url=https://acct.blob.core.windows.net/c/b?sv=2021&sig=***" in text
    (record,) = collect.records
    fields = vars(record)
    assert fields["request"] == {
        "headers": {"Authorization": "Bearer ***", "Accept": "json"},
        "query": ["sig=***", "sv=2021"],
        "attempt": 2,
        "***": "a secret as a key",
    }
    assert request["query"] == [f"sig={UNCONFIGURED}", "sv=2021"]  # the caller's dict intact
    assert fields["error"] == f"reset by {OTHER_URL.replace(UNCONFIGURED, '***')}"
    assert (fields["status"], fields["elapsed"]) == (503, 0.25)
    printed_fields = json.loads(text.splitlines()[-1])
    assert printed_fields["request"]["query"] == ["sig=***", "sv=2021"]
    assert printed_fields["status"] == 503


def test_an_extra_field_that_cannot_be_printed_is_withheld_and_the_call_still_logs(
    scrubbing: None, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

        def __repr__(self) -> str:
            return f"Unprintable({URL})"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s: %(client)s"))
    logger = logging.getLogger("somelib")
    logger.addHandler(handler)
    try:
        logger.warning("client gone", extra={"client": Unprintable()})
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == f"client gone: {log_scrub.WITHHELD}\n"
    assert capsys.readouterr().err == ""  # no "--- Logging error ---"


def test_a_record_no_factory_made_is_masked_before_any_handler_gets_it(
    scrubbing: None, written: io.StringIO
) -> None:
    """Records the factory never saw: a ``LogRecord`` built directly or by
    ``logging.makeLogRecord`` (mapping args) handed to ``Logger.handle`` (as a socket log
    receiver does) or straight to a handler (as ``QueueListener`` does), and the records of a
    factory installed later that does not chain to ours. The handler was added after the
    scrub was installed, as the Functions worker adds its own."""
    sdk = logging.getLogger("azure.storage.blob")
    built = logging.LogRecord(sdk.name, logging.WARNING, __file__, 1, "GET %s", (URL,), None)
    sdk.handle(built)
    received = logging.makeLogRecord(
        {
            "name": "somelib",
            "levelno": logging.ERROR,
            "levelname": "ERROR",
            "msg": "token %(token)s for %(url)s",
            "args": {"token": CLIENT_SECRET, "url": OTHER_URL},
            "url": URL,  # a field, as a sender's extra=
        }
    )
    logging.getLogger("somelib").handle(received)
    (root_handler,) = [
        h for h in logging.getLogger().handlers if getattr(h, "stream", None) is written
    ]
    root_handler.handle(
        logging.LogRecord("queued", logging.INFO, __file__, 1, f"auth {CLIENT_SECRET}", (), None)
    )
    logging.setLogRecordFactory(logging.LogRecord)  # a library's factory, installed after ours
    sdk.warning("retrying %(url)s", {"url": URL})  # Logger.makeRecord with mapping args
    lines = written.getvalue().splitlines()
    assert_clean(written.getvalue())
    assert lines == [
        "WARNING azure.storage.blob GET https://acct.blob.core.windows.net/c/b?sv=2021&sig=***",
        f"ERROR somelib token *** for {OTHER_URL.replace(UNCONFIGURED, '***')}",
        "INFO queued auth ***",
        "WARNING azure.storage.blob retrying "
        "https://acct.blob.core.windows.net/c/b?sv=2021&sig=***",
    ]
    assert vars(received)["url"] == "https://acct.blob.core.windows.net/c/b?sv=2021&sig=***"


def test_a_record_changed_after_the_factory_is_scrubbed_again(
    scrubbing: None, written: io.StringIO
) -> None:
    """A record made by ``Logger.makeRecord`` (scrubbed by the factory) and changed before it
    is handled: the handler still gets it masked."""
    logger = logging.getLogger("somelib")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "GET %s", (URL,), None)
    record.msg, record.args = "token %s", (CLIENT_SECRET,)
    logger.handle(record)
    assert written.getvalue() == "WARNING somelib token ***\n"


class Holder:
    """An object whose clean-up fails quoting a SAS URL (Python reports it as unraisable)."""

    def __del__(self) -> None:
        raise OSError(f"closing {OTHER_URL}")


class Client:
    """An object whose repr quotes a SAS URL."""

    def __repr__(self) -> str:
        return f"Client({URL})"


def test_an_uncaught_exception_reaches_the_previous_hook_scrubbed() -> None:
    """``sys.excepthook``, ``threading.excepthook`` and ``sys.unraisablehook`` print an uncaught
    exception to stderr, outside logging. After ``install`` the hook that was there gets one
    whose message holds a secret as a ``ScrubbedError`` with its traceback scrubbed, any other
    as it is; installing again wraps none of them twice."""
    main: list[tuple[Any, ...]] = []
    threads: list[threading.ExceptHookArgs] = []
    unraisable: list[Any] = []
    with process_hooks_restored():
        sys.excepthook = lambda *args: main.append(args)
        threading.excepthook = threads.append
        sys.unraisablehook = unraisable.append
        log_scrub.install(Redactor([CONFIGURED, CLIENT_SECRET]))
        hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook)
        log_scrub.install(Redactor([CONFIGURED, CLIENT_SECRET]))
        assert (sys.excepthook, threading.excepthook, sys.unraisablehook) == hooks
        try:
            raise_chained()
        except TransientError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)  # as Python calls it
        plain = ValueError("nothing secret here")
        sys.excepthook(ValueError, plain, None)
        thread = threading.Thread(target=raise_chained, name="uploader")
        thread.start()
        thread.join()
        Holder()  # dropped at once: its __del__ raises
        closed = OSError("already closed")  # in an object whose repr quotes a SAS URL
        sys.unraisablehook(type(unraisable[0])((OSError, closed, None, None, Client())))
    (kind, error, tb), passed_on = main
    assert (kind, tb) == (log_scrub.ScrubbedError, None)
    assert str(error).startswith("Traceback (most recent call last):")
    assert "The above exception was the direct cause of the following exception:" in str(error)
    assert_clean(str(error))
    assert passed_on == (ValueError, plain, None)
    (in_thread,) = threads
    assert in_thread.exc_type is log_scrub.ScrubbedError and in_thread.thread is thread
    assert_clean(str(in_thread.exc_value))
    ignored, in_client = unraisable
    assert ignored.exc_type is log_scrub.ScrubbedError
    assert "OSError: closing https://acct.blob.core.windows.net/c/b?" in str(ignored.exc_value)
    assert_clean(str(ignored.exc_value))
    assert (in_client.exc_value, in_client.object) == (closed, None)
    assert in_client.err_msg == (  # the ")" goes with the credential part it ends
        "Exception ignored in: Client(https://acct.blob.core.windows.net/c/b?sv=2021&sig=***"
    )


def test_uncaught_exceptions_print_no_secret_to_stderr_after_importing_the_app() -> None:
    """A real process: importing ``function_app`` installs the hooks; a thread, an object's
    clean-up and the main thread then die of exceptions quoting secrets."""

    script = (
        "import threading\n"
        "import function_app\n"
        "def upload():\n"
        f"    raise RuntimeError('upload to ' + {URL!r} + ' failed')\n"
        "thread = threading.Thread(target=upload, name='uploader')\n"
        "thread.start()\n"
        "thread.join()\n"
        "from tests.reliability.test_log_scrub import Holder\n"
        "Holder()\n"
        "from shared.errors import TransientError\n"
        f"raise TransientError('auth with ' + {CLIENT_SECRET!r} + ' refused')\n"
    )
    done = run_with_secrets(script)
    assert done.returncode == 1, done.stderr
    assert_clean(done.stderr)
    assert "Exception in thread uploader:" in done.stderr
    assert "RuntimeError: upload to https://acct.blob.core.windows.net/c/b?***" in done.stderr
    assert "Exception ignored in: <function Holder.__del__ at " in done.stderr
    assert "OSError: closing https://acct.blob.core.windows.net/c/b?" in done.stderr
    assert "TransientError: auth with *** refused" in done.stderr


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=ANY_SECRET, before=ANY_TEXT, after=ANY_TEXT, ours=st.booleans())
def test_any_text_with_a_secret_inside_never_logs_the_secret(
    secret: str, before: str, after: str, ours: bool
) -> None:
    saved_factory, saved = logging.getLogRecordFactory(), log_scrub.current()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("handlers.any" if ours else "azure.any")
    logger.addHandler(handler)
    try:
        log_scrub.install(Redactor([secret]))
        text = before + secret + after
        logger.warning("%s", text)
        logger.warning(text)
        try:
            raise TransientError(text)
        except TransientError:
            logger.exception("failed: %r", text)
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(saved_factory)
        log_scrub.install(saved)
    written = stream.getvalue()
    assert secret not in written
    assert log_escape.escape(secret) not in written
    assert "***" in written or log_scrub.WITHHELD in written  # it was there, and masked


def test_the_reconcilers_outage_warning_built_by_wiring_carries_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The real path: ``build_services`` (as on Azure and under ``autopilot serve``) installs
    the scrub with the environment's secrets; a platform outage quoting a SAS URL and a
    configured client secret reaches the reconciler's warning (``contain_cycle_errors``)."""
    from composition.bootstrap import bootstrap
    from composition.delivery import deliver_alert
    from composition.wiring import build_services
    from shared.messages import Reconcile
    from shared.model import CycleState, JobInfo
    from shared.settings import AppSettings
    from tests import payloads
    from tests.fakes import FakeMetrics, FakePlatform

    class OutagePlatform(FakePlatform):
        outage = False

        def get_job(self, name: str) -> JobInfo:
            if self.outage:  # as the Azure adapter reports an SDK error: the URL quoted
                raise TransientError(f"GET {URL}: HTTP 503; auth {CLIENT_SECRET}")
            return super().get_job(name)

    env = {
        "AUTOPILOT_FUNCTION_KEYS": "ops=k-ops-0123456789abcdef",
        "AUTOPILOT_POLICY": str(Path(__file__).resolve().parents[2] / "examples/policy.yaml"),
        "AUTOPILOT_DATA_DIR": str(tmp_path),
        "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        "AUTOPILOT_BLOB_SAS": f"sv=2021&sig={CONFIGURED}",
    }
    platform = OutagePlatform()
    saved_factory, saved = logging.getLogRecordFactory(), log_scrub.current()
    try:
        services = build_services(
            AppSettings.from_env(env),
            platform=platform,
            metrics=FakeMetrics(),
            redactor=Redactor.from_env(env),
        )
        caplog.set_level(logging.INFO)
        deliver_alert(bootstrap(services), payloads.alert("autopilot-drift-credit-risk"))
        (cycle,) = services.store.list_cycles()
        assert cycle.state is CycleState.RETRAINING
        platform.outage = True
        bootstrap(services).handle(Reconcile())
    finally:
        logging.setLogRecordFactory(saved_factory)
        log_scrub.install(saved)
    deferred = [r.getMessage() for r in caplog.records if "deferred" in r.getMessage()]
    assert deferred == [
        f"reconcile of cycle {cycle.id} deferred: GET "
        "https://acct.blob.core.windows.net/c/b?***: HTTP 503; auth ***"  # the whole SAS setting
    ]
    assert_clean(caplog.text)


def test_importing_the_function_app_scrubs_every_record_as_the_azure_worker_runs_it() -> None:
    """The Functions worker imports ``function_app`` with the app settings in the environment
    and logs through its own root handler, added after start-up: the import alone must make
    every record secret-free, a foreign logger's and an exception's too."""

    script = (
        "import io, logging, sys\n"
        "before = logging.StreamHandler(sys.stdout)\n"
        "logging.getLogger().addHandler(before)\n"
        "import function_app\n"
        "after = logging.StreamHandler(sys.stdout)  # as the worker's gRPC handler\n"
        "logging.getLogger().addHandler(after)\n"
        f"logging.getLogger('azure.core.pipeline').warning('GET %s', {URL!r})\n"
        "try:\n"
        f"    raise RuntimeError('auth with ' + {CLIENT_SECRET!r} + ' refused')\n"
        "except RuntimeError:\n"
        "    logging.getLogger('functions.reconcile').exception('tick failed')\n"
    )
    done = run_with_secrets(script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines.count("GET https://acct.blob.core.windows.net/c/b?***") == 2  # both handlers
    assert lines.count("RuntimeError: auth with *** refused") == 2
    assert_clean(done.stdout)


class BrokenStore(FakeStore):
    """A state store whose every listing fails with an error quoting secrets."""

    error: Exception = PermanentError(f"GET {URL}: HTTP 403; auth {CLIENT_SECRET}")

    def list_cycles(self, model: str | None = None, active_only: bool = False) -> list[Cycle]:
        # a source line shaped like a credential part, as many of ours are (event_key=key):
        # code in a traceback is not what an exception says
        _raise(self.error, event_key=model)


def _raise(error: Exception, event_key: str | None) -> NoReturn:
    raise error


def sent_to_the_host(exc: BaseException) -> str:
    """What the Functions worker sends the host for an exception that left a function (the
    host logs it): the worker library's own serialisation."""
    from types import SimpleNamespace

    from azure_functions_runtime.utils.tracing import serialize_exception

    sent = serialize_exception(exc, SimpleNamespace(RpcException=SimpleNamespace))
    return f"{sent.message}\n{sent.stack_trace}"


@pytest.mark.parametrize("trigger", ["reconcile", "list_cycles"])
def test_an_error_leaving_a_function_reaches_the_host_without_its_secrets(
    trigger: str,
    scrubbing: None,
    registered: dict[str, Any],
    world: World,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import azure.functions as func
    from azure.functions.timer import TimerRequest

    world.services.store = BrokenStore()
    function = registered[trigger].get_user_function()
    with pytest.raises(log_scrub.ScrubbedError) as raised:
        if trigger == "reconcile":
            function(timer=TimerRequest())
        else:
            headers = {"x-functions-key": KEYS["ops-team"]}
            request = func.HttpRequest(
                "GET", "http://localhost/api/cycles", headers=headers, body=b""
            )
            function(req=request)
    host_log = sent_to_the_host(raised.value)
    assert_clean(host_log)
    assert "PermanentError: GET https://acct.blob.core.windows.net/c/b?sv=2021&sig=*** " in host_log
    assert "invocation failed" in caplog.text  # the whole traceback, scrubbed, in our log
    assert "in list_cycles" in caplog.text
    assert_clean(caplog.text)


def test_an_error_without_a_secret_leaves_a_function_as_it_is(
    scrubbing: None, registered: dict[str, Any], world: World
) -> None:
    from azure.functions.timer import TimerRequest

    world.services.store = store = BrokenStore()
    store.error = PermanentError("table storage refused the query: HTTP 403")
    with pytest.raises(PermanentError) as raised:
        registered["reconcile"].get_user_function()(timer=TimerRequest())
    assert raised.value is store.error


def test_an_error_whose_cause_holds_a_secret_leaves_scrubbed(
    scrubbing: None, registered: dict[str, Any], world: World
) -> None:
    from azure.functions.timer import TimerRequest

    world.services.store = store = BrokenStore()
    try:
        raise ConnectionError(f"connection to {OTHER_URL} reset")
    except ConnectionError as cause:
        store.error = PermanentError("table storage unreachable")
        store.error.__cause__ = cause
    with pytest.raises(log_scrub.ScrubbedError) as raised:
        registered["reconcile"].get_user_function()(timer=TimerRequest())
    assert str(raised.value) == "PermanentError: table storage unreachable"
    assert UNCONFIGURED not in sent_to_the_host(raised.value)


def test_a_transient_error_leaving_a_function_stays_one_a_retry_may_fix(
    scrubbing: None, registered: dict[str, Any], world: World
) -> None:
    """Event Grid redelivers what failed; ``autopilot serve`` answers 503 with Retry-After."""
    from azure.functions.timer import TimerRequest

    world.services.store = store = BrokenStore()
    store.error = TransientError(f"GET {URL}: HTTP 503", retry_after=7.0)
    with pytest.raises(TransientError) as raised:
        registered["reconcile"].get_user_function()(timer=TimerRequest())
    assert raised.value is not store.error and raised.value.retry_after == 7.0
    assert_clean(sent_to_the_host(raised.value))


def test_an_error_leaving_scrubbed_is_logged_scrubbed_even_without_the_factory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with process_hooks_restored():  # as in a process that never installed the scrub:
        logging.setLogRecordFactory(logging.LogRecord)
        logging.Handler.handle = inspect.unwrap(logging.Handler.handle)  # type: ignore[method-assign]
        log_scrub._Scrubbing.redactor = Redactor([CLIENT_SECRET])
        with pytest.raises(TransientError) as raised, log_scrub.errors_scrubbed():
            raise_chained()
    assert "invocation failed" in caplog.text and "Traceback" in caplog.text
    assert_clean(caplog.text)
    assert str(raised.value).startswith(
        "GET https://acct.blob.core.windows.net/c/b?sv=2021&sig=***"
    )


def run_with_secrets(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a new interpreter at the repository's root, with a client secret and a
    SAS token configured in its environment."""
    env = {
        **os.environ,
        "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        "AUTOPILOT_STORAGE_SAS": f"sv=2021&sig={CONFIGURED}",
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
