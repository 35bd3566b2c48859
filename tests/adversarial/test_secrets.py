"""Issue 13 item 3: an API key that a server echoes back is never printed, stored, logged or reported.

The server here is the hostile kind: every answer is an OpenAI-shaped error whose message, code and
``x-request-id`` repeat the ``Authorization`` header it received. Each backend's key variable is tried, and
the check reads everything tuneport wrote (stdout, stderr, logs, every byte under TUNEPORT_HOME, the report files).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_TESTS), str(_TESTS / "cli")]

from _cli import tp  # noqa: E402
from _eval_support import write_dataset  # noqa: E402

from tuneport import errors  # noqa: E402

CANARY = "sk-canary-9d41c07be25a4f3c8e6b1a0d7f2c5e93"
#: a key with no recognisable shape: only knowing the variable's value can catch it
PLAIN_CANARY = "c4n4ry7f3e9b2a1d6c8e0f5a7b9d1c3e"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers every request with ``status`` and an error that repeats the Authorization header."""

    status = 401

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        auth = self.headers.get("Authorization", "") or f"api-key {self.headers.get('api-key', '')}"
        body = json.dumps({"error": {
            "message": f"Incorrect API key provided. We received the header 'Authorization: {auth}'.",
            "type": "invalid_request_error", "param": None, "code": f"invalid_api_key {auth}",
        }}).encode()  # fmt: skip
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-request-id", f"req_echo {auth}")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def echo_server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    httpd.status = 401  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _base_url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def _bytes_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _assert_nowhere(secret: str, *texts: str | bytes) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        assert secret.encode() not in data
        assert secret[8:-4].encode() not in data, "a part of the key leaked"


@pytest.mark.parametrize("status", [401, 400])
def test_eval_and_report_never_keep_an_echoed_openai_key(
    echo_server, status, tmp_path, capsys, monkeypatch, caplog, _tuneport_home: Path
) -> None:
    echo_server.status = status
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("OPENAI_BASE_URL", _base_url(echo_server))
    caplog.set_level(logging.DEBUG)
    data = write_dataset(tmp_path / "heldout.jsonl", 6)

    code, out, err = tp(capsys, "eval", str(data), "-e", "openai:gpt-4o-mini", "--retries", "0", "-j", "2",
                        "--grader", "json_valid", "--json")  # fmt: skip
    assert code == 1, err  # every item failed: an incomplete run
    run = json.loads(out)
    assert run["summary"]["openai:gpt-4o-mini"]["errors"] == 6
    code2, out2, err2 = tp(capsys, "eval", "--resume", run["id"], "--retries", "0")
    assert code2 == 1

    reports = tmp_path / "reports"
    code3, out3, err3 = tp(capsys, "report", run["id"], "-o", str(reports))
    assert code3 == 0, err3
    html, report_json = (reports / "report.html").read_text(), (reports / "report.json").read_text()
    assert "Incorrect API key provided" in report_json and "Bearer ***" in report_json  # only the key is masked
    _assert_nowhere(CANARY, out, err, out2, err2, out3, err3, caplog.text, html, report_json,
                    _bytes_under(_tuneport_home))  # fmt: skip


@pytest.mark.parametrize("variable", ["OPENAI_API_KEY", "TOGETHER_API_KEY", "MY_GATEWAY_KEY"])
def test_chat_masks_a_shapeless_key_of_any_backends_variable(
    echo_server, variable, capsys, monkeypatch
) -> None:
    """The key has no sk-/Bearer shape once the server strips the scheme: only its variable's value finds it."""
    monkeypatch.setenv(variable, PLAIN_CANARY)
    code, _, err = tp(capsys, "endpoints", "add", "gw", "--base-url", _base_url(echo_server), "--model", "m",
                      "--api-key-env", variable)  # fmt: skip
    assert code == 0, err
    code, out, err = tp(capsys, "chat", "gw", "-m", "hello")
    assert code == errors.AuthenticationError.exit_code
    assert "Incorrect API key provided" in err and variable in err
    _assert_nowhere(PLAIN_CANARY, out, err)


