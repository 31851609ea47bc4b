"""Hostile input over the whole intake (host routing, auth, parsing, handlers, stores), fuzzed.

The strategies (``tests/strategies.py``) reach all of JSON's space: lone surrogates, NUL and
control characters, non-BMP text, numbers beyond a float and beyond ``int()``, nesting far
beyond the limit. They run against every route, with three stores behind the service: the
in-memory fakes, SQLite, and Azure Table Storage on Azurite (fewer examples: every request
there is several HTTP calls). Every answer is 2xx or a clear 4xx, never a 5xx; nothing from a
payload reaches a command; and afterwards every read route still answers strict JSON (no
``NaN``/``Infinity``, parsed with ``parse_constant`` refusing them). The totals are printed.
"""

from __future__ import annotations

import collections
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopilot.host_http import BodyError, read_body
from functions import runtime
from tests import payloads
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)
from tests.reliability.hosting import KEY, WEBHOOK, Hosted, host_on
from tests.strategies import (
    any_text,
    encode,
    events,
    header_numbers,
    json_values,
    near_valid_events,
)

# Examples per test and backend: ~7 requests per example over the five request tests, so
# ~10,500 + ~9,800 + ~140 = 20,000+ requests per run
EXAMPLES = {"fakes": 1_500, "sqlite": 1_400, "azurite": 20}
READ_ROUTES = ["/api/cycles", "/api/cycles?active=true", "/api/audit", "/api/models"]
READ_ROUTES += ["/api/audit/verify", "/api/audit?limit=5", "/api/health"]


@dataclass
class Tally:
    """Requests sent and their statuses, per backend: printed at the end of the module."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


TALLY: dict[str, Tally] = collections.defaultdict(Tally)


@pytest.fixture(scope="module", params=list(EXAMPLES))
def hosted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosted]:
    backend = str(request.param)
    hosted = host_on(backend, tmp_path_factory.mktemp(backend), request, EXAMPLES[backend])
    yield hosted
    try:
        assert_reads_are_strict_json(hosted)
    finally:
        runtime.use(None)
        tally = TALLY[backend]
        histogram = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
        print(
            f"\nhostile input on {backend}: {tally.requests} requests in {tally.seconds:.1f} s, "
            f"status histogram {{{histogram}}}"
        )


def send(
    hosted: Hosted,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    started = time.perf_counter()
    status, _, data = hosted.host.handle(
        method, target, {"x-functions-key": KEY, **(headers or {})}, body
    )
    tally = TALLY[hosted.backend]
    tally.seconds += time.perf_counter() - started
    tally.statuses[status] += 1
    return status, data


def check(
    hosted: Hosted,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> int:
    status, data = send(hosted, method, target, body, headers)
    assert status < 500, (status, data[:300])
    if status >= 400:
        assert json.loads(data)["error"]  # a clear message
    for job in hosted.world.platform.submitted:  # commands come from the policy, never input
        assert job.command == ("{python}", "train.py", "--outputs", "{outputs}")
    return status


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response: not JSON")

    return json.loads(data, parse_constant=refuse)


def assert_reads_are_strict_json(hosted: Hosted) -> None:
    """Every read route answers 200 with strict JSON, each cycle's page included."""
    for target in READ_ROUTES:
        status, data = send(hosted, "GET", target)
        assert status == 200, (target, status, data[:300])
        strict_json(data)
    status, data = send(hosted, "GET", "/api/cycles")
    for cycle in strict_json(data)["cycles"][:50]:
        status, page = send(hosted, "GET", f"/api/cycles/{quote(cycle['id'], safe='')}")
        assert status == 200, (cycle["id"], status, page[:300])
        strict_json(page)
    status, _ = send(hosted, "GET", "/api/console")
    assert status == 200


