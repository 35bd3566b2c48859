"""The rows of the tables both report formats show (scores, label metrics, latency), as display cells.

Each renderer escapes the cells for its own format; the numbers and their rounding are decided once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tuneport.report.format import fmt_ci, fmt_num, fmt_pct

__all__ = [
    "SCORE_HEADER",
    "LABEL_HEADER",
    "LATENCY_HEADER",
    "score_cells",
    "label_rows",
    "latency_rows",
]

SCORE_HEADER = ("endpoint", "grader", "items", "ungraded", "mean score", "accuracy", "Wilson interval")
LABEL_HEADER = ("label", "precision", "recall", "F1", "support")
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
