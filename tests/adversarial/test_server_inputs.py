"""Adversarial input to tuneport's two HTTP servers: ``tuneport server`` and ``tuneport serve`` (issue 13).

Each test is a reproduction that used to succeed as an attack or misbehave (a 500, a hang, a path accepted or
shown); all talk real HTTP, often raw bytes on a socket, to servers on loopback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tuneport.errors import ServeError, TuneportError
from tuneport.jobs.store import Store
from tuneport.local_backend.api.job_routes import PATH_FIELDS
from tuneport.local_backend.api.server import ServerConfig, make_server
from tuneport.local_backend.serving.engine import EngineOptions
from tuneport.providers.local import LocalProvider

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def raw(port: int, request: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``request`` as it is and read until the server closes (or ``timeout``: then the test fails)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        began = time.monotonic()
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no answer within {timeout} s (got {data[:200]!r})") from None
            if not chunk:
                return data
            data += chunk
            if b"\r\n\r\n" in data and _complete(data):
                return data
            assert time.monotonic() - began < timeout, "the server kept the connection open"


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_and_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"] if body.strip() else {}


def closed_within(port: int, seconds: float, first_bytes: bytes = b"") -> float:
    """Seconds until the server closes a connection that sends ``first_bytes`` and then nothing."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5) as s:
        if first_bytes:
            s.sendall(first_bytes)
        try:
            while s.recv(65536):
                pass
        except TimeoutError:
            raise AssertionError(f"the server held an idle connection for more than {seconds + 5} s") from None
    return time.monotonic() - began


# -------------------------------------------------------------------------------------------- tuneport server


@pytest.fixture
def api_server() -> Iterator[Callable[..., tuple[str, int]]]:
    """An in-thread ``tuneport server`` whose provider records jobs without training them."""
    servers = []

    def start(**config) -> tuple[str, int]:
        provider = LocalProvider(store=Store(), launch=False)
        srv = make_server("127.0.0.1", 0, config=ServerConfig(**config), provider=provider)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv.url, srv.server_address[1]

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()
        srv.provider.store.close()


@pytest.fixture
def uploaded(api_server) -> tuple[str, str]:
    url, _ = api_server()
    body = "\n".join((FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()[:12]) + "\n"
    r = httpx.post(url + "/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", body.encode())})
    assert r.status_code == 200, r.text
    return url, r.json()["id"]


@pytest.mark.parametrize("length", [b"-1", b"-99999", b"abc", b"1e3", b" ", b"0x10"])
def test_api_server_bad_content_length_is_a_fast_400(api_server, length: bytes) -> None:
    _, port = api_server()
    began = time.monotonic()
    response = raw(port, b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + length + b"\r\n\r\n{}")  # fmt: skip
    status, error = status_and_error(response)
    assert status == 400, response[:300]
    assert "Content-Length" in error["message"] and error["type"] == "invalid_request_error"
    assert time.monotonic() - began < 3