def fuzz(hosted: Hosted, share: float = 1.0) -> Callable[[Any], Any]:
    """Hypothesis settings for ``hosted``'s backend; the examples are derandomised (same every
    run) so CI is reproducible, and there is no deadline (the machine is shared)."""
    return settings(
        max_examples=max(1, int(hosted.examples * share)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def test_event_grid_deliveries(hosted: Hosted) -> None:
    @fuzz(hosted)
    @given(
        st.one_of(
            st.lists(st.one_of(near_valid_events(), events), min_size=1, max_size=4),
            st.lists(events, max_size=6),
            json_values,
        ),
        st.booleans(),
    )
    def deliver(payload: Any, ascii_only: bool) -> None:
        check(hosted, "POST", WEBHOOK, encode(payload, ensure_ascii=ascii_only))

    deliver()


def mutated_alert(data: st.DataObject) -> dict[str, Any]:
    """A bound drift alert with hostile values where the service reads and keeps them."""
    alert = payloads.alert(alert_id=data.draw(st.one_of(st.none(), any_text)) or None)
    essentials = alert["data"]["essentials"]
    for key in data.draw(st.lists(st.sampled_from(sorted(essentials)), max_size=3)):
        essentials[key] = data.draw(json_values)
    context = alert["data"].setdefault("alertContext", {})
    if data.draw(st.booleans()):
        context["properties"] = data.draw(st.dictionaries(any_text, json_values, max_size=4))
    return alert


def test_alerts(hosted: Hosted) -> None:
    @fuzz(hosted)
    @given(st.data())
    def deliver(data: st.DataObject) -> None:
        body = data.draw(st.one_of(json_values, st.just(None).map(lambda _: mutated_alert(data))))
        check(hosted, "POST", "/api/alerts", encode(body, ensure_ascii=data.draw(st.booleans())))

    deliver()


def test_raw_bytes_and_invalid_utf8(hosted: Hosted) -> None:
    @fuzz(hosted, 0.5)
    @given(st.binary(max_size=300))
    def deliver(body: bytes) -> None:
        check(hosted, "POST", WEBHOOK, body)
        check(hosted, "POST", "/api/alerts", body)

    deliver()


JSON_POSTS = [WEBHOOK, "/api/alerts", "/api/models/credit-risk/retrain"]
JSON_POSTS += ["/api/models/credit-risk/rollback", "/api/cycles/nope/approve"]
JSON_POSTS += ["/api/cycles/nope/deny", "/admin/functions/reconcile"]


def test_hostile_json_on_every_json_route(hosted: Hosted) -> None:
    @fuzz(hosted)
    @given(st.sampled_from(JSON_POSTS), json_values, st.booleans())
    def deliver(target: str, body: Any, ascii_only: bool) -> None:
        if not target.startswith("/runtime") and isinstance(body, list | str):
            body = {"reason": body}  # a body shaped as the route wants, values hostile
        check(hosted, "POST", target, encode(body, ensure_ascii=ascii_only))

    deliver()


url_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
    header_numbers,
)


def test_route_query_and_header_injection(hosted: Hosted) -> None:
    @fuzz(hosted, 0.5)
    @given(url_text, url_text, url_text)
    def deliver(segment: str, query: str, header: str) -> None:
        check(
            hosted,
            "GET",
            f"/api/cycles/{quote(segment, safe='')}?model={quote(query)}",
            b"",
            {"x-extra": header},
        )
        check(hosted, "GET", f"/api/audit?since={quote(query)}&limit={quote(segment)}")
        check(hosted, "GET", f"/api/audit?limit={quote(header)}&kind={quote(query)}")
        check(hosted, "GET", f"/api/cycles?active={quote(segment)}&model={quote(header)}")
        check(
            hosted,
            "POST",
            f"/api/cycles/{quote(segment, safe='')}/approve",
            json.dumps({"reason": header}).encode(),
        )
        check(
            hosted,
            "POST",
            f"/api/models/{quote(segment, safe='')}/retrain",
            json.dumps({"reason": query}).encode(),
        )

    deliver()


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(header_numbers, st.sampled_from(["content-length", "Content-Length"]))
def test_content_length_headers_are_refused_not_crashed(value: str, name: str) -> None:
    """Whatever a Content-Length says, reading the body is a body or a 400/413."""
    try:
        body = read_body(io.BytesIO(b"x" * 64), {name.lower(): value}, 32)
    except BodyError as exc:
        assert exc.status in (400, 413)
    else:
        assert len(body) == int(value)
