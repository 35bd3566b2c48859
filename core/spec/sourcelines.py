"""Which line of a spec file a key path is on, for ``file:line: path: message`` problems.

YAML (and JSON, read as YAML) keeps a mark on every node; tomllib reports no positions, so TOML gets a best-effort
index of tables and keys.
"""

from __future__ import annotations

import re
from typing import Any

from tuneport.spec.problems import Lines, Loc

__all__ = ["yaml_lines", "toml_lines"]


def yaml_lines(root: Any) -> Lines:
    """Lines from a composed YAML node graph (``root`` may be None for an empty document)."""
    import yaml

    def lookup(loc: Loc, key: bool) -> int | None:
        node = root
        line: int | None = None
        for depth, part in enumerate(loc):
            last = depth == len(loc) - 1
            if isinstance(node, yaml.MappingNode):
                match = None
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        match = (k, v)
                if match is None:
                    return line
                k, v = match
                if last and key:
                    return k.start_mark.line + 1
                node = v
                # A block mapping or list value starts on the line after its key: point at the key.
                line = (
                    k.start_mark.line + 1
                    if isinstance(v, (yaml.MappingNode, yaml.SequenceNode))
                    else v.start_mark.line + 1
                )
            elif (
                isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    return Lines(lookup)


_TOML_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_TOML_ARRAY_HEADER = re.compile(r"^\s*\[\[")
_TOML_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _toml_key_parts(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def toml_lines(text: str) -> Lines:
    """Best-effort key -> line index for TOML (tables, dotted keys); tomllib reports no positions for values."""
    index: dict[Loc, int] = {}
    table: Loc | None = ()
    in_multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if _TOML_ARRAY_HEADER.match(line):
            table = None  # arrays of tables: not used by specs; don't guess
            continue
        header = _TOML_HEADER.match(line)
        if header:
            table = tuple(_toml_key_parts(header.group(1)))
            index.setdefault(table, number)
            continue
        keyed = _TOML_KEY.match(line)
        if keyed and table is not None:
            full = table + tuple(_toml_key_parts(keyed.group(1)))
            for end in range(len(table) + 1, len(full) + 1):
                index.setdefault(full[:end], number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote

    def lookup(loc: Loc, key: bool) -> int | None:
        for end in range(len(loc), 0, -1):
            hit = index.get(tuple(str(p) for p in loc[:end]))
            if hit is not None:
                return hit
        return None

    return Lines(lookup)
