"""Small modules, short functions, reasoned ``type: ignore`` and a public surface per package,
read from the source of every module outside the tests.

The allow-lists name what other pieces of work still own; the lead empties them after merging
those. Nothing may be added to them.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_layers import ROOT, imports, modules, under

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
SOURCE_DIRS = (
    "shared",
    "handlers",
    "embedded",
    "composition",
    "functions",
    "autopilot",
    "benchmarks",
    "examples",
)

# Modules still over the limit: none left (issue 15 split them).
LONG_MODULES_LEFT: set[str] = set()

# Functions still over the limit: none left (issue 15 turned them into named guards).
LONG_FUNCTIONS_LEFT: set[str] = set()

UNREASONED_IGNORES_LEFT: set[str] = set()

SURFACE_LEFT: set[str] = set()
SURFACE_PACKAGES = (
    "shared",
    "shared.adapters",
    "handlers",
    "embedded",
    "composition",
    "functions",
    "autopilot",
)


def sources() -> Iterator[tuple[str, Path]]:
    """(path relative to the repository, path) of every Python file outside the tests."""
    yield "function_app.py", ROOT / "function_app.py"
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def functions_of(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function, nested too."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from functions_of(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions_of(node, f"{prefix}{node.name}.")
        else:
            yield from functions_of(node, prefix)


@functools.cache
def long_modules() -> frozenset[str]:
    return frozenset(
        rel
        for rel, path in sources()
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES
    )


@functools.cache
def long_functions() -> frozenset[str]:
    return frozenset(
        f"{rel}:{name}"
        for rel, path in sources()
        for name, lines in functions_of(ast.parse(path.read_text(encoding="utf-8"), rel))
        if lines > MAX_FUNCTION_LINES
    )


def test_no_module_outside_the_tests_is_over_500_lines() -> None:
    assert long_modules() - LONG_MODULES_LEFT == set()


def test_no_function_outside_the_tests_is_over_60_lines() -> None:
    assert long_functions() - LONG_FUNCTIONS_LEFT == set()


def test_the_allow_lists_hold_only_what_is_still_long() -> None:
    """Once a module or function is short, it leaves the list (so the list only shrinks)."""
    assert long_modules() >= LONG_MODULES_LEFT
    assert long_functions() >= LONG_FUNCTIONS_LEFT


IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)")


def unreasoned_ignores(text: str) -> list[int]:
    """Lines whose ``type: ignore`` names no error code or gives no ``# reason`` after it."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT:
            continue
        match = IGNORE.search(token.string)
        if match is None:
            continue
        reason = match["rest"].strip()
        if not match["codes"] or not reason.startswith("#") or not reason.lstrip("# "):
            found.append(token.start[0])
    return found


def test_every_type_ignore_outside_the_tests_names_its_code_and_says_why() -> None:
    missing = [
        f"{rel}:{line}"
        for rel, path in sources()
        if rel not in UNREASONED_IGNORES_LEFT
        for line in unreasoned_ignores(path.read_text(encoding="utf-8"))
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("line", "reasoned"),
    [
        ("x = f()  # type: ignore[no-untyped-call]  # the SDK has no annotations\n", True),
        ("x = f()  # type: ignore[no-untyped-call]\n", False),
        ("x = f()  # type: ignore  # no code named\n", False),
        ("x = f()  # type: ignore[attr-defined]  #\n", False),
        ('x = "# type: ignore[x]"\n', True),  # a string, not a comment
    ],
)
def test_the_reason_check_reads_comments(line: str, reasoned: bool) -> None:
    assert (unreasoned_ignores(line) == []) is reasoned


@functools.cache
def public_surface(package: str) -> frozenset[str]:
    """The names in ``package``'s ``__all__``."""
    init = ROOT.joinpath(*package.split("."), "__init__.py")
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return frozenset(ast.literal_eval(node.value))
    raise AssertionError(f"{package}/__init__.py has no __all__")


def test_other_layers_use_each_package_through_its_public_surface() -> None:
    """An import from outside a package names one of the modules (or names) in its
    ``__all__``; anything else is the package's own business."""
    outside = []
    for name, path in modules().items():
        for target in imports(name, path):
            owners = [p for p in SURFACE_PACKAGES if under(target, p) and target != p]
            if not owners:
                continue
            package = max(owners, key=len)  # shared.adapters before shared
            if under(name, package) or package in SURFACE_LEFT:
                continue
            first = target[len(package) + 1 :].split(".")[0]
            if first not in public_surface(package):
                outside.append(f"{name} imports {target}")
    assert outside == []


def test_every_package_names_its_public_surface() -> None:
    named = [p for p in SURFACE_PACKAGES if p not in SURFACE_LEFT]
    assert {p: bool(public_surface(p)) for p in named} == dict.fromkeys(named, True)
