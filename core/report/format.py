"""Numbers, times and values as report text, the same in every format.

Every formatter takes whatever the run holds and answers ``"n/a"`` for what is not a finite number, so a field a run
left out (or an older run never had) shows as missing instead of breaking the report.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "num", "fmt_pct", "fmt_num", "fmt_signed", "fmt_p", "fmt_ci", "fmt_time", "as_text", "short_value",
    "readable", "flat_rows", "is_link",
]  # fmt: skip


def num(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fmt_pct(value: Any, places: int = 1) -> str:
    x = num(value)
    return "n/a" if x is None else f"{100.0 * x:.{places}f}%"


def fmt_num(value: Any, places: int = 3) -> str:
    x = num(value)
    return "n/a" if x is None else f"{x:.{places}f}"


def fmt_signed(value: Any, places: int = 3) -> str:
    x = num(value)
    return "n/a" if x is None else f"{x:+.{places}f}"


def fmt_p(value: Any) -> str:
    x = num(value)
    if x is None:
        return "n/a"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def fmt_ci(pair: Any, pct: bool = True) -> str:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return "n/a"
    f = fmt_pct if pct else fmt_num
    return f"[{f(pair[0])}, {f(pair[1])}]"


def fmt_time(value: Any) -> str:
    x = num(value)
    if x is not None and x > 0:
        return _dt.datetime.fromtimestamp(x, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def as_text(value: Any) -> str:
    """A reference or output as display text (JSON references are shown as JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def short_value(value: Any, limit: int = 120) -> str:
    """A value on one line, cut to ``limit`` characters (an ellipsis marks the cut)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


_DECIMAL = re.compile(r"^-?\d+\.\d+$")
_LINK = re.compile(r"^https?://[^\s<>\"']+$")


def is_link(value: Any) -> bool:
    """Whether a value is a plain http(s) address (a price's source), to show as a link."""
    return isinstance(value, str) and bool(_LINK.match(value))


def _rounded(x: float) -> str:
    if x == 0 or abs(x) >= 100:
        return f"{x:,.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}"
    return f"{x:.4g}"


def readable(value: Any) -> str:
    """One value of a figure's inputs as a person reads it: yes/no, rounded numbers (a measured float such as
    14431.918405876936 shows as 14,431.92; exact decimal strings with more than six places are rounded the same
    way), lists joined; never a JSON object (nested inputs are flattened by :func:`flat_rows`)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else _rounded(value)
    if isinstance(value, str):
        if _DECIMAL.match(value) and len(value.split(".")[1]) > 6:
            return _rounded(float(value))
        return value
    if isinstance(value, (list, tuple)):
        return ", ".join(readable(v) for v in value)
    return str(value)


def flat_rows(mapping: Mapping[str, Any], prefix: str = "", limit: int = 200) -> list[tuple[str, Any]]:
    """A figure's inputs as ``(key, value)`` rows, nested objects and lists of objects flattened into
    ``outer / inner`` keys (at most ``limit`` rows: a figure has a few dozen)."""
    rows: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [(prefix, mapping)]
    while stack and len(rows) < limit:
        key, value = stack.pop(0)
        if isinstance(value, Mapping):
            stack[:0] = [(f"{key} / {k}" if key else str(k), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value):
            stack[:0] = [(f"{key} {i + 1}", v) for i, v in enumerate(value)]
        else:
            rows.append((key, value))
    return rows
