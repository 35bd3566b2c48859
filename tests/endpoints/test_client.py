"""The inference client against a real loopback OpenAI-compatible server (tests/_fake_chat_server.py).

Covers what evaluation and `tuneport chat` rely on: answers parsed, retries on 429/5xx/resets/timeouts honouring
Retry-After, no retries on 400/401/403/404, the concurrency bound, typed errors, and usage + latency recorded.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# The suite runs with --import-mode=importlib: make the fake server next to this file importable.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fake_chat_server import FakeChatServer  # noqa: E402

from tuneport.endpoints.client import (
    ChatEndpoint,
    ChatResult,
    EndpointError,
    InferenceClient,
    RecordAs,
    resolve_endpoint,
)
from tuneport.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    QuotaExceededError,
    RateLimitError,
)
from tuneport.http import RetryPolicy
from tuneport.jobs.store import Store
from tuneport.providers.base import Endpoint

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def _server():
    server = FakeChatServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server: FakeChatServer) -> FakeChatServer:
    _server.reset()
    return _server


class Waits:
    """A sleep that records what the client asked to wait (and waits only ``real`` seconds of it)."""

    def __init__(self, real: bool = False) -> None:
        self.waits: list[float] = []
        self.real = real

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            await asyncio.sleep(seconds)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def one(
    endpoint: Any, *, client_kwargs: dict | None = None, **params: Any
) -> tuple[ChatResult, InferenceClient]:
    async with InferenceClient(**(client_kwargs or {})) as client:
        return await client.chat(endpoint, HELLO, **params), client


def url_ref(server: FakeChatServer, model: str = "tiny-chat") -> str:
    return f"{server.base_url}#{model}"


# ------------------------------------------------------------------------------------------------- answers


def test_chat_returns_text_usage_latency_and_token_ids(server: FakeChatServer) -> None:
    server.latency = 0.02
    result, client = run(one(url_ref(server), temperature=0, return_token_ids=True, seed=7))
    assert result.text == "echo: hello there"
    assert result.finish_reason == "stop"
    assert result.usage.prompt_tokens == 2 and result.usage.completion_tokens == 3
    assert result.usage.total_tokens == 5
    assert result.token_ids == [5, 5, 5]
    assert result.latency_ms >= 20 and result.elapsed_ms >= result.latency_ms
    assert result.model == "tiny-chat" and result.attempts == 1
    assert result.raw["id"] == "chatcmpl-fake"
    sent = server.requests[0]
    assert sent["model"] == "tiny-chat" and sent["temperature"] == 0 and sent["seed"] == 7
    assert sent["messages"] == HELLO
    assert "Authorization" not in server.headers[0]  # a URL endpoint has no key
    assert client.stats.requests == 1 and client.stats.attempts == 1 and client.stats.completion_tokens == 3


def test_max_tokens_length_finish(server: FakeChatServer) -> None:
    result, _ = run(one(url_ref(server), max_tokens=2))
    assert result.text == "echo: hello" and result.finish_reason == "length"


def test_key_is_sent_from_the_named_env_var(server: FakeChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test-123")
    ep = ChatEndpoint("fake", server.base_url, "m", api_key_env="FAKE_KEY")
    run(one(ep))
    assert server.headers[0]["Authorization"] == "Bearer sk-test-123"


def test_provider_endpoint_is_accepted(server: FakeChatServer) -> None:
    ep = Endpoint(base_url=server.base_url + "/", model="ft-model", kind="local", job_id="ftjob-1")
    result, _ = run(one(ep))
    assert result.endpoint == f"{server.base_url}#ft-model" and server.requests[0]["model"] == "ft-model"
    assert ChatEndpoint.of(ep).to_endpoint() == Endpoint(
        server.base_url, "ft-model", None, "local", "ftjob-1"
    )


# ------------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("fault", "expected_wait"),
    [("429:2", 2.0), ("429ms:250", 0.25), ("503", None), ("500", None), ("reset", None)],
)
def test_retryable_failures_are_retried(
    server: FakeChatServer, fault: str, expected_wait: float | None
) -> None:
    server.faults.extend([fault, fault])
    waits = Waits()
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.1, jitter=0.0)
    result, client = run(one(url_ref(server), client_kwargs={"retry": retry, "sleep": waits}))
    assert result.text == "echo: hello there" and result.attempts == 3
    assert len(server.requests) == 3 and client.stats.retries == 2 and client.stats.attempts == 3
    if expected_wait is not None:
        assert waits.waits == [expected_wait, expected_wait]  # exactly what the server asked
    else:
        assert waits.waits == [0.1, 0.2]  # exponential backoff


def test_retry_after_is_really_waited(server: FakeChatServer) -> None:
    server.faults.append("429:1")
    started = time.perf_counter()
    result, _ = run(one(url_ref(server), client_kwargs={"retry": RetryPolicy(jitter=0.0)}))
    assert result.attempts == 2 and time.perf_counter() - started >= 1.0


def test_retry_after_is_capped(server: FakeChatServer) -> None:
    server.faults.append("429:3600")
    waits = Waits()
    run(one(url_ref(server), client_kwargs={"retry": RetryPolicy(max_retry_after=5.0), "sleep": waits}))
    assert waits.waits == [5.0]


def test_timeouts_are_retried_then_typed(server: FakeChatServer) -> None:
    server.faults.extend(["hang:1", "hang:1"])
    waits = Waits()
    kwargs = {"retry": RetryPolicy(max_attempts=2, jitter=0.0), "sleep": waits, "timeout": 0.2}
    with pytest.raises(APIConnectionError, match=r"within 0\.2 s.*gave up after 2 attempts"):
        run(one(url_ref(server), client_kwargs=kwargs))
    assert len(server.requests) == 2 and len(waits.waits) == 1


def test_rate_limit_exhausted_is_a_rate_limit_error(server: FakeChatServer) -> None:
    server.faults.extend(["429ms:1"] * 3)
    with pytest.raises(RateLimitError) as info:
        run(one(url_ref(server), client_kwargs={"retry": RetryPolicy(max_attempts=3), "sleep": Waits()}))
    assert info.value.status_code == 429 and info.value.request_id == "req_fake"
    assert "3 attempts" in str(info.value) and len(server.requests) == 3


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        ("400", APIStatusError, "maximum context length"),
        ("401", AuthenticationError, "FAKE_KEY"),
        ("403", APIStatusError, "denied"),
        ("404", APIStatusError, "not found"),
        ("404model", APIStatusError, "does not serve the model 'm'"),
        ("quota", QuotaExceededError, "quota"),
    ],
)
def test_permanent_errors_are_never_retried(
    server: FakeChatServer, monkeypatch: pytest.MonkeyPatch, fault: str, error: type, text: str
) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test-123")
    server.faults.extend([fault, fault])
    waits = Waits()
    ep = ChatEndpoint("fake", server.base_url, "m", api_key_env="FAKE_KEY")
    with pytest.raises(error, match=text) as info:
        run(one(ep, client_kwargs={"sleep": waits}))
    assert len(server.requests) == 1 and waits.waits == []
    assert info.value.hint
    assert "sk-test-123" not in str(info.value)


def test_missing_key_fails_before_sending(server: FakeChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    ep = ChatEndpoint("hosted", server.base_url, "m", api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(AuthenticationError, match="NO_SUCH_KEY_VAR") as info:
        run(one(ep))
    assert "export NO_SUCH_KEY_VAR" in info.value.hint and server.requests == []


def test_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kwargs = {"retry": RetryPolicy(max_attempts=2), "sleep": Waits()}
    with pytest.raises(APIConnectionError, match="is running and reachable|failed"):
        run(one(f"http://127.0.0.1:{port}/v1#m", client_kwargs=kwargs))


def test_non_chat_body_is_a_typed_error(server: FakeChatServer) -> None:
    server.faults.append("garbage")
    with pytest.raises(APIStatusError, match="not a chat completion"):
        run(one(url_ref(server)))


# ------------------------------------------------------------------------------------------------- concurrency


def test_concurrency_bound_is_respected(server: FakeChatServer) -> None:
    server.latency = 0.05

    async def many() -> list[ChatResult]:
        async with InferenceClient(concurrency=4) as client:
            messages = [[{"role": "user", "content": f"q{i}"}] for i in range(24)]
            return await asyncio.gather(*(client.chat(url_ref(server), m) for m in messages))

    started = time.perf_counter()
    results = run(many())
    elapsed = time.perf_counter() - started
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(24)]
    assert server.max_in_flight == 4  # the bound is reached, never exceeded
    assert elapsed >= 6 * 0.05  # 24 requests, 4 at a time, 50 ms each


# ------------------------------------------------------------------------------------------------- recording


def test_usage_and_latency_are_recorded(server: FakeChatServer) -> None:
    server.latency = 0.01
    with Store() as store:
        run_id = store.create_eval_run(name="t")["id"]

        async def go() -> None:
            async with InferenceClient(store=store, retry=RetryPolicy(max_attempts=1)) as client:
                await client.chat(url_ref(server), HELLO, record=RecordAs(run_id, 0), temperature=0)
                server.faults.append("400")
                with pytest.raises(APIStatusError):
                    await client.chat(url_ref(server), HELLO, record=RecordAs(run_id, 1, endpoint="base"))

        run(go())
        ok, failed = sorted(store.list_responses(run_id), key=lambda r: r["item_index"])
    assert ok["endpoint"] == url_ref(server) and ok["prompt_tokens"] == 2 and ok["completion_tokens"] == 3
    assert ok["latency_ms"] >= 10 and ok["error"] is None
    assert ok["request"]["messages"] == HELLO and ok["request"]["temperature"] == 0
    assert ok["response"]["choices"][0]["message"]["content"] == "echo: hello there"
    assert failed["endpoint"] == "base" and failed["error"]["type"] == "APIStatusError"
    assert failed["error"]["status_code"] == 400 and failed["prompt_tokens"] is None


# ------------------------------------------------------------------------------------------------- resolution


def test_resolve_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    ep = resolve_endpoint("openai:gpt-4o-mini")
    assert (ep.base_url, ep.model, ep.api_key_env) == (
        "https://api.openai.com/v1",
        "gpt-4o-mini",
        "OPENAI_API_KEY",
    )
    ep = resolve_endpoint("http://127.0.0.1:9/v1/#ft:tiny-chat:x")
    assert (ep.base_url, ep.model, ep.api_key_env) == ("http://127.0.0.1:9/v1", "ft:tiny-chat:x", None)
    with Store() as store:
        store.add_endpoint("mine", base_url="http://h:1/v1/", model="m", api_key_env="MY_KEY", kind="local")
        ep = resolve_endpoint("mine", store=store)
        assert (ep.name, ep.base_url, ep.model, ep.api_key_env, ep.kind) == (
            "mine",
            "http://h:1/v1",
            "m",
            "MY_KEY",
            "local",
        )
        store.add_endpoint("openai:gpt-4o-mini", base_url="http://proxy/v1", model="gpt-4o-mini")
        assert (
            resolve_endpoint("openai:gpt-4o-mini", store=store).base_url == "http://proxy/v1"
        )  # a name wins
    assert resolve_endpoint("mine").model == "m"  # the user's store by default


@pytest.mark.parametrize(
    ("ref", "text"),
    [
        ("nope", "No endpoint named 'nope'"),
        ("http://127.0.0.1:8000/v1", "names no model"),
        ("openai:", "names no model"),
        ("ftp://x/v1#m", "not an http"),
        ("http://h/v1/chat/completions#m", "not a base URL"),
        ("  ", "empty"),
    ],
)
def test_resolve_errors(ref: str, text: str) -> None:
    with pytest.raises(EndpointError, match=text) as info:
        resolve_endpoint(ref)
    assert info.value.hint


def test_a_saved_name_is_resolved_once_per_client(server: FakeChatServer) -> None:
    with Store() as store:
        store.add_endpoint("fake", base_url=server.base_url, model="m1")

        async def go() -> list[str]:
            async with InferenceClient(store=store) as client:
                first = await client.chat("fake", HELLO)
                store.add_endpoint("fake", base_url=server.base_url, model="m2", replace=True)
                second = await client.chat("fake", HELLO)
            async with InferenceClient(store=store) as fresh:
                third = await fresh.chat("fake", HELLO)
            return [first.model, second.model, third.model]

        assert run(go()) == ["m1", "m1", "m2"]
