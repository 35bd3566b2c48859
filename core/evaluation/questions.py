"""The run's answers to "does B beat A, and by how much", "is it overfit" and "is it not worse than the baseline":
built from graded answers, for the run dict (``comparisons``, ``overfitting``, ``noninferiority``) and for
``tuneport eval compare``.

Items without an answer or a grade on either side are left out of both sides and counted, never dropped
silently; a test with nothing left to test is reported as such (and never as a pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneport.evaluation.graders import GradeResult, paired_grades
from tuneport.evaluation.margins import (
    independent_rate_diff_ci,
    noninferiority_pass,
    noninferiority_scores,
    paired_rate_diff_ci,
    welch_diff_ci,
)
from tuneport.evaluation.stats import compare_paired

__all__ = ["OVERFIT_GAP", "paired_comparison", "overfitting_rows", "noninferiority_rows"]

#: A training score this much above the held-out one (and significantly so) is flagged as overfitting.
OVERFIT_GAP = 0.10


def paired_comparison(a: Sequence[GradeResult], b: Sequence[GradeResult]) -> dict[str, Any] | None:
    """:func:`~tuneport.evaluation.stats.compare_paired` on the items both sides could be graded on, with the
    Newcombe interval of the pass-rate difference; None when no item is left."""
    a_s, b_s, a_p, b_p, dropped = paired_grades(a, b)
    if not a_s:
        return None
    out = compare_paired(a_s, b_s, a_p, b_p).to_dict()
    if a_p is not None and b_p is not None and out.get("pass"):
        low, high = paired_rate_diff_ci(a_p, b_p)
        out["pass"]["rate_diff_ci"] = {"low": low, "high": high, "method": "Newcombe paired (method 11)"}
    out["_ungradable"] = dropped
    return out


def _graded(results: Sequence[GradeResult | None]) -> list[GradeResult]:
    return [r for r in results if r is not None and r.error is None]


def overfitting_rows(
    heldout: Mapping[str, Mapping[str, Sequence[GradeResult | None]]],
    train: Mapping[str, Mapping[str, Sequence[GradeResult | None]]],
) -> list[dict[str, Any]]:
    """Training vs held-out score per endpoint and grader (``heldout[label][grader]``: the grades of answered
    items, None where unanswered). Pass rates get Newcombe's interval for two independent proportions, scores
    Welch's t interval; the gap is training minus held-out, flagged when at least :data:`OVERFIT_GAP` and its
    interval excludes 0."""
    rows = []
    for label, by_grader in train.items():
        for gid, tr in by_grader.items():
            t_ok, h_ok = _graded(tr), _graded(heldout.get(label, {}).get(gid, []))
            if not t_ok or not h_ok:
                continue
            row: dict[str, Any] = {"endpoint": label, "grader": gid, "n_train": len(t_ok), "n_heldout": len(h_ok),
                                   "unanswered_train": len(tr) - len(t_ok)}  # fmt: skip
            if all(r.passed is not None for r in (*t_ok, *h_ok)):
                k1, k2 = sum(bool(r.passed) for r in t_ok), sum(bool(r.passed) for r in h_ok)
                row |= {"kind": "pass", "train": k1 / len(t_ok), "heldout": k2 / len(h_ok),
                        "gap_ci": list(independent_rate_diff_ci(k1, len(t_ok), k2, len(h_ok))),
                        "method": "Newcombe hybrid score interval, two independent proportions"}  # fmt: skip
            else:
                ts, hs = [r.score for r in t_ok], [r.score for r in h_ok]
                row |= {"kind": "score", "train": sum(ts) / len(ts), "heldout": sum(hs) / len(hs),
                        "method": "Welch t interval, two independent means"}  # fmt: skip
                row["gap_ci"] = list(welch_diff_ci(ts, hs)) if len(ts) > 1 and len(hs) > 1 else [None, None]
            row["gap"] = row["train"] - row["heldout"]
            low = row["gap_ci"][0]
            row["flag"] = bool(low is not None and low > 0 and row["gap"] >= OVERFIT_GAP)
            rows.append(row)
    return rows


def noninferiority_rows(
    baseline: str,
    margin: float,
    labels: Sequence[str],
    grades: Mapping[str, Mapping[str, Sequence[GradeResult | None]]],
    ok: Mapping[str, Sequence[bool]],
    grader_ids: Sequence[str],
    warnings: list[str],
) -> list[dict[str, Any]]:
    """Every other endpoint tested non-inferior to ``baseline`` on every grader, on the items both answered."""
    rows = []
    base_missing = ok[baseline].count(False)
    if base_missing:
        warnings.append(f"the baseline {baseline} has no answer on {base_missing} of {len(ok[baseline])} items: "
                        "they are left out of every non-inferiority test (counted in each test's 'excluded')")  # fmt: skip
    for cand in labels:
        if cand == baseline:
            continue
        both = [x and y for x, y in zip(ok[baseline], ok[cand], strict=True)]
        for gid in grader_ids:
            ga = [r for r, keep in zip(grades[baseline][gid], both, strict=True) if keep]
            gb = [r for r, keep in zip(grades[cand][gid], both, strict=True) if keep]
            a_s, b_s, a_p, b_p, dropped = paired_grades(ga, gb)  # type: ignore[arg-type]
            excluded = {"baseline_no_answer": base_missing,
                        "candidate_no_answer": sum(1 for x, y in zip(ok[baseline], ok[cand], strict=True)
                                                   if x and not y),
                        "ungradable": dropped}  # fmt: skip
            row: dict[str, Any] = {"candidate": cand, "baseline": baseline, "grader": gid, "excluded": excluded}
            if not a_s:
                row |= {"kind": None, "n": 0, "margin": margin, "non_inferior": False, "p_value": None,
                        "note": "no item has a graded answer from both: nothing to test"}  # fmt: skip
                warnings.append(f"non-inferiority of {cand} vs {baseline} ({gid}): no item to test, so it is not "
                                "shown non-inferior")  # fmt: skip
            elif a_p is not None and b_p is not None:
                row |= noninferiority_pass(a_p, b_p, margin).to_dict()
            else:
                row |= noninferiority_scores(a_s, b_s, margin).to_dict()
            rows.append(row)
    return rows
