"""The package's structure holds: no import loops between tuneport's own modules, and backend names only in the
backends.

The import graph is read from the source with :mod:`ast` (imports at module level and inside functions alike, so
an import moved into a function to dodge a loop still counts), over every folder that installs under
``tuneport``. Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
#: a line that compares a backend with a built-in backend's name
BACKEND_NAME_TEST = re.compile(r"""backend\W{0,3}\s*[!=]=\s*["'](openai|local)["']|["'](openai|local)["']\s*[!=]=\s*\S*backend""")


def _package_dirs() -> dict[str, Path]:
    """Import name -> folder, from pyproject's setuptools package-dir mapping (the one source of the layout)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in config["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    roots = _package_dirs()
    found: dict[str, Path] = {}
    for name, folder in roots.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            dotted = ".".join([name, *parts])
            # a folder mapped on its own (tuneport.providers = providers/) wins over a same-named one inside core/
            if dotted not in found or name != "tuneport":
                found[dotted] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.stmt, list[str]]]:
    """(statement, [imported dotted names]) for each import that runs, wherever it stands."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)  # the `else:` of a TYPE_CHECKING test does run
                continue
            if isinstance(child, ast.Import):
                yield child, [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield child, [child.module, *(f"{child.module}.{alias.name}" for alias in child.names)]
            stack.append(child)


def import_graph() -> dict[str, dict[str, str]]:
    """module -> {imported module -> "file:line" of the import}."""
    modules = _modules()
    graph: dict[str, dict[str, str]] = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for stmt, targets in _imports(tree):
            for target in targets:
                if target in modules and target != name:
                    where = f"{path.relative_to(ROOT)}:{stmt.lineno}"
                    graph[name].setdefault(target, where)
    return graph


def _cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each one a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative, so a deep graph cannot hit the recursion limit
        nonlocal counter
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for node in graph:
        if node not in index:
            visit(node)
    return out


def test_the_graph_sees_every_part_of_the_package():
    graph = import_graph()
    for name in ("tuneport", "tuneport.cli.main", "tuneport.providers.base", "tuneport.local_backend.api.server",
                 "tuneport.evaluation.pricing", "tuneport.spec.jobspec", "tuneport.fixtures.tiny_model"):
        assert name in graph, name
    # an import inside a function is an edge like any other
    assert "tuneport.providers.registry" in graph["tuneport.cli.spec"]


def test_no_import_loops():
    graph = import_graph()
    loops = _cycles(graph)
    described = []
    for component in loops:
        members = set(component)
        edges = [f"  {a} -> {b} ({graph[a][b]})" for a in component for b in graph[a] if b in members]
        described.append("loop between " + ", ".join(component) + ":\n" + "\n".join(edges))
    assert not loops, "\n\n".join(described)


def test_the_cycle_finder_finds_loops():
    graph = {"a": {"b": "x"}, "b": {"c": "x"}, "c": {"a": "x"}, "d": {"a": "x"}, "e": {}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": "x"}, "b": {}}) == []


def test_only_backends_name_backends():
    """Outside the providers, no code tests a backend's name: what differs between backends is asked of the
    backend (tuneport.providers.base.Provider), so a plugin backend is handled like a built-in one."""
    offenders = []
    for path in [*ROOT.joinpath("cli").rglob("*.py"), *ROOT.joinpath("core").rglob("*.py")]:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if BACKEND_NAME_TEST.search(line.split("#", 1)[0]):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "backend names tested outside the providers:\n" + "\n".join(offenders)


def test_the_backend_name_check_catches_a_comparison():
    compare_lines = ['if spec.backend == "openai":', "if job['backend'] != 'local':", 'if "local" == backend:']
    assert all(BACKEND_NAME_TEST.search(line) for line in compare_lines)
    assert not BACKEND_NAME_TEST.search('if info["kind"] == "local":')
