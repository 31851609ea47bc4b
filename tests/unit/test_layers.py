"""The layers, read from the AST of every module: lower layers never import higher ones.

From the bottom: ``shared`` (domain, ports, service layer; ``shared.adapters`` the adapters),
``handlers`` (the decisions), ``embedded`` (the offline platform), ``composition`` (the root
that wires handlers to adapters), then ``functions`` and ``autopilot`` on top. Every import
counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "handlers", "embedded", "composition", "functions", "autopilot")

# layer -> import prefixes it must not use
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "shared": ("handlers", "embedded", "autopilot", "functions", "composition"),
    "handlers": ("shared.adapters", "embedded", "autopilot", "functions", "composition", "azure"),
    "embedded": ("handlers", "autopilot", "functions", "composition"),
    "composition": ("functions", "autopilot"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {"function_app": ROOT / "function_app.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, absolute, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_lower_layer_imports_a_higher_one() -> None:
    broken = [
        f"{name} imports {target}"
        for name, path in modules().items()
        for layer, banned in FORBIDDEN.items()
        if under(name, layer)
        for target in imports(name, path)
        if any(under(target, prefix) for prefix in banned)
    ]
    assert broken == []


def test_no_handler_module_imports_another() -> None:
    """Follow-up work is a message on the bus (``Services.emit``), never a call into another
    handler module; helpers handlers share live in ``shared`` (``shared.lifecycle``). The
    package's ``__init__`` is the handler map, the one place that names every handler."""
    calls = [
        f"{name} imports {target}"
        for name, path in modules().items()
        if under(name, "handlers") and name != "handlers"
        for target in imports(name, path)
        if under(target, "handlers") and target != name
    ]
    assert calls == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_top_level_packages_form_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        top = name.split(".")[0]
        for target in imports(name, path):
            other = target.split(".")[0]
            if other in PACKAGES and other != top:
                graph.setdefault(top, set()).add(other)
    assert find_cycle(graph) is None


def test_no_two_modules_import_each_other_at_import_time() -> None:
    """Module-level imports (what runs on import) form no cycle between modules."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        top_level = ast.Module(
            body=[n for n in tree.body if not _type_checking(n)], type_ignores=[]
        )
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _outside_functions(top_level):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import sub`` depends on pkg.sub; ``from mod import name`` on mod
                subs = {f"{base}.{a.name}" for a in node.names} & known.keys()
                targets |= subs or {base}
        graph[name] = {t for t in targets if t in known and t != name}
    assert find_cycle(graph) is None


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The groups of two or more modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_between_modules_even_inside_functions() -> None:
    """The CLI and the demo, for one, no longer import each other; nor do two handlers."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set(imports(name, path)) & known.keys()
        # ``from pkg import sub`` names pkg too, but depends on pkg.sub only
        graph[name] = {t for t in targets if t != name and not _package_of_a_target(t, targets)}
    assert strongly_connected(graph) == []


def _package_of_a_target(name: str, targets: set[str]) -> bool:
    return any(t.startswith(name + ".") for t in targets)


def _outside_functions(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes that run on import: everything but function bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))


def _type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_the_cycle_finder_finds_cycles(
    layout: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert find_cycle(layout) == expected


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500


def test_decisions_and_the_service_layer_stay_small() -> None:
    """No function in ``handlers`` or ``shared`` (its adapters aside) is over 60 lines, no
    module over 500: long decision logic is split into named guards."""
    long: list[str] = []
    for name, path in modules().items():
        if not (under(name, "handlers") or under(name, "shared")) or under(name, "shared.adapters"):
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {size} lines")
    assert long == []
