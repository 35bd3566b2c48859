"""Aggregates of one grader over one endpoint: mean score, accuracy with its Wilson interval, failure reasons,
per-label metrics; and lining two endpoints' grades up for a paired comparison."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.results import NO_LABEL, OTHER_LABEL, GradeResult
from tuneport.evaluation.stats import wilson_interval


@dataclass(frozen=True)
class LabelMetrics:
    """Per-label precision / recall / F1 with macro and micro averages, and the confusion matrix.

    ``confusion[gold][predicted]`` counts items; predicted columns include ``<none>`` (no label in the output)
    and ``<other>`` (a label outside the configured set) when they occur. Those count against recall of the gold
    label but against no label's precision. Undefined ratios (0 / 0) are 0, as scikit-learn's default.
    Macro averages are unweighted means over ``labels``; micro averages pool the counts, so with every output
    carrying a valid label micro F1 equals accuracy.
    """

    labels: list[str]
    per_label: dict[str, dict[str, float]]
    macro: dict[str, float]
    micro: dict[str, float]
    confusion: dict[str, dict[str, int]]
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "per_label": self.per_label,
            "macro": self.macro,
            "micro": self.micro,
            "confusion": self.confusion,
            "columns": self.columns,
        }


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def label_metrics(results: Sequence[GradeResult], labels: Sequence[str] | None = None) -> LabelMetrics | None:
    """Per-label metrics over graded label results (errors skipped); ``None`` when no result carries labels.

    ``labels`` fixes the label set and its order (the grader's configured labels); otherwise it is every gold
    label and every predicted label that is a real label, sorted.
    """
    pairs = [
        (r.reference_label, r.label) for r in results if r.error is None and r.reference_label is not None
    ]
    if not pairs:
        return None
    special = (NO_LABEL, OTHER_LABEL)
    if labels is None:
        label_set = sorted(
            {g for g, _ in pairs} | {p for _, p in pairs if p is not None and p not in special}
        )
    else:
        label_set = list(labels)
    columns = list(label_set) + [s for s in special if any(p == s for _, p in pairs)]
    confusion = {g: dict.fromkeys(columns, 0) for g in label_set}
    for gold, pred in pairs:
        pred = pred if pred is not None else NO_LABEL
        if pred not in columns:  # a label outside an explicitly given set
            pred = OTHER_LABEL
            if OTHER_LABEL not in columns:
                columns.append(OTHER_LABEL)
                for row in confusion.values():
                    row.setdefault(OTHER_LABEL, 0)
        confusion.setdefault(gold, dict.fromkeys(columns, 0))
        confusion[gold][pred] = confusion[gold].get(pred, 0) + 1
    per_label: dict[str, dict[str, float]] = {}
    tp_sum = fp_sum = fn_sum = 0
    for label in label_set:
        tp = confusion.get(label, {}).get(label, 0)
        fp = sum(row.get(label, 0) for gold, row in confusion.items() if gold != label)
        fn = sum(confusion.get(label, {}).values()) - tp
        per_label[label] = {**_prf(tp, fp, fn), "support": tp + fn}
        tp_sum, fp_sum, fn_sum = tp_sum + tp, fp_sum + fp, fn_sum + fn
    k = len(label_set)
    macro = {m: math.fsum(per_label[lbl][m] for lbl in label_set) / k for m in ("precision", "recall", "f1")}
    return LabelMetrics(
        labels=list(label_set),
        per_label=per_label,
        macro=macro,
        micro=_prf(tp_sum, fp_sum, fn_sum),
        confusion=confusion,
        columns=columns,
    )


@dataclass(frozen=True)
class GradeSummary:
    """Aggregate of one grader over one endpoint's outputs.

    ``n`` items, of which ``n_errors`` could not be graded (left out of everything else; ``error_reasons`` counts
    why). ``mean_score`` is over graded items; ``accuracy`` (with its Wilson interval) is over items with a
    pass/fail verdict and is ``None`` when the grader gives none. ``failure_reasons`` counts why outputs failed,
    so "48 of 50 failed: output is not valid JSON" is visible at a glance.
    """

    n: int
    n_graded: int
    n_errors: int
    mean_score: float | None
    n_judged: int
    n_passed: int
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    error_reasons: dict[str, int]
    failure_reasons: dict[str, int]
    labels: LabelMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_graded": self.n_graded,
            "n_errors": self.n_errors,
            "mean_score": self.mean_score,
            "n_judged": self.n_judged,
            "n_passed": self.n_passed,
            "accuracy": self.accuracy,
            "accuracy_ci": list(self.accuracy_ci) if self.accuracy_ci else None,
            "error_reasons": self.error_reasons,
            "failure_reasons": self.failure_reasons,
            "labels": self.labels.to_dict() if self.labels else None,
        }


def _reason_key(text: str) -> str:
    """Group reasons that differ only in details (positions, values) under their first clause."""
    return re.split(r"[:(]", text, maxsplit=1)[0].strip()


def summarize_grades(
    results: Sequence[GradeResult], *, confidence: float = 0.95, labels: Sequence[str] | None = None
) -> GradeSummary:
    """Mean score, accuracy with a Wilson interval, error and failure reasons, and label metrics when present."""
    graded = [r for r in results if r.error is None]
    judged = [r for r in graded if r.passed is not None]
    n_passed = sum(1 for r in judged if r.passed)
    errors = Counter(_reason_key(r.error) for r in results if r.error is not None)
    failures = Counter(_reason_key(str(r.details.get("reason", "failed"))) for r in judged if not r.passed)
    return GradeSummary(
        n=len(results),
        n_graded=len(graded),
        n_errors=len(results) - len(graded),
        mean_score=math.fsum(r.score for r in graded) / len(graded) if graded else None,
        n_judged=len(judged),
        n_passed=n_passed,
        accuracy=n_passed / len(judged) if judged else None,
        accuracy_ci=wilson_interval(n_passed, len(judged), confidence) if judged else None,
        error_reasons=dict(errors.most_common()),
        failure_reasons=dict(failures.most_common()),
        labels=label_metrics(results, labels),
    )


def paired_grades(
    a: Sequence[GradeResult], b: Sequence[GradeResult]
) -> tuple[list[float], list[float], list[bool] | None, list[bool] | None, int]:
    """Line up two endpoints' results on the same items for :func:`tuneport.evaluation.stats.compare_paired`.

    Items where either side could not be graded are dropped from both sides (their count is returned last).
    Pass/fail lists are returned only when every kept item has a verdict on both sides.
    Returns ``(a_scores, b_scores, a_passed, b_passed, n_dropped)``.
    """
    if len(a) != len(b):
        raise EvaluationError(
            f"paired grades need the same items on both sides: {len(a)} results for A, {len(b)} for B",
            hint="Grade both endpoints on the same dataset and keep the item order.",
        )
    kept = [(x, y) for x, y in zip(a, b, strict=True) if x.error is None and y.error is None]
    a_scores = [x.score for x, _ in kept]
    b_scores = [y.score for _, y in kept]
    if kept and all(x.passed is not None and y.passed is not None for x, y in kept):
        a_passed: list[bool] | None = [bool(x.passed) for x, _ in kept]
        b_passed: list[bool] | None = [bool(y.passed) for _, y in kept]
    else:
        a_passed = b_passed = None
    return a_scores, b_scores, a_passed, b_passed, len(a) - len(kept)
