"""Retry policies: what is retried, how long it waits, and what the caller finally sees."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import HttpRequest

from shared import retry
from shared.budget import INVOCATION_BUDGET_S, invocation_budget
from shared.errors import AlreadyExists, InProgress, NotFound, PermanentError, TransientError
from shared.retry import RetryPolicy, call_with_retry

FAST = RetryPolicy(attempts=4, initial_s=1.0, max_interval_s=8.0, total_s=20.0, jitter=0.0)


class _Response:
    """The two attributes azure-core errors read from a response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self.reason = "Status"
        self.request = HttpRequest("GET", "https://management.azure.com/x?sig=secret")

    def text(self) -> str:
        return '{"error": {"code": "Boom", "message": "server said no"}}'


def http_error(
    status: int,
    headers: dict[str, str] | None = None,
    cls: type[HttpResponseError] = HttpResponseError,
) -> HttpResponseError:
    return cls(message=f"status {status}", response=_Response(status, headers))


class Flaky:
    """Fails with the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [float(r.getMessage().rsplit("waiting ", 1)[1].rstrip("s)")) for r in caplog.records]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (http_error(408), True),
        (http_error(429), True),
        (http_error(500), True),
        (http_error(502), True),
        (http_error(503), True),
        (http_error(504), True),
        (ServiceRequestError("connection refused"), True),
        (ServiceResponseError("connection reset"), True),
        (TransientError("throttled by us"), True),
        (http_error(400), False),
        (http_error(401, cls=ClientAuthenticationError), False),
        (http_error(403, cls=ClientAuthenticationError), False),
        (http_error(404, cls=ResourceNotFoundError), False),
        (http_error(409, cls=ResourceExistsError), False),
        (http_error(412), False),
        (PermanentError("bad"), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_failures_are_retried(error: BaseException, retried: bool) -> None:
    fn = Flaky(error)
    if retried:
        assert call_with_retry(FAST, fn, what="op") == "ok"
        assert fn.calls == 2
    else:
        with pytest.raises(Exception):  # noqa: B017 - the type is checked in the next test
            call_with_retry(FAST, fn, what="op")
        assert fn.calls == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (http_error(404, cls=ResourceNotFoundError), NotFound),
        (http_error(404), NotFound),
        (http_error(409, cls=ResourceExistsError), AlreadyExists),
        (http_error(409), AlreadyExists),
        (http_error(400), PermanentError),
        (http_error(401, cls=ClientAuthenticationError), PermanentError),
        (http_error(403), PermanentError),
        (http_error(429), TransientError),
        (http_error(503), TransientError),
        (ServiceRequestError("refused"), TransientError),
    ],
)
def test_final_failure_becomes_our_error_chained_to_the_sdk_one(
    error: BaseException, expected: type[Exception]
) -> None:
    always = Flaky(*([error] * 10))
    with pytest.raises(expected) as caught:
        call_with_retry(FAST, always, what="get job j-1")
    assert caught.value.__cause__ is error
    assert str(caught.value).startswith("get job j-1: ")


def test_our_own_errors_pass_through_unchanged() -> None:
    error = NotFound("no such job")
    with pytest.raises(NotFound) as caught:
        call_with_retry(FAST, Flaky(error), what="op")
    assert caught.value is error


def test_attempts_are_bounded() -> None:
    always = Flaky(*([http_error(503)] * 10))
    with pytest.raises(TransientError):
        call_with_retry(FAST, always, what="op")
    assert always.calls == FAST.attempts


def test_exponential_backoff_capped_by_max_interval(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(attempts=6, initial_s=1.0, max_interval_s=5.0, total_s=20.0, jitter=0.0)
    with caplog.at_level(logging.WARNING, logger="shared.retry"), pytest.raises(TransientError):
        call_with_retry(policy, Flaky(*([http_error(500)] * 10)), what="op")
    assert waits(caplog) == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_its_fraction(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(attempts=2, initial_s=2.0, max_interval_s=10.0, total_s=20.0, jitter=0.5)
    with caplog.at_level(logging.WARNING, logger="shared.retry"):
        for _ in range(20):
            call_with_retry(policy, Flaky(http_error(500)), what="op")
    seen = waits(caplog)
    assert len(seen) == 20
    assert all(2.0 <= w <= 3.0 for w in seen)
    assert len(set(seen)) > 1


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"x-ms-retry-after-ms": "500"}, 0.5),
        ({"Retry-After": "120"}, 8.0),  # capped by the policy's max interval
    ],
)
def test_retry_after_header_is_honoured_and_capped(
    headers: dict[str, str], expected_wait: float, caplog: pytest.LogCaptureFixture
) -> None:
    fn = Flaky(http_error(429, headers))
    with caplog.at_level(logging.WARNING, logger="shared.retry"):
        assert call_with_retry(FAST, fn, what="op") == "ok"
    assert waits(caplog) == [expected_wait]


def test_retry_after_from_transient_error(caplog: pytest.LogCaptureFixture) -> None:
    fn = Flaky(TransientError("busy", retry_after=6.0))
    with caplog.at_level(logging.WARNING, logger="shared.retry"):
        call_with_retry(FAST, fn, what="op")
    assert waits(caplog) == [6.0]


def test_retry_after_that_does_not_fit_the_budget_gives_up_at_once() -> None:
    policy = RetryPolicy(attempts=5, initial_s=1.0, max_interval_s=30.0, total_s=20.0, jitter=0.0)
    fn = Flaky(http_error(429, {"Retry-After": "25"}), http_error(429))
    with pytest.raises(TransientError) as caught:
        call_with_retry(policy, fn, what="op")
    assert fn.calls == 1
    assert caught.value.retry_after == 25.0  # the caller learns when to come back


def test_total_time_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(attempts=50, initial_s=4.0, max_interval_s=10.0, total_s=20.0, jitter=0.0)
    always = Flaky(*([http_error(503)] * 60))
    with caplog.at_level(logging.WARNING, logger="shared.retry"), pytest.raises(TransientError):
        call_with_retry(policy, always, what="op")
    assert sum(waits(caplog)) <= policy.total_s
    assert waits(caplog) == [4.0, 8.0, 8.0]  # the last wait is cut to what is left
    assert always.calls == 4


def test_retries_of_one_invocation_share_its_budget(caplog: pytest.LogCaptureFixture) -> None:
    """Each call alone may wait its policy's total; all calls of one invocation together wait
    at most the invocation's budget (Event Grid gives a webhook ~30 s to answer)."""
    with caplog.at_level(logging.WARNING, logger="shared.retry"), invocation_budget() as spent:
        for _ in range(5):  # 5 calls x 8 s of READ waits each would be 40 s
            with pytest.raises(TransientError):
                call_with_retry(retry.READ, Flaky(*([http_error(503)] * 10)), what="op")
    # the log shows each wait rounded to 0.1 s: allow that rounding, no more
    assert sum(waits(caplog)) <= INVOCATION_BUDGET_S + 0.05 * len(waits(caplog))
    assert spent.spent() <= INVOCATION_BUDGET_S + 1.0  # + the real time the test took
    assert sum(waits(caplog)) > retry.READ.total_s  # more than one call did wait


