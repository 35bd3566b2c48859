"""Classification: the label grader (its summary adds per-label precision / recall / F1 and a confusion
matrix)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.base import Grader, register_grader
from tuneport.evaluation.graders.json_values import (
    _MISSING,
    _get_path,
    _json_type,
    _parse_json,
    _parse_path,
    _path_text,
    _reference_json,
)
from tuneport.evaluation.graders.params import _want_bool, _want_str_list
from tuneport.evaluation.graders.results import (
    NO_LABEL,
    OTHER_LABEL,
    GradeResult,
    Reference,
    _item_error,
    _short,
)
from tuneport.evaluation.graders.summary import GradeSummary, summarize_grades
from tuneport.evaluation.graders.text import _reference_text


@register_grader
class LabelGrader(Grader):
    """Classification: extract a label from the output and the reference, score 1 when they agree.

    With ``path`` (e.g. ``"category"``) the label is that JSON field; without it, the whole normalized text.
    Labels compare case-insensitively unless ``case_sensitive: true``. With ``labels`` (the allowed set), an output
    label outside it is recorded as ``<other>`` and a reference label outside it is an item error (the dataset
    disagrees with the config). An output with no label (not JSON, field missing) is recorded as ``<none>``.
    :meth:`summarize` adds per-label precision / recall / F1, macro and micro averages and a confusion matrix.
    """

    name = "label"

    def __init__(
        self,
        *,
        path: str | list[str] | None = None,
        labels: list[str] | None = None,
        case_sensitive: bool = False,
        allow_code_fence: bool = False,
    ) -> None:
        self.path = None if path is None else _parse_path("grader 'label' path", path)
        self.case_sensitive = _want_bool(self.name, "case_sensitive", case_sensitive)
        self.allow_code_fence = _want_bool(self.name, "allow_code_fence", allow_code_fence)
        raw_labels = _want_str_list(self.name, "labels", labels)
        self.labels: list[str] | None = None
        if raw_labels is not None:
            normalized = [self._norm(label) for label in raw_labels]
            dupes = sorted({x for x in normalized if normalized.count(x) > 1})
            if dupes:
                raise EvaluationError(
                    f"grader 'label': labels {dupes} are listed twice (after normalization)"
                )
            self.labels = normalized
        self.params = {
            "path": path,
            "labels": raw_labels,
            "case_sensitive": self.case_sensitive,
            "allow_code_fence": self.allow_code_fence,
        }

    def _norm(self, text: str) -> str:
        text = " ".join(unicodedata.normalize("NFKC", text).split())
        return text if self.case_sensitive else text.casefold()

    def _extract(self, value: Any) -> tuple[str | None, str | None]:
        """(label, why there is none)."""
        if self.path is not None:
            got = _get_path(value, self.path)
            if got is _MISSING:
                return None, f"field {_path_text(self.path)!r} is missing"
            value = got
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            return None, f"field {_path_text(self.path or ())!r} is a JSON {_json_type(value)}, not a label"
        label = self._norm(str(value))
        if not label:
            return None, "label is empty"
        return label, None

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        if self.path is not None:
            ref_value, err = _reference_json(reference)
            if err is not None:
                return _item_error(err)
        else:
            ref_value, err = _reference_text(reference, self.name)
            if err is not None:
                return _item_error(err)
        ref_label, why = self._extract(ref_value)
        if ref_label is None:
            return _item_error(f"reference has no label: {why}")
        if self.labels is not None and ref_label not in self.labels:
            return _item_error(
                f"reference label {ref_label!r} is not one of the configured labels {self.labels}"
            )

        if self.path is not None:
            value, perr, _ = _parse_json(prediction, allow_code_fence=self.allow_code_fence)
            if perr is not None:
                return GradeResult(
                    0.0, False, label=NO_LABEL, reference_label=ref_label, details={"reason": perr}
                )
        else:
            value = prediction
        label, why = self._extract(value)
        if label is None:
            return GradeResult(
                0.0,
                False,
                label=NO_LABEL,
                reference_label=ref_label,
                details={"reason": f"output has no label: {why}"},
            )
        details: dict[str, Any] = {}
        if self.labels is not None and label not in self.labels:
            details = {
                "reason": f"output label is not one of the configured labels: {_short(label)!r}",
                "raw": _short(label),
            }
            label = OTHER_LABEL
        ok = label == ref_label
        if not ok and "reason" not in details:
            details["reason"] = (
                f"label differs from the reference: predicted {_short(label)!r}, expected {ref_label!r}"
            )
        return GradeResult(1.0 if ok else 0.0, ok, label=label, reference_label=ref_label, details=details)

    def summarize(self, results: Sequence[GradeResult], *, confidence: float = 0.95) -> GradeSummary:
        return summarize_grades(results, confidence=confidence, labels=self.labels)
