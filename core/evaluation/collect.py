"""Filling in a run's answers: for every endpoint under evaluation, each item the run does not have yet
comes from the recording, the response cache, or the endpoint itself."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuneport.evaluation.asking import Progress, _ask, _Call, _check_key, _from_cache, _run_async
from tuneport.evaluation.responses import _checked_usage, _response_text, _ResponseWriter
from tuneport.evaluation.spec import EvalItem
from tuneport.evaluation.targets import RECORDED_PREFIX, _cache_key, _Target
from tuneport.jobs.store import Store

if TYPE_CHECKING:
    from tuneport.http import RetryPolicy


@dataclass
class _Timing:
    wall_s: float = 0.0
    requests: int = 0


@dataclass
class _Collected:
    timing: dict[str, _Timing] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)


def _collect(
    store: Store,
    run_id: str,
    targets: Sequence[_Target],
    items: Sequence[EvalItem],
    *,
    concurrency: int,
    use_cache: bool,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> _Collected:
    """Fill in every (endpoint, item) response the run does not have yet: from the recording, the cache, or by
    asking. Endpoints are asked one after another, each at ``concurrency``, so each one's wall time (the basis of
    self-hosted cost) and latency are its own."""
    done: dict[str, set[int]] = {t.label: set() for t in targets}
    for row in store.list_responses(run_id):
        if row["error"] is None and row["endpoint"] in done:
            done[row["endpoint"]].add(row["item_index"])
    out = _Collected()
    writer = _ResponseWriter(store, run_id)
    try:
        for target in targets:
            missing = [item for item in items if item.index not in done[target.label]]
            if not missing:
                continue
            if target.kind == "recorded":
                _replay(store, writer, target, missing)
                out.cached[target.label] = len(missing)
                continue
            to_ask: list[_Call] = []
            for item in missing:
                messages = target.messages(item.prompt)
                call = _Call(target.label, item.index, _cache_key(target, messages), messages,
                             {"item_key": item.key, "params": target.params})  # fmt: skip
                if not _from_cache(store, writer, call, use_cache):
                    to_ask.append(call)
            out.cached[target.label] = len(missing) - len(to_ask)
            writer.flush()
            if not to_ask:
                continue
            _check_key(target)
            assert target.chat is not None
            started = time.perf_counter()
            _run_async(
                lambda t=target, w=to_ask: _ask(
                    t.chat, t.params, w, writer, name=t.label, who=t.label, concurrency=concurrency,
                    retry=retry, timeout=timeout, progress=progress,
                )
            )  # fmt: skip
            writer.flush()
            out.timing[target.label] = _Timing(time.perf_counter() - started, len(to_ask))
            out.asked[target.label] = len(to_ask)
    finally:
        writer.flush()
    return out


def _replay(store: Store, writer: _ResponseWriter, target: _Target, items: Sequence[EvalItem]) -> None:
    """Serve a recorded endpoint's answers by item (matched by the prompt's key)."""
    assert target.recording is not None
    by_key: dict[str, dict[str, Any]] = {}
    for row in store.list_responses(target.recording):
        key = (row.get("request") or {}).get("item_key")
        if key and row["error"] is None:
            by_key[key] = row
    name = target.reference[len(RECORDED_PREFIX) :]
    for item in items:
        row = by_key.get(item.key)
        request = {"item_key": item.key, "recording": target.recording}
        if row is None:
            writer.add(target.label, item.index, None, request, None, None, None, None,
                       {"type": "NotRecorded",
                        "message": f"the recording {name!r} has no answer for this item (dataset line "
                                   f"{item.lineno}): it was recorded on other items, or that request failed"})  # fmt: skip
            continue
        text, finish = _response_text(row["response"])
        response = {"text": text, "finish_reason": finish, "model": (row["response"] or {}).get("model"),
                    "cached_from": target.recording}  # fmt: skip
        prompt, completion, problem = _checked_usage(row["prompt_tokens"], row["completion_tokens"])
        problem = problem or (row["response"] or {}).get("usage_refused")
        if problem:
            response["usage_refused"] = problem
        writer.add(target.label, item.index, None, request, response, row["latency_ms"], prompt, completion, None)
