"""Each comparison of a run as the one sentence a person would say aloud.

SHARED: the CLI summary of ``tuneport eval`` and the report's verdict-first opening both call
:func:`comparison_sentence` (and the non-inferiority / overfitting sentences below), so the terminal and the report
never word a result differently. Nothing here re-tests: a winner is named only where the run marked the test
significant, and a field an older run lacks is left out of the sentence rather than guessed.

Example: ``support-ft beats tiny-chat on json_match: +47 points [37, 57], p = 1e-14 (n = 120)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["comparison_sentence", "noninferiority_sentence", "overfitting_sentence", "fmt_p_short", "points"]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fmt_p_short(p: Any) -> str:
    """A p-value in two significant digits as people write it (``0.04``, ``1e-14``); ``n/a`` when missing."""
    x = _num(p)
    if x is None:
        return "n/a"
    if x == 0.0:
        return "< 1e-300"
    return f"{x:.2g}"


def points(x: Any, signed: bool = True) -> str:
    """A difference of two rates in percentage points, rounded to whole points (one decimal under 10)."""
    v = _num(x)
    if v is None:
        return "n/a"
    p = 100.0 * v
    text = f"{p:.1f}" if abs(p) < 10 and round(p, 1) != round(p) else f"{p:.0f}"
    if text in ("-0", "-0.0"):
        text = "0"
    return ("+" if signed and not text.startswith("-") and text != "0" else "") + text


def _score(x: Any, signed: bool = True) -> str:
    v = _num(x)
    if v is None:
        return "n/a"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def comparison_sentence(c: Mapping[str, Any]) -> str:
    """One comparison (an entry of ``run["comparisons"]``) as a sentence.

    Pass/fail graders speak in points of pass rate with the paired (Newcombe) interval and McNemar's exact p;
    score-only graders in mean score with the paired bootstrap interval. "beats" only when the run's test was
    significant; otherwise "cannot be told apart from". Items left out on both sides are counted at the end.
    """
    a, b, grader = str(c.get("a")), str(c.get("b")), str(c.get("grader"))
    passed = c.get("pass") if isinstance(c.get("pass"), Mapping) else None
    if passed is not None:
        winner = passed.get("winner")
        ci = passed.get("rate_diff_ci") if isinstance(passed.get("rate_diff_ci"), Mapping) else None
        diff = passed.get("rate_diff")
        p = (passed.get("mcnemar") or {}).get("p_value")
        interval = f" [{points(ci.get('low'), False)}, {points(ci.get('high'), False)}]" if ci else ""
        figures = f"{points(diff)} points{interval}, p = {fmt_p_short(p)}"
    else:
        scores = c.get("scores") or {}
        winner = scores.get("winner")
        boot = scores.get("bootstrap") or {}
        diff = scores.get("mean_diff")
        figures = f"mean score {_score(diff)} [{_score(boot.get('low'))}, {_score(boot.get('high'))}]"
    if winner == "b":
        verb = f"{b} beats {a}"
    elif winner == "a":
        verb = f"{b} loses to {a}"
    else:
        verb = f"{b} cannot be told apart from {a}"
    n = c.get("n")
    tail = f" (n = {n}" if n is not None else " ("
    ex = c.get("excluded") if isinstance(c.get("excluded"), Mapping) else {}
    left = sum(v for v in ex.values() if isinstance(v, int) and not isinstance(v, bool))
    if left:
        tail += f"; {left} item{'s' if left != 1 else ''} left out on both sides"
    tail = "" if tail == " (" else tail + ")"
    return f"{verb} on {grader}: {figures}{tail}"


def noninferiority_sentence(t: Mapping[str, Any]) -> str:
    """A non-inferiority test (an entry of ``run["noninferiority"]``) in words: is the candidate "not worse than
    the baseline by more than M", with the one-sided bound and the test behind it."""
    cand, base, grader = t.get("candidate"), t.get("baseline"), t.get("grader")
    unit_pass = t.get("kind") == "pass"
    margin = t.get("margin")
    m = f"{points(margin, False)} points" if unit_pass else _score(margin, False)
    fmt = (lambda x: points(x) + " points") if unit_pass else _score
    bound = fmt(t.get("lower_bound"))
    conf = _num(t.get("confidence")) or 0.95
    how = (f"exact binomial test on {t.get('n_discordant')} discordant pairs" if unit_pass
           else "paired t-test")  # fmt: skip
    excluded = t.get("excluded") or {}
    left = sum(v for v in excluded.values() if isinstance(v, int) and not isinstance(v, bool))
    extra = f"; {left} item{'s' if left != 1 else ''} without answers from both left out" if left else ""
    figures = (f"difference {fmt(t.get('diff'))}, one-sided {conf:.0%} lower bound {bound}, "
               f"{how}, p = {fmt_p_short(t.get('p_value'))}, n = {t.get('n')}{extra}")  # fmt: skip
    if t.get("non_inferior"):
        return f"{cand} is not worse than {base} by more than {m} on {grader} ({figures})"
    return f"{cand} may be worse than {base} by more than {m} on {grader}: not shown non-inferior ({figures})"


def overfitting_sentence(g: Mapping[str, Any]) -> str:
    """Training vs held-out score of one endpoint on one grader (an entry of ``run["overfitting"]``)."""
    label, grader = g.get("endpoint"), g.get("grader")
    is_rate = g.get("kind") == "pass"
    fmt = (lambda x: points(x, False) + "%") if is_rate else (lambda x: _score(x, False))
    gap = (lambda x: points(x) + " points") if is_rate else _score
    ci = g.get("gap_ci") or [None, None]
    text = (f"{label} on {grader}: training {fmt(g.get('train'))} vs held-out {fmt(g.get('heldout'))}, "
            f"gap {gap(g.get('gap'))} [{gap(ci[0])}, {gap(ci[1])}]")  # fmt: skip
    if g.get("flag"):
        return text + ": OVERFITTING - the training score is significantly and substantially higher"
    return text
