"""The one inference interface: resolve an endpoint reference, then talk to it with one async chat client.

Evaluation, ``tuneport chat`` and anything else that asks a model for an answer go through
:class:`InferenceClient`, so OpenAI's hosted models, tuneport's vLLM server, the fallback engine and any other
OpenAI-compatible server behave the same: the same retries, limits, timeouts, typed errors and records.

Endpoint references (:func:`resolve_endpoint`), tried in this order:

- a saved name (``tuneport endpoints add NAME ...``; a succeeded job registers its own, see
  :func:`tuneport.endpoints.registry.register_job_endpoint`);
- ``openai:MODEL``: OpenAI's API (``OPENAI_BASE_URL`` or https://api.openai.com/v1), key in ``OPENAI_API_KEY``;
- ``URL#MODEL``: any OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1#tiny-chat`` (no key; save a named
  endpoint with ``--api-key-env`` when the server wants one).

Why aiohttp and not httpx here: evaluation sends thousands of small requests at high concurrency, and one
``httpx.AsyncClient`` tops out near 150-380 requests/s on a small machine (encode/httpx#3215) while aiohttp with a
keep-alive connector sized to the concurrency sustains well over 1,500/s (``benchmarks/bench_client.py``). The
per-request path is kept lean: bodies are encoded and decoded with orjson, the first attempt runs without any
retry machinery, and tenacity takes over only after a retryable failure.

Retry rules are :mod:`tuneport.retry_rules`', shared with the providers' :mod:`tuneport.http`: 408/409/429/5xx,
connection errors and timeouts are retried with exponential backoff and jitter, or exactly as long as the server
asks (``retry-after-ms``, ``retry-after``); ``x-should-retry`` wins; 400/401/403/404 and ``insufficient_quota`` are
never retried. Every failure ends as a typed :mod:`tuneport.errors` error, whose message the server's echo of the
key never survives: an endpoint's key variable is registered as a secret before its first request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from tuneport import retry_rules
from tuneport._version import __version__
from tuneport.cost.retirements import warn_if_retiring
from tuneport.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    EndpointError,
    ProviderError,
    register_secret_env,
)
from tuneport.jobs.store import Store
from tuneport.providers.base import Endpoint
from tuneport.providers.registry import backend_for_endpoint, provider_class, provider_names
from tuneport.retry_rules import RetryPolicy

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "InferenceClient",
    "ChatResult",
    "Usage",
    "ChatEndpoint",
    "RecordAs",
    "ClientStats",
    "EndpointError",  # defined in tuneport.errors; imported from here by older code
    "resolve_endpoint",
    "OPENAI_BASE_URL",
    "DEFAULT_TIMEOUT_S",
]

#: OpenAI's API, unless ``OPENAI_BASE_URL`` points elsewhere (a proxy, Azure-style gateway, a test server).
OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Seconds one attempt may take, end to end (a long generation on a slow local engine included).
DEFAULT_TIMEOUT_S = 120.0
_CONNECT_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class ChatEndpoint:
    """A resolved endpoint: where to send chat requests, for which model, with which key (by variable NAME).

    The richer sibling of :class:`tuneport.providers.base.Endpoint` (adds ``name``, the label under which
    responses are recorded); :meth:`of` converts one into the other.
    """

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    kind: str = "openai"
    job_id: str | None = None

    @classmethod
    def of(cls, endpoint: ChatEndpoint | Endpoint, *, name: str | None = None) -> ChatEndpoint:
        """A ChatEndpoint from a provider's :class:`~tuneport.providers.base.Endpoint` (or itself)."""
        if isinstance(endpoint, ChatEndpoint):
            return endpoint if name is None else dataclasses.replace(endpoint, name=name)
        return cls(
            name=name or f"{endpoint.base_url.rstrip('/')}#{endpoint.model}",
            base_url=endpoint.base_url.rstrip("/"),
            model=endpoint.model,
            api_key_env=endpoint.api_key_env,
            kind=endpoint.kind,
            job_id=endpoint.job_id,
        )

    def to_endpoint(self) -> Endpoint:
        """The provider-level :class:`~tuneport.providers.base.Endpoint` (drops the name)."""
        return Endpoint(self.base_url, self.model, self.api_key_env, self.kind, self.job_id)

    @property
    def url(self) -> str:
        """The chat completions URL (a query in the base URL, such as Azure's ``api-version``, stays at the end)."""
        base, mark, query = self.base_url.partition("?")
        return f"{base.rstrip('/')}/chat/completions{mark}{query}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base_url": self.base_url, "model": self.model,
                "api_key_env": self.api_key_env, "kind": self.kind, "job_id": self.job_id}  # fmt: skip


