"""Checking grader parameters: every message names the grader and the parameter, so a typo in a spec is
fixed before any item is graded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneport.errors import EvaluationError


def _want_bool(grader: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"grader {grader!r}: parameter {name!r} must be true or false, got {value!r}")
    return value


def _want_choice(grader: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise EvaluationError(
            f"grader {grader!r}: parameter {name!r} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return value


def _want_number(grader: str, name: str, value: Any, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise EvaluationError(
            f"grader {grader!r}: parameter {name!r} must be a number in [{low}, {high}], got {value!r}"
        )
    return float(value)


def _want_threshold(grader: str, value: Any) -> float | None:
    return None if value is None else _want_number(grader, "threshold", value, low=0.0, high=1.0)


def _want_str_list(grader: str, name: str, value: Any, *, allow_none: bool = True) -> list[str] | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise EvaluationError(
            f"grader {grader!r}: parameter {name!r} must be a non-empty list of non-empty strings, got {value!r}"
        )
    return list(value)
