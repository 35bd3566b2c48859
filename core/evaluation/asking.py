"""The asking worker pool: one bounded pool of workers per endpoint, a breaker that gives up on an endpoint
after a run of failures, every answer written as it arrives. Endpoints under evaluation and judges share it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneport.endpoints.client import ChatEndpoint, InferenceClient
from tuneport.errors import AuthenticationError, TuneportError
from tuneport.evaluation.responses import _checked_usage, _error_dict, _response_text, _ResponseWriter
from tuneport.evaluation.targets import _Judge, _Target
from tuneport.jobs.store import Store

if TYPE_CHECKING:
    from tuneport.http import RetryPolicy


#: Consecutive failed requests after which an endpoint is given up on for the rest of the run.
_BREAKER = 8

Progress = Callable[[str, int, int], None]


def _check_key(target: _Target | _Judge) -> None:
    """A missing API key stops the run before the first request (not after a run of identical failures)."""
    env = target.chat.api_key_env if target.chat else None
    if env and not os.environ.get(env, "").strip():
        raise AuthenticationError(
            f"Endpoint {target.label!r} needs an API key in the environment variable {env}, which is not set.",
            hint=f"export {env}=... and run the same command again: answers already received are kept.",
        )


def _run_async(make: Callable[[], Any]) -> Any:
    """Run a coroutine to completion; from inside a running event loop (a notebook), in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@dataclass
class _Call:
    """One request to make and the response row it fills: ``label`` (an endpoint's, or a judge pair's), the
    item, ``sample`` (a judge's order), the cache key, the messages sent and the request as stored (messages are
    rebuilt from the item and the config, so they are not stored)."""

    label: str
    index: int
    key: str
    messages: list[dict[str, Any]]
    request: dict[str, Any]
    sample: int = 0


def _from_cache(store: Store, writer: _ResponseWriter, call: _Call, use_cache: bool) -> bool:
    """Answer ``call`` from the response cache (any run's answer to the same request); False when there is none
    with text, or ``use_cache`` is off."""
    cached = store.find_cached_response(call.key) if use_cache else None
    if cached is None:
        return False
    text, finish = _response_text(cached["response"])
    if text is None:
        return False
    stored = cached["response"] or {}
    response = {"text": text, "finish_reason": finish, "model": stored.get("model"),
                "cached_from": cached["eval_run_id"]}  # fmt: skip
    prompt, completion, problem = _checked_usage(cached["prompt_tokens"], cached["completion_tokens"])
    problem = problem or stored.get("usage_refused")
    if problem:
        response["usage_refused"] = problem
    writer.add(call.label, call.index, call.key, call.request, response, cached["latency_ms"], prompt, completion,
               None, sample=call.sample)  # fmt: skip
    return True


async def _ask(
    chat: ChatEndpoint,
    params: Mapping[str, Any],
    calls: Sequence[_Call],
    writer: _ResponseWriter,
    *,
    name: str,
    who: str,
    concurrency: int,
    retry: RetryPolicy | None,
    timeout: float | None,
    progress: Progress | None,
) -> None:
    """Ask ``chat`` every call with ``concurrency`` workers sharing one client, writing each answer (or error)
    as it arrives. After ``_BREAKER`` failures in a row the endpoint is given up on: the calls left are marked
    not asked (the run is then incomplete, and re-running asks only those). ``name`` labels progress, ``who``
    the endpoint in the not-asked message."""
    queue = list(reversed(calls))
    total = len(calls)
    state: dict[str, Any] = {"done": 0, "fails": 0, "last": None, "broken": False}
    kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}

    async def worker(client: InferenceClient) -> None:
        while queue and not state["broken"]:
            call = queue.pop()
            try:
                result = await client.chat(chat, call.messages, **kwargs, **params)
            except TuneportError as exc:
                state["fails"] += 1
                state["last"] = exc
                writer.add(call.label, call.index, call.key, call.request, None, None, None, None,
                           _error_dict(exc), sample=call.sample)  # fmt: skip
                if state["fails"] >= _BREAKER:
                    state["broken"] = True
            else:
                state["fails"] = 0
                response = {"text": result.text, "finish_reason": result.finish_reason, "model": result.model}
                prompt, completion, problem = _checked_usage(
                    result.usage.prompt_tokens, result.usage.completion_tokens
                )
                if problem:
                    response["usage_refused"] = problem
                writer.add(call.label, call.index, call.key, call.request, response, round(result.latency_ms, 3),
                           prompt, completion, None, sample=call.sample)  # fmt: skip
            state["done"] += 1
            if progress is not None:
                progress(name, state["done"], total)

    async with InferenceClient(concurrency=concurrency, retry=retry) as client:
        await asyncio.gather(*(worker(client) for _ in range(min(concurrency, total))))
    if state["broken"]:
        last = state["last"]
        reason = last.message if isinstance(last, TuneportError) else str(last)
        for call in queue:
            writer.add(call.label, call.index, call.key, call.request, None, None, None, None,
                       {"type": "NotAsked", "message": f"not asked: {who} failed {_BREAKER} requests in a row "
                        f"(last error: {reason})"}, sample=call.sample)  # fmt: skip
