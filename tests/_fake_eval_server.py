"""A loopback OpenAI-compatible chat server with deterministic answers per model, for evaluation tests.

``answers[model][last user message] -> answer``; a model without an entry for a prompt answers ``"?"``.
``judges[model] = mode`` makes a model a pairwise judge reading the default judge prompt: ``"reference"`` prefers
the answer that equals the reference (``[[A]]`` / ``[[B]]``, ``[[C]]`` when neither or both do), ``"first"``
always says ``[[A]]`` (pure position bias), ``"unparseable"`` answers with no verdict.
``fail_after = N`` makes every request after the N-th answer HTTP 500 (an endpoint dying mid-run);
``fail_models`` limits that to some models. ``requests`` counts the requests received, per model.
``usage`` replaces the usage every answer reports (an endpoint reporting impossible token counts);
``delay`` makes every answer take that many seconds (so concurrent clients overlap).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import orjson
from _fake_chat_server import LoopbackChatServer
from aiohttp import web


def _between(text: str, start: str, end: str) -> str | None:
    head, found, rest = text.partition(start)
    return rest.partition(end)[0] if found else None


def _judge(mode: str, prompt: str) -> str:
    """A deterministic judge verdict for a prompt built from the default pairwise judge template."""
    if mode == "first":
        return "Assistant A answered first, so it is better. [[A]]"
    if mode == "unparseable":
        return "Both answers have merit; I cannot decide."
    reference = _between(prompt, "[Reference Answer]\n", "\n[End of Reference Answer]")
    a = _between(prompt, "[The Start of Assistant A's Answer]\n", "\n[The End of Assistant A's Answer]")
    b = _between(prompt, "[The Start of Assistant B's Answer]\n", "\n[The End of Assistant B's Answer]")
    if (a == reference) == (b == reference):
        return "Neither answer is closer to the reference. [[C]]"
    return "A matches the reference. [[A]]" if a == reference else "B matches the reference. [[B]]"


class FakeEvalServer(LoopbackChatServer):
    def __init__(self) -> None:
        self.answers: dict[str, dict[str, str]] = {}
        self.judges: dict[str, str] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.bodies: list[dict[str, Any]] = []
        self.fail_after: int | None = None
        self.fail_models: set[str] | None = None
        self.served = 0
        self.usage: dict[str, Any] | None = None
        self.delay = 0.0

    def url(self, model: str) -> str:
        return f"{self.base_url}#{model}"

    def reset(self) -> None:
        self.answers.clear()
        self.judges.clear()
        self.requests.clear()
        self.bodies.clear()
        self.fail_after = None
        self.fail_models = None
        self.served = 0
        self.usage = None
        self.delay = 0.0

    async def _chat(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        model = body.get("model")
        self.requests[model] += 1
        self.bodies.append(body)
        failing = self.fail_models is None or model in self.fail_models
        if self.fail_after is not None and failing and self.served >= self.fail_after:
            error = {"error": {"message": "The server had an error", "type": "server_error", "code": None}}
            return web.Response(status=500, body=orjson.dumps(error), content_type="application/json")
        self.served += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        messages = body.get("messages") or []
        last = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        if model in self.judges:
            text = _judge(self.judges[model], last)
        else:
            text = self.answers.get(model, {}).get(last, "?")
        completion = {
            "id": "chatcmpl-eval", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15} if self.usage is None
                     else self.usage,
        }  # fmt: skip
        return web.Response(body=orjson.dumps(completion), content_type="application/json")
