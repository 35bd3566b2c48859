"""The retrying HTTP client every provider talks through.

Why one module: the rules for *when* a request may be sent again are subtle and money is at stake (a second
``POST /fine_tuning/jobs`` is a second paid job), so they live in one place, with tests:

- retried: HTTP 408, 409, 429 and 5xx, connection errors and timeouts; with exponential backoff and jitter, or
  exactly as long as the server asks (``retry-after-ms``, then ``retry-after`` in seconds or as an HTTP date);
- the server's ``x-should-retry`` header wins (``true`` forces a retry, ``false`` forbids one), except that a
  status that can never succeed on a retry is never retried: ``insufficient_quota``, 400, 401, 403, 404;
- a failure is *ambiguous* when the server may have acted on the request although no answer arrived (a read
  timeout, a connection reset after sending) or when it answered 5xx/409. A request that is not idempotent is sent
  again after an ambiguous failure only through ``before_resend``: a hook that first looks for what the lost
  request created (see :meth:`tuneport.providers.openai.OpenAIProvider.create`) and returns it instead;
- every failure is logged with its ``x-request-id`` (never with headers: the API key never reaches a log), and
  ends as a typed :mod:`tuneport.errors` error carrying ``status_code``, ``code`` and ``request_id``. Secrets
  given to the client are scrubbed from every message, even if a server echoes them.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tuneport._version import __version__
from tuneport.errors import (
    APIConnectionError,
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
    "Failure",
    "HTTPClient",
    "ModelNotAvailableError",
    "error_from_response",
    "retry_after_seconds",
    "DEFAULT_TIMEOUT",
]

log = logging.getLogger("tuneport.http")

T = TypeVar("T")

#: Generous read/write limits (a 64 MB part on a slow link), but a quick verdict on an unreachable host.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)

_NEVER_RETRY_STATUS = frozenset({400, 401, 403, 404})
_RETRY_STATUS = frozenset({408, 409, 429})
_MODEL_CODES = frozenset({"model_not_available", "model_not_found", "invalid_model", "unsupported_model"})


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


@dataclass
class Failure:
    """One failed attempt, classified."""

    attempt: int
    method: str
    url: str
    response: httpx.Response | None = None
    exception: BaseException | None = None
    retryable: bool = False
    #: True when the server may have acted on the request (no answer, or 5xx/409): re-sending may duplicate.
    ambiguous: bool = False
    #: what the server asked us to wait, in seconds (None: no hint)
    retry_after: float | None = None

    @property
    def request_id(self) -> str | None:
        return self.response.headers.get("x-request-id") if self.response is not None else None

    @property
    def status_code(self) -> int | None:
        return self.response.status_code if self.response is not None else None

    def describe(self) -> str:
        if self.response is not None:
            code = _error_fields(self.response).get("code")
            return f"HTTP {self.response.status_code}" + (f" ({code})" if code else "")
        return f"{type(self.exception).__name__}: {self.exception}"


class _RetryableFailure(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def retry_after_seconds(response: httpx.Response, *, now: float | None = None) -> float | None:
    """The wait the server asks for: ``retry-after-ms`` (milliseconds) or ``retry-after`` (seconds or HTTP date)."""
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
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


def _error_fields(response: httpx.Response) -> dict[str, Any]:
    """``{"message", "type", "code", "param"}`` from an OpenAI-style error body (tolerant of anything else)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return {"message": text[:500] if text else response.reason_phrase}
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return {
                "message": str(error.get("message") or response.reason_phrase),
                "type": error.get("type"),
                "code": error.get("code"),
                "param": error.get("param"),
            }
        if isinstance(error, str):
            return {"message": error}
    return {"message": response.reason_phrase}


def _classify_response(response: httpx.Response, attempt: int) -> Failure:
    status = response.status_code
    code = _error_fields(response).get("code")
    should = response.headers.get("x-should-retry", "").strip().lower()
    if code == "insufficient_quota" or status in _NEVER_RETRY_STATUS:
        retryable = False
    elif should == "true":
        retryable = True
    elif should == "false":
        retryable = False
    else:
        retryable = status in _RETRY_STATUS or status >= 500
    return Failure(
        attempt=attempt,
        method=response.request.method,
        url=str(response.request.url),
        response=response,
        retryable=retryable,
        ambiguous=status >= 500 or status == 409,
        retry_after=retry_after_seconds(response),
    )


# Errors raised before any byte of the request left: always safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Errors that retrying cannot fix (a bad URL, a client-side protocol bug, a proxy refusal).
_FATAL = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError, httpx.InvalidURL)


def _classify_exception(exc: httpx.HTTPError, method: str, url: str, attempt: int) -> Failure:
    if isinstance(exc, _NOT_SENT):
        return Failure(attempt, method, url, exception=exc, retryable=True, ambiguous=False)
    if isinstance(exc, _FATAL):
        return Failure(attempt, method, url, exception=exc, retryable=False, ambiguous=False)
    # ReadTimeout, WriteTimeout, ReadError, WriteError, RemoteProtocolError: the request (or part of it) was sent.
    return Failure(attempt, method, url, exception=exc, retryable=True, ambiguous=True)