def resolve_endpoint(reference: str | ChatEndpoint | Endpoint, *, store: Store | None = None) -> ChatEndpoint:
    """Turn an endpoint reference (a saved name, ``openai:MODEL`` or ``URL#MODEL``) into a :class:`ChatEndpoint`.

    A saved name wins over the other forms, so a user can shadow ``openai:gpt-4o-mini`` deliberately. ``store``
    defaults to the user's store, opened only when a name has to be looked up.
    """
    endpoint = _resolve(reference, store)
    # a hosted model near its shutdown is said once per process, wherever an endpoint is resolved (eval, chat)
    warn_if_retiring(endpoint.model, backend_for_endpoint(endpoint.kind, endpoint.base_url))
    return endpoint


def _resolve(reference: str | ChatEndpoint | Endpoint, store: Store | None) -> ChatEndpoint:
    if not isinstance(reference, str):
        return ChatEndpoint.of(reference)
    ref = reference.strip()
    if not ref:
        raise EndpointError("The endpoint reference is empty.", hint=_FORMS_HINT)
    if "://" not in ref:
        row = _lookup(ref, store)
        if row is not None:
            return _from_row(row)
    if ref.startswith("openai:"):
        model = ref[len("openai:") :].strip()
        if not model:
            raise EndpointError(f"{reference!r} names no model.", hint="For example openai:gpt-4o-mini.")
        base = (os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
        return ChatEndpoint(name=ref, base_url=base, model=model, api_key_env="OPENAI_API_KEY", kind="openai")
    if "://" in ref:
        url, _, model = ref.partition("#")
        if not model.strip():
            raise EndpointError(
                f"The endpoint URL {url!r} names no model.",
                hint=f"Append the model after '#': {url}#MODEL (e.g. {url}#tiny-chat).",
            )
        return ChatEndpoint(name=ref, base_url=check_base_url(url), model=model.strip(), kind="url")
    raise EndpointError(f"No endpoint named {reference!r}.", hint=_FORMS_HINT)


_FORMS_HINT = (
    "Use a saved name (`tuneport endpoints list`), openai:MODEL, or URL#MODEL "
    "(e.g. http://127.0.0.1:8000/v1#tiny-chat)."
)


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an absolute http(s) URL; else an :class:`EndpointError`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(
            f"{url!r} is not an http(s) base URL.",
            hint="Give the server's API root, e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1.",
        )
    if parts.path.rstrip("/").endswith("/chat/completions"):
        raise EndpointError(
            f"{url!r} is a chat completions URL, not a base URL.",
            hint=f"Use {url.strip().rstrip('/')[: -len('/chat/completions')]} instead.",
        )
    return url.strip().rstrip("/")


def _lookup(name: str, store: Store | None) -> dict[str, Any] | None:
    if store is not None:
        return store.get_endpoint(name)
    with Store() as own:
        return own.get_endpoint(name)


def _from_row(row: Mapping[str, Any]) -> ChatEndpoint:
    return ChatEndpoint(
        name=row["name"],
        base_url=row["base_url"].rstrip("/"),
        model=row["model"],
        api_key_env=row.get("api_key_env"),
        kind=row.get("kind") or "openai",
        job_id=row.get("job_id"),
    )


# ------------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the server reported it (``None`` where it reported nothing)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int | None]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(slots=True)
class ChatResult:
    """One chat completion: the first choice's text, why it stopped, usage, and timing.

    ``latency_ms`` is the successful attempt's time from sending to the full response (what a user of the model
    waits); ``elapsed_ms`` adds queueing for a concurrency slot and every retry. ``token_ids`` are the completion
    tokens when the server returns them (vLLM and the fallback engine with ``return_token_ids=True``).
    """

    text: str
    finish_reason: str | None
    usage: Usage
    latency_ms: float
    token_ids: list[int] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    model: str | None = None
    endpoint: str | None = None
    attempts: int = 1
    elapsed_ms: float = 0.0
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without ``raw``)."""
        return {"endpoint": self.endpoint, "model": self.model, "text": self.text,
                "finish_reason": self.finish_reason, "usage": self.usage.to_dict(),
                "latency_ms": round(self.latency_ms, 3), "elapsed_ms": round(self.elapsed_ms, 3),
                "attempts": self.attempts, "token_ids": self.token_ids,
                "request_id": self.request_id}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordAs:
    """Where to record a call in the store's ``responses`` table (one row per eval run, endpoint, item, sample).

    A re-run of the same key replaces the row. Failures are recorded too (``error``), then raised.
    """

    eval_run_id: str
    item_index: int
    sample: int = 0
    cache_key: str | None = None
    endpoint: str | None = None  # default: the resolved endpoint's name


@dataclass(slots=True)
class ClientStats:
    """Counters over a client's life, for reports and tests."""

    requests: int = 0  # calls to chat()
    attempts: int = 0  # HTTP attempts sent (requests + retries)
    retries: int = 0
    failures: int = 0  # calls that ended in an error
    prompt_tokens: int = 0
    completion_tokens: int = 0