def test_api_server_negative_chunk_size_is_a_400(api_server) -> None:
    _, port = api_server()
    response = raw(port, b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nab\r\n")
    assert status_and_error(response)[0] == 400


def test_api_server_closes_idle_and_stalled_connections(api_server) -> None:
    _, port = api_server(read_timeout=0.5)
    assert closed_within(port, 0.5) < 4  # connected, said nothing
    assert closed_within(port, 0.5, b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\n") < 4  # headers never finished
    partial = b"POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    assert closed_within(port, 0.5, partial) < 4  # a body that stops arriving
    # ...and a client that keeps talking is served as before.
    url = f"http://127.0.0.1:{port}/v1"
    with httpx.Client() as c:
        assert c.get(url + "/models").status_code == 200
        assert c.get(url + "/models").status_code == 200


def test_api_server_json_413_names_the_cap_that_applies(api_server) -> None:
    url, _ = api_server(max_upload_bytes=10 * 1024**3)
    big = json.dumps({"bytes": 5, "filename": "x.jsonl", "purpose": "fine-tune", "mime_type": "text/jsonl",
                      "pad": "x" * (2 * 1024 * 1024)})  # fmt: skip
    r = httpx.post(url + "/uploads", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    # --max-upload-bytes does not set the JSON cap: the hint must not send the user there to fix it.
    assert "restart" not in message and "as a file" in message, message


@pytest.mark.parametrize("token", ["   ", "\t", " s3cret", "s3cret\n", "two words"])
def test_a_blank_or_spaced_server_token_is_refused(token: str) -> None:
    with pytest.raises(TuneportError, match="TUNEPORT_SERVER_TOKEN") as info:
        ServerConfig(token=token)
    assert info.value.exit_code == 2
    from tuneport.cli.server import server

    result = CliRunner().invoke(server, ["--host", "0.0.0.0", "--port", "0"], env={"TUNEPORT_SERVER_TOKEN": token})
    assert isinstance(result.exception, TuneportError) and result.exception.exit_code == 2


def test_job_requests_carry_no_paths(uploaded, tmp_path: Path) -> None:
    url, file_id = uploaded
    outside = tmp_path / "outside"
    assert "output_dir" in PATH_FIELDS
    for field in PATH_FIELDS:
        r = httpx.post(url + "/fine_tuning/jobs", json={"model": "tiny-chat", "training_file": file_id,
                                                        "local": {field: str(outside)}})  # fmt: skip
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == f"local.{field}" and error["code"] == "path_not_allowed"
        assert set(error) == {"message", "type", "param", "code"}
    r = httpx.post(url + "/fine_tuning/jobs", json={"model": "tiny-chat", "training_file": file_id,
                                                    "local": {"output_dir": "../../../../outside"}})  # fmt: skip
    assert r.status_code == 400
    assert httpx.get(url + "/fine_tuning/jobs").json()["data"] == []  # no job was created
    assert not outside.exists()
    # Settings that are not paths still pass through.
    ok = httpx.post(url + "/fine_tuning/jobs", json={"model": "tiny-chat", "training_file": file_id,
                                                     "local": {"lora_r": 8}})  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_job_models_are_names_the_server_offers_not_paths(uploaded, tmp_path: Path) -> None:
    url, file_id = uploaded
    folder = tmp_path / "some-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    answers = []
    for model in ("/etc/passwd", "/nonexistent", "/etc", str(folder), "../../etc", "ft:tiny-chat:x", "gpt-4o"):
        r = httpx.post(url + "/fine_tuning/jobs", json={"model": model, "training_file": file_id})
        assert r.status_code == 400, (model, r.text)
        error = r.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        # The same answer whatever is (or is not) at that path: nothing to learn about the server's disk.
        answers.append(error["message"].replace(repr(model[:100]), "MODEL"))
        for leak in ("is a file", "config.json", "not a local folder", "folder"):
            assert leak not in error["message"], (model, error["message"])
    assert len(set(answers)) == 1, answers
    offered = [m["id"] for m in httpx.get(url + "/models").json()["data"]]
    assert offered == ["tiny-chat"]
    assert httpx.post(url + "/fine_tuning/jobs", json={"model": "tiny-chat", "training_file": file_id}).status_code == 200


def test_job_events_checkpoints_and_errors_show_no_server_paths(uploaded, tmp_path: Path) -> None:
    url, file_id = uploaded
    job = httpx.post(url + "/fine_tuning/jobs", json={"model": "tiny-chat", "training_file": file_id}).json()
    secret = tmp_path / "srv" / "jobs" / job["id"]
    with Store() as store:  # what the runner records as a job trains and fails
        store.add_event(job["id"], f"Checkpoint saved at {secret}/checkpoints/step-10", type="message")
        store.add_event(job["id"], "Adapter ready", data={"serve_path": str(secret / "adapter"), "step": 10,
                                                           "model_path": "adapter", "serve_as": "adapter"})  # fmt: skip
        store.add_checkpoint(job["id"], 10, metrics={"train_loss": 1.0}, path=secret / "checkpoints" / "step-10",
                             fine_tuned_model_checkpoint="ft:tiny-chat:local::x:ckpt-step-10")  # fmt: skip
        store.update_job(job["id"], status="failed",
                         error={"code": "error", "message": f"OSError: no space left ({secret}/adapter)", "param": None})  # fmt: skip
    pages = [httpx.get(url + f"/fine_tuning/jobs/{job['id']}{tail}").json()
             for tail in ("", "/events", "/checkpoints")]  # fmt: skip
    pages.append(httpx.get(url + "/fine_tuning/jobs").json())
    text = json.dumps(pages)
    assert str(tmp_path) not in text and "/srv/" not in text, text
    events = {e["message"]: e for e in pages[1]["data"]}
    assert "Checkpoint saved at .../step-10" in events  # still says what happened
    assert events["Adapter ready"]["data"] == {"step": 10, "serve_as": "adapter"}
    assert pages[2]["data"][0]["step_number"] == 10 and "path" not in pages[2]["data"][0]
    assert pages[0]["error"]["message"] == "OSError: no space left (.../adapter)"


# ------------------------------------------------------------------------------------------- tuneport serve


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_serve_beyond_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(ServeError, match=f"refusing to serve on {host}") as info:
        EngineOptions(host=host)
    assert info.value.exit_code == 2 and "--api-key" in info.value.hint
    with pytest.raises(TuneportError, match="whitespace"):
        EngineOptions(host=host, token="  ")
    assert EngineOptions(host=host, token="tok").listen_address(8000).endswith(":8000")


def test_serve_cli_refuses_every_interface_without_a_token_before_starting() -> None:
    from tuneport.cli.serve import serve

    began = time.monotonic()
    result = CliRunner().invoke(serve, ["--host", "0.0.0.0", "--engine", "transformers"],
                                env={"TUNEPORT_SERVE_API_KEY": ""})  # fmt: skip
    assert isinstance(result.exception, ServeError) and result.exception.exit_code == 2
    assert "refusing to serve on 0.0.0.0" in result.exception.message
    assert time.monotonic() - began < 5  # refused before any model loads


def test_every_interface_is_reported_as_bound() -> None:
    options = EngineOptions(host="0.0.0.0", token="tok")
    assert options.listen_address(8123) == "0.0.0.0:8123"  # the truth about where it listens
    assert options.base_url(8123) == "http://127.0.0.1:8123/v1"  # how this machine reaches it
    assert options.auth_headers() == {"Authorization": "Bearer tok"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from tuneport.fixtures.tiny_model import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-chat", seed=0))


def test_vllm_gets_no_path_and_its_token_off_the_command_line(tiny_model: Path, tmp_path: Path) -> None:
    from tuneport.local_backend.serving.adapters import AdapterSpec
    from tuneport.local_backend.serving.scratch import ScratchDir
    from tuneport.local_backend.serving.vllm_server import VLLMServer

    adapter = AdapterSpec(name="support", path=tmp_path / "secret-place" / "adapter", rank=8)
    srv = VLLMServer("tiny-chat", tiny_model, [adapter], EngineOptions(host="0.0.0.0", port=12345, token="tok-9"),
                     device="cpu")  # fmt: skip
    cmd = srv.command()
    assert not any(str(tiny_model) in a or "secret-place" in a for a in cmd), cmd  # /v1/models shows these
    assert "tok-9" not in " ".join(cmd) and "--api-key" not in cmd  # `ps` and the log show the command line
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    srv.scratch = ScratchDir(tmp_path)
    try:
        assert srv.environment()["VLLM_API_KEY"] == "tok-9"
        assert srv.base_url == "http://127.0.0.1:12345/v1" and srv.listen == "0.0.0.0:12345"
    finally:
        srv.scratch.remove()
    with pytest.raises(ServeError, match="command line"):
        VLLMServer("tiny-chat", tiny_model, [], EngineOptions(extra_args=("--api-key", "x")), device="cpu")


@pytest.fixture(scope="module")
def fallback(tiny_model: Path) -> Iterator:
    from tuneport.local_backend.serving.fallback_server import FallbackServer

    srv = FallbackServer("tiny-chat", tiny_model, [], EngineOptions(token="tok-fallback"), read_timeout=0.5)
    srv.start()
    yield srv
    srv.stop()


def test_fallback_requires_its_token_except_on_health(fallback) -> None:
    assert httpx.get(fallback.base_url.removesuffix("/v1") + "/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "tok-fallback"}):
        r = httpx.get(fallback.base_url + "/models", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "invalid_api_key"
        r = httpx.post(fallback.base_url + "/load_lora_adapter", headers=headers,
                       json={"lora_name": "x", "lora_path": "/etc"})  # fmt: skip
        assert r.status_code == 401
    ok = httpx.get(fallback.base_url + "/models", headers={"Authorization": "Bearer tok-fallback"})
    assert ok.status_code == 200


def test_serve_on_every_interface_reports_where_it_listens(tiny_model: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TUNEPORT_SERVE_API_KEY": "tok-cli"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneport.cli.main", "serve", "--model", str(tiny_model), "--engine", "transformers",
         "--host", "0.0.0.0", "--port", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        port = int(info["base_url"].rsplit(":", 1)[1].split("/")[0])
        assert info["listen"] == f"0.0.0.0:{port}" and info["auth"] is True  # the truth, not 127.0.0.1
        assert info["models"] == ["tiny-chat"] and str(tiny_model.parent) not in line
        assert httpx.get(info["base_url"] + "/models").status_code == 401
        assert httpx.get(info["base_url"] + "/models", headers={"Authorization": "Bearer tok-cli"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    err = proc.stderr.read()
    assert "reachable from other machines" in err and "tok-cli" not in err


def test_fallback_models_show_names_not_folders(fallback, tiny_model: Path) -> None:
    data = httpx.get(fallback.base_url + "/models", headers={"Authorization": "Bearer tok-fallback"}).json()
    assert [m["id"] for m in data["data"]] == ["tiny-chat"]
    assert str(tiny_model.parent) not in json.dumps(data)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"-5", b"1.5", b"99999999999999999999"])
def test_fallback_bad_content_length_is_a_fast_400(fallback, length: bytes) -> None:
    began = time.monotonic()
    response = raw(fallback.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: Bearer tok-fallback\r\nContent-Length: " + length + b"\r\n\r\n{}")  # fmt: skip
    status, error = status_and_error(response)
    assert status == 400, response[:300]
    assert "Content-Length" in error["message"] and "Traceback" not in response.decode(errors="replace")
    assert time.monotonic() - began < 3


def test_fallback_closes_idle_connections(fallback) -> None:
    assert closed_within(fallback.port, 0.5) < 4
    partial = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"
    assert closed_within(fallback.port, 0.5, partial) < 4


def test_fallback_oversized_body_is_a_413_before_it_is_read(fallback) -> None:
    response = raw(fallback.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: Bearer tok-fallback\r\nContent-Length: 10000000000\r\n\r\n{")  # fmt: skip
    assert status_and_error(response)[0] == 413
