"""Reading spec files (YAML, TOML, JSON) safely: bounded nesting, bounded alias expansion, duplicate keys named.

Why bounded: a spec is a few dozen values a few levels deep. A 1 KB YAML file whose aliases nest ("billion
laughs") expands to billions of values, and a file nested 500 levels deep overflows the parsers' recursion; either
used to hang or crash ``spec check`` and ``train``. Here YAML's node graph is walked once (a node shared through
aliases is visited once) and refused past :data:`MAX_DEPTH` levels or :data:`MAX_VALUES` values, and JSON/TOML
data is held to the same bounds, each with a SpecError naming the file (and the line where YAML knows it).

:func:`read_yaml` is the shared entry for any YAML/JSON document a user writes (job specs, eval specs).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from tuneport.errors import SpecError
from tuneport.spec.problems import Lines, Loc, SpecProblem, dotted, spec_error
from tuneport.spec.sourcelines import toml_lines, yaml_lines

__all__ = ["MAX_DEPTH", "MAX_VALUES", "read_yaml", "parse_yaml", "parse_toml", "parse_json", "check_bounds"]

MAX_DEPTH = 64  # levels of nesting (a job spec needs 5: method.dpo.hyperparameters.beta)
MAX_VALUES = 10_000  # values after alias expansion (a job spec has a few dozen)


def _refuse(source: str, message: str, line: int | None, what: str) -> SpecError:
    return spec_error([SpecProblem("(top level)", message, source, line)], source, what=what)


def _too_deep(max_depth: int) -> str:
    return f"nested more than {max_depth} levels deep; a spec is a few levels deep (is the file generated?)"


class _TooDeep(Exception):
    def __init__(self, line: int | None) -> None:
        super().__init__(line)
        self.line = line


@functools.lru_cache(maxsize=1)
def _yaml_loader() -> type:
    """A SafeLoader that reads ``2e-4`` as a float (YAML 1.1, PyYAML's default, reads it as a string) and stops
    composing past ``max_depth`` levels (PyYAML composes recursively: ~500 levels overflow Python's stack)."""
    import yaml

    class Loader(yaml.SafeLoader):
        max_depth = MAX_DEPTH
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > self.max_depth:
                    raise _TooDeep(self.peek_event().start_mark.line + 1)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root: Any, source: str, *, max_depth: int, max_values: int, what: str) -> None:
    """Refuse a node graph that refers to itself, or expands past the bounds; each node is visited once."""
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (values once expanded, depth)
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            values = 1 + sum(memo[id(k)][0] for k in kids)
            depth = 1 + max((memo[id(k)][1] for k in kids), default=0)
            line = node.start_mark.line + 1
            if values > max_values:
                raise _refuse(
                    source,
                    f"its aliases expand to more than {max_values:,} values; a spec holds a few dozen "
                    "(write the values out, or use fewer nested aliases)",
                    line,
                    what,
                )
            if depth > max_depth:
                raise _refuse(source, _too_deep(max_depth) + " (through aliases)", line, what)
            memo[key] = (values, depth)
            continue
        if key in memo:
            continue
        if key in on_path:
            raise _refuse(source, "an alias refers to a value that contains it; a spec cannot be recursive", node.start_mark.line + 1, what)  # fmt: skip
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                line = child.start_mark.line + 1
                raise _refuse(source, "an alias refers to a value that contains it; a spec cannot be recursive", line, what)  # fmt: skip
            if id(child) not in memo:
                stack.append((child, False))


def _duplicate_keys(root: Any) -> list[tuple[Loc, int, int]]:
    """(loc, line, first line) for each key given twice in a YAML mapping (PyYAML silently keeps the last).

    A node shared through aliases is walked once, at the first place it appears.
    """
    import yaml

    found: list[tuple[Loc, int, int]] = []
    visited: set[int] = set()

    def walk(node: Any, path: Loc) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in seen:
                        found.append((path + (k.value,), k.start_mark.line + 1, seen[k.value]))
                    else:
                        seen[k.value] = k.start_mark.line + 1
                    walk(v, path + (k.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    walk(root, ())
    return found


def read_yaml(
    text: str,
    source: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_values: int = MAX_VALUES,
    what: str = "job spec",
) -> tuple[Any, Any, list[SpecProblem]]:
    """Parse one YAML (or JSON) document within the bounds: (data, root node, duplicate-key problems).

    The root node (None for an empty document) gives line numbers (:func:`tuneport.spec.sourcelines.yaml_lines`).
    Raises SpecError naming ``source`` (and the line) for invalid YAML, a recursive alias, nesting past
    ``max_depth`` or alias expansion past ``max_values``.
    """
    import yaml

    try:
        loader = _yaml_loader()(text)  # reads the text through: refuses control characters here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise _refuse(
            source, f"not valid YAML: character {exc.character:#06x} is not allowed in YAML text", line, what
        ) from None
    loader.max_depth = max_depth
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_graph(node, source, max_depth=max_depth, max_values=max_values, what=what)
        data = loader.construct_document(node) if node is not None else None
    except _TooDeep as exc:
        raise _refuse(source, _too_deep(max_depth), exc.line, what) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise _refuse(source, f"not valid YAML: {detail}", line, what) from None
    except yaml.YAMLError as exc:
        raise _refuse(source, f"not valid YAML: {exc}", None, what) from None
    finally:
        loader.dispose()
    problems = [
        SpecProblem(
            dotted(loc),
            f"duplicate key (first given on line {first}); YAML would keep only the last",
            source,
            line,
        )
        for loc, line, first in (_duplicate_keys(node) if node is not None else [])
    ]
    return data, node, problems


def check_bounds(
    data: Any,
    source: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_values: int = MAX_VALUES,
    what: str = "job spec",
) -> None:
    """Refuse parsed JSON/TOML data nested past ``max_depth`` or holding more than ``max_values`` values
    (walked without recursion, so any depth is measured safely)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if depth > max_depth:
            raise _refuse(source, _too_deep(max_depth), None, what)
        if values > max_values:
            raise _refuse(
                source, f"holds more than {max_values:,} values; a spec holds a few dozen", None, what
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def parse_yaml(text: str, source: str) -> tuple[Any, Lines, list[SpecProblem]]:
    """A YAML spec: (data, line index, duplicate-key problems)."""
    data, node, problems = read_yaml(text, source)
    return data, yaml_lines(node), problems


def parse_toml(text: str, source: str) -> tuple[Any, Lines]:
    """A TOML spec: (data, best-effort line index)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise _refuse(source, f"not valid TOML: {exc}", line, "job spec") from None
    except RecursionError:  # nested arrays / inline tables: tomllib parses them recursively
        raise _refuse(source, _too_deep(MAX_DEPTH), None, "job spec") from None
    check_bounds(data, source)
    return data, toml_lines(text)


def parse_json(text: str, source: str) -> tuple[Any, Lines | None]:
    """A JSON spec: (data, line index when the text also reads as YAML)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(source, f"not valid JSON: {exc.msg}", exc.lineno, "job spec") from None
    except RecursionError:  # the json module parses nesting recursively
        raise _refuse(source, _too_deep(MAX_DEPTH), None, "job spec") from None
    check_bounds(data, source)
    # JSON is YAML apart from tabs between tokens; YAML's node marks give the line numbers.
    try:
        _, node, _ = read_yaml(text.replace("\t", " "), source)
    except SpecError:  # line numbers are a nicety; the data is already parsed
        return data, None
    return data, yaml_lines(node)
