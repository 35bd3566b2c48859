"""Asking the pairwise judges: after both endpoints of a pair answered an item, the judge is asked in both
orders, only what the run does not have yet, through the same worker pool as the endpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tuneport.evaluation.asking import Progress, _ask, _Call, _check_key, _from_cache, _run_async
from tuneport.evaluation.graders import Grader
from tuneport.evaluation.responses import _response_text, _ResponseWriter
from tuneport.evaluation.spec import EvalItem
from tuneport.evaluation.targets import _JUDGE_PREFIX, _cache_key, _Judge, _judge_label
from tuneport.jobs.store import Store

if TYPE_CHECKING:
    from tuneport.http import RetryPolicy


def _outputs(store: Store, run_id: str, labels: Sequence[str]) -> dict[str, dict[int, str]]:
    """Every endpoint's answered outputs in this run, by item index (errored and textless answers left out)."""
    out: dict[str, dict[int, str]] = {label: {} for label in labels}
    for r in store.list_responses(run_id):
        if r["endpoint"] in out and r["sample"] == 0 and r["error"] is None:
            text, _ = _response_text(r["response"])
            if text is not None:
                out[r["endpoint"]][r["item_index"]] = text
    return out


def _judge_rows(store: Store, run_id: str) -> dict[tuple[str, int, int], dict[str, Any]]:
    return {
        (r["endpoint"], r["item_index"], r["sample"]): r
        for r in store.list_responses(run_id)
        if str(r["endpoint"]).startswith(_JUDGE_PREFIX)
    }


def _judge_messages(grader: Any, item: EvalItem, first: str, second: str) -> list[dict[str, Any]]:
    return grader.build_messages(first, second, item={"messages": item.prompt}, reference=item.reference)


def _judge_pairs(
    store: Store,
    run_id: str,
    labels: Sequence[str],
    items: Sequence[EvalItem],
    graders: Sequence[Grader],
    judges: Mapping[str, _Judge],
    *,
    concurrency: int,
    use_cache: bool,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> dict[str, dict[str, int]]:
    """Ask every pairwise judge about every pair of endpoints on every item both answered, in both orders.

    Only what the run does not have yet is asked: a stored verdict for the same messages is kept, the cache
    (any run) is used next, and the rest goes to the judge endpoint through the same client, concurrency bound
    and retries as the endpoints themselves. Returns ``{grader_id: {"asked", "cached"}}``.
    """
    pairwise = [g for g in graders if g.kind == "pairwise"]
    if not pairwise or len(labels) < 2:
        return {}
    outputs = _outputs(store, run_id, labels)
    have = _judge_rows(store, run_id)
    stats: dict[str, dict[str, int]] = {}
    writer = _ResponseWriter(store, run_id)
    try:
        for g in pairwise:
            judge = judges[g.id]
            to_ask: list[_Call] = []
            hits = 0
            for i, a in enumerate(labels):
                for b in labels[i + 1 :]:
                    label = _judge_label(g.id, a, b)
                    for item in items:
                        out_a, out_b = outputs[a].get(item.index), outputs[b].get(item.index)
                        if out_a is None or out_b is None or out_a == out_b:
                            continue  # excluded, or a tie the grader decides without asking
                        orders = (
                            _judge_messages(g, item, out_a, out_b),
                            _judge_messages(g, item, out_b, out_a),
                        )
                        for sample, messages in enumerate(orders):
                            key = _cache_key(judge, messages)
                            row = have.get((label, item.index, sample))
                            if row is not None and row["error"] is None and row["cache_key"] == key:
                                continue
                            request = {"judge": g.id, "a": a, "b": b, "order": ("a-b", "b-a")[sample],
                                       "item_key": item.key, "params": judge.params}  # fmt: skip
                            call = _Call(label, item.index, key, messages, request, sample)
                            if _from_cache(store, writer, call, use_cache):
                                hits += 1
                            else:
                                to_ask.append(call)
            writer.flush()
            stats[g.id] = {"asked": len(to_ask), "cached": hits}
            if to_ask:
                _check_key(judge)
                _run_async(
                    lambda j=judge, w=to_ask: _ask(
                        j.chat, j.params, w, writer, name=f"judge {j.grader_id}", who=f"the judge {j.reference}",
                        concurrency=concurrency, retry=retry, timeout=timeout, progress=progress,
                    )
                )  # fmt: skip
                writer.flush()
    finally:
        writer.flush()
    return stats
