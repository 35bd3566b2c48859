"""``tuneport server``: the local backend behind OpenAI's API, driven by the official ``openai`` SDK.

One real server process (``tuneport server --port 0``, its own TUNEPORT_HOME) runs for the module; a whole
fine-tune on the tiny model goes through it with the SDK, every response is checked against OpenAI's schema, and
the security rules (loopback by default, bearer token, id patterns, upload cap) are checked on in-thread servers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "providers"))
from _openai_schema import validate_error, validate_response  # noqa: E402

from tuneport.errors import TuneportError  # noqa: E402
from tuneport.jobs.store import Store  # noqa: E402
from tuneport.local_backend.api.server import ServerConfig, make_server  # noqa: E402
from tuneport.providers.local import LocalProvider, files_dir  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "data"
pytestmark = pytest.mark.slow


def start_server_process(home: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``tuneport server --port 0 --json`` in its own process group; (process, base URL)."""
    env = {**os.environ, "TUNEPORT_HOME": str(home), "TUNEPORT_NUM_THREADS": "1"}
    env.pop("TUNEPORT_SERVE_URL", None)
    code = "import sys; from tuneport.cli.server import server; server.main(sys.argv[1:])"
    log = home / "server.log"  # a file, not a pipe nobody reads: a full pipe would stall the server's logging
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "--port", "0", "--json", *args],
            env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
        )  # fmt: skip
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the server did not start: {log.read_text(errors='replace')[-4000:]}")
    return proc, json.loads(line)["url"]


def stop_server_process(proc: subprocess.Popen, home: Path) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    from tuneport.local_backend.training import jobs as J

    with Store(home / "tuneport.db") as store:  # never leave a runner behind
        for row in store.list_jobs():
            if J.runner_alive(row.get("pid"), row["id"]):
                os.killpg(row["pid"], signal.SIGKILL)


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-home")


@pytest.fixture(scope="module")
def base_url(server_home: Path) -> Iterator[str]:
    proc, url = start_server_process(server_home)
    yield url
    stop_server_process(proc, server_home)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()[:30]
    path = tmp_path_factory.mktemp("data") / "support_train.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