# ------------------------------------------------------------------------------------------------- the client


class _Retryable(Exception):
    """One failed attempt that may be retried; carries the error it would end as and the server's wait."""

    def __init__(self, error: ProviderError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class InferenceClient:
    """An async OpenAI-compatible chat client with bounded concurrency, timeouts, retries and typed errors.

    One client serves any number of endpoints; it belongs to the event loop it is first used in. Use it as
    ``async with InferenceClient(concurrency=32) as client: await client.chat("openai:gpt-4o-mini", messages)``.

    - ``concurrency``: the most requests in flight at once (a semaphore, and the connection pool's size);
    - ``timeout``: seconds one attempt may take (``chat(timeout=...)`` overrides it per call);
    - ``retry``: a :class:`tuneport.http.RetryPolicy` (attempts, backoff, the longest ``Retry-After`` honoured);
    - ``store``: where :class:`RecordAs` calls are recorded (the ``responses`` table);
    - ``sleep``: the coroutine that waits between attempts (tests pass one that records the waits).
    """

    def __init__(
        self,
        *,
        concurrency: int = 16,
        timeout: float = DEFAULT_TIMEOUT_S,
        connect_timeout: float = _CONNECT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        store: Store | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry = retry or RetryPolicy()
        self.store = store
        self.stats = ClientStats()
        self._sleep = sleep or asyncio.sleep
        self._headers = {"User-Agent": f"tuneport/{__version__}", "Content-Type": "application/json",
                         **(headers or {})}  # fmt: skip
        self._semaphore: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self._auth: dict[str | None, dict[str, str]] = {}
        self._timeouts: dict[float, Any] = {}
        self._resolved: dict[Any, ChatEndpoint] = {}

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def __aenter__(self) -> InferenceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (idempotent)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self.concurrency, limit_per_host=0, keepalive_timeout=30.0, ttl_dns_cache=300
        )
        self._semaphore = asyncio.Semaphore(self.concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, skip_auto_headers=("Accept-Encoding",),
            timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True,
        )  # fmt: skip
        return self._session

    def _auth_headers(self, endpoint: ChatEndpoint) -> dict[str, str]:
        """``Authorization`` for the endpoint's key variable; read once per client, checked before any send."""
        env = endpoint.api_key_env
        cached = self._auth.get(env)
        if cached is not None:
            return cached
        if env is None:
            headers: dict[str, str] = {}
        else:
            register_secret_env(env)  # whatever the server echoes back, no error keeps this key
            key = os.environ.get(env, "").strip()
            if not key:
                raise AuthenticationError(
                    f"Endpoint {endpoint.name!r} needs an API key in the environment variable {env}, "
                    "which is not set.",
                    hint=f"export {env}=... (tuneport reads the key from there and never stores it).",
                )
            backend = provider_class(endpoint.kind) if endpoint.kind in provider_names() else None
            headers = backend.auth_headers(key) if backend is not None else {"Authorization": f"Bearer {key}"}
        self._auth[env] = headers
        return headers

    def _timeout(self, seconds: float) -> Any:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            import aiohttp

            timeout = aiohttp.ClientTimeout(total=seconds, connect=min(self.connect_timeout, seconds))
            self._timeouts[seconds] = timeout
        return timeout

    # -- the one entry point ----------------------------------------------------------------------------------

    async def chat(
        self,
        endpoint: str | ChatEndpoint | Endpoint,
        messages: Sequence[Mapping[str, Any]],
        *,
        timeout: float | None = None,
        record: RecordAs | None = None,
        **params: Any,
    ) -> ChatResult:
        """Ask ``endpoint`` for a chat completion of ``messages``; ``params`` go into the request body as they are
        (``temperature``, ``max_tokens``, ``seed``, ``stop``, vLLM's ``return_token_ids`` ...).

        Raises :class:`~tuneport.errors.AuthenticationError` (naming the key's variable),
        :class:`~tuneport.errors.RateLimitError`, :class:`~tuneport.errors.APIStatusError` or
        :class:`~tuneport.errors.APIConnectionError`; with ``record``, the outcome is written to the store first.
        """
        if isinstance(endpoint, ChatEndpoint):
            ep = endpoint
        else:  # resolved once per client: a saved name is a database read
            ep = self._resolved.get(endpoint) or self._resolved.setdefault(
                endpoint, resolve_endpoint(endpoint, store=self.store)
            )
        if params.get("stream"):
            raise ValueError("InferenceClient.chat does not stream; leave out stream=True")
        body = {"model": ep.model, "messages": messages, **params}
        self.stats.requests += 1
        started = time.perf_counter()
        try:
            headers = self._auth_headers(ep)
            payload = orjson.dumps(body)
            seconds = self.timeout if timeout is None else timeout
            try:
                result = await self._attempt(ep, payload, headers, seconds)
            except _Retryable as first:
                result = await self._retry(ep, payload, headers, seconds, first)
        except ProviderError as exc:
            self.stats.failures += 1
            if record is not None:
                self._record(ep, record, body, None, started, exc)
            raise
        result.elapsed_ms = (time.perf_counter() - started) * 1000.0
        usage = result.usage
        # A server may report anything as usage (a string, a negative count): only whole counts are summed.
        if type(usage.prompt_tokens) is int and usage.prompt_tokens > 0:
            self.stats.prompt_tokens += usage.prompt_tokens
        if type(usage.completion_tokens) is int and usage.completion_tokens > 0:
            self.stats.completion_tokens += usage.completion_tokens
        if record is not None:
            self._record(ep, record, body, result, started, None)
        return result

    async def _retry(
        self, ep: ChatEndpoint, payload: bytes, headers: dict[str, str], seconds: float, first: _Retryable
    ) -> ChatResult:
        """Attempts 2..N after a retryable failure, driven by tenacity (waits honour the server's Retry-After)."""
        from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

        policy = self.retry
        if policy.max_attempts <= 1:
            raise first.error
        last = [first]
        attempts = [1]

        def wait(state: RetryCallState) -> float:
            return policy.wait(attempts[0], last[0].retry_after)

        async def sleep(seconds_: float) -> None:
            self.stats.retries += 1
            await self._sleep(seconds_)

        async def again() -> ChatResult:
            attempts[0] += 1
            try:
                result = await self._attempt(ep, payload, headers, seconds)
            except _Retryable as exc:
                last[0] = exc
                raise
            result.attempts = attempts[0]
            return result

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts - 1),
            wait=wait,
            retry=retry_if_exception_type(_Retryable),
            sleep=sleep,
            reraise=True,
        )
        # tenacity waits *after* a failed attempt; the first failure happened outside it, so wait once here.
        await sleep(wait(None))  # type: ignore[arg-type]
        try:
            return await retrying(again)
        except _Retryable as exc:
            error = exc.error
            error.message = f"{error.message} (gave up after {attempts[0]} attempts)"
            raise error from None

    async def _attempt(
        self, ep: ChatEndpoint, payload: bytes, headers: dict[str, str], seconds: float
    ) -> ChatResult:
        """One HTTP attempt under the concurrency limit: a ChatResult, a typed error, or :class:`_Retryable`."""
        import aiohttp

        session = self._session or self._open()
        assert self._semaphore is not None
        async with self._semaphore:
            self.stats.attempts += 1
            sent = time.perf_counter()
            try:
                async with session.post(
                    ep.url,
                    data=payload,
                    headers=headers,
                    timeout=self._timeout(seconds),
                    allow_redirects=False,
                ) as response:
                    data = await response.read()
                    latency_ms = (time.perf_counter() - sent) * 1000.0
                    status = response.status
                    if not 200 <= status < 300:
                        raise _status_failure(ep, status, response.headers, data)
                    request_id = response.headers.get("x-request-id")
            except (_Retryable, ProviderError):
                raise
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise _Retryable(
                    APIConnectionError(
                        f"{ep.name}: no answer from {ep.url} within {seconds:g} s ({type(exc).__name__}).",
                        hint="The server is overloaded or the generation is long: raise --timeout, lower the "
                        "concurrency, or check the server.",
                    ),
                    None,
                ) from None
            except aiohttp.InvalidURL as exc:
                raise EndpointError(f"{ep.name}: invalid URL {ep.url}: {exc}") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise _Retryable(
                    APIConnectionError(
                        f"{ep.name}: request to {ep.url} failed: {type(exc).__name__}: {exc}",
                        hint=f"Check that the server at {ep.base_url} is running and reachable "
                        "(`tuneport serve` starts tuneport's own).",
                    ),
                    None,
                ) from None
        return _parse_result(ep, data, latency_ms, request_id)

    # -- recording --------------------------------------------------------------------------------------------

    def _record(
        self,
        ep: ChatEndpoint,
        record: RecordAs,
        body: dict[str, Any],
        result: ChatResult | None,
        started: float,
        error: ProviderError | None,
    ) -> None:
        if self.store is None:
            raise ValueError("chat(record=...) needs a client created with store=...")
        request = {key: value for key, value in body.items() if key != "model"}
        request["model"] = ep.model
        if result is not None:
            self.store.add_response(
                record.eval_run_id, record.endpoint or ep.name, record.item_index, sample=record.sample,
                cache_key=record.cache_key, request=request, response=result.raw,
                latency_ms=round(result.latency_ms, 3), prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
            )  # fmt: skip
        else:
            assert error is not None
            self.store.add_response(
                record.eval_run_id, record.endpoint or ep.name, record.item_index, sample=record.sample,
                cache_key=record.cache_key, request=request,
                latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
                error={"type": type(error).__name__, "message": error.message,
                       "status_code": error.status_code, "code": error.code},
            )  # fmt: skip


