"""OpenAI's chat completions over the fallback engine: request checks, ``chat.completion`` objects and streams.

Shapes are OpenAI's and vLLM's (``choices``, ``usage``, ``finish_reason``; vLLM's ``min_tokens`` and
``return_token_ids`` extensions), so a client cannot tell the engines apart.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from tuneport.local_backend.protocol import ApiError
from tuneport.local_backend.serving.fallback_engine import TransformersEngine, model_not_found, stop_index

__all__ = ["chat_completion", "chat_completion_stream"]


def _completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


def chat_completion(engine: TransformersEngine, body: dict[str, Any]) -> dict[str, Any]:
    """Answer one non-streaming chat completion request (an OpenAI ``chat.completion`` object)."""
    model, prompt, params = _parse(engine, body)
    choices, completion_tokens = [], 0
    for index in range(params["n"]):
        tokens = engine.generate(model, prompt, params)
        text, reason, ids = engine.finish(tokens, params)
        completion_tokens += len(ids)
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": reason,
        }
        if body.get("return_token_ids"):
            choice["token_ids"] = ids
        choices.append(choice)
    response: dict[str, Any] = {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "system_fingerprint": "tuneport-transformers",
        "usage": {
            "prompt_tokens": len(prompt),
            "completion_tokens": completion_tokens,
            "total_tokens": len(prompt) + completion_tokens,
        },
    }
    if body.get("return_token_ids"):
        response["prompt_token_ids"] = prompt
    return response


def chat_completion_stream(engine: TransformersEngine, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streaming request, produced as tokens are generated."""
    model, prompt, params = _parse(engine, body)
    if params["n"] != 1:
        raise ApiError(400, "`n` above 1 is not supported with `stream`", param="n")
    cid, created = _completion_id(), int(time.time())
    want_ids = bool(body.get("return_token_ids"))

    def chunk(
        delta: dict[str, Any], reason: str | None = None, ids: list[int] | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        if want_ids and ids is not None:
            choice["token_ids"] = ids
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    first = chunk({"role": "assistant", "content": ""})
    if want_ids:
        first["prompt_token_ids"] = prompt
    yield first
    events: queue.Queue = queue.Queue()
    hold = max((len(s) for s in params["stop"]), default=1) - 1  # text that may still become a stop string

    def produce() -> None:
        try:
            events.put(
                ("done", engine.generate(model, prompt, params, on_token=lambda t: events.put(("token", t))))
            )
        except BaseException as exc:
            events.put(("error", exc))

    threading.Thread(target=produce, daemon=True).start()
    tokens: list[int] = []
    sent, pending_ids = 0, []
    while True:
        kind, value = events.get()
        if kind == "error":
            raise value
        if kind == "done":
            break
        tokens.append(value)
        pending_ids.append(value)
        if value in engine.eos_ids:
            continue
        text = engine.tokenizer.decode(tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a multi-byte character not complete yet
            continue
        if stop_index(text, params["stop"]) is not None:
            continue  # the final chunk cuts it
        upto = max(sent, len(text) - hold)
        if upto > sent:
            yield chunk({"content": text[sent:upto]}, ids=pending_ids)
            sent, pending_ids = upto, []
    text, reason, ids = engine.finish(tokens, params)
    if len(text) > sent or pending_ids:
        yield chunk({"content": text[sent:]}, ids=pending_ids)
    final = chunk({}, reason)
    if (body.get("stream_options") or {}).get("include_usage"):
        final["usage"] = None
        yield final
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(ids),
            "total_tokens": len(prompt) + len(ids),
        }
        yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
               "usage": usage}  # fmt: skip
    else:
        yield final


def _parse(engine: TransformersEngine, body: dict[str, Any]) -> tuple[str, list[int], dict[str, Any]]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model") or engine.name
    if not isinstance(model, str):
        raise ApiError(400, "`model` must be a string", param="model")
    if model != engine.name and model not in engine.adapters:
        raise model_not_found(model)
    if body.get("logprobs") or body.get("tools") or body.get("response_format"):
        unsupported = [k for k in ("logprobs", "tools", "response_format") if body.get(k)]
        raise ApiError(
            400,
            f"{', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} not supported by the transformers "
            "fallback engine; serve with vLLM for them",
            param=unsupported[0],
        )
    prompt = engine.prompt_ids(body.get("messages"))
    return model, prompt, engine.sampling(body, len(prompt))
