"""Keys given twice in one JSON object (``{"role": "user", "role": "assistant"}``).

Why: JSON readers silently keep one of the values (orjson and Python keep the last, others the first), so such an
example trains on something its author may not have meant, and readers disagree on what. Finding them exactly
needs a slower parse that sees every pair, so it runs only on lines where a cheap count says a message key occurs
more often than the parsed messages hold it: the common line costs three byte counts.
"""

from __future__ import annotations

import json
from typing import Any

from tuneport.data.describe import short

__all__ = ["may_repeat_message_keys", "repeated_keys"]

_WATCHED = ("role", "content", "weight")
_NEEDLES = tuple(f'"{k}"'.encode() for k in _WATCHED)


def _message_lists(obj: dict) -> list[list]:
    lists = []
    messages = obj.get("messages")
    if type(messages) is list:
        lists.append(messages)
    inp = obj.get("input")
    if type(inp) is dict and type(inp.get("messages")) is list:
        lists.append(inp["messages"])
    for key in ("preferred_output", "non_preferred_output"):
        value = obj.get(key)
        if type(value) is list:
            lists.append(value)
    return lists


def may_repeat_message_keys(raw: bytes, obj: dict) -> bool:
    """Whether ``raw`` may give a message key twice: it holds ``"role"``, ``"content"`` or ``"weight"`` more
    often than the parsed messages have them (a string that merely contains the word can cause a false alarm,
    never a missed repeat of these keys)."""
    have = [0, 0, 0]
    for messages in _message_lists(obj):
        for m in messages:
            if type(m) is dict:
                have[0] += "role" in m
                have[1] += "content" in m
                have[2] += "weight" in m
    return any(raw.count(needle) > n for needle, n in zip(_NEEDLES, have, strict=True))


class _Repeats(dict):
    """A parsed object that had repeated keys (``repeats``: key -> how many times it was given)."""

    __slots__ = ("repeats",)


def _keep_repeats(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    counts: dict[str, int] = {}
    for key, value in pairs:
        if key in out:
            counts[key] = counts.get(key, 1) + 1
        out[key] = value
    if not counts:
        return out
    marked = _Repeats(out)
    marked.repeats = counts
    return marked


def repeated_keys(raw: bytes) -> list[tuple[str, str]]:
    """(JSON path of the key, message) for every key given more than once in any object of the line."""
    try:
        root = json.loads(raw, object_pairs_hook=_keep_repeats)
    except (ValueError, RecursionError):
        return []  # orjson read the line, so this cannot happen short of nesting Python's parser refuses
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if isinstance(value, _Repeats):
                for key, n in value.repeats.items():
                    where = f"{path}.{key}" if path else key
                    found.append(
                        (
                            where,
                            f"key {key!r} is given {n} times in this object; readers keep only one "
                            f"(tuneport read the last: {short(value[key])})",
                        )
                    )
            stack.extend((v, f"{path}.{k}" if path else k) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return found
