"""How a JSON value is named in a finding: its type in words and a short excerpt of it."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["MISSING", "typename", "short", "json_text"]

MISSING = object()  # a key that is absent (as opposed to present with null)


def typename(value: Any) -> str:
    """``an object``, ``a list``, ``null``... as a finding says it."""
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def json_text(value: Any) -> str:
    """The value as compact JSON (or ``<an object>`` when it is nested deeper than orjson writes)."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return f"<{typename(value)}>"


def short(value: Any, limit: int = 60) -> str:
    """The value as JSON, cut to ``limit`` characters."""
    text = json_text(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