def test_jobs_path_masks_the_echoed_request_id(
    echo_server, capsys, monkeypatch, caplog, _tuneport_home: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("OPENAI_BASE_URL", _base_url(echo_server))
    caplog.set_level(logging.DEBUG)
    code, out, err = tp(capsys, "jobs", "list", "--backend", "openai")
    assert code == errors.AuthenticationError.exit_code
    assert "request id req_echo" in err and "OPENAI_API_KEY" in err
    code_json, out_json, _ = tp(capsys, "jobs", "list", "--backend", "openai", "--json")
    assert code_json == code and json.loads(out_json)["error"]["type"] == "AuthenticationError"
    _assert_nowhere(CANARY, out, err, out_json, caplog.text, _bytes_under(_tuneport_home))


@pytest.mark.parametrize("variable", sorted(errors.secret_envs()))
def test_every_error_field_is_redacted_at_construction(variable, monkeypatch) -> None:
    monkeypatch.setenv(variable, PLAIN_CANARY)
    exc = errors.RateLimitError(f"slow down {PLAIN_CANARY}", hint=f"export {variable}={PLAIN_CANARY}",
                                request_id=f"req {PLAIN_CANARY}", code=PLAIN_CANARY, status_code=429)  # fmt: skip
    exc.message += f" (again: {PLAIN_CANARY})"  # later edits are masked as well
    _assert_nowhere(PLAIN_CANARY, str(exc), repr(exc), repr(exc.args), exc.message, exc.hint or "",
                    exc.request_id or "", exc.code or "")  # fmt: skip
    assert "***" in str(exc) and f"export {variable}=***" in (exc.hint or "")


def test_a_backend_declares_its_key_variable_by_defining_itself(monkeypatch) -> None:
    from tuneport.providers.base import Provider

    monkeypatch.setattr(errors, "_SECRET_ENVS", set(errors._SECRET_ENVS))  # undone after the test
    monkeypatch.setenv("ACME_TEST_API_KEY", PLAIN_CANARY)
    assert PLAIN_CANARY in str(errors.APIStatusError(f"echo {PLAIN_CANARY}"))

    class AcmeProvider(Provider):  # a plugin backend: declaring the variable is all it takes
        name = "acme-test"
        secret_env = ("ACME_TEST_API_KEY",)

    assert "ACME_TEST_API_KEY" in errors.secret_envs()
    assert str(errors.APIStatusError(f"echo {PLAIN_CANARY}")) == "echo ***"


@pytest.mark.parametrize("variable", ["TOGETHER_API_KEY", "AZURE_OPENAI_API_KEY"])
def test_hosted_backends_never_keep_an_echoed_key(
    echo_server, variable, capsys, monkeypatch, caplog, tmp_path, _tuneport_home: Path
) -> None:
    """Together's bearer token and Azure's ``api-key`` header, echoed back by a hostile server, through the
    provider paths (jobs list, import, a training job's upload): masked in every output, log and stored byte."""
    monkeypatch.setenv(variable, PLAIN_CANARY)
    if variable == "TOGETHER_API_KEY":
        monkeypatch.setenv("TOGETHER_BASE_URL", _base_url(echo_server))
        backend, model = "together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    else:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", _base_url(echo_server).removesuffix("/v1"))
        backend, model = "azure", "gpt-4.1-mini-2025-04-14"
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    code, out, err = tp(capsys, "jobs", "list", "--backend", backend)
    assert code == errors.AuthenticationError.exit_code and variable in err
    outputs += [out, err]
    code, out, err = tp(capsys, "import", backend, "ft-canary", "-o", str(tmp_path / "imported"))
    assert code == errors.AuthenticationError.exit_code
    outputs += [out, err]
    data = write_dataset(tmp_path / "train.jsonl", 12)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {model}\ntraining_file: {data.name}\nbackend: {backend}\n")
    code, out, err = tp(capsys, "train", str(spec), "--yes", "--json")
    assert code != 0
    outputs += [out, err]
    assert any("Incorrect API key provided" in text for text in outputs)  # the server's message is shown...
    _assert_nowhere(PLAIN_CANARY, *outputs, caplog.text, _bytes_under(_tuneport_home))  # ...never the key
