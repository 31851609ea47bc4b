"""Hostile input over the whole intake (host routing, auth, parsing, handlers, stores), fuzzed.

The strategies (``tests/strategies.py``) reach all of JSON's space: lone surrogates, NUL and
control characters, non-BMP text, numbers beyond a float and beyond ``int()``, nesting far
beyond the limit. They run against every route, and each generated request is sent to the
service three times over: with the in-memory fakes, SQLite, and (every ``AZURITE_EVERY``-th
request: each is several HTTP calls there) Azure Table Storage on Azurite behind it. Every
answer is 2xx or a clear 4xx, never a 5xx; nothing from a payload reaches a command; and
afterwards every read route of each still answers strict JSON (no ``NaN``/``Infinity``,
parsed with ``parse_constant`` refusing them). Requests, status histogram and time are printed.
"""

from __future__ import annotations

import collections
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autopilot.host_http import BodyError, build_request, read_body
from autopilot.host_routes import RouteTemplate
from functions import runtime
from tests import payloads
from tests.integration.azurite import (  # noqa: F401 - session fixtures, used by name
    azurite,
    azurite_server,
)
from tests.reliability.hosting import WEBHOOK, Hosted, host_on
from tests.strategies import (
    any_text,
    encode,
    events,
    header_numbers,
    json_values,
    near_valid_events,
)

EXAMPLES = 1_000  # per test; requests: see the module docstring and the printed figures
AZURITE_EVERY = 40
READ_ROUTES = ["/api/cycles", "/api/cycles?active=true", "/api/audit", "/api/models"]
READ_ROUTES += ["/api/audit/verify", "/api/audit?limit=5", "/api/health"]


@dataclass
class Tally:
    """Requests sent and their statuses, per backend."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


@dataclass
class Hosts:
    """The same service over three stores; every request goes to the first two, and every
    ``AZURITE_EVERY``-th also to the third."""

    each: list[Hosted]
    sometimes: Hosted
    tally: dict[str, Tally] = field(default_factory=lambda: collections.defaultdict(Tally))
    sent: int = 0

    def targets(self) -> list[Hosted]:
        self.sent += 1
        return [*self.each, self.sometimes] if self.sent % AZURITE_EVERY == 1 else self.each

    def send(
        self, hosted: Hosted, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        started = time.perf_counter()
        status, data = hosted.call(method, target, body, headers)
        tally = self.tally[hosted.backend]
        tally.seconds += time.perf_counter() - started
        tally.statuses[status] += 1
        return status, data


@pytest.fixture(scope="module")
def hosts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    made = [host_on(b, tmp_path_factory.mktemp(b), request) for b in ("fakes", "sqlite", "azurite")]
    hosts = Hosts(made[:2], made[2])
    started = time.perf_counter()
    yield hosts
    try:
        for hosted in made:
            assert_reads_are_strict_json(hosts, hosted)
    finally:
        runtime.use(None)
        for backend, tally in hosts.tally.items():
            histogram = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()))
            print(
                f"\nhostile input on {backend}: {tally.requests} requests "
                f"({tally.seconds:.1f} s in the service), status histogram {{{histogram}}}"
            )
        total = sum(t.requests for t in hosts.tally.values())
        print(f"hostile input: {total} requests in all, {time.perf_counter() - started:.0f} s")


def check(
    hosts: Hosts,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    for hosted in hosts.targets():
        status, data = hosts.send(hosted, method, target, body, headers or {})
        assert status < 500, (hosted.backend, status, data[:300])
        if status >= 400:
            assert json.loads(data)["error"]  # a clear message
        for job in hosted.world.platform.submitted:  # commands come from the policy only
            assert job.command == ("{python}", "train.py", "--outputs", "{outputs}")


def strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response: not JSON")

    return json.loads(data, parse_constant=refuse)


def assert_reads_are_strict_json(hosts: Hosts, hosted: Hosted) -> None:
    """Every read route answers 200 with strict JSON, each cycle's page included."""
    for target in READ_ROUTES:
        status, data = hosts.send(hosted, "GET", target, b"", {})
        assert status == 200, (hosted.backend, target, status, data[:300])
        strict_json(data)
    status, data = hosts.send(hosted, "GET", "/api/cycles", b"", {})
    for cycle in strict_json(data)["cycles"][:50]:
        target = f"/api/cycles/{quote(cycle['id'], safe='')}"
        status, page = hosts.send(hosted, "GET", target, b"", {})
        assert status == 200, (hosted.backend, cycle["id"], status, page[:300])
        strict_json(page)
    status, _ = hosts.send(hosted, "GET", "/api/console", b"", {})
    assert status == 200


