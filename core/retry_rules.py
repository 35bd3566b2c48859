"""When a failed request may be sent again, how long to wait, and the typed error it ends as.

Both HTTP clients follow these rules: :mod:`tuneport.http` (httpx, synchronous: the providers) and
:class:`tuneport.endpoints.client.InferenceClient` (aiohttp, asynchronous: evaluation and chat, kept on aiohttp for
its throughput). Each client only turns its own library's responses and exceptions into what these functions take
(a status, a headers mapping, a body), so a rule changed here changes for both:

- retried: 408, 409, 429 and 5xx, with exponential backoff and jitter, or exactly as long as the server asks
  (``retry-after-ms``, then ``retry-after`` in seconds or as an HTTP date), capped by the policy;
- the server's ``x-should-retry`` wins (``true`` forces a retry, ``false`` forbids one), except for what can never
  succeed on a retry: ``insufficient_quota`` and 400, 401, 403, 404;
- an OpenAI-style error body (``{"error": {"message", "type", "code", "param"}}``, or anything else) becomes a typed
  :mod:`tuneport.errors` error carrying ``status_code``, ``code`` and ``request_id`` (redacted there).
"""

from __future__ import annotations

import email.utils
import http
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tuneport.errors import (
    APIStatusError,
    AuthenticationError,
    ModelNotAvailableError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    TrainingNotAvailableError,
)

__all__ = [
    "RetryPolicy",
    "RETRY_STATUS",
    "NEVER_RETRY_STATUS",
    "MODEL_CODES",
    "header",
    "retry_after_seconds",
    "error_fields",
    "should_retry",
    "is_ambiguous",
    "status_error",
]

#: Statuses a retry can fix, besides every 5xx.
RETRY_STATUS = frozenset({408, 409, 429})
#: Statuses a retry cannot fix, whatever ``x-should-retry`` says.
NEVER_RETRY_STATUS = frozenset({400, 401, 403, 404})
#: Error codes that mean "no such model (for this)".
MODEL_CODES = frozenset({"model_not_available", "model_not_found", "invalid_model", "unsupported_model"})


@dataclass
class RetryPolicy:
    """How often and how patiently to retry. Tests pass a recording ``sleep`` and zero ``jitter``."""

    max_attempts: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.25
    #: the longest server-requested wait honoured; longer requests are capped to this.
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def backoff(self, attempt: int) -> float:
        """Wait before attempt ``attempt + 1`` when the server gave no hint: exponential, capped, jittered down."""
        delay = min(self.initial_backoff * (2 ** max(attempt - 1, 0)), self.max_backoff)
        return delay * (1.0 - self.jitter * random.random())

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """Wait after failed attempt ``attempt``: what the server asked (capped), else the backoff."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Header ``name`` (lower case) from any mapping: httpx's and aiohttp's ignore case already, a dict may not."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait the server asks for: ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds or HTTP date)."""
    value = header(headers, "retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_fields(status: int, body: bytes) -> dict[str, Any]:
    """``{"message", "type", "code", "param"}`` from an OpenAI-style error body (tolerant of anything else)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", errors="replace").strip()
        return {"message": text[:500] if text else _reason(status)}
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict):
            return {
                "message": str(error.get("message") or _reason(status)),
                "type": error.get("type"),
                "code": error.get("code"),
                "param": error.get("param"),
            }
        if isinstance(error, str):
            return {"message": error}
    return {"message": _reason(status)}


def should_retry(status: int, code: str | None, headers: Mapping[str, str]) -> bool:
    """Whether an error status may succeed on another attempt (see the module docstring)."""
    if code == "insufficient_quota" or status in NEVER_RETRY_STATUS:
        return False
    should = (header(headers, "x-should-retry") or "").strip().lower()
    if should in ("true", "false"):
        return should == "true"
    return status in RETRY_STATUS or status >= 500


def is_ambiguous(status: int) -> bool:
    """Whether the server may have acted on a request it answered with ``status`` (a re-send may duplicate it)."""
    return status >= 500 or status == 409


def status_error(
    status: int,
    headers: Mapping[str, str],
    fields: Mapping[str, Any],
    *,
    service: str = "OpenAI",
    api_key_env: str = "OPENAI_API_KEY",
    attempts: int = 1,
) -> ProviderError:
    """The typed error for an error status, from the body's :func:`error_fields`."""
    code = fields.get("code")
    param = fields.get("param")
    message = str(fields.get("message") or "")
    common: dict[str, Any] = {"status_code": status, "request_id": header(headers, "x-request-id"), "code": code}
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if status == 401:
        return AuthenticationError(
            f"{service} rejected the API key in {api_key_env}: {message}",
            hint=f"Check that {api_key_env} holds a valid, active key (and that it belongs to this base URL).",
            **common,
        )
    if code == "training_not_available":
        return TrainingNotAvailableError(f"{service} refused to start a fine-tuning job: {message}", **common)
    if code == "insufficient_quota":
        return QuotaExceededError(f"{service} quota exceeded: {message}", **common)
    if status == 429:
        return RateLimitError(f"{service} rate limit{tries}: {message}", **common)
    if code in MODEL_CODES or (param == "model" and status in (400, 404)):
        return ModelNotAvailableError(f"model not available for fine-tuning: {message}", **common)
    if status == 403:
        return APIStatusError(
            f"{service} denied the request: {message}",
            hint="The key lacks permission for this: check the organization and project it belongs to.",
            **common,
        )
    if status == 404:
        return APIStatusError(f"{service}: not found: {message}", hint="Check the id.", **common)
    where = f" (parameter {param})" if param else ""
    return APIStatusError(f"{service} returned HTTP {status}{tries}{where}: {message}", **common)
