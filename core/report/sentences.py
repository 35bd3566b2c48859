"""The verdicts of the statistics in words, shared by the Markdown and HTML reports.

One wording for both formats: a reader comparing the two files (or a test) sees the same sentence, and a winner is
named only where the runner marked the test significant; nothing here re-tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneport.report.format import fmt_p, fmt_pct, fmt_signed, num

__all__ = [
    "winner_name",
    "mcnemar_sentence",
    "excluded_sentence",
    "bootstrap_sentence",
    "pairwise_verdict",
    "pairwise_orders",
    "pairwise_sentence",
    "pairwise_notes",
]


def winner_name(comparison: Mapping[str, Any], winner: Any) -> str | None:
    """The endpoint name behind a winner mark (``a`` / ``b``); ``None`` for no winner."""
    if winner == "a":
        return str(comparison.get("a"))
    if winner == "b":
        return str(comparison.get("b"))
    return None


def _p_clause(p_value: Any) -> str:
    p = fmt_p(p_value)
    return f"p {p if p.startswith('<') else '= ' + p}"


def mcnemar_sentence(comparison: Mapping[str, Any]) -> str | None:
    """One line: the exact McNemar counts, p-value and verdict (a winner is named only when significant)."""
    passed = comparison.get("pass")
    if not isinstance(passed, Mapping) or not isinstance(passed.get("mcnemar"), Mapping):
        return None
    mc = passed["mcnemar"]
    a, b = comparison.get("a"), comparison.get("b")
    alpha = num(mc.get("alpha")) or num(comparison.get("alpha")) or 0.05
    won = winner_name(comparison, passed.get("winner"))
    verdict = (
        f"{won} passes significantly more items" if won else f"no significant difference at alpha = {alpha:g}"
    )
    return (
        f"McNemar (exact): b = {mc.get('b')} ({a} passed, {b} failed), c = {mc.get('c')} ({b} passed, {a} failed), "
        f"{_p_clause(mc.get('p_value'))}: {verdict}"
    )


def excluded_sentence(comparison: Mapping[str, Any]) -> str | None:
    """Which items the comparison left out (on both sides), when the runner says so."""
    ex = comparison.get("excluded")
    if not isinstance(ex, Mapping):
        return None
    parts = [f"{n} {what}" for what, n in (("with a failed request", ex.get("request_errors")),
                                            ("that could not be graded", ex.get("ungradable"))) if n]  # fmt: skip
    if not parts:
        return None
    return "left out on both sides: " + " and ".join(
        f"{p} item{'s' if not p.startswith('1 ') else ''}" for p in parts
    )


def bootstrap_sentence(comparison: Mapping[str, Any]) -> str:
    """The paired bootstrap interval of the mean score difference and its verdict."""
    scores = comparison.get("scores") or {}
    boot = scores.get("bootstrap") or {}
    conf = num(boot.get("confidence")) or num(comparison.get("confidence")) or 0.95
    won = winner_name(comparison, scores.get("winner"))
    verdict = (
        f"{won} scores higher (interval excludes 0)"
        if won
        else "the interval includes 0: no significant difference"
    )
    return (
        f"mean score difference ({comparison.get('b')} - {comparison.get('a')}) = {fmt_signed(scores.get('mean_diff'))}, "
        f"{conf:.0%} paired bootstrap CI [{fmt_signed(boot.get('low'))}, {fmt_signed(boot.get('high'))}]: {verdict}"
    )


def pairwise_verdict(entry: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """One judged item in words: who the judge preferred (in both orders), a tie and why, or the error."""
    winner = row.get("winner")
    if winner in ("a", "b"):
        return f"{entry.get(winner)} better (both orders agree)"
    if winner == "tie":
        details = row.get("details") or {}
        why = (
            " (the orders disagree)"
            if details.get("orders_disagree")
            else " (identical answers)"
            if details.get("shortcut")
            else ""
        )
        return "tie" + why
    return f"no verdict: {row.get('error') or 'unknown error'}"


def pairwise_orders(entry: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
    """The judge's verdict in each order (A shown first, then B shown first), as endpoint names."""
    orders = [o for o in row.get("orders") or [] if isinstance(o, Mapping)]
    if not orders:
        return ["", ""]
    names = {"a": entry.get("a"), "b": entry.get("b"), "tie": "tie"}
    return [str(names.get(o.get("verdict"), "no verdict")) for o in orders[:2]] + [""] * (2 - len(orders[:2]))


def pairwise_sentence(entry: Mapping[str, Any]) -> str:
    """Wins / ties / losses of the second endpoint against the first, the sign test and its verdict."""
    s = entry.get("summary") or {}
    a, b = entry.get("a"), entry.get("b")
    won = winner_name(entry, s.get("winner"))
    verdict = (
        f"{won} is preferred significantly more often" if won else "no significant difference at alpha = 0.05"
    )
    return (
        f"{b} wins {s.get('wins_b')}, ties {s.get('ties')}, loses {s.get('wins_a')} against {a} "
        f"(win rate with half ties {fmt_pct(s.get('win_rate_b'))}); exact sign test on the wins: "
        f"{_p_clause(s.get('p_value'))}: {verdict}"
    )


def pairwise_notes(entry: Mapping[str, Any]) -> list[str]:
    """What the pairwise numbers leave out or count as ties, in words."""
    s = entry.get("summary") or {}
    notes = []
    if s.get("orders_disagree"):
        notes.append(f"the judge's verdict changed with the order of the answers on {s['orders_disagree']} items "
                     "(position bias): counted as ties")  # fmt: skip
    if s.get("errors"):
        notes.append(
            f"{s['errors']} items have no parseable verdict: errors, counted neither as wins nor ties"
        )
    ex = entry.get("excluded") or {}
    if ex.get("no_answer"):
        notes.append(f"{ex['no_answer']} items left out: an endpoint has no answer")
    if ex.get("judge_failed"):
        notes.append(f"{ex['judge_failed']} items left out: the judge's request failed or was not made")
    return notes
