"""Responses as the store keeps them: written in batches as they arrive (a crash loses at most the last half
second), read back as text, errors as plain dicts."""

from __future__ import annotations

import time
from typing import Any

from tuneport.errors import ProviderError, TuneportError, redact
from tuneport.jobs.store import Store

_FLUSH_ROWS = 256

_FLUSH_SECONDS = 0.5
#: More tokens than any model reads or writes in one request: a usage figure past it is a server bug.
_MAX_TOKENS = 10_000_000


class _ResponseWriter:
    """Buffers response rows and writes them in one transaction every ``_FLUSH_ROWS`` rows or
    ``_FLUSH_SECONDS`` seconds: a store write per response would cap a fast endpoint at a few hundred
    responses a second, and a crash still loses at most the last half second."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.rows: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(
        self,
        target: str,
        index: int,
        cache_key: str | None,
        request: Any,
        response: Any,
        latency_ms: float | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        error: Any,
        sample: int = 0,
    ) -> None:
        self.rows.append({"eval_run_id": self.run_id, "endpoint": target, "item_index": index, "sample": sample,
                          "cache_key": cache_key, "request": request, "response": response,
                          "latency_ms": latency_ms, "prompt_tokens": prompt_tokens,
                          "completion_tokens": completion_tokens, "error": error})  # fmt: skip
        if len(self.rows) >= _FLUSH_ROWS or time.monotonic() - self.last >= _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        self.store.add_responses(rows)


def _response_text(response: Any) -> tuple[str | None, str | None]:
    """(text, finish_reason) of a stored response: ours ({"text": ...}) or a raw chat completion."""
    if not isinstance(response, dict):
        return None, None
    if "text" in response:
        return response.get("text"), response.get("finish_reason")
    try:
        choice = response["choices"][0]
        message = choice.get("message") or {}
        return message.get("content") or message.get("refusal") or "", choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None, None


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ProviderError):
        return {"type": type(exc).__name__, "message": exc.message, "status_code": exc.status_code,
                "code": exc.code}  # fmt: skip
    if isinstance(exc, TuneportError):
        return {"type": type(exc).__name__, "message": exc.message}
    return {"type": type(exc).__name__, "message": redact(str(exc))}  # not ours: scrub any echoed key


def _checked_usage(prompt: Any, completion: Any) -> tuple[int | None, int | None, str | None]:
    """(prompt tokens, completion tokens, why the usage is refused): an endpoint's token counts as they may be
    stored and priced. A count that cannot be right (negative, not a whole number, past ``_MAX_TOKENS``) refuses
    both, ``(None, None, why)``: the answer is still graded, but its tokens are never summed or priced. A count
    the server did not report stays ``None``."""
    problems = []
    for name, value in (("prompt_tokens", prompt), ("completion_tokens", completion)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{name}={value!r:.40} is not a whole number")
        elif value < 0:
            problems.append(f"{name}={value} is negative")
        elif value > _MAX_TOKENS:
            problems.append(f"{name}={value} is more than any request uses ({_MAX_TOKENS:,})")
    if problems:
        return None, None, "the endpoint reported impossible token usage: " + "; ".join(problems)
    return prompt, completion, None