# ------------------------------------------------------------------------------------------- parsing responses


def _parse_result(ep: ChatEndpoint, data: bytes, latency_ms: float, request_id: str | None) -> ChatResult:
    try:
        raw = orjson.loads(data)
        choice = raw["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content")
        if text is None:  # a refusal or tool call: keep what there is, never crash on it
            text = message.get("refusal") or ""
        usage = raw.get("usage") or {}
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise APIStatusError(
            f"{ep.name}: {ep.url} answered 2xx with something that is not a chat completion "
            f"({type(exc).__name__}: {data[:200]!r}).",
            hint="Check that the base URL is an OpenAI-compatible API root (usually ending in /v1).",
            request_id=request_id,
        ) from None
    return ChatResult(
        text=text,
        finish_reason=choice.get("finish_reason"),
        usage=Usage(usage.get("prompt_tokens"), usage.get("completion_tokens")),
        latency_ms=latency_ms,
        token_ids=choice.get("token_ids"),
        raw=raw,
        model=raw.get("model"),
        endpoint=ep.name,
        request_id=request_id,
    )


def _status_failure(ep: ChatEndpoint, status: int, headers: Mapping[str, str], data: bytes) -> Exception:
    """The typed error for an error status; wrapped in :class:`_Retryable` when a retry may succeed."""
    fields = retry_rules.error_fields(status, data)
    code = fields.get("code")
    service = "OpenAI" if "api.openai.com" in ep.base_url else f"endpoint {ep.name!r}"
    common = {"status_code": status, "request_id": retry_rules.header(headers, "x-request-id"), "code": code}
    if code in retry_rules.MODEL_CODES or (status == 404 and fields.get("param") == "model"):
        error: ProviderError = APIStatusError(
            f"{service} does not serve the model {ep.model!r}: {fields.get('message')}",
            hint=f"Check the model name (GET {ep.base_url}/models lists what the server serves).",
            **common,
        )
    elif status == 404:
        error = APIStatusError(
            f"{service}: {ep.url} was not found: {fields.get('message')}",
            hint="Check the base URL: it should be the API root (usually ending in /v1).",
            **common,
        )
    else:
        error = retry_rules.status_error(
            status, headers, fields, service=service,
            api_key_env=ep.api_key_env or "(no key variable: save the endpoint with --api-key-env)",
        )  # fmt: skip
    if error.hint is None and 400 <= status < 500:
        error.hint = (
            "The server refused this request as invalid: check the request parameters and the messages "
            "(a prompt longer than the model's context is a common cause)."
        )
    if retry_rules.should_retry(status, code, headers):
        return _Retryable(error, retry_rules.retry_after_seconds(headers))
    return error
