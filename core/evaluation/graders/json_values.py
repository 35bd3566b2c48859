"""Strict JSON parsing and JSON field paths, shared by the structured and label graders."""

from __future__ import annotations

import json
import re
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.results import Reference
from tuneport.evaluation.graders.text import normalize_text

_FENCE_RE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n(.*)\n[ \t]*```$", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str, *, allow_code_fence: bool) -> tuple[Any, str | None, bool]:
    """Parse ``text`` as strict JSON (no NaN / Infinity). Returns (value, error or None, fence_stripped)."""
    stripped = text.strip()
    fenced = False
    if allow_code_fence:
        m = _FENCE_RE.match(stripped)
        if m:
            stripped = m.group(1).strip()
            fenced = True
    if not stripped:
        return None, "output is empty, not JSON", fenced
    try:
        return json.loads(stripped, parse_constant=_reject_constant), None, fenced
    except (ValueError, RecursionError) as exc:
        hint = ""
        if not allow_code_fence and stripped.startswith("```"):
            hint = " (it is wrapped in a ``` code fence; set allow_code_fence: true to accept that)"
        return None, f"output is not valid JSON: {exc}{hint}", fenced


def _reference_json(reference: Reference) -> tuple[Any, str | None]:
    if isinstance(reference, (dict, list)):
        return reference, None
    if isinstance(reference, str):
        value, err, _ = _parse_json(reference, allow_code_fence=True)
        if err is not None:
            detail = err.split(": ", 1)[1] if ": " in err else "it is empty"
            return None, f"reference is not valid JSON: {detail}"
        return value, None
    return None, f"reference must be a JSON string or object, got {type(reference).__name__}"


Path = tuple[str | int, ...]


def _parse_path(name: str, value: Any) -> Path:
    """A JSON field path: ``"a.b.0"`` (dots separate keys, integers index lists) or a list of keys."""
    if isinstance(value, str) and value.strip():
        parts: list[str | int] = []
        for part in value.split("."):
            if not part:
                raise EvaluationError(f"{name}: path {value!r} has an empty segment")
            parts.append(int(part) if part.isdigit() else part)
        return tuple(parts)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in value)
    ):
        return tuple(value)
    raise EvaluationError(
        f"{name}: a field path must be a non-empty string like 'category' or 'meta.tags.0', or a list of keys; "
        f"got {value!r}"
    )


def _path_text(path: Path) -> str:
    return ".".join(str(p) for p in path)


_MISSING = object()


def _get_path(value: Any, path: Path) -> Any:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str) and part in value:
            value = value[part]
        elif isinstance(value, dict) and isinstance(part, int) and str(part) in value:
            value = value[str(part)]
        elif isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
            value = value[part]
        else:
            return _MISSING
    return value


def _json_equal(a: Any, b: Any, *, normalize_strings: bool) -> bool:
    """Structural JSON equality: 1 == 1.0, but true != 1 (JSON booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return normalize_text(a) == normalize_text(b) if normalize_strings else a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            _json_equal(x, y, normalize_strings=normalize_strings) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            _json_equal(a[k], b[k], normalize_strings=normalize_strings) for k in a
        )
    return a is None and b is None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        type(value), "null"
    )
