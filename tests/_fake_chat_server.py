"""A tiny OpenAI-compatible chat server on loopback, in a background thread, with latency and fault injection.

It answers ``POST /v1/chat/completions`` by echoing the last user message (``echo: ...``), counting words as
tokens, and honours ``max_tokens`` (``finish_reason: length``) and vLLM's ``return_token_ids``. Faults are queued
on ``server.faults`` and consumed one per request, in order:

- ``"429"`` / ``"429:RA"`` / ``"429ms:MS"``: rate limited, with ``Retry-After: RA`` or ``retry-after-ms: MS``;
- ``"500"``, ``"503"``, ``"400"``, ``"401"``, ``"403"``, ``"404"``, ``"404model"``, ``"quota"``: error bodies;
- ``"reset"``: the connection is dropped without an answer; ``"hang:S"``: the answer comes after S seconds;
- ``"garbage"``: 200 with a body that is not a chat completion.

``server.max_in_flight`` is the most requests it ever handled at once; ``server.requests`` lists the bodies,
``server.headers`` the request headers, in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any

import orjson
from aiohttp import web


class LoopbackChatServer:
    """An OpenAI-compatible ``/v1/chat/completions`` on a free loopback port, served from a background thread.

    Subclasses implement ``_chat`` (the aiohttp handler); ``start`` / ``stop`` are shared by the test servers.
    """

    port = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: web.Request) -> web.StreamResponse:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def start(self):  # -> Self
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        name = type(self).__name__
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"the {name} did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


class FakeChatServer(LoopbackChatServer):
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.faults: collections.deque[str] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def reset(self, latency: float = 0.0) -> None:
        """Forget the last test: wait for its requests still being handled (a hung one), clear the counters."""
        deadline = time.monotonic() + 5.0
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        self.latency = latency
        self.faults.clear()
        self.requests.clear()
        self.headers.clear()
        self.max_in_flight = 0

    # -- handler ------------------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = orjson.loads(await request.read())
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            fault = self.faults.popleft() if self.faults else None
            if self.latency:
                await asyncio.sleep(self.latency)
            if fault is not None:
                response = await self._fault(request, fault)
                if response is not None:
                    return response
            return web.Response(body=orjson.dumps(_completion(body)), content_type="application/json")
        finally:
            self.in_flight -= 1

    async def _fault(self, request: web.Request, fault: str) -> web.StreamResponse | None:
        kind, _, arg = fault.partition(":")
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("fake reset")
        if kind == "hang":
            await asyncio.sleep(float(arg))
            return None
        if kind == "garbage":
            return web.Response(text="<html>not an API</html>", content_type="text/html")
        headers = {"x-request-id": "req_fake"}
        if kind == "429" and arg:
            headers["Retry-After"] = arg
        if kind == "429ms":
            headers["retry-after-ms"] = arg
            kind = "429"
        status, code, message = {
            "429": (429, "rate_limit_exceeded", "Rate limit reached"),
            "quota": (429, "insufficient_quota", "You exceeded your current quota"),
            "500": (500, None, "The server had an error"),
            "503": (503, None, "Overloaded"),
            "400": (400, "context_length_exceeded", "This model's maximum context length is 8 tokens"),
            "401": (401, "invalid_api_key", "Incorrect API key provided"),
            "403": (403, None, "Project does not have access"),
            "404": (404, None, "Not Found"),
            "404model": (404, "model_not_found", "The model does not exist"),
        }[kind]
        error = {"error": {"message": message, "type": "error", "code": code, "param": None}}
        return web.Response(
            status=status, body=orjson.dumps(error), headers=headers, content_type="application/json"
        )



def _completion(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or []
    last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    words = f"echo: {last}".split()
    prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
    finish = "stop"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if max_tokens is not None and len(words) > max_tokens:
        words, finish = words[:max_tokens], "length"
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": " ".join(words)},
        "logprobs": None,
        "finish_reason": finish,
    }
    if body.get("return_token_ids"):
        choice["token_ids"] = [len(w) for w in words]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(words),
            "total_tokens": prompt_tokens + len(words),
        },  # fmt: skip
    }
