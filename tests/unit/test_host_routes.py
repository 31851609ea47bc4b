"""Route templates of the local Functions host (ASP.NET-style matching and precedence)."""

from __future__ import annotations

import pytest

from autopilot.host_routes import RouteTemplate


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("health", "health", {}),
        ("health", "/HEALTH/", {}),  # literals are case-insensitive; trailing slash ignored
        ("health", "healthz", None),
        ("cycles/{id}", "cycles/c-1", {"id": "c-1"}),
        ("cycles/{id}", "cycles/a%20b", {"id": "a b"}),
        ("cycles/{id}", "cycles/a%2Fb", {"id": "a/b"}),  # an encoded slash stays in the value
        ("cycles/{id}", "cycles", None),
        ("cycles/{id}", "cycles/1/approve", None),
        ("cycles/{id}/approve", "cycles/1/approve", {"id": "1"}),
        ("items/{id:int}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/x", None),
        ("items/{id:int}", "items/99999999999", None),  # outside int32
        ("items/{id:long}", "items/99999999999", {"id": "99999999999"}),
        ("items/{id:alpha}", "items/abc", {"id": "abc"}),
        ("items/{id:alpha}", "items/ab1", None),
        (
            "items/{id:guid}",
            "items/6f9619ff-8b86-d011-b42d-00cf4fc964ff",
            {"id": "6f9619ff-8b86-d011-b42d-00cf4fc964ff"},
        ),
        ("items/{id:bool}", "items/True", {"id": "True"}),
        ("items/{id:minlength(3):maxlength(4)}", "items/ab", None),
        ("items/{id:minlength(3):maxlength(4)}", "items/abcd", {"id": "abcd"}),
        ("items/{id:range(1,5)}", "items/6", None),
        ("items/{id?}", "items", {}),
        ("items/{id=all}", "items", {"id": "all"}),
        ("items/{id=all}", "items/3", {"id": "3"}),
        ("files/{*rest}", "files/a/b/c", {"rest": "a/b/c"}),
        ("files/{*rest}", "files", {}),
        ("files/{name}.{ext}", "files/report.final.pdf", {"name": "report.final", "ext": "pdf"}),
        ("", "", {}),
    ],
)
def test_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path) == expected


def test_unknown_constraints_are_ignored_and_reported() -> None:
    template = RouteTemplate.parse("items/{id:datetime}")
    assert template.ignored == ("id:datetime",)
    assert template.match("items/anything") == {"id": "anything"}


def test_more_specific_templates_sort_first() -> None:
    texts = ["items/{*rest}", "items/{id}", "items/{id:int}", "items/{name}.json", "items/new"]
    ordered = sorted((RouteTemplate.parse(t) for t in texts), key=lambda t: t.precedence)
    assert [t.text for t in ordered] == [
        "items/new",
        "items/{name}.json",
        "items/{id:int}",
        "items/{id}",
        "items/{*rest}",
    ]


@pytest.mark.parametrize(
    "template", ["files/{*rest}/more", "a/{id?}/b", "a/{bad-name}", "a/x{id?}"]
)
def test_invalid_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="route"):
        RouteTemplate.parse(template)
