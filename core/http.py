"""The retrying HTTP client every provider talks through.

Why one module: the rules for *when* a request may be sent again are subtle and money is at stake (a second
``POST /fine_tuning/jobs`` is a second paid job), so they live in one place, with tests:

- which statuses are retried, how long to wait, and the typed error a status ends as are
  :mod:`tuneport.retry_rules`' (shared with the inference client); here, connection errors and timeouts are
  retried too;
- a failure is *ambiguous* when the server may have acted on the request although no answer arrived (a read
  timeout, a connection reset after sending) or when it answered 5xx/409. A request that is not idempotent is sent
  again after an ambiguous failure only through ``before_resend``: a hook that first looks for what the lost
  request created (see :meth:`tuneport.providers.openai.OpenAIProvider.create`) and returns it instead;
- every failure is logged with its ``x-request-id`` (never with headers: the API key never reaches a log), and
  ends as a typed :mod:`tuneport.errors` error carrying ``status_code``, ``code`` and ``request_id``. Secrets
  given to the client are registered with :func:`tuneport.errors.register_secret`, so every error masks them,
  even if a server echoes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from tuneport import retry_rules
from tuneport._version import __version__
from tuneport.errors import APIConnectionError, ModelNotAvailableError, ProviderError, redact, register_secret
from tuneport.retry_rules import RetryPolicy

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


class _RedactingFilter(logging.Filter):
    """Masks keys in httpx's and httpcore's own records: at DEBUG, httpcore logs every response's headers, and a
    server may echo the key into one (``x-request-id``). It runs only for records that are emitted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


# Logger filters apply to records logged on that very logger, so each one that logs is named.
for _name in ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_RedactingFilter())

T = TypeVar("T")

#: Generous read/write limits (a 64 MB part on a slow link), but a quick verdict on an unreachable host.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)


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
    """The wait ``response`` asks for (:func:`tuneport.retry_rules.retry_after_seconds` of its headers)."""
    return retry_rules.retry_after_seconds(response.headers, now=now)


def _error_fields(response: httpx.Response) -> dict[str, Any]:
    return retry_rules.error_fields(response.status_code, response.content)


def _classify_response(response: httpx.Response, attempt: int) -> Failure:
    status = response.status_code
    return Failure(
        attempt=attempt,
        method=response.request.method,
        url=str(response.request.url),
        response=response,
        retryable=retry_rules.should_retry(status, _error_fields(response).get("code"), response.headers),
        ambiguous=retry_rules.is_ambiguous(status),
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
    response: httpx.Response, *, service: str = "OpenAI", api_key_env: str = "OPENAI_API_KEY", attempts: int = 1
) -> ProviderError:
    """The typed error for an error response (:func:`tuneport.retry_rules.status_error`)."""
    return retry_rules.status_error(
        response.status_code, response.headers, _error_fields(response),
        service=service, api_key_env=api_key_env, attempts=attempts,
    )  # fmt: skip


class HTTPClient:
    """An ``httpx.Client`` with the retry rules above and typed errors. Thread-safe (parts upload in parallel).

    ``transport`` is the test seam (``httpx.MockTransport``); ``secrets`` are masked in every error and log line.
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
        params: Mapping[str, str] | None = None,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.service = service
        self.api_key_env = api_key_env
        for secret in secrets:
            if secret:
                register_secret(secret)
        all_headers = {"User-Agent": f"tuneport/{__version__}", **(headers or {})}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=all_headers,
            timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            params=dict(params or {}),  # sent with every request (Azure's api-version)
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
        """``text`` with every known secret masked (:func:`tuneport.errors.redact`)."""
        return redact(text)

    def _log_failure(self, failure: Failure, outcome: str) -> None:
        log.warning(
            "%s %s failed (attempt %d/%d): %s; x-request-id=%s; %s",
            failure.method,
            redact(failure.url),
            failure.attempt,
            self.retry.max_attempts,
            redact(failure.describe()),
            redact(failure.request_id or "-"),  # servers echo headers into it
            outcome,
        )

    def _final_error(self, failure: Failure) -> ProviderError:
        if failure.response is not None:
            return error_from_response(
                failure.response, service=self.service, api_key_env=self.api_key_env, attempts=failure.attempt
            )
        exc = failure.exception
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return APIConnectionError(
            f"{failure.method} {failure.url} {kind} after {failure.attempt} attempt(s): {type(exc).__name__}: {exc}"
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
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | float | None = None,
        idempotent: bool = True,
        before_resend: Callable[[Failure], Any] | None = None,
        parse: Callable[[httpx.Response], Any] | None = None,
        accept: Iterable[int] = (),
    ) -> Any:
        """Send a request, retrying as the module docstring says; return ``parse(response)`` (or the response).

        ``files`` may be a zero-argument callable returning the files mapping, so each attempt gets fresh
        streams; so may ``content`` (a raw body). ``accept``: statuses besides 2xx that are answers, not failures
        (a 302 whose ``Location`` the caller follows itself). ``before_resend(failure)`` runs before every
        re-send once any attempt failed *ambiguously*; if it returns something other than ``None``, that is
        returned instead of sending again. A request that is not ``idempotent`` and has no ``before_resend`` is never re-sent after an ambiguous failure.
        """
        from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

        state: dict[str, Any] = {"attempt": 0, "last": None, "ambiguous": False}
        answers = frozenset(accept)
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
                    method, path, files=files() if callable(files) else files,
                    content=content() if callable(content) else content, **kwargs,
                )  # fmt: skip
            except httpx.HTTPError as exc:
                failure = _classify_exception(exc, method, str(self._client.base_url.join(path)), number)
            else:
                if response.is_success or response.status_code in answers:
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
            if not isinstance(exc, _RetryableFailure):
                return 0.0
            return self.retry.wait(exc.failure.attempt, exc.failure.retry_after)

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