def fuzz(share: float = 1.0) -> settings:
    """Derandomised (the same examples every run: CI is reproducible), no deadline (the
    machine is shared), no example database."""
    return settings(
        max_examples=max(1, int(EXAMPLES * share)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@fuzz()
@given(
    st.one_of(
        st.lists(st.one_of(near_valid_events(), events), min_size=1, max_size=3),
        st.lists(events, max_size=4),
        json_values,
    ),
    st.booleans(),
)
def test_event_grid_deliveries(hosts: Hosts, payload: Any, ascii_only: bool) -> None:
    check(hosts, "POST", WEBHOOK, encode(payload, ensure_ascii=ascii_only))


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


@fuzz()
@given(st.data())
def test_alerts(hosts: Hosts, data: st.DataObject) -> None:
    body = data.draw(st.one_of(json_values, st.just(None).map(lambda _: mutated_alert(data))))
    check(hosts, "POST", "/api/alerts", encode(body, ensure_ascii=data.draw(st.booleans())))


@fuzz(0.5)
@given(st.binary(max_size=300))
def test_raw_bytes_and_invalid_utf8(hosts: Hosts, body: bytes) -> None:
    check(hosts, "POST", WEBHOOK, body)
    check(hosts, "POST", "/api/alerts", body)


JSON_POSTS = [WEBHOOK, "/api/alerts", "/api/models/credit-risk/retrain"]
JSON_POSTS += ["/api/models/credit-risk/rollback", "/api/cycles/nope/approve"]
JSON_POSTS += ["/api/cycles/nope/deny", "/admin/functions/reconcile"]


@fuzz()
@given(st.sampled_from(JSON_POSTS), json_values, st.booleans())
def test_hostile_json_on_every_json_route(
    hosts: Hosts, target: str, body: Any, ascii_only: bool
) -> None:
    if not target.startswith("/runtime") and isinstance(body, list | str):
        body = {"reason": body}  # a body shaped as the route wants, values hostile
    check(hosts, "POST", target, encode(body, ensure_ascii=ascii_only))


url_text = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
    header_numbers,
)


@fuzz()
@given(url_text, url_text, url_text)
def test_route_query_and_header_injection(
    hosts: Hosts, segment: str, query: str, header: str
) -> None:
    check(
        hosts,
        "GET",
        f"/api/cycles/{quote(segment, safe='')}?model={quote(query)}",
        b"",
        {"x-extra": header},
    )
    check(hosts, "GET", f"/api/audit?since={quote(query)}&limit={quote(segment)}")
    check(hosts, "GET", f"/api/audit?limit={quote(header)}&kind={quote(query)}")
    check(hosts, "GET", f"/api/cycles?active={quote(segment)}&model={quote(header)}")
    check(
        hosts,
        "POST",
        f"/api/cycles/{quote(segment, safe='')}/approve",
        json.dumps({"reason": header}).encode(),
    )
    check(
        hosts,
        "POST",
        f"/api/models/{quote(segment, safe='')}/retrain",
        json.dumps({"reason": query}).encode(),
    )


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


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(header_numbers)
def test_a_host_header_port_of_odd_digits_is_not_taken_into_urls(port: str) -> None:
    """The URL a function sees has an ASCII port or none: '²' would break urlsplit().port."""
    request = build_request("GET", "/api/x", [("Host", f"example:{port}")], "127.0.0.1:7071")
    assert urlsplit(request.base_url).port is not None or request.base_url == "http://example"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(header_numbers)
def test_an_int_route_constraint_takes_only_ascii_digits(segment: str) -> None:
    """A ``{n:int}`` route segment of '²' or of 4,301 digits is no match, not a ValueError."""
    template = RouteTemplate.parse("items/{n:int}")
    for value in (segment, "9" * 4301):
        found = template.match(f"/items/{quote(value, safe='')}")
        assert found is None or int(found["n"]) == int(found["n"].strip())
