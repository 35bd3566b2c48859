"""An in-memory fake of OpenAI's files / uploads / fine-tuning API, as an ``httpx.MockTransport`` handler.

It behaves like the live service where the provider depends on it (newest-first lists with ``after`` cursors,
``metadata[k]=v`` filters, the Uploads API's ordered parts and md5 check, jobs that move through
``validating_files -> queued -> running -> succeeded`` or fail validating a bad file, ``paused``) and it is strict:
every request body the provider sends and every body the fake returns is validated against OpenAI's published
schema (``schema.py``); a mismatch fails the test.

Faults are injected per route with :meth:`FakeOpenAI.fail`: an error response or a transport exception, before the
request is handled or *after* (the server acted, the answer is lost).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import _openai_schema as schema
import httpx

#: a key that must never show up in logs, error messages or the database
CANARY_KEY = "sk-canary-5f2b9c1e7d3a4b6f8e0c2d4a6b8c0e1f"

TUNABLE = {"gpt-4o-mini-2024-07-18", "gpt-4o-mini", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14"}

ROUTES: list[tuple[str, str, str]] = [
    # (method, regex, schema path)
    ("POST", r"/files", "/files"),
    ("GET", r"/files/(?P<file_id>[^/]+)", "/files/{file_id}"),
    ("POST", r"/uploads", "/uploads"),
    ("POST", r"/uploads/(?P<upload_id>[^/]+)/parts", "/uploads/{upload_id}/parts"),
    ("POST", r"/uploads/(?P<upload_id>[^/]+)/complete", "/uploads/{upload_id}/complete"),
    ("POST", r"/uploads/(?P<upload_id>[^/]+)/cancel", "/uploads/{upload_id}/cancel"),
    ("POST", r"/fine_tuning/jobs", "/fine_tuning/jobs"),
    ("GET", r"/fine_tuning/jobs", "/fine_tuning/jobs"),
    ("GET", r"/fine_tuning/jobs/(?P<job_id>[^/]+)", "/fine_tuning/jobs/{fine_tuning_job_id}"),
    ("POST", r"/fine_tuning/jobs/(?P<job_id>[^/]+)/cancel", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel"),
    ("POST", r"/fine_tuning/jobs/(?P<job_id>[^/]+)/pause", "/fine_tuning/jobs/{fine_tuning_job_id}/pause"),
    ("POST", r"/fine_tuning/jobs/(?P<job_id>[^/]+)/resume", "/fine_tuning/jobs/{fine_tuning_job_id}/resume"),
    ("GET", r"/fine_tuning/jobs/(?P<job_id>[^/]+)/events", "/fine_tuning/jobs/{fine_tuning_job_id}/events"),
    (
        "GET",
        r"/fine_tuning/jobs/(?P<job_id>[^/]+)/checkpoints",
        "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
    ),
]


class APIError(Exception):
    def __init__(
        self, status: int, message: str, *, type: str = "invalid_request_error", code=None, param=None
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def response(self) -> httpx.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        schema.validate_error(body)
        return httpx.Response(self.status, json=body, headers={"x-request-id": "req_err"})


@dataclass
class Fault:
    method: str
    pattern: str
    times: int
    after: bool
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    exc: type[Exception] | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.fullmatch(self.pattern, path) is not None

    def fire(self, request: httpx.Request) -> httpx.Response:
        self.times -= 1
        if self.exc is not None:
            raise self.exc("injected fault", request=request)
        headers = {"x-request-id": f"req_fault_{self.status}", **self.headers}
        return httpx.Response(self.status or 500, json=self.body, headers=headers)


def parse_multipart(request: httpx.Request) -> dict[str, Any]:
    """A multipart/form-data body as {field: str for text, bytes for files}, plus filenames."""
    ctype = request.headers["content-type"]
    assert ctype.startswith("multipart/form-data"), ctype
    raw = b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + request.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename() is not None:
            fields[name] = payload
            fields[f"{name}.filename"] = part.get_filename()
        else:
            fields[name] = payload.decode()
    return fields


class FakeOpenAI:
    """The fake service. ``fake.transport`` goes to the provider; ``fake.requests`` records what it got."""

    def __init__(
        self, api_key: str = "sk-test-key-0000000000000000", *, echo_key_on_401: bool = True
    ) -> None:
        self.api_key = api_key
        self.echo_key_on_401 = echo_key_on_401
        self.files: dict[str, dict[str, Any]] = {}
        self.file_bytes: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.parts: dict[str, tuple[str, bytes]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_order: list[str] = []
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.checkpoints: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.faults: list[Fault] = []
        self.blocked = False  # 403 training_not_available on job creation
        self.auto_advance = True  # each GET of a job moves it one step on
        self.steps = 4  # training steps per job
        self._ids = itertools.count(1)
        self._clock = itertools.count(1_760_000_000)
        self._lock = threading.RLock()
        self.transport = httpx.MockTransport(self.handle)

    # -- test controls -----------------------------------------------------------------------------------------
    def fail(
        self,
        method: str,
        pattern: str,
        *,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        exc: type[Exception] | None = None,
        times: int = 1,
        after: bool = False,
    ) -> Fault:
        """Make the next ``times`` matching requests fail; ``after=True`` handles the request first."""
        if status is not None and body is None:
            body = {
                "error": {
                    "message": f"injected {status}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        fault = Fault(method, pattern, times, after, status, body, dict(headers or {}), exc)
        self.faults.append(fault)
        return fault

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.fullmatch(pattern, p))

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}abc"

    def _now(self) -> int:
        return next(self._clock)

    # -- transport ------------------------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        assert path.startswith("/v1/"), path
        path = path[3:]
        params = dict(request.url.params)
        with self._lock:
            self.requests.append((request.method, path, params))
            self.headers_seen.append(dict(request.headers))
            fault = next((f for f in self.faults if f.matches(request.method, path) and not f.after), None)
            if fault is not None:
                return fault.fire(request)
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                given = request.headers.get("authorization", "").removeprefix("Bearer ")
                shown = given if self.echo_key_on_401 else given[:3] + "***"
                return APIError(
                    401,
                    f"Incorrect API key provided: {shown}.",
                    type="invalid_request_error",
                    code="invalid_api_key",
                ).response()
            try:
                response = self._route(request, path, params)
            except APIError as exc:
                response = exc.response()
            fault = next((f for f in self.faults if f.matches(request.method, path) and f.after), None)
            if fault is not None:
                return fault.fire(request)
            return response

    def _route(self, request: httpx.Request, path: str, params: dict[str, str]) -> httpx.Response:
        for method, pattern, spec_path in ROUTES:
            match = re.fullmatch(pattern, path)
            if method == request.method and match:
                schema.validate_query(params, spec_path, method)
                handler = getattr(self, "_" + re.sub(r"\W+", "_", f"{method} {spec_path}").strip("_").lower())
                body = handler(request, params, **match.groupdict())
                schema.validate_response(body, spec_path, method)
                return httpx.Response(200, json=body, headers={"x-request-id": f"req_{next(self._ids)}"})
        raise APIError(404, f"Invalid URL ({request.method} {path})")

    # -- files -------------------------------------------------------------------------------------------------
    def _new_file(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        file_id = self._id("file-")
        obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": self._now(),
               "filename": filename, "purpose": purpose, "status": "processed"}  # fmt: skip
        self.files[file_id] = obj
        self.file_bytes[file_id] = data
        return obj

    def _post_files(self, request, params):
        form = parse_multipart(request)
        schema.validate_request({k: (v if isinstance(v, str) else "<binary>") for k, v in form.items()
                                 if not k.endswith(".filename")}, "/files", "post")  # fmt: skip
        return self._new_file(form["file.filename"], form["purpose"], form["file"])

    def _get_files_file_id(self, request, params, file_id):
        if file_id not in self.files:
            raise APIError(404, f"No such File object: {file_id}", param="id")
        return self.files[file_id]

    def _post_uploads(self, request, params):
        body = json.loads(request.content)
        schema.validate_request(body, "/uploads", "post")
        upload_id = self._id("upload_")
        now = self._now()
        self.uploads[upload_id] = {"id": upload_id, "object": "upload", "bytes": body["bytes"], "created_at": now,
                                   "expires_at": now + 3600, "filename": body["filename"],
                                   "purpose": body["purpose"], "status": "pending", "file": None}  # fmt: skip
        return self.uploads[upload_id]

    def _upload(self, upload_id: str) -> dict[str, Any]:
        if upload_id not in self.uploads:
            raise APIError(404, f"No such Upload: {upload_id}")
        upload = self.uploads[upload_id]
        if upload["status"] != "pending":
            raise APIError(400, f"Upload {upload_id} is {upload['status']}")
        return upload

    def _post_uploads_upload_id_parts(self, request, params, upload_id):
        self._upload(upload_id)
        form = parse_multipart(request)
        schema.validate_request({"data": "<binary>"} if set(form) == {"data", "data.filename"} else form,
                                "/uploads/{upload_id}/parts", "post")  # fmt: skip
        if len(form["data"]) > 64 * 1024 * 1024:
            raise APIError(400, "Part is larger than 64 MB")
        part_id = self._id("part_")
        self.parts[part_id] = (upload_id, form["data"])
        return {"id": part_id, "object": "upload.part", "created_at": self._now(), "upload_id": upload_id}

    def _post_uploads_upload_id_complete(self, request, params, upload_id):
        upload = self._upload(upload_id)
        body = json.loads(request.content)
        schema.validate_request(body, "/uploads/{upload_id}/complete", "post")
        chunks = []
        for part_id in body["part_ids"]:
            owner, data = self.parts.get(part_id, (None, b""))
            if owner != upload_id:
                raise APIError(400, f"Part {part_id} does not belong to upload {upload_id}")
            chunks.append(data)
        data = b"".join(chunks)
        if len(data) != upload["bytes"]:
            raise APIError(400, f"Upload declared {upload['bytes']} bytes, parts hold {len(data)}")
        if "md5" in body and hashlib.md5(data).hexdigest() != body["md5"]:
            raise APIError(400, "md5 checksum does not match the uploaded parts")
        upload["status"] = "completed"
        upload["file"] = self._new_file(upload["filename"], upload["purpose"], data)
        return upload

    def _post_uploads_upload_id_cancel(self, request, params, upload_id):
        upload = self._upload(upload_id)
        upload["status"] = "cancelled"
        return upload

    # -- jobs ----------------------------------------------------------------------------------------------------
    def _event(self, job_id: str, message: str, *, level: str = "info", data: dict | None = None) -> None:
        event = {"object": "fine_tuning.job.event", "id": self._id("ftevent-"), "created_at": self._now(),
                 "level": level, "message": message, "type": "metrics" if data else "message", "data": data or {}}  # fmt: skip
        self.events[job_id].append(event)

    def _post_fine_tuning_jobs(self, request, params):
        body = json.loads(request.content)
        schema.validate_request(body, "/fine_tuning/jobs", "post")
        if self.blocked:
            raise APIError(
                403,
                "Fine-tuning is no longer available for new jobs in this organization.",
                type="invalid_request_error",
                code="training_not_available",
            )
        if body["model"] not in TUNABLE:
            raise APIError(
                400,
                f"Model {body['model']} is not available for fine-tuning or does not exist.",
                code="model_not_available",
                param="model",
            )
        for param in ("training_file", "validation_file"):
            file_id = body.get(param)
            if file_id is not None and file_id not in self.files:
                raise APIError(400, f"invalid {param}: {file_id}", code="invalid_request_error", param=param)
        job_id = self._id("ftjob-")
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        hyper = dict(method.get(method["type"], {}).get("hyperparameters") or {})
        resolved = {"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": 3}
        for key, default in resolved.items():
            if hyper.get(key, "auto") == "auto":
                hyper[key] = default
        method = {"type": method["type"], method["type"]: {"hyperparameters": hyper}}
        suffix = body.get("suffix")
        job = {
            "object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": self._now(),
            "fine_tuned_model": None, "organization_id": "org-fake", "result_files": [], "status": "validating_files",
            "validation_file": body.get("validation_file"), "training_file": body["training_file"],
            "hyperparameters": {k: hyper[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
            "trained_tokens": None, "error": None, "finished_at": None, "integrations": None,
            "seed": body.get("seed", 42), "estimated_finish": None, "method": method,
            "metadata": body.get("metadata"), "user_provided_suffix": suffix,
        }  # fmt: skip
        self.jobs[job_id] = job
        self.job_order.append(job_id)
        self.events[job_id] = []
        self.checkpoints[job_id] = []
        self._event(job_id, f"Created fine-tuning job: {job_id}")
        self._event(job_id, f"Validating training file: {body['training_file']}")
        return job

    def _bad_line(self, file_id: str) -> int | None:
        for number, line in enumerate(self.file_bytes[file_id].splitlines(), 1):
            try:
                obj = json.loads(line)
            except ValueError:
                return number
            if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
                return number
        return None

    def advance(self, job_id: str) -> None:
        """Move a job one step through its life."""
        job = self.jobs[job_id]
        status = job["status"]
        if status == "validating_files":
            bad = self._bad_line(job["training_file"])
            if bad is not None:
                job.update(status="failed", finished_at=self._now())
                job["error"] = {
                    "code": "invalid_training_file",
                    "message": f"The job failed due to an invalid training file. Invalid file format. Line {bad}.",
                    "param": "training_file",
                }
                self._event(job_id, job["error"]["message"], level="error")
                return
            job["status"] = "queued"
            self._event(job_id, "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            job["estimated_finish"] = self._now() + 600
            self._event(job_id, "Fine-tuning job started")
        elif status == "running":
            done = sum(1 for e in self.events[job_id] if e["type"] == "metrics")
            step = done + 1
            self._event(job_id, f"Step {step}/{self.steps}: training loss={1.0 / step:.4f}",
                        data={"step": step, "train_loss": 1.0 / step, "total_steps": self.steps})  # fmt: skip
            if step == self.steps:
                model = f"ft:{job['model']}:org-fake:{job['user_provided_suffix'] or ''}:{job_id[-6:]}"
                self.checkpoints[job_id].append({
                    "object": "fine_tuning.job.checkpoint", "id": self._id("ftckpt_"), "created_at": self._now(),
                    "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{step}", "fine_tuning_job_id": job_id,
                    "metrics": {"step": float(step), "train_loss": 1.0 / step}, "step_number": step,
                })  # fmt: skip
                job.update(
                    status="succeeded", fine_tuned_model=model, finished_at=self._now(), trained_tokens=1234
                )
                job["result_files"] = [
                    self._new_file("step_metrics.csv", "fine-tune-results", b"step\n")["id"]
                ]
                self._event(job_id, "The job has successfully completed")

    def _job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise APIError(404, f"Could not find fine-tune: {job_id}", code="fine_tune_not_found", param="id")
        return self.jobs[job_id]

    def _get_fine_tuning_jobs_fine_tuning_job_id(self, request, params, job_id):
        job = self._job(job_id)
        if self.auto_advance:
            self.advance(job_id)
        return job

    @staticmethod
    def _page(items: list[dict[str, Any]], params: dict[str, str], default_limit: int) -> dict[str, Any]:
        """Newest first; ``after`` = the id of the last item of the previous page."""
        items = list(reversed(items))
        if "after" in params:
            ids = [item["id"] for item in items]
            start = ids.index(params["after"]) + 1 if params["after"] in ids else len(items)
            items = items[start:]
        limit = int(params.get("limit", default_limit))
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    def _get_fine_tuning_jobs(self, request, params):
        wanted = {k[len("metadata[") : -1]: v for k, v in params.items() if k.startswith("metadata[")}
        jobs = [self.jobs[i] for i in self.job_order]
        jobs = [j for j in jobs if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        return self._page(jobs, {k: v for k, v in params.items() if not k.startswith("metadata[")}, 20)

    def _get_fine_tuning_jobs_fine_tuning_job_id_events(self, request, params, job_id):
        self._job(job_id)
        return self._page(self.events[job_id], params, 20)

    def _get_fine_tuning_jobs_fine_tuning_job_id_checkpoints(self, request, params, job_id):
        self._job(job_id)
        page = self._page(self.checkpoints[job_id], params, 10)
        page["first_id"] = page["data"][0]["id"] if page["data"] else None
        page["last_id"] = page["data"][-1]["id"] if page["data"] else None
        return page

    def _post_fine_tuning_jobs_fine_tuning_job_id_cancel(self, request, params, job_id):
        job = self._job(job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            raise APIError(400, f"Job {job_id} has already completed", param="fine_tuning_job_id")
        job.update(status="cancelled", finished_at=self._now())
        self._event(job_id, "Fine-tuning job cancelled")
        return job

    def _post_fine_tuning_jobs_fine_tuning_job_id_pause(self, request, params, job_id):
        job = self._job(job_id)
        if job["status"] != "running":
            raise APIError(400, f"Job {job_id} is {job['status']}, only running jobs can be paused")
        job["status"] = "paused"
        self._event(job_id, "Fine-tuning job paused")
        return job

    def _post_fine_tuning_jobs_fine_tuning_job_id_resume(self, request, params, job_id):
        job = self._job(job_id)
        if job["status"] != "paused":
            raise APIError(400, f"Job {job_id} is {job['status']}, only paused jobs can be resumed")
        job["status"] = "running"
        self._event(job_id, "Fine-tuning job resumed")
        return job


def recording_sleep() -> tuple[list[float], Callable[[float], None]]:
    """A fake ``sleep`` that records how long it was asked to wait."""
    waits: list[float] = []
    return waits, waits.append