def error_from_response(
    response: httpx.Response,
    *,
    service: str = "OpenAI",
    api_key_env: str = "OPENAI_API_KEY",
    redact: Callable[[str], str] = lambda s: s,
    attempts: int = 1,
) -> ProviderError:
    """The typed error for an error response (OpenAI's ``{"error": {...}}`` body, or anything else)."""
    fields = _error_fields(response)
    status = response.status_code
    code = fields.get("code")
    param = fields.get("param")
    message = redact(str(fields.get("message") or ""))
    common = {"status_code": status, "request_id": response.headers.get("x-request-id"), "code": code}
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
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return RateLimitError(f"{service} rate limit{tries}: {message}", **common)
    if code in _MODEL_CODES or (param == "model" and status in (400, 404)):
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
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return APIStatusError(f"{service} returned HTTP {status}{tries}{where}: {message}", **common)


class HTTPClient:
    """An ``httpx.Client`` with the retry rules above and typed errors. Thread-safe (parts upload in parallel).

    ``transport`` is the test seam (``httpx.MockTransport``); ``secrets`` are scrubbed from every error message.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        secrets: Iterable[str] = (),
        service: str = "OpenAI",
        api_key_env: str = "OPENAI_API_KEY",
        max_connections: int = 16,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.service = service
        self.api_key_env = api_key_env
        self._secrets = [s for s in secrets if s]
        all_headers = {"User-Agent": f"tuneport/{__version__}", **(headers or {})}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=all_headers,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
        )

    # -- lifecycle --------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """``text`` with every secret this client holds replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _log_failure(self, failure: Failure, outcome: str) -> None:
        log.warning(
            "%s %s failed (attempt %d/%d): %s; x-request-id=%s; %s",
            failure.method,
            self.redact(failure.url),
            failure.attempt,
            self.retry.max_attempts,
            self.redact(failure.describe()),
            failure.request_id or "-",
            outcome,
        )

    def _wait_for(self, failure: Failure) -> float:
        if failure.retry_after is not None:
            return min(failure.retry_after, self.retry.max_retry_after)
        return self.retry.backoff(failure.attempt)

    def _final_error(self, failure: Failure) -> ProviderError:
        if failure.response is not None:
            return error_from_response(
                failure.response,
                service=self.service,
                api_key_env=self.api_key_env,
                redact=self.redact,
                attempts=failure.attempt,
            )
        exc = failure.exception
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return APIConnectionError(
            self.redact(
                f"{failure.method} {failure.url} {kind} after {failure.attempt} attempt(s): "
                f"{type(exc).__name__}: {exc}"
            )
        )

    # -- the one entry point -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        idempotent: bool = True,
        before_resend: Callable[[Failure], Any] | None = None,
        parse: Callable[[httpx.Response], Any] | None = None,
    ) -> Any:
        """Send a request, retrying as the module docstring says; return ``parse(response)`` (or the response).

        ``files`` may be a zero-argument callable returning the files mapping, so each attempt gets fresh
        streams. ``before_resend(failure)`` runs before every re-send once any attempt failed *ambiguously*; if it
        returns something other than ``None``, that is returned instead of sending again. A request that is not
        ``idempotent`` and has no ``before_resend`` is never re-sent after an ambiguous failure.
        """
        from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

        state: dict[str, Any] = {"attempt": 0, "last": None, "ambiguous": False}
        kwargs: dict[str, Any] = {"params": params, "json": json, "data": data, "headers": headers}
        if timeout is not None:
            kwargs["timeout"] = timeout

        def attempt() -> Any:
            last: Failure | None = state["last"]
            # Once any attempt was ambiguous, look before *every* later send: a result may appear late.
            if last is not None and state["ambiguous"] and before_resend is not None:
                found = before_resend(last)
                if found is not None:
                    log.info("%s %s: found the result of the lost attempt; not re-sending", method, path)
                    return found
            state["attempt"] += 1
            number = state["attempt"]
            try:
                response = self._client.request(
                    method, path, files=files() if callable(files) else files, **kwargs
                )
            except httpx.HTTPError as exc:
                failure = _classify_exception(exc, method, str(self._client.base_url.join(path)), number)
            else:
                if response.is_success:
                    return parse(response) if parse is not None else response
                failure = _classify_response(response, number)
            state["last"] = failure
            state["ambiguous"] = state["ambiguous"] or failure.ambiguous
            may_resend = idempotent or not failure.ambiguous or before_resend is not None
            if failure.retryable and may_resend and number < self.retry.max_attempts:
                raise _RetryableFailure(failure)
            self._log_failure(failure, "giving up")
            raise self._final_error(failure)

        def wait(retry_state: RetryCallState) -> float:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            return self._wait_for(exc.failure) if isinstance(exc, _RetryableFailure) else 0.0

        def before_sleep(retry_state: RetryCallState) -> None:
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            if isinstance(exc, _RetryableFailure):
                sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
                self._log_failure(exc.failure, f"retrying in {sleep:.2f}s")

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=wait,
            retry=retry_if_exception_type(_RetryableFailure),
            sleep=self.retry.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryableFailure as exc:  # pragma: no cover - attempt() gives up itself on the last try
            raise self._final_error(exc.failure) from None

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, parse=lambda r: r.json(), **kwargs)

    def post_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, parse=lambda r: r.json(), **kwargs)
