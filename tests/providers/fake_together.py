"""An in-memory fake of Together AI's files and fine-tuning API, built from the official SDK's wire format.

Paths and fields follow ``together`` 3.x (``resources/fine_tuning.py``, ``lib/resources/files.py``, the
``types/finetune_*`` models) and Together's API reference: ``POST /v1/files`` answers 302 with a presigned
``Location`` and ``X-Together-File-Id``, the bytes are PUT there, ``/preprocess`` returns the file; lists come whole
as ``{"data": [...]}``; jobs go ``pending -> queued -> running -> uploading -> completed`` (one step per GET), or
end ``user_error`` on a training file marked bad; errors are ``{"error": {"message", "type", "code"}}``.

It is an ``httpx.MockTransport`` handler (:attr:`FakeTogether.transport`) and, for the official SDK and the
evaluation, a real loopback HTTP server (:meth:`FakeTogether.serve`). Faults are injected per route with
:meth:`FakeTogether.fail`, before the request is handled or *after* it (the server acted, the answer is lost).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

CANARY_KEY = "tgp-canary-3c9a1f7e5b2d4068ae1f93c7d5b2e8a0"
STEPS = ["pending", "queued", "running", "uploading", "completed"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Fault:
    method: str
    pattern: str
    times: int
    after: bool
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    exc: type[Exception] | None = None


class FakeTogether:
    """Together's API in memory. ``limits`` lists the models it trains; ``adapters`` maps a model to the adapter
    folder its jobs hand out (packed as a zstd tar, as Together does)."""

    def __init__(self, api_key: str = CANARY_KEY, *, models: dict[str, dict] | None = None) -> None:
        self.api_key = api_key
        self.files: dict[str, dict] = {}
        self.file_bytes: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.bodies: dict[str, dict] = {}
        self.adapters: dict[str, Path] = {}
        self.answers: dict[str, str] = {}
        self.bad_files: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.models = models or {"meta-llama/Meta-Llama-3.1-8B-Instruct-Reference": {}}
        self.base_url = "https://api.together.xyz/v1"
        self._pending_uploads: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- test controls --------------------------------------------------------------------------------------
    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail(self, method: str, pattern: str, *, times: int = 1, after: bool = False, status: int | None = None,
             headers: dict[str, str] | None = None, exc: type[Exception] | None = None) -> None:  # fmt: skip
        """Make the next ``times`` requests matching ``method`` + full-match regex ``pattern`` (path after /v1) fail."""
        self.faults.append(Fault(method, pattern, times, after, status, headers or {}, exc))

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p == path)

    def limits(self, model: str) -> dict[str, Any]:
        extra = self.models[model]
        return {
            "model_name": model, "default_gradient_accumulation_steps": 1, "max_learning_rate": 1.0,
            "min_learning_rate": 1e-8, "max_num_checkpoints": 10, "max_num_epochs": 20, "max_num_evals": 100,
            "max_seq_length_sft": 8192, "max_seq_length_dpo": 8192, "min_max_seq_length": 16,
            "merge_output_lora": True, "supports_full_training": True, "supports_reasoning": False,
            "supports_tools": True, "supports_vision": False,
            "full_training": {"max_batch_size": 96, "max_batch_size_dpo": 48, "min_batch_size": 8},
            "lora_training": {"default_rank": 16, "max_batch_size": 128, "max_batch_size_dpo": 64,
                              "min_batch_size": 8, "max_rank": 64,
                              "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"]},
            **extra,
        }  # fmt: skip

    # -- loopback server (for the SDK and evaluation) -------------------------------------------------------
    def serve(self) -> FakeTogether:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = f"http://{self.headers.get('Host')}{self.path}"
                request = httpx.Request(self.command, url, headers=dict(self.headers.items()), content=body)
                try:
                    response = fake.handle(request)
                except Exception:  # a transport fault: drop the connection without an answer
                    self.close_connection = True
                    return
                payload = response.read()
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- dispatch -------------------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        route = path[3:] if path.startswith("/v1") else path
        with self._lock:
            self.calls.append((request.method, route))
            fault = next((f for f in self.faults if f.times > 0 and f.method == request.method
                          and re.fullmatch(f.pattern, route)), None)  # fmt: skip
            if fault is not None:
                fault.times -= 1
                if not fault.after:
                    return self._fault(fault, request)
            if not route.startswith("/storage/"):
                auth = request.headers.get("authorization", "")
                if auth != f"Bearer {self.api_key}":
                    return self._error(401, "Invalid API key provided", "invalid_api_key")
            response = self._route(request, route)
            if fault is not None and fault.after:
                return self._fault(fault, request)
            return response

    def _fault(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        if fault.exc is not None:
            raise fault.exc("injected", request=request)
        return self._error(fault.status or 500, "injected fault", "server_error", headers=fault.headers)

    @staticmethod
    def _error(status: int, message: str, code: str | None = None, *, headers: dict | None = None) -> httpx.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        return httpx.Response(status, json=body, headers=headers or {})

    def _route(self, request: httpx.Request, route: str) -> httpx.Response:
        m, r = request.method, route
        if m == "POST" and r == "/files":
            return self._start_upload(request)
        if m == "PUT" and (g := re.fullmatch(r"/storage/(?P<id>[^/]+)", r)):
            self.file_bytes[self._pending_uploads.pop(g["id"])] = request.read()
            return httpx.Response(200)
        if m == "POST" and (g := re.fullmatch(r"/files/(?P<id>[^/]+)/preprocess", r)):
            return self._preprocess(g["id"])
        if m == "GET" and r == "/files":
            return httpx.Response(200, json={"data": list(self.files.values())})
        if g := re.fullmatch(r"/files/(?P<id>[^/]+)(?P<content>/content)?", r):
            if g["id"] not in self.files:
                return self._error(404, f"File {g['id']} not found", "file_not_found")
            if m == "DELETE":
                del self.files[g["id"]]
                return httpx.Response(200, json={"id": g["id"], "deleted": True})
            if g["content"]:
                return httpx.Response(200, content=self.file_bytes[g["id"]])
            return httpx.Response(200, json=self.files[g["id"]])
        if m == "GET" and r == "/fine-tunes/models/limits":
            model = request.url.params.get("model_name", "")
            if model not in self.models:
                return self._error(404, f"Model {model} is not available for fine-tuning", "model_not_available")
            return httpx.Response(200, json=self.limits(model))
        if m == "POST" and r == "/fine-tunes/estimate-price":
            body = json.loads(request.content)
            tokens = len(self.file_bytes.get(body["training_file"], b"")) // 4 * body.get("n_epochs", 1)
            return httpx.Response(200, json={"estimation_available": True, "allowed_to_proceed": True,
                                             "estimated_train_token_count": tokens, "estimated_eval_token_count": 0,
                                             "estimated_total_price": tokens * 0.48 / 1e6, "user_limit": 100.0})  # fmt: skip
        if m == "POST" and r == "/fine-tunes":
            return self._create(json.loads(request.content))
        if m == "GET" and r == "/fine-tunes":
            return httpx.Response(200, json={"data": [self._truncated(j) for j in self.jobs.values()]})
        if g := re.fullmatch(r"/fine-tunes/(?P<id>[^/]+)(?P<rest>/cancel|/events|/checkpoints)?", r):
            job = self.jobs.get(g["id"])
            if job is None:
                return self._error(404, f"Fine-tune job {g['id']} not found", "not_found")
            if g["rest"] == "/cancel" and m == "POST":
                if job["status"] in ("completed", "error", "user_error", "cancelled"):
                    return self._error(400, f"Job {job['id']} is {job['status']} and cannot be cancelled")
                job["status"] = "cancelled"
                self._event(job, "cancel_requested", "Cancel requested")
                return httpx.Response(200, json=self._truncated(job))
            if g["rest"] == "/events":
                return httpx.Response(200, json={"data": job["events"]})
            if g["rest"] == "/checkpoints":
                return httpx.Response(200, json={"data": job["checkpoints"]})
            self._advance(job)
            return httpx.Response(200, json=job)
        if m == "GET" and r == "/finetune/download":
            return self._download(request)
        if m == "POST" and r == "/chat/completions":
            body = json.loads(request.content)
            if not any(j.get("model_output_name") == body["model"] for j in self.jobs.values()):
                return self._error(404, f"Unable to access model {body['model']}", "model_not_available")
            text = self.answers.get(body["messages"][-1]["content"], "ok")
            return httpx.Response(200, json={
                "id": f"chatcmpl-{uuid.uuid4().hex[:8]}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})  # fmt: skip
        return self._error(404, f"no route {m} {r}")

    # -- files ----------------------------------------------------------------------------------------------
    def _start_upload(self, request: httpx.Request) -> httpx.Response:
        form = _multipart_fields(request)
        file_id = f"file-{uuid.uuid4()}"
        token = uuid.uuid4().hex
        self._pending_uploads[token] = file_id
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": 0, "created_at": int(time.time()),
                               "filename": form["file_name"], "purpose": form["purpose"],
                               "FileType": form["file_type"], "processing_status": "PENDING",
                               "_checksum": form["checksum"]}  # fmt: skip
        origin = str(request.url.copy_with(path="/", query=None)).rstrip("/")
        return httpx.Response(302, headers={"Location": f"{origin}/v1/storage/{token}", "X-Together-File-Id": file_id})

    def _preprocess(self, file_id: str) -> httpx.Response:
        file = self.files.get(file_id)
        if file is None or file_id not in self.file_bytes:
            return self._error(404, f"File {file_id} not found or not uploaded", "file_not_found")
        data = self.file_bytes[file_id]
        if hashlib.sha256(data).hexdigest() != file.pop("_checksum", None):
            return self._error(400, "checksum mismatch", "invalid_file")
        file.update(bytes=len(data), processing_status="COMPLETED",
                    validation_report={"valid": True, "dataset_format": "CONVERSATION", "nlines": data.count(b"\n")})
        return httpx.Response(200, json={k: v for k, v in file.items() if not k.startswith("_")})

    # -- jobs -----------------------------------------------------------------------------------------------
    def _create(self, body: dict) -> httpx.Response:
        for required in ("training_file", "model", "n_epochs", "learning_rate"):
            if required not in body:
                return self._error(400, f"missing field {required}", "invalid_request")
        if body["model"] not in self.models:
            return self._error(400, f"Model {body['model']} is not available for fine-tuning", "model_not_available")
        if body["training_file"] not in self.files:
            return self._error(400, f"Training file {body['training_file']} not found", "file_not_found")
        if len(body.get("suffix") or "") > 40:
            return self._error(400, "suffix must be at most 40 characters", "invalid_request")
        job_id = f"ft-{uuid.uuid4()}"
        now = time.time()
        suffix = body.get("suffix")
        name = f"user/{body['model'].split('/')[-1]}-{suffix + '-' if suffix else ''}{job_id[3:11]}"
        job = {
            "id": job_id, "status": "pending", "user_id": "user-1", "created_at": _iso(now), "updated_at": _iso(now),
            "model": body["model"], "training_file": body["training_file"],
            "validation_file": body.get("validation_file", ""), "n_epochs": body["n_epochs"],
            "n_checkpoints": body.get("n_checkpoints"), "n_evals": body.get("n_evals"),
            "batch_size": 16 if body.get("batch_size") == "max" else body.get("batch_size"),
            "learning_rate": body["learning_rate"], "lr_scheduler": body.get("lr_scheduler"),
            "warmup_ratio": body.get("warmup_ratio"), "training_type": body.get("training_type"),
            "training_method": body.get("training_method"), "suffix": suffix, "random_seed": body.get("random_seed"),
            "model_output_name": name, "adapter_output_name": name + "-adapter", "token_count": None,
            "events": [], "checkpoints": [], "_step": 0,
        }  # fmt: skip
        self.jobs[job_id] = job
        self.bodies[job_id] = body
        self._event(job, "job_pending", "Fine tune request created")
        return httpx.Response(200, json=self._truncated(job))

    @staticmethod
    def _truncated(job: dict) -> dict:
        return {k: v for k, v in job.items() if k not in ("events", "checkpoints") and not k.startswith("_")}

    def _event(self, job: dict, kind: str, message: str, level: str = "info", **extra: Any) -> None:
        job["events"].append({"object": "fine-tune-event", "created_at": _iso(time.time()), "type": kind,
                              "message": message, "level": level, **extra})  # fmt: skip

    def _advance(self, job: dict) -> None:
        """Each GET of a live job moves it one status on (tests see every status in order)."""
        if job["status"] not in STEPS or job["status"] == "completed":
            return
        if job["training_file"] in self.bad_files and job["status"] == "running":
            job["status"] = "user_error"
            self._event(job, "job_error", "Training file has invalid format: line 3 is not JSON", "error")
            return
        job["status"] = STEPS[STEPS.index(job["status"]) + 1]
        job["updated_at"] = _iso(time.time())
        if job["status"] == "running":
            self._event(job, "training_start", "Training started", step=0, total_steps=10)
        elif job["status"] == "uploading":
            job["token_count"] = len(self.file_bytes.get(job["training_file"], b"")) // 4
            self._event(job, "checkpoint_save", "Checkpoint saved at step 10", step=10, total_steps=10)
            job["checkpoints"].append({"checkpoint_type": "Final", "created_at": _iso(time.time()),
                                       "path": f"s3://together/{job['id']}/final", "step": 10,
                                       "checkpoint": "adapter"})  # fmt: skip
        elif job["status"] == "completed":
            self._event(job, "job_complete", f"Job finished; model {job['model_output_name']} is ready")

    def _download(self, request: httpx.Request) -> httpx.Response:
        job = self.jobs.get(request.url.params.get("ft_id", ""))
        if job is None or job["status"] != "completed":
            return self._error(400, "Training job is not downloadable", "invalid_request")
        folder = self.adapters.get(job["model"])
        if folder is None or request.url.params.get("checkpoint") != "adapter":
            return self._error(404, "no adapter for this job", "not_found")
        return httpx.Response(200, content=pack_adapter(folder), headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{job["model_output_name"].split("/")[-1]}.tar.zst"'})


def pack_adapter(folder: Path) -> bytes:
    """A folder as Together ships it: a tar archive, zstd-compressed."""
    import io
    import tarfile

    import zstandard

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


def _multipart_fields(request: httpx.Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.read()
    )
    return {part.get_param("name", header="content-disposition"): part.get_content().strip()
            if isinstance(part.get_content(), str) else part.get_content().decode().strip()
            for part in message.iter_parts()}  # fmt: skip