@pytest.fixture(scope="module")
def client(base_url: str):
    with openai.OpenAI(base_url=base_url, api_key="unused-locally", max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def finished(client, data: Path) -> dict:
    """A whole fine-tune through the SDK: upload, create, follow events with `after` paging, checkpoints."""
    with data.open("rb") as fh:
        file = client.files.create(file=fh, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny-chat", training_file=file.id, suffix="sdk", seed=7, metadata={"team": "support"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    )  # fmt: skip
    seen: list = []
    newest = None
    deadline = time.monotonic() + 120
    while True:
        status = client.fine_tuning.jobs.retrieve(job.id).status
        # Page back (newest first) until the newest event already seen: what `follow` does.
        fresh, cursor = [], None
        while True:
            page = client.fine_tuning.jobs.list_events(job.id, after=cursor, limit=3)
            stop = False
            for event in page.data:
                if event.id == newest:
                    stop = True
                    break
                fresh.append(event)
            if stop or not page.has_more:
                break
            cursor = page.data[-1].id
        seen.extend(reversed(fresh))
        if fresh:
            newest = fresh[0].id
        if status in ("succeeded", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"job still {status} after 120 s"
        time.sleep(0.5)
    return {"file": file, "job": job, "events": seen}


def test_the_openai_sdk_runs_a_whole_fine_tune(client, finished: dict, data: Path) -> None:
    file, job, events = finished["file"], finished["job"], finished["events"]
    assert file.id.startswith("file-") and file.bytes == data.stat().st_size and file.filename == data.name
    assert client.files.content(file.id).read() == data.read_bytes()
    assert job.status == "validating_files" and job.model == "tiny-chat"

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", [e.message for e in events]
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:tiny-chat:local:sdk:")
    assert done.metadata == {"team": "support"} and done.seed == 7 and done.trained_tokens > 0
    assert done.hyperparameters.n_epochs == 1 and done.hyperparameters.batch_size == 4

    ids = [int(e.id.removeprefix("ftevent-")) for e in events]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "paged events skipped or repeated one"
    messages = [e.message for e in events]
    assert messages[0].startswith("Created fine-tuning job") and "successfully completed" in messages[-1]
    assert any(e.type == "metrics" for e in events)

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].fine_tuning_job_id == job.id
    assert checkpoints[0].fine_tuned_model_checkpoint.startswith(done.fine_tuned_model)
    assert [m.id for m in client.models.list().data] == ["tiny-chat", done.fine_tuned_model]
    listed = client.fine_tuning.jobs.list(metadata={"team": "support"}).data
    assert [j.id for j in listed] == [job.id]
    assert client.fine_tuning.jobs.list(metadata={"team": "other"}).data == []


def test_every_response_matches_openai_schema(base_url: str, finished: dict, data: Path) -> None:
    job_id, file_id = finished["job"].id, finished["file"].id
    with httpx.Client(base_url=base_url + "/", timeout=30) as h:

        def check(method: str, url: str, schema_path: str, **kw) -> dict:
            r = h.request(method, url, **kw)
            assert r.status_code == 200, r.text
            validate_response(r.json(), schema_path, method)
            return r.json()

        check("GET", "files", "/files")
        check("GET", f"files/{file_id}", "/files/{file_id}")
        page = check("GET", "fine_tuning/jobs", "/fine_tuning/jobs", params={"limit": 1})
        assert [j["id"] for j in page["data"]] == [job_id] and "local" not in page["data"][0]
        check("GET", f"fine_tuning/jobs/{job_id}", "/fine_tuning/jobs/{fine_tuning_job_id}")
        events = check("GET", f"fine_tuning/jobs/{job_id}/events", "/fine_tuning/jobs/{fine_tuning_job_id}/events",
                       params={"limit": 2})  # fmt: skip
        assert len(events["data"]) == 2 and events["has_more"] is True
        older = h.get(
            f"fine_tuning/jobs/{job_id}/events", params={"after": events["data"][-1]["id"], "limit": 2}
        )
        assert int(older.json()["data"][0]["id"][8:]) < int(events["data"][-1]["id"][8:])
        ckpts = check("GET", f"fine_tuning/jobs/{job_id}/checkpoints",
                      "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints")  # fmt: skip
        assert all("path" not in c for c in ckpts["data"])
        check("GET", "models", "/models")
        check("GET", "models/tiny-chat", "/models/{model}")

        # Uploads: parts joined in the order listed, checked against the md5.
        blob = data.read_bytes()
        up = check("POST", "uploads", "/uploads",
                   json={"bytes": len(blob), "filename": "parts.jsonl", "purpose": "fine-tune",
                         "mime_type": "application/jsonl"})  # fmt: skip
        half = len(blob) // 2
        parts = [
            check("POST", f"uploads/{up['id']}/parts", "/uploads/{upload_id}/parts", files={"data": ("blob", chunk)})
            for chunk in (blob[half:], blob[:half])
        ]  # fmt: skip
        wrong = h.post(f"uploads/{up['id']}/complete",
                       json={"part_ids": [p["id"] for p in parts], "md5": hashlib.md5(blob).hexdigest()})  # fmt: skip
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "md5"
        validate_error(wrong.json())
        done = check("POST", f"uploads/{up['id']}/complete", "/uploads/{upload_id}/complete",
                     json={"part_ids": [parts[1]["id"], parts[0]["id"]], "md5": hashlib.md5(blob).hexdigest()})  # fmt: skip
        assert done["status"] == "completed" and done["file"]["id"] == file_id  # same bytes: the same file
        again = h.post(f"uploads/{up['id']}/parts", files={"data": ("blob", b"x")})
        assert again.status_code == 400 and "completed" in again.json()["error"]["message"]
        other = check("POST", "uploads", "/uploads",
                      json={"bytes": 10, "filename": "x.jsonl", "purpose": "fine-tune", "mime_type": "text/jsonl"})  # fmt: skip
        cancelled = check("POST", f"uploads/{other['id']}/cancel", "/uploads/{upload_id}/cancel")
        assert cancelled["status"] == "cancelled"

        # A file in use by no unfinished job can be deleted; its content is gone afterwards.
        extra = h.post(
            "files", data={"purpose": "fine-tune"}, files={"file": ("x.jsonl", blob[:half] + b"\n")}
        )
        assert extra.status_code == 200, extra.text
        validate_response(extra.json(), "/files", "POST")
        gone = check("DELETE", f"files/{extra.json()['id']}", "/files/{file_id}")
        assert gone == {"id": extra.json()["id"], "object": "file", "deleted": True}
        missing = h.get(f"files/{extra.json()['id']}/content")
        assert missing.status_code == 404
        validate_error(missing.json())

        # Chat is not served by this process: 503 with OpenAI's error object saying what to start.
        chat = h.post(
            "chat/completions", json={"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert chat.status_code == 503 and "tuneport serve" in chat.json()["error"]["message"]
        validate_error(chat.json())
        bad = h.post("fine_tuning/jobs", json={"model": "tiny-chat", "training_file": file_id,
                                               "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epoch": 1}}}})  # fmt: skip
        assert bad.status_code == 400 and "n_epoch" in bad.json()["error"]["message"]
        validate_error(bad.json())
        unknown = h.post(
            "fine_tuning/jobs", json={"model": "tiny-chat", "training_file": "file-doesnotexist"}
        )
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "training_file"
        assert h.get("fine_tuning/jobs/ftjob-nosuchjob").status_code == 404


# ---------------------------------------------------------------------------------------------------- in-thread


@pytest.fixture
def local_server(request):
    """An in-thread server over a LocalProvider that records jobs without training (launch=False)."""
    servers = []

    def start(**config) -> str:
        provider = LocalProvider(store=Store(), launch=False)
        srv = make_server("127.0.0.1", 0, config=ServerConfig(**config), provider=provider)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv.url

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()
        srv.provider.store.close()


def test_listening_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(TuneportError, match="refusing to listen on 0.0.0.0") as info:
        make_server("0.0.0.0", 0, config=ServerConfig())
    assert "token" in info.value.hint
    from click.testing import CliRunner

    from tuneport.cli.server import server

    result = CliRunner().invoke(
        server, ["--host", "0.0.0.0", "--port", "0"], env={"TUNEPORT_SERVER_TOKEN": ""}
    )
    assert isinstance(result.exception, TuneportError) and result.exception.exit_code == 2
    assert "refusing to listen" in str(result.exception)


def test_a_token_is_required_on_every_request(local_server) -> None:
    url = local_server(token="s3cret-token")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-token"}):
        for method, path in (("GET", "/models"), ("GET", "/files"), ("POST", "/fine_tuning/jobs")):
            r = httpx.request(method, url + path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers)
            validate_error(r.json())
    ok = httpx.get(url + "/models", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    with openai.OpenAI(base_url=url, api_key="s3cret-token", max_retries=0) as c:
        assert c.models.list().data[0].id == "tiny-chat"
    with (
        openai.OpenAI(base_url=url, api_key="nope", max_retries=0) as c,
        pytest.raises(openai.AuthenticationError),
    ):
        c.models.list()


@pytest.mark.parametrize(
    "path",
    [
        "/files/..%2F..%2Ftuneport.db",
        "/files/file-abc%2F..%2F..%2Fx",
        "/files/file-..%2Fx/content",
        "/files/file-abc.jsonl/content",
        "/fine_tuning/jobs/ftjob-..%2F..%2Fetc/events",
        "/fine_tuning/jobs/..%2Ffiles",
        "/uploads/upload_..%2F..%2Fx/cancel",
    ],
)
def test_crafted_ids_are_rejected(local_server, path: str) -> None:
    url = local_server()
    method = "POST" if path.endswith("/cancel") else "GET"
    r = httpx.request(method, url + path)
    assert r.status_code in (400, 404), r.text
    validate_error(r.json())
    assert r.json()["error"]["code"] in ("invalid_id", "unknown_url")


def test_uploaded_file_names_cannot_escape_the_data_folder(local_server, tmp_path: Path) -> None:
    url = local_server()
    body = (FIXTURES / "support_train.jsonl").read_bytes()[:2000]
    r = httpx.post(
        url + "/files", data={"purpose": "fine-tune"}, files={"file": ("../../../evil.jsonl", body)}
    )
    assert r.status_code == 200, r.text
    assert r.json()["filename"] == "evil.jsonl"
    assert (files_dir() / f"{r.json()['id']}.jsonl").read_bytes() == body
    assert not (files_dir().parent.parent / "evil.jsonl").exists() and not list(tmp_path.rglob("evil.jsonl"))
    up = httpx.post(url + "/uploads", json={"bytes": 5, "filename": "/etc/passwd", "purpose": "fine-tune",
                                            "mime_type": "text/jsonl"})  # fmt: skip
    assert up.json()["filename"] == "passwd"
    wrong = httpx.post(url + "/files", data={"purpose": "assistants"}, files={"file": ("a.jsonl", body)})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "purpose"


def test_oversize_uploads_get_413_while_streaming(local_server) -> None:
    url = local_server(max_upload_bytes=4096)
    big = b'{"messages": []}\n' * 1000  # 17 kB
    r = httpx.post(url + "/files", data={"purpose": "fine-tune"}, files={"file": ("big.jsonl", big)})
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    validate_error(r.json())

    def stream():  # no Content-Length: the cap must hold while the body arrives
        for i in range(0, len(big) * 20, 4096):
            yield (
                b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n' if i == 0 else b""
            )
            yield big[:4096]

    r = httpx.post(
        url + "/files", content=stream(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413
    assert not [p for p in files_dir().iterdir() if p.suffix == ".jsonl"]  # nothing kept
    up = httpx.post(url + "/uploads", json={"bytes": 10_000, "filename": "x.jsonl", "purpose": "fine-tune",
                                            "mime_type": "text/jsonl"})  # fmt: skip
    assert up.status_code == 413
    small = httpx.post(url + "/uploads", json={"bytes": 100, "filename": "x.jsonl", "purpose": "fine-tune",
                                               "mime_type": "text/jsonl"}).json()  # fmt: skip
    part = httpx.post(url + f"/uploads/{small['id']}/parts", files={"data": ("p", b"x" * 101)})
    assert part.status_code == 413  # a part may not exceed what the upload declared


def test_cancel_pause_resume_go_through_the_local_provider(local_server, tmp_path: Path) -> None:
    url = local_server()
    with openai.OpenAI(base_url=url, api_key="x", max_retries=0) as c:
        path = tmp_path / "t.jsonl"
        path.write_text(
            "\n".join((FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()[:12]) + "\n"
        )
        file = c.files.create(file=path.open("rb"), purpose="fine-tune")
        first = c.fine_tuning.jobs.create(model="tiny-chat", training_file=file.id)
        second = c.fine_tuning.jobs.create(model="tiny-chat", training_file=file.id)
        page = c.fine_tuning.jobs.list(limit=1)
        assert [j.id for j in page.data] == [second.id] and page.has_more
        assert [j.id for j in c.fine_tuning.jobs.list(after=second.id).data] == [first.id]
        with pytest.raises(openai.ConflictError, match="in use by job"):
            c.files.delete(file.id)
        with Store() as store:  # as the runner does once it trains
            store.update_job(first.id, status="paused")
        assert c.fine_tuning.jobs.resume(first.id).status == "queued"
        assert c.fine_tuning.jobs.cancel(second.id).id == second.id
        with Store() as store:
            store.update_job(second.id, status="cancelled")
        with pytest.raises(openai.BadRequestError, match="already cancelled"):
            c.fine_tuning.jobs.pause(second.id)
        with pytest.raises(openai.BadRequestError, match="only paused jobs can be resumed"):
            c.fine_tuning.jobs.resume(second.id)


def test_chat_completions_are_forwarded_to_the_serving_engine(local_server) -> None:
    received: list[dict] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(
                {"path": self.path, "body": json.loads(self.rfile.read(int(self.headers["Content-Length"])))}
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for word in ("hel", "lo"):
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "tiny-chat",
                         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}  # fmt: skip
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args):
            pass

    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        url = local_server(serve_url=f"http://127.0.0.1:{upstream.server_address[1]}/v1")
        with openai.OpenAI(base_url=url, api_key="x", max_retries=0) as c:
            stream = c.chat.completions.create(
                model="tiny-chat", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            assert "".join(ch.choices[0].delta.content or "" for ch in stream) == "hello"
        assert received[0]["path"] == "/v1/chat/completions" and received[0]["body"]["stream"] is True
    finally:
        upstream.shutdown()
        upstream.server_close()
