"""The retry rules of the HTTP client, fault by fault (httpx.MockTransport, no real network, no real sleeping)."""

from __future__ import annotations

import logging

import httpx
import pytest

from tuneport.errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    QuotaExceededError,
    RateLimitError,
    TrainingNotAvailableError,
)
from tuneport.http import HTTPClient, ModelNotAvailableError, RetryPolicy, retry_after_seconds

SECRET = "sk-canary-http-0123456789abcdef0123"


def error_body(
    message: str, code: str | None = None, type_: str = "invalid_request_error", param=None
) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class Script:
    """A transport that answers each request with the next scripted item (a response, or an exception to raise)."""

    def __init__(self, *items):
        self.items = list(items)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, type) and issubclass(item, Exception):
            raise item("scripted", request=request)
        if callable(item) and not isinstance(item, httpx.Response):
            return item(request)
        return item


def client(script: Script, waits: list[float], **policy) -> HTTPClient:
    retry = RetryPolicy(
        **{
            "max_attempts": 4,
            "initial_backoff": 0.5,
            "max_backoff": 4.0,
            "jitter": 0.0,
            "sleep": waits.append,
            **policy,
        }  # fmt: skip
    )
    return HTTPClient(
        "https://api.example.test/v1",
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=httpx.MockTransport(script),
        retry=retry,
        secrets=[SECRET],
    )


def ok(body=None, **headers) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {"ok": True}, headers=headers)


def status(code: int, body=None, **headers) -> httpx.Response:
    headers = {"x-request-id": f"req_{code}", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return httpx.Response(
        code, json=body if body is not None else error_body(f"status {code}"), headers=headers
    )


def test_429_waits_exactly_as_long_as_retry_after_says():
    waits: list[float] = []
    script = Script(status(429, retry_after="3"), status(429, retry_after_ms="250"), ok())
    assert client(script, waits).get_json("things") == {"ok": True}
    assert waits == [3.0, 0.25]
    assert len(script.calls) == 3


def test_retry_after_as_http_date():
    response = httpx.Response(429, headers={"retry-after": "Wed, 21 Oct 2026 07:28:10 GMT"})
    wait = retry_after_seconds(response, now=1792567690.0 - 5)  # five seconds before that date
    assert wait == pytest.approx(5.0)


def test_server_requested_wait_is_capped():
    waits: list[float] = []
    script = Script(status(429, retry_after="3600"), ok())
    client(script, waits, max_retry_after=20.0).get_json("x")
    assert waits == [20.0]


@pytest.mark.parametrize("code", [500, 502, 503, 408, 409])
def test_transient_statuses_are_retried_with_exponential_backoff(code):
    waits: list[float] = []
    script = Script(status(code), status(code), status(code), ok())
    client(script, waits).get_json("x")
    assert waits == [0.5, 1.0, 2.0]


def test_backoff_is_capped_and_jittered_down_only():
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=4.0, jitter=0.5)
    for attempt in range(1, 8):
        wait = policy.backoff(attempt)
        ceiling = min(1.0 * 2 ** (attempt - 1), 4.0)
        assert ceiling * 0.5 <= wait <= ceiling


def test_gives_up_after_max_attempts_with_typed_error_and_request_id():
    waits: list[float] = []
    script = Script(status(503))
    with pytest.raises(APIStatusError) as info:
        client(script, waits).get_json("x")
    assert len(script.calls) == 4
    assert info.value.status_code == 503
    assert info.value.request_id == "req_503"
    assert "req_503" in str(info.value) and "4 attempts" in str(info.value)


def test_rate_limit_after_retries_is_rate_limit_error():
    waits: list[float] = []
    with pytest.raises(RateLimitError) as info:
        client(Script(status(429, error_body("slow down", "rate_limit_exceeded"))), waits).get_json("x")
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.status_code == 429


