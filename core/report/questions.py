"""The report's answers to three questions people fine-tune to answer, in Markdown and HTML alike: is the
fine-tune better than a prompted base model, is it overfit (training vs held-out), and is it not worse than the
baseline by more than the margin. The sentences are :mod:`tuneport.evaluation.verdict`'s, shared with the CLI.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from tuneport.evaluation.verdict import comparison_sentence, noninferiority_sentence, points
from tuneport.report.format import fmt_num

__all__ = ["questions_markdown", "questions_html"]


def _prompted(model: Mapping[str, Any]) -> list[list[str]]:
    """One row per prompted endpoint: name, how it was prompted, and the draw."""
    rec = model.get("prompting") or {}
    rows = []
    for name, p in (rec.get("endpoints") or {}).items():
        how = " + ".join((["system prompt"] if p.get("system") else []) + ([f"{p['shots']}-shot"] if p.get("shots") else []))
        drawn = (f"training lines {', '.join(str(n) for n in p.get('lines') or [])} (seed {rec.get('seed')})"
                 if p.get("lines") else "")  # fmt: skip
        rows.append([str(name), how or "as given", drawn])
    return rows


def _prompted_sentences(model: Mapping[str, Any]) -> list[str]:
    names = set(((model.get("prompting") or {}).get("endpoints")) or {})
    return [comparison_sentence(c) for c in model.get("comparisons") or [] if c.get("a") in names or c.get("b") in names]


def _value(row: Mapping[str, Any], key: str) -> str:
    x = row.get(key)
    return (points(x, False) + "%") if row.get("kind") == "pass" else fmt_num(x)


def _gap_rows(model: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for g in model.get("overfitting") or []:
        unit = (lambda x: points(x) + " pts") if g.get("kind") == "pass" else (lambda x: fmt_num(x))
        ci = g.get("gap_ci") or [None, None]
        rows.append([str(g.get("endpoint")), str(g.get("grader")), f"{_value(g, 'train')} (n = {g.get('n_train')})",
                     f"{_value(g, 'heldout')} (n = {g.get('n_heldout')})", unit(g.get("gap")),
                     f"[{unit(ci[0])}, {unit(ci[1])}]", "OVERFITTING" if g.get("flag") else "no"])  # fmt: skip
    return rows


_GAP_HEADER = ("endpoint", "grader", "training", "held-out", "gap", "95% interval", "flag")
_GAP_NOTE = ("The gap is training minus held-out on different items: pass rates get Newcombe's hybrid score interval "
             "for two independent proportions, mean scores Welch's t interval. Flagged when the gap is at least 10 "
             "points (0.10) and its interval excludes 0.")  # fmt: skip


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(x: str) -> str:
        return x.replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(cell(c) for c in r) + " |" for r in rows
    ] + [""]


def questions_markdown(model: Mapping[str, Any]) -> list[str]:
    """The prompted-baseline, training-vs-held-out and non-inferiority sections (nothing when the run has none)."""
    lines: list[str] = []
    if prompted := _prompted(model):
        lines += ["## Prompted baselines", ""] + _md_table(("endpoint", "prompted with", "examples drawn"), prompted)
        lines += [f"- {s}" for s in _prompted_sentences(model)] + [""]
    if gaps := _gap_rows(model):
        lines += ["## Training vs held-out", ""] + _md_table(_GAP_HEADER, gaps) + [_GAP_NOTE, ""]
    tests = [t for t in model.get("noninferiority") or [] if t.get("kind")]
    if tests:
        lines += ["## Non-inferiority", ""] + [f"- {noninferiority_sentence(t)}" for t in tests] + [""]
    return lines


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def questions_html(model: Mapping[str, Any]) -> list[str]:
    """The same sections as :func:`questions_markdown`, as HTML (every value escaped)."""
    parts: list[str] = []
    if prompted := _prompted(model):
        parts += ['<h2 id="prompted">Prompted baselines</h2>',
                  _html_table(("endpoint", "prompted with", "examples drawn"), prompted)]  # fmt: skip
        parts += [f"<p>{html.escape(s)}</p>" for s in _prompted_sentences(model)]
    if gaps := _gap_rows(model):
        parts += ['<h2 id="overfitting">Training vs held-out</h2>', _html_table(_GAP_HEADER, gaps),
                  f'<p class="meta">{html.escape(_GAP_NOTE)}</p>']  # fmt: skip
    tests = [t for t in model.get("noninferiority") or [] if t.get("kind")]
    if tests:
        parts += ['<h2 id="noninferiority">Non-inferiority</h2>']
        parts += [f"<p>{html.escape(noninferiority_sentence(t))}</p>" for t in tests]
    return parts
