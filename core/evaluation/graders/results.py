"""What a grader returns for one item, and the two kinds of zero it keeps apart (a failed output, an
item that cannot be graded)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Reference = str | dict | list | None


Message = dict[str, str]


JudgeFn = Callable[[list[Message]], "str | Awaitable[str]"]


# Confusion-matrix columns for predictions that carry no usable label.
NO_LABEL = "<none>"  # the output had no label at all (not JSON, path missing, empty)


OTHER_LABEL = "<other>"  # the output's label is outside the configured label set


@dataclass(frozen=True)
class GradeResult:
    """One item's grade.

    ``score`` is in [0, 1]. ``passed`` is ``None`` when the grader has no notion of passing (ROUGE / BLEU without
    a threshold) or the item could not be graded. ``label`` / ``reference_label`` are set by label graders for
    per-label metrics. ``error`` is set only when the item could not be graded (see the module docstring);
    ``details`` explains the score (per-field matches, schema errors, the reason for a zero ...).
    """

    score: float
    passed: bool | None
    label: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reference_label: str | None = None

    @property
    def ok(self) -> bool:
        """True when the item was graded (no error)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "passed": self.passed,
            "label": self.label,
            "reference_label": self.reference_label,
            "error": self.error,
            "details": self.details,
        }


def _fail(reason: str, **details: Any) -> GradeResult:
    """The model's output failed the check (counts as a zero in every aggregate)."""
    return GradeResult(score=0.0, passed=False, details={"reason": reason, **details})


def _item_error(message: str, **details: Any) -> GradeResult:
    """The item cannot be graded by this grader (left out of aggregates, counted as an error)."""
    return GradeResult(score=0.0, passed=None, error=message, details=details)


def _result(ok: bool, *, score: float | None = None, **details: Any) -> GradeResult:
    if ok:
        return GradeResult(score=1.0 if score is None else score, passed=True, details=details)
    return GradeResult(score=0.0 if score is None else score, passed=False, details=details)


def _short(value: Any, limit: int = 200) -> Any:
    """Keep details small: long strings are cut, so a report of 10,000 items stays readable."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value