def test_insufficient_quota_is_never_retried():
    waits: list[float] = []
    body = error_body("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    script = Script(status(429, body, retry_after="1", x_should_retry="true"))
    with pytest.raises(QuotaExceededError) as info:
        client(script, waits).get_json("x")
    assert len(script.calls) == 1 and waits == []
    assert info.value.code == "insufficient_quota"
    assert info.value.hint and "billing" in info.value.hint


@pytest.mark.parametrize("code", [400, 401, 403, 404])
def test_client_errors_are_never_retried_even_if_the_server_says_so(code):
    waits: list[float] = []
    script = Script(status(code, x_should_retry="true"))
    with pytest.raises(APIStatusError if code in (400, 403, 404) else AuthenticationError):
        client(script, waits).get_json("x")
    assert len(script.calls) == 1


def test_x_should_retry_false_forbids_a_retry_of_a_503():
    waits: list[float] = []
    script = Script(status(503, x_should_retry="false"), ok())
    with pytest.raises(APIStatusError):
        client(script, waits).get_json("x")
    assert len(script.calls) == 1


def test_x_should_retry_true_forces_a_retry_of_an_otherwise_final_status():
    waits: list[float] = []
    script = Script(status(422, x_should_retry="true"), ok())
    assert client(script, waits).get_json("x") == {"ok": True}
    assert len(script.calls) == 2


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
def test_connection_errors_and_timeouts_are_retried_for_idempotent_requests(exc):
    waits: list[float] = []
    script = Script(exc, ok())
    assert client(script, waits).get_json("x") == {"ok": True}
    assert len(script.calls) == 2


def test_connection_errors_end_as_api_connection_error():
    waits: list[float] = []
    with pytest.raises(APIConnectionError) as info:
        client(Script(httpx.ConnectError), waits).get_json("x")
    assert "4 attempt" in str(info.value)


def test_ambiguous_failure_is_not_resent_for_non_idempotent_request_without_a_check():
    waits: list[float] = []
    script = Script(httpx.ReadTimeout, ok())
    with pytest.raises(APIConnectionError):
        client(script, waits).post_json("create", json={}, idempotent=False)
    assert len(script.calls) == 1


def test_connect_error_is_resent_for_non_idempotent_request_since_nothing_was_sent():
    waits: list[float] = []
    script = Script(httpx.ConnectError, ok())
    assert client(script, waits).post_json("create", json={}, idempotent=False) == {"ok": True}
    assert len(script.calls) == 2


def test_before_resend_result_replaces_the_resend():
    waits: list[float] = []
    script = Script(httpx.ReadTimeout, ok({"second": True}))
    seen = []

    def check(failure):
        seen.append(failure)
        return {"found": True}

    result = client(script, waits).post_json("create", json={}, idempotent=False, before_resend=check)
    assert result == {"found": True}
    assert len(script.calls) == 1
    assert seen[0].ambiguous and isinstance(seen[0].exception, httpx.ReadTimeout)


def test_before_resend_runs_before_every_resend_once_ambiguity_happened():
    waits: list[float] = []
    script = Script(status(502), status(429), ok({"created": 1}))
    checks = []
    result = client(script, waits).post_json(
        "create", json={}, idempotent=False, before_resend=lambda f: checks.append(f.status_code)
    )
    assert result == {"created": 1}
    assert checks == [502, 429]  # the 502 may have created it: look again before the third send too


def test_no_check_when_nothing_was_ambiguous():
    waits: list[float] = []
    script = Script(status(429), httpx.ConnectError, ok({"created": 1}))
    checks = []
    client(script, waits).post_json("create", json={}, idempotent=False, before_resend=checks.append)
    assert checks == []


def test_failures_are_logged_with_request_id_and_never_the_key(caplog):
    waits: list[float] = []
    caplog.set_level(logging.DEBUG)
    script = Script(status(500, x_request_id="req_abc123"), status(401, error_body(f"bad key {SECRET}")))
    with pytest.raises(AuthenticationError) as info:
        client(script, waits).get_json("x")
    assert "req_abc123" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in str(info.value) and SECRET not in repr(info.value.args)
    assert "OPENAI_API_KEY" in str(info.value)


def test_403_training_not_available_is_typed_with_the_exact_hint():
    waits: list[float] = []
    body = error_body("Fine-tuning is not available.", "training_not_available")
    with pytest.raises(TrainingNotAvailableError) as info:
        client(Script(status(403, body)), waits).post_json("fine_tuning/jobs", json={})
    assert info.value.status_code == 403
    assert info.value.code == "training_not_available"
    assert info.value.hint == (
        "OpenAI no longer accepts new fine-tuning jobs for this organization: run the same spec with --backend local."
    )


def test_model_not_available_is_typed():
    waits: list[float] = []
    body = error_body("Model gpt-4 is not available for fine-tuning", "model_not_available", param="model")
    with pytest.raises(ModelNotAvailableError) as info:
        client(Script(status(400, body)), waits).post_json("fine_tuning/jobs", json={})
    assert "gpt-4" in str(info.value) and info.value.hint


def test_non_json_error_body_still_gives_a_readable_error():
    waits: list[float] = []
    script = Script(httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(APIStatusError) as info:
        client(script, waits, max_attempts=1).get_json("x")
    assert "Bad gateway" in str(info.value)


def test_files_callable_gives_each_attempt_a_fresh_stream():
    waits: list[float] = []
    bodies = []

    def capture(request):
        bodies.append(request.read())
        return status(500) if len(bodies) == 1 else ok()

    opened = []

    def files():
        import io

        stream = io.BytesIO(b"payload-bytes")
        opened.append(stream)
        return {"file": ("a.jsonl", stream, "text/jsonl")}

    client(Script(capture), waits).request("POST", "files", files=files, data={"purpose": "fine-tune"})
    assert len(opened) == 2 and all(b"payload-bytes" in body for body in bodies)
