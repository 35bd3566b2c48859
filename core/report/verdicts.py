"""The report's opening: one sentence per comparison, the way a person would say the result aloud.

The wording is :mod:`tuneport.evaluation.verdict`'s (the CLI summary says the same sentences); the report only
adds what each endpoint costs per 1,000 items, from the cost view, so a reader learns who won and at what price
before any table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneport.evaluation.verdict import comparison_sentence, noninferiority_sentence, overfitting_sentence
from tuneport.report.sentences import pairwise_sentence

__all__ = ["verdict_sentences"]


def _price_clause(model: Mapping[str, Any], a: Any, b: Any) -> str:
    rows = {r["endpoint"]: r for r in model["cost_view"]["endpoints"]}
    if a not in rows or b not in rows:
        return ""
    return f"; {rows[b]['per_1000_text']} vs {rows[a]['per_1000_text']} per 1,000 items"


def verdict_sentences(model: Mapping[str, Any]) -> list[str]:
    """Every paired comparison, non-inferiority test, overfitting check and judged pair of the run, one sentence
    each (comparisons carry the two endpoints' cost per 1,000 items: the second endpoint's first)."""
    out = [comparison_sentence(c) + _price_clause(model, c.get("a"), c.get("b")) for c in model["comparisons"]]
    out += [noninferiority_sentence(t) for t in model.get("noninferiority") or []]
    out += [overfitting_sentence(g) for g in model.get("overfitting") or []]
    out += [pairwise_sentence(p) for p in model.get("pairwise") or []]
    return out
