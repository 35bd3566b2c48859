"""The pairwise judge's verdicts, read back from the run's stored judge answers and decided by the grader
itself (a win only when both orders agree)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tuneport.endpoints.client import ChatEndpoint
from tuneport.evaluation.graders import Grader, summarize_pairwise
from tuneport.evaluation.judging import _judge_messages, _judge_rows
from tuneport.evaluation.pricing import judge_cost
from tuneport.evaluation.responses import _response_text
from tuneport.evaluation.spec import EvalItem
from tuneport.evaluation.targets import _cache_key, _Judge, _judge_label
from tuneport.jobs.store import Store


class _NoVerdict(Exception):
    """The run holds no usable judge answer for one order of one item (never asked, or the request failed)."""


def _pairwise_results(
    store: Store,
    run_id: str,
    items: Sequence[EvalItem],
    labels: Sequence[str],
    out_items: Sequence[Mapping[str, Any]],
    graders: Sequence[Grader],
    judges: Mapping[str, Mapping[str, Any]],
    warnings: list[str],
) -> tuple[list[dict[str, Any]], bool]:
    """The pairwise judge's verdicts from the stored judge answers, decided by the grader itself (a win only when
    both orders agree); returns (the run dict's ``pairwise`` entries, whether every verdict the run needs is
    there). Items where either endpoint has no answer are excluded and counted; an answer with no parseable
    verdict is a per-item error, never a tie; a judge request that failed leaves the run incomplete."""
    if not graders or len(labels) < 2:
        return [], True
    rows = _judge_rows(store, run_id)
    complete = True
    entries: list[dict[str, Any]] = []
    for g in graders:
        jcfg = judges.get(g.id) or {}
        judge_view = {
            "name": jcfg.get("reference"),
            "base_url": jcfg.get("base_url"),
            "model": jcfg.get("model"),
        }
        jkey = _judge_key_fn(jcfg)
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                label = _judge_label(g.id, a, b)
                results = []
                item_rows: list[dict[str, Any]] = []
                excluded = {"no_answer": 0, "judge_failed": 0}
                for item, out in zip(items, out_items, strict=True):
                    ra, rb = out["results"][a], out["results"][b]
                    missing = [x for x, r in ((a, ra), (b, rb)) if r["output"] is None]
                    if missing:
                        excluded["no_answer"] += 1
                        item_rows.append({"index": item.index, "winner": None, "excluded": True, "orders": [],
                                          "error": f"excluded: no answer from {' and '.join(missing)}"})  # fmt: skip
                        continue
                    first = _judge_messages(g, item, ra["output"], rb["output"])
                    stored = _stored_judge(rows, label, item.index, first, jkey)
                    try:
                        res = g.compare(ra["output"], rb["output"], item={"messages": item.prompt},  # type: ignore[attr-defined]
                                        reference=item.reference, judge=stored)  # fmt: skip
                    except _NoVerdict as exc:
                        excluded["judge_failed"] += 1
                        complete = False
                        item_rows.append({"index": item.index, "winner": None, "excluded": True, "orders": [],
                                          "error": str(exc)})  # fmt: skip
                        continue
                    results.append(res)
                    item_rows.append({
                        "index": item.index, "winner": res.winner, "excluded": False,
                        "error": None if res.error is None else f"unparseable judge output: {res.error}",
                        "orders": [{"order": order, "verdict": verdict, "raw": raw}
                                   for order, verdict, raw in zip(("a-b", "b-a"), res.verdicts, res.raw, strict=True)],
                        "details": res.details,
                    })  # fmt: skip
                summary = summarize_pairwise(results).to_dict()
                spent = judge_cost(jcfg, [r for (lbl, _, _), r in rows.items() if lbl == label])
                entries.append({"a": a, "b": b, "grader": g.id, "judge": judge_view, "excluded": excluded,
                                "summary": summary, "items": item_rows, **spent})  # fmt: skip
                what = f"{a} vs {b} ({g.id})"
                if excluded["judge_failed"]:
                    warnings.append(
                        f"{what}: the judge gave no verdict on {excluded['judge_failed']} items (its requests failed "
                        f"or were not made); they are left out. Resume with `tuneport eval --resume {run_id}`."
                    )
                if summary["errors"]:
                    warnings.append(
                        f"{what}: the judge's answer had no parseable verdict ([[A]], [[B]] or [[C]]) on "
                        f"{summary['errors']} of {summary['n']} items; they count as errors, not ties"
                    )
    return entries, complete


def _stored_judge(
    rows: Mapping[tuple[str, int, int], Mapping[str, Any]],
    label: str,
    index: int,
    first: list[dict[str, Any]],
    key: Callable[[list[dict[str, Any]]], str],
) -> Callable[[list[dict[str, Any]]], str]:
    """A judge callable that answers from the run's stored judge responses (so the grader's own ``compare``
    decides the verdict, for a finished run and for :func:`load_run` alike). A stored answer counts only if it
    was given to exactly these messages (same outputs, same prompt, same judge)."""

    def judge(messages: list[dict[str, Any]]) -> str:
        row = rows.get((label, index, 0 if messages == first else 1))
        if row is None or row["cache_key"] != key(messages):
            raise _NoVerdict("no judge verdict: the judge was not asked (the run stopped before this item)")
        if row["error"] is not None:
            err = row["error"]
            raise _NoVerdict(
                "judge request failed: " + (err.get("message") if isinstance(err, dict) else str(err))
            )
        text, _ = _response_text(row["response"])
        if text is None:
            raise _NoVerdict("the stored judge response has no text")
        return text

    return judge


def _judge_key_fn(config: Mapping[str, Any]) -> Callable[[list[dict[str, Any]]], str]:
    """The cache key of a judge request, from the judge as the run stored it."""
    chat = ChatEndpoint(name=str(config.get("reference")), base_url=str(config.get("base_url")),
                        model=str(config.get("model")))  # fmt: skip
    judge = _Judge(
        "", str(config.get("reference")), chat.base_url, chat.model, dict(config.get("params") or {}), chat
    )
    return lambda messages: _cache_key(judge, messages)
