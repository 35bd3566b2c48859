"""``tuneport eval compare RUN_A RUN_B``: two stored runs compared on the items they share (the drift check: the
same endpoint re-run later against a recorded baseline, or a new model against last month's run).

Items are matched by their prompt (not their line), endpoints by name (or, when each run has exactly one,
with each other), graders by id; each pair gets the same paired statistics as a run's own comparisons.
"""

from __future__ import annotations

from typing import Any

from tuneport.errors import EvaluationError
from tuneport.evaluation.assemble import load_run
from tuneport.evaluation.graders import GradeResult
from tuneport.evaluation.questions import paired_comparison
from tuneport.evaluation.spec import item_key
from tuneport.jobs.store import Store

__all__ = ["compare_runs"]


def _grade(result: dict[str, Any] | None, gid: str) -> GradeResult | None:
    g = ((result or {}).get("grades") or {}).get(gid) if result and result.get("error") is None else None
    if not isinstance(g, dict):
        return None
    return GradeResult(score=g.get("score", 0.0), passed=g.get("passed"), error=g.get("error"))


def compare_runs(run_a: str, run_b: str, *, store: Store | None = None) -> dict[str, Any]:
    """Compare run B with run A on their common items: ``{"a", "b", "common_items", "only_a", "only_b",
    "comparisons": [...like a run's, with "a"/"b" as "NAME@RUN"]}``."""
    own = store is None
    store = store or Store()
    try:
        ra, rb = load_run(run_a, store=store), load_run(run_b, store=store)
    finally:
        if own:
            store.close()
    by_a = {item_key(it["prompt"]): it for it in ra["items"]}
    by_b = {item_key(it["prompt"]): it for it in rb["items"]}
    common = [k for k in by_a if k in by_b]
    if not common:
        raise EvaluationError(
            f"runs {run_a} and {run_b} have no item in common ({len(by_a)} and {len(by_b)} items)",
            hint="Compare runs made on the same held-out data (items are matched by their prompt).",
        )
    names_a, names_b = [e["name"] for e in ra["endpoints"]], [e["name"] for e in rb["endpoints"]]
    pairs = [(n, n) for n in names_a if n in names_b]
    if not pairs and len(names_a) == 1 and len(names_b) == 1:
        pairs = [(names_a[0], names_b[0])]
    if not pairs:
        raise EvaluationError(
            f"runs {run_a} and {run_b} share no endpoint name ({', '.join(names_a)} vs {', '.join(names_b)})",
            hint="Name endpoints alike in both runs (--name / `name:` in a spec), or compare single-endpoint runs.",
        )
    graders = [g["id"] for g in ra["graders"] if g["id"] in {x["id"] for x in rb["graders"]}]
    comparisons = []
    for ea, eb in pairs:
        unanswered = 0
        for gid in graders:
            ga, gb = [], []
            unanswered = 0
            for k in common:
                x, y = _grade(by_a[k]["results"].get(ea), gid), _grade(by_b[k]["results"].get(eb), gid)
                if x is None or y is None:
                    unanswered += 1
                    continue
                ga.append(x)
                gb.append(y)
            c = paired_comparison(ga, gb) if ga else None
            if c is None:
                continue
            excluded = {"request_errors": unanswered, "ungradable": c.pop("_ungradable")}
            comparisons.append({"a": f"{ea}@{run_a}", "b": f"{eb}@{run_b}", "grader": gid, "excluded": excluded, **c})
    return {"a": run_a, "b": run_b, "common_items": len(common), "only_a": len(by_a) - len(common),
            "only_b": len(by_b) - len(common), "comparisons": comparisons}  # fmt: skip
