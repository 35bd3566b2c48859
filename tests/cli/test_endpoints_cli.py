"""``tuneport endpoints add|list|rm`` and ``tuneport chat`` end to end, the chat against a loopback fake server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # the fake server lives in tests/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cli import tp  # noqa: E402
from _fake_chat_server import FakeChatServer  # noqa: E402


@pytest.fixture(scope="module")
def _server():
    server = FakeChatServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(_server: FakeChatServer) -> FakeChatServer:
    _server.reset()
    return _server


def test_add_list_rm(capsys, monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "x")
    code, out, err = tp(capsys, "endpoints", "add", "local", "--base-url", "http://127.0.0.1:8000/v1/",
                        "--model", "tiny-chat")  # fmt: skip
    assert code == 0, err
    assert "saved endpoint local" in out
    code, out, err = tp(capsys, "endpoints", "add", "hosted", "--base-url", "https://api.openai.com/v1",
                        "--model", "gpt-4o-mini", "--api-key-env", "MY_KEY", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["api_key_env"] == "MY_KEY" and json.loads(out)["kind"] == "openai"
    code, out, _ = tp(capsys, "endpoints", "list", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["hosted", "local"]
    assert rows[1]["base_url"] == "http://127.0.0.1:8000/v1" and rows[0]["key_set"] is True
    code, out, _ = tp(capsys, "endpoints", "list")
    assert code == 0 and "hosted" in out and "MY_KEY (set)" in out and "tiny-chat" in out
    code, out, err = tp(capsys, "endpoints", "add", "local", "--base-url", "http://x/v1", "--model", "m")
    assert code == 5 and "already exists" in err and "endpoints rm" in err
    code, out, _ = tp(capsys, "endpoints", "rm", "local")
    assert code == 0 and "removed endpoint local" in out
    code, out, err = tp(capsys, "endpoints", "rm", "local")
    assert code == 2 and "No endpoint named 'local'" in err and "hint:" in err
    code, out, _ = tp(capsys, "endpoints", "list", "--json")
    assert [r["name"] for r in json.loads(out)] == ["hosted"]


def test_secret_is_refused_with_a_hint(capsys) -> None:
    key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    code, out, err = tp(capsys, "endpoints", "add", "h", "--base-url", "https://api.openai.com/v1",
                        "--model", "gpt-4o-mini", "--api-key", key)  # fmt: skip
    assert code == 2 and "never stores" in err and "--api-key-env" in err and key not in err
    code, out, err = tp(capsys, "endpoints", "add", "h", "--base-url", "https://api.openai.com/v1",
                        "--model", "gpt-4o-mini", "--api-key-env", key)  # fmt: skip
    assert code == 5 and "Refusing to store" in err and "environment variable" in err and key not in err
    code, out, _ = tp(capsys, "endpoints", "list", "--json")
    assert json.loads(out) == []


def test_bad_url_is_a_clear_error(capsys) -> None:
    code, out, _ = tp(
        capsys, "endpoints", "add", "e", "--base-url", "localhost:8000", "--model", "m", "--json"
    )
    error = json.loads(out)["error"]
    assert (
        code == 2
        and "not an http(s) base URL" in error["message"]
        and "http://127.0.0.1:8000/v1" in error["hint"]
    )


def test_chat_one_shot_and_json(capsys, server: FakeChatServer) -> None:
    code, _, err = tp(
        capsys, "endpoints", "add", "fake", "--base-url", server.base_url, "--model", "tiny-chat"
    )
    assert code == 0, err
    code, out, err = tp(capsys, "chat", "fake", "--message", "hi there", "--system", "be brief",
                        "--temperature", "0", "--max-tokens", "16")  # fmt: skip
    assert code == 0, err
    assert out == "echo: hi there\n"
    sent = server.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
    ]
    assert sent["temperature"] == 0 and sent["max_tokens"] == 16 and sent["model"] == "tiny-chat"
    code, out, err = tp(capsys, "chat", f"{server.base_url}#other", "-m", "hello", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert (
        payload["text"] == "echo: hello"
        and payload["model"] == "other"
        and payload["finish_reason"] == "stop"
    )
    assert payload["usage"] == {"prompt_tokens": 1, "completion_tokens": 2} and payload["latency_ms"] > 0


def test_chat_conversation_from_stdin(capsys, monkeypatch, server: FakeChatServer) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("first\n\nsecond\n/exit\nnever sent\n"))
    code, out, err = tp(capsys, "chat", f"{server.base_url}#m", "--json")
    assert code == 0, err
    turns = [json.loads(line) for line in out.splitlines()]
    assert [t["text"] for t in turns] == ["echo: first", "echo: second"]
    assert server.requests[-1]["messages"] == [  # the conversation so far goes with every turn
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert len(server.requests) == 2


def test_chat_errors(capsys, server: FakeChatServer, monkeypatch) -> None:
    code, _, err = tp(capsys, "chat", "nope", "-m", "x")
    assert code == 2 and "No endpoint named 'nope'" in err
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, _, err = tp(capsys, "chat", "openai:gpt-4o-mini", "-m", "x")
    assert code == 7 and "OPENAI_API_KEY" in err
    server.faults.append("401")
    monkeypatch.setenv("FAKE_KEY", "sk-test-abcdefghijklmnop")
    tp(
        capsys,
        "endpoints",
        "add",
        "keyed",
        "--base-url",
        server.base_url,
        "--model",
        "m",
        "--api-key-env",
        "FAKE_KEY",
    )
    code, out, _ = tp(capsys, "chat", "keyed", "-m", "x", "--json")
    error = json.loads(out)["error"]
    assert code == 7 and error["type"] == "AuthenticationError" and "FAKE_KEY" in error["message"]


def test_interactive_chat_survives_a_failed_turn(capsys, monkeypatch, server: FakeChatServer) -> None:
    """At a terminal, a refused turn prints the CLI's error and hint lines and the conversation goes on."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("too long\nshort\n"))
    server.faults.append("400")
    code, out, err = tp(capsys, "chat", f"{server.base_url}#m")
    assert code == 0, err
    assert "error: endpoint" in err and "maximum context length" in err and "HTTP 400" in err
    assert "hint: The server refused this request as invalid" in err
    assert out.splitlines() == ["echo: short"]
    assert server.requests[-1]["messages"] == [{"role": "user", "content": "short"}]  # the failed turn is not kept
