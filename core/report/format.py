"""Numbers, times and values as report text, the same in every format.

Every formatter takes whatever the run holds and answers ``"n/a"`` for what is not a finite number, so a field a run
left out (or an older run never had) shows as missing instead of breaking the report.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any

__all__ = ["num", "fmt_pct", "fmt_num", "fmt_signed", "fmt_p", "fmt_ci", "fmt_time", "as_text", "short_value"]


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