def test_an_operation_in_progress_is_not_retried_here() -> None:
    fn = Flaky(InProgress("deployment still Creating"))
    with pytest.raises(InProgress):
        call_with_retry(FAST, fn, what="op")
    assert fn.calls == 1


def test_retry_log_names_the_call_never_the_url(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.retry"):
        call_with_retry(FAST, Flaky(http_error(503)), what="get job j-1")
    (record,) = caplog.records
    assert record.getMessage() == (
        "retrying get job j-1 after HttpResponseError (HTTP 503) (attempt 1/4, waiting 1.0s)"
    )
    assert "sig=" not in record.getMessage()


def test_messages_redact_secrets() -> None:
    error = HttpResponseError(
        message="GET https://a.blob.core.windows.net/c/b?sv=1&sig=abc123 failed"
    )
    translated = retry.translate(error, "read blob")
    assert "abc123" not in str(translated)
    assert "sig=***" in str(translated)


def test_testing_mode_does_not_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    call_with_retry(FAST, Flaky(http_error(500), http_error(500)), what="op")
    assert slept == []
    retry.set_testing(False)
    call_with_retry(FAST, Flaky(http_error(429, {"retry-after-ms": "10"})), what="op")
    assert slept == [0.01]


def test_arguments_are_passed_through() -> None:
    def add(a: int, b: int, *, c: int) -> int:
        return a + b + c

    assert call_with_retry(FAST, add, 1, 2, c=3, what="add") == 6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"initial_s": -1.0},
        {"max_interval_s": 0.5},
        {"total_s": 0.0},
        {"total_s": 600.0},
        {"total_s": 21.0},  # more than one invocation's budget
        {"jitter": 1.5},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {
        "attempts": 3, "initial_s": 1.0, "max_interval_s": 4.0, "total_s": 20.0, "jitter": 0.1,
    }  # fmt: skip
    with pytest.raises(ValueError):
        RetryPolicy(**{**values, **kwargs})


@pytest.mark.parametrize("policy", [retry.READ, retry.WRITE_IDEMPOTENT, retry.LRO_POLL, retry.ONCE])
def test_named_policies_fit_in_the_function_timeout(policy: RetryPolicy) -> None:
    assert policy.total_s <= INVOCATION_BUDGET_S
    worst = sum(policy.backoff_s(n) * (1 + policy.jitter) for n in range(1, policy.attempts))
    assert min(worst, policy.total_s) < 300.0


def test_retry_after_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry.parse_retry_after({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, now) == 30.0
    assert retry.parse_retry_after({"Retry-After": "soon"}, now) is None
