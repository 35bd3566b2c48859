"""The rows of the tables both report formats show (scores, label metrics, latency), as display cells.

Each renderer escapes the cells for its own format; the numbers and their rounding are decided once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneport.cost.money import money
from tuneport.report.costs import dec
from tuneport.report.format import fmt_ci, fmt_num, fmt_pct

__all__ = [
    "SCORE_HEADER",
    "LABEL_HEADER",
    "LATENCY_HEADER",
    "score_cells",
    "label_rows",
    "latency_rows",
    "COST_HEADER",
    "JUDGE_HEADER",
    "NO_ROI",
    "figure_amount",
    "totals_sentence",
]

SCORE_HEADER = ("endpoint", "grader", "items", "ungraded", "mean score", "accuracy", "Wilson interval")
LABEL_HEADER = ("label", "precision", "recall", "F1", "support")
COST_HEADER = ("endpoint", "billed", "per 1,000 items", "95% interval", "prompt tokens / item",
               "completion tokens / item", "prices", "source", "note")  # fmt: skip
JUDGE_HEADER = ("judge", "pair", "requests", "prompt tokens", "completion tokens", "cost", "note")
NO_ROI = ("no pair of a base and a fine-tuned endpoint (one with a job) that send different prompt sizes: no "
          "prompt tokens are saved to count")  # fmt: skip
LATENCY_HEADER = ("endpoint", "requests", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors")


def score_cells(row: Mapping[str, Any]) -> list[Any]:
    """One grader summary of one endpoint: items, ungraded, mean score, accuracy (passed/judged), interval."""
    acc = row.get("accuracy")
    return [
        row["endpoint"], row["grader"], row.get("n"), row.get("n_errors"), fmt_num(row.get("mean_score")),
        "n/a" if acc is None else f"{fmt_pct(acc)} ({row.get('n_passed')}/{row.get('n_judged')})",
        fmt_ci(row.get("accuracy_ci")),
    ]  # fmt: skip


def label_rows(metrics: Mapping[str, Any]) -> list[list[Any]]:
    """Precision, recall, F1 and support per label, then the macro and micro averages."""
    rows = [[lbl, fmt_num(v.get("precision")), fmt_num(v.get("recall")), fmt_num(v.get("f1")), v.get("support")]
            for lbl, v in (metrics.get("per_label") or {}).items()]  # fmt: skip
    for avg in ("macro", "micro"):
        v = metrics.get(avg) or {}
        rows.append(
            [f"({avg} avg)", fmt_num(v.get("precision")), fmt_num(v.get("recall")), fmt_num(v.get("f1")), ""]
        )
    return rows


def latency_rows(model: Mapping[str, Any]) -> list[list[Any]]:
    """Requests, mean / p50 / p95 / p99 / max latency in ms, and errors, per endpoint."""
    rows = []
    for ep in model["endpoint_names"]:
        lat = model["latency"].get(ep) or {}
        rows.append([ep, lat.get("n", len(model["latencies"][ep])),
                     *(fmt_num(lat.get(k), 0) for k in ("mean", "p50", "p95", "p99", "max")), model["errors"].get(ep)])  # fmt: skip
    return rows


def figure_amount(fig: Mapping[str, Any]) -> str:
    """A cost figure's amount as shown: its rounded ``display``, else the amount rounded here (never raw)."""
    if fig.get("display"):
        return str(fig["display"])
    amount, low, high = dec(fig.get("amount")), dec(fig.get("low")), dec(fig.get("high"))
    if amount is None:
        return "n/a"
    text = money(amount) if (fig.get("currency") or "USD") == "USD" else f"{amount:,.2f} {fig.get('currency')}"
    if low is not None and high is not None and low != high:
        text += f" (range {money(low)} to {money(high)})"
    return text


def totals_sentence(totals: Mapping[str, Any]) -> str:
    """The run's token and money totals in one line, saying whether the judge's share is in them."""
    text = (f"this run used {totals['prompt_tokens']:,} prompt and {totals['completion_tokens']:,} completion tokens"
            + (" (the judge's included)" if totals["judge_included"] else ""))  # fmt: skip
    if totals["amount"] is None:
        return text + "; its cost is n/a (no endpoint has a price)"
    text += f"; it cost {totals['amount_text']}"
    if totals["unpriced"]:
        text += " plus what " + ", ".join(totals["unpriced"]) + " cost (not priced)"
    return text
