"""A renderer for the subset of Go's text/template that tuneport's Modelfile TEMPLATE uses, for tests.

Supported: text, ``{{ PIPELINE }}`` output of a field (``.Content``) or a string literal, ``{{ if }}`` /
``{{ else if }}`` / ``{{ else }}`` / ``{{ end }}``, ``{{ range $i, $_ := .Messages }}``, ``{{ $v := PIPELINE }}``,
the functions ``eq ne and not len slice``, parentheses, ``$``-rooted fields and ``{{-``/``-}}`` trimming. Anything
else raises, so a template that strays from the subset fails the test rather than rendering wrongly.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\(|\)|\$?\.?[A-Za-z_][A-Za-z0-9_.]*|\$\.?[A-Za-z0-9_.]*|-?\d+)')


def _actions(template: str):
    """(start, end, left_trim, body, right_trim) of each action; quoted strings may hold "}}" (Go's lexer)."""
    pos = 0
    while (start := template.find("{{", pos)) != -1:
        i, quote = start + 2, False
        while i < len(template):
            c = template[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quote = False
            elif c == '"':
                quote = True
            elif template.startswith("}}", i):
                break
            i += 1
        else:
            raise ValueError("unclosed action")
        inner = template[start + 2 : i]
        left = inner.startswith("-")
        right = inner.endswith("-")
        body = inner[1 if left else 0 : len(inner) - 1 if right else len(inner)].strip()
        yield start, i + 2, left, body, right
        pos = i + 2


def _parse(template: str) -> list[Any]:
    """Template -> nested nodes: str | ("out", expr) | ("set", var, expr) | ("if", [(cond, body)], else) |
    ("range", ivar, evar, expr, body)."""
    items: list[Any] = []
    pos = 0
    trim_next = False
    for start, end, left, body, right in _actions(template):
        text = template[pos:start]
        if trim_next:
            text = text.lstrip()
        if left:
            text = text.rstrip()
        items.append(text)
        items.append(("action", body))
        trim_next = right
        pos = end
    tail = template[pos:]
    items.append(tail.lstrip() if trim_next else tail)
    nodes, rest = _block(items, 0)
    if rest != len(items):
        raise ValueError("unexpected {{ end }} / {{ else }}")
    return nodes


def _block(items: list[Any], i: int) -> tuple[list[Any], int]:
    out: list[Any] = []
    while i < len(items):
        item = items[i]
        if isinstance(item, str):
            if item:
                out.append(item)
            i += 1
            continue
        action = item[1]
        if action == "end" or action == "else" or action.startswith("else if "):
            return out, i
        if action.startswith("if "):
            branches = []
            cond = action[3:]
            while True:
                body, i = _block(items, i + 1)
                branches.append((cond, body))
                nxt = items[i][1] if i < len(items) else None
                if nxt is None:
                    raise ValueError("if without end")
                if nxt.startswith("else if "):
                    cond = nxt[len("else if ") :]
                    continue
                otherwise: list[Any] = []
                if nxt == "else":
                    otherwise, i = _block(items, i + 1)
                    if i >= len(items) or items[i][1] != "end":
                        raise ValueError("else without end")
                out.append(("if", branches, otherwise))
                i += 1
                break
            continue
        m = re.fullmatch(r"range (\$\w+), (\$\w+) := (.+)", action)
        if m:
            body, i = _block(items, i + 1)
            if i >= len(items) or items[i][1] != "end":
                raise ValueError("range without end")
            out.append(("range", m.group(1), m.group(2), m.group(3), body))
            i += 1
            continue
        m = re.fullmatch(r"(\$\w+) := (.+)", action)
        if m:
            out.append(("set", m.group(1), m.group(2)))
        else:
            out.append(("out", action))
        i += 1
    return out, i


def _tokens(expr: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"unsupported expression {expr!r} at {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


_FUNCS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "and": lambda *a: next((x for x in a if not x), a[-1]),
    "not": lambda a: not a,
    "len": lambda a: len(a),
    "slice": lambda a, i: a[i:],
}


def _eval(tokens: list[str], scope: dict[str, Any]) -> Any:
    def term(i: int) -> tuple[Any, int]:
        t = tokens[i]
        if t == "(":
            value, i = pipeline(i + 1)
            if tokens[i] != ")":
                raise ValueError("missing )")
            return value, i + 1
        if t.startswith('"'):
            return json.loads(t), i + 1
        if re.fullmatch(r"-?\d+", t):
            return int(t), i + 1
        if t.startswith("$."):
            return _field(scope["$"], t[2:]), i + 1
        if t.startswith("$"):
            return scope[t], i + 1
        if t.startswith("."):
            return _field(scope["."], t[1:]), i + 1
        raise ValueError(f"unexpected {t!r}")

    def pipeline(i: int) -> tuple[Any, int]:
        t = tokens[i]
        if t in _FUNCS:
            args = []
            i += 1
            while i < len(tokens) and tokens[i] != ")":
                value, i = term(i)
                args.append(value)
            return _FUNCS[t](*args), i
        return term(i)

    value, end = pipeline(0)
    if end != len(tokens):
        raise ValueError(f"trailing tokens in {' '.join(tokens)!r}")
    return value


def _field(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _truthy(value: Any) -> bool:
    return bool(value)


def _run(nodes: list[Any], scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "out":
            out.append(str(_eval(_tokens(node[1]), scope)))
        elif node[0] == "set":
            scope[node[1]] = _eval(_tokens(node[2]), scope)
        elif node[0] == "if":
            for cond, body in node[1]:
                if _truthy(_eval(_tokens(cond), scope)):
                    _run(body, scope, out)
                    break
            else:
                _run(node[2], scope, out)
        elif node[0] == "range":
            _, ivar, evar, expr, body = node
            for i, item in enumerate(_eval(_tokens(expr), scope)):
                _run(body, {**scope, ivar: i, evar: item, ".": item}, out)


def render_go(template: str, data: dict[str, Any]) -> str:
    """Render ``template`` with ``data`` as the dot (``{"Messages": [{"Role": ..., "Content": ...}]}``)."""
    out: list[str] = []
    _run(_parse(template), {"$": data, ".": data}, out)
    return "".join(out)


def ollama_messages(conversation: list[dict[str, str]]) -> dict[str, Any]:
    """A conversation as Ollama hands it to a template (roles and contents as ``.Role`` / ``.Content``)."""
    return {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in conversation]}
