"""One classification of retryable failures: the rules themselves, and both HTTP clients obeying them alike.

The same scripted answers go to the providers' httpx client (through ``httpx.MockTransport``) and to the aiohttp
inference client (through a loopback server); both must send as often, wait as long and end in the same error.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tuneport import retry_rules
from tuneport.endpoints.client import ChatEndpoint, InferenceClient
from tuneport.errors import ProviderError
from tuneport.http import HTTPClient
from tuneport.retry_rules import RetryPolicy

# (status, headers, body): an answer either client may get
Answer = tuple[int, dict[str, str], bytes]


def _err(message: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": "x", "code": code, "param": param}}).encode()


CASES: dict[str, Answer] = {
    "429 retry-after": (429, {"Retry-After": "2"}, _err("slow down", "rate_limit_exceeded")),
    "429 retry-after-ms": (429, {"retry-after-ms": "1500"}, _err("slow down")),
    "503": (503, {}, _err("overloaded")),
    "500 non-json": (500, {}, b"<html>oops</html>"),
    "408": (408, {}, b""),
    "409": (409, {}, _err("conflict")),
    "503 x-should-retry false": (503, {"x-should-retry": "false"}, _err("overloaded")),
    "422 x-should-retry true": (422, {"x-should-retry": "true"}, _err("unprocessable")),
    "422": (422, {}, _err("unprocessable")),
    "quota with x-should-retry true": (429, {"x-should-retry": "true"}, _err("no quota", "insufficient_quota")),
    "400 forced": (400, {"x-should-retry": "true"}, _err("bad request")),
    "401": (401, {}, _err("bad key", "invalid_api_key")),
    "403": (403, {}, _err("denied")),
    "404": (404, {}, _err("no such thing")),
}


def test_the_rules() -> None:
    retried = {name for name, (status, headers, body) in CASES.items()
               if retry_rules.should_retry(status, retry_rules.error_fields(status, body).get("code"), headers)}  # fmt: skip
    assert retried == {"429 retry-after", "429 retry-after-ms", "503", "500 non-json", "408", "409",
                       "422 x-should-retry true"}  # fmt: skip
    assert [retry_rules.is_ambiguous(s) for s in (500, 409, 429, 400)] == [True, True, False, False]


def test_headers_are_read_from_any_mapping_ignoring_case() -> None:
    assert retry_rules.retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_rules.retry_after_seconds({"Retry-After-Ms": "250", "retry-after": "9"}) == 0.25
    assert retry_rules.retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_rules.retry_after_seconds({}) is None
    assert retry_rules.header({"X-Request-Id": "req_1"}, "x-request-id") == "req_1"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (_err("m", "c", "p"), {"message": "m", "type": "x", "code": "c", "param": "p"}),
        (b'{"error": "plain words"}', {"message": "plain words"}),
        (b'{"error": {"message": null}}', {"message": "Bad Gateway", "type": None, "code": None, "param": None}),
        (b"", {"message": "Bad Gateway"}),
        (b"[1, 2]", {"message": "Bad Gateway"}),
        (b"\xff\xfe not utf-8", {"message": "\ufffd\ufffd not utf-8"}),
    ],
)
def test_error_fields_tolerate_any_body(body: bytes, fields: dict) -> None:
    assert retry_rules.error_fields(502, body) == fields


def test_policy_wait_honours_the_server_then_backs_off() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.0, max_retry_after=10.0)
    assert [policy.wait(1, 2.0), policy.wait(1, 3600.0), policy.wait(1, None), policy.wait(5, None)] == [
        2.0, 10.0, 0.5, 4.0,
    ]  # fmt: skip


# ------------------------------------------------------------------------------------- both clients alike


class _Scripted(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.sent += 1  # type: ignore[attr-defined]
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in {"x-request-id": "req_same", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def scripted() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _with_httpx(answer: Answer) -> tuple[int, list[float], ProviderError]:
    status, headers, body = answer
    sent, waits = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, headers={"x-request-id": "req_same", **headers}, content=body)

    retry = RetryPolicy(max_attempts=3, jitter=0.0, sleep=waits.append)
    with HTTPClient("http://h/v1", transport=httpx.MockTransport(handler), retry=retry, service="S",
                    api_key_env="K") as client, pytest.raises(ProviderError) as info:  # fmt: skip
        client.post_json("chat/completions", json={})
    return len(sent), waits, info.value


def _with_aiohttp(answer: Answer, httpd: ThreadingHTTPServer) -> tuple[int, list[float], ProviderError]:
    httpd.answer, httpd.sent = answer, 0  # type: ignore[attr-defined]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def ask() -> None:
        endpoint = ChatEndpoint("e", f"http://127.0.0.1:{httpd.server_address[1]}/v1", "m")
        async with InferenceClient(retry=RetryPolicy(max_attempts=3, jitter=0.0), sleep=sleep) as client:
            await client.chat(endpoint, [{"role": "user", "content": "hi"}])

    with pytest.raises(ProviderError) as info:
        asyncio.run(ask())
    return httpd.sent, waits, info.value  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(CASES))
def test_both_clients_retry_wait_and_fail_alike(case: str, scripted: ThreadingHTTPServer) -> None:
    sync_sent, sync_waits, sync_error = _with_httpx(CASES[case])
    async_sent, async_waits, async_error = _with_aiohttp(CASES[case], scripted)
    assert sync_sent == async_sent and sync_sent in (1, 3)
    assert sync_waits == async_waits
    assert (sync_error.status_code, sync_error.code, sync_error.request_id) == (
        async_error.status_code, async_error.code, async_error.request_id,
    )  # fmt: skip
    if CASES[case][0] != 404:  # the inference client names a missing URL or model in its own words
        assert type(sync_error) is type(async_error)
