"""An in-memory fake of an Azure OpenAI resource's fine-tuning API and of its control plane, as an httpx transport.

It follows Azure's documented data-plane authoring API where tuneport depends on it, and where Azure differs from
OpenAI it behaves as Azure does:

- paths under ``/openai/`` (``/openai/files``, ``/openai/fine_tuning/jobs``, ``.../events``, ``.../checkpoints``,
  ``.../cancel|pause|resume``), every request needs ``?api-version=`` (else 404 ``Resource not found``, as Azure
  answers) and the key in an ``api-key`` header (else 401 with Azure's message);
- uploaded files start ``pending`` and become ``processed`` on a later read; a job on a file that is not
  processed is refused (400 ``invalidPayload``);
- jobs carry ``trainingType`` and move ``pending -> running -> succeeded`` (Azure's ``pending`` where OpenAI says
  ``validating_files``/``queued``), fine-tuned model ids are Azure's ``BASE.ft-<hex>``;
- the job list has no metadata filter (``metadata[...]`` query parameters are ignored, as Azure ignores unknown
  query parameters); lists page newest first with ``after``/``limit`` and ``has_more``;
- error bodies are ``{"error": {"code": ..., "message": ...}}`` (Azure's codes: ``invalidPayload``, ``NotFound``,
  ``429``...);
- the control plane (``management.azure.com``): ``PUT/GET/DELETE .../Microsoft.CognitiveServices/accounts/{a}/
  deployments/{name}?api-version=`` with a bearer token, ARM's ``{"value": [...], "nextLink"}`` paging.

Faults are injected per route as in ``fake_openai`` (:meth:`FakeAzure.fail`).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from typing import Any

import httpx
from fake_openai import Fault, parse_multipart

AZURE_KEY = "azkey-canary-9d41c2b7e6f84a0b93c5d7e1f2a4b6c8"
ARM_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi-arm-canary-token-31f5"
ENDPOINT = "https://tuneport-test.openai.azure.com"
TUNABLE = {"gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14",
           "gpt-4.1-nano-2025-04-14"}  # fmt: skip
TRAINING_TYPES = {"Standard", "GlobalStandard", "developerTier"}

ROUTES: list[tuple[str, str, str]] = [
    ("POST", r"/openai/files", "post_files"),
    ("GET", r"/openai/files", "list_files"),
    ("GET", r"/openai/files/(?P<file_id>[^/]+)", "get_file"),
    ("DELETE", r"/openai/files/(?P<file_id>[^/]+)", "delete_file"),
    ("GET", r"/openai/files/(?P<file_id>[^/]+)/content", "file_content"),
    ("POST", r"/openai/fine_tuning/jobs", "create_job"),
    ("GET", r"/openai/fine_tuning/jobs", "list_jobs"),
    ("GET", r"/openai/fine_tuning/jobs/(?P<job_id>[^/]+)", "get_job"),
    ("POST", r"/openai/fine_tuning/jobs/(?P<job_id>[^/]+)/cancel", "cancel_job"),
    ("POST", r"/openai/fine_tuning/jobs/(?P<job_id>[^/]+)/pause", "pause_job"),
    ("POST", r"/openai/fine_tuning/jobs/(?P<job_id>[^/]+)/resume", "resume_job"),
    ("GET", r"/openai/fine_tuning/jobs/(?P<job_id>[^/]+)/events", "list_events"),
    ("GET", r"/openai/fine_tuning/jobs/(?P<job_id>[^/]+)/checkpoints", "list_checkpoints"),
]
_ARM = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.CognitiveServices/accounts/(?P<account>[^/]+)/deployments"  # noqa: E501
ARM_ROUTES: list[tuple[str, str, str]] = [
    ("GET", _ARM, "list_deployments"),
    ("PUT", _ARM + r"/(?P<name>[^/]+)", "put_deployment"),
    ("GET", _ARM + r"/(?P<name>[^/]+)", "get_deployment"),
    ("DELETE", _ARM + r"/(?P<name>[^/]+)", "delete_deployment"),
]


class AzureError(Exception):
    def __init__(self, status: int, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param

    def response(self) -> httpx.Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.param:
            error["param"] = self.param
        return httpx.Response(self.status, json={"error": error}, headers={"apim-request-id": "req-err"})


class FakeAzure:
    """The fake resource. ``fake.transport`` serves both the resource host and ``management.azure.com``."""

    def __init__(self, api_key: str = AZURE_KEY, *, arm_token: str = ARM_TOKEN, echo_metadata: bool = True) -> None:
        self.api_key, self.arm_token = api_key, arm_token
        #: Azure api-versions before 2025 drop ``metadata``; False makes the fake behave like them
        self.echo_metadata = echo_metadata
        self.files: dict[str, dict[str, Any]] = {}
        self.file_bytes: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_order: list[str] = []
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.checkpoints: dict[str, list[dict[str, Any]]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.bodies: list[Any] = []
        self.faults: list[Fault] = []
        self.auto_advance = True
        self.steps = 3
        self.file_reads_until_processed = 1
        self._ids = itertools.count(1)
        self._clock = itertools.count(int(time.time()))  # real seconds: clients compare with their clock
        self._lock = threading.RLock()
        self.transport = httpx.MockTransport(self.handle)

    # -- test controls ----------------------------------------------------------------------------------------
    def fail(self, method: str, pattern: str, *, status: int | None = None, body: Any = None,
             headers: dict[str, str] | None = None, exc: type[Exception] | None = None, times: int = 1,
             after: bool = False) -> Fault:  # fmt: skip
        """Make the next ``times`` matching requests (path without ``/openai``) fail; ``after``: handle it first."""
        if status is not None and body is None:
            body = {"error": {"code": str(status), "message": f"injected {status}"}}
        fault = Fault(method, pattern, times, after, status, body, dict(headers or {}), exc)
        self.faults.append(fault)
        return fault

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.fullmatch(pattern, p))

    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}{'a1b2c3'}"

    def _now(self) -> int:
        return next(self._clock)

    # -- transport --------------------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        with self._lock:
            if request.url.host == "management.azure.com":
                return self._handle_arm(request, params)
            path = request.url.path
            short = path.removeprefix("/openai")
            self.requests.append((request.method, short, params))
            self.headers_seen.append(dict(request.headers))
            fault = next((f for f in self.faults if f.matches(request.method, short) and not f.after), None)
            if fault is not None:
                return fault.fire(request)
            if "api-version" not in params:
                return AzureError(404, "404", "Resource not found").response()
            if request.headers.get("api-key") != self.api_key:
                return AzureError(401, "401", "Access denied due to invalid subscription key or wrong API "
                                  "endpoint. Make sure to provide a valid key for an active subscription and use "
                                  "a correct regional API endpoint for your resource.").response()  # fmt: skip
            try:
                response = self._route(ROUTES, request, path, params)
            except AzureError as exc:
                response = exc.response()
            fault = next((f for f in self.faults if f.matches(request.method, short) and f.after), None)
            if fault is not None:
                return fault.fire(request)
            return response

    def _handle_arm(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        self.requests.append((request.method, "arm:" + request.url.path, params))
        if params.get("api-version") is None:
            return AzureError(400, "MissingApiVersionParameter",
                              "The api-version query parameter (?api-version=) is required.").response()  # fmt: skip
        if request.headers.get("authorization") != f"Bearer {self.arm_token}":
            return AzureError(401, "InvalidAuthenticationToken", "The access token is invalid.").response()
        try:
            return self._route(ARM_ROUTES, request, request.url.path, params)
        except AzureError as exc:
            return exc.response()

    def _route(self, routes: list[tuple[str, str, str]], request: httpx.Request, path: str,
               params: dict[str, str]) -> httpx.Response:  # fmt: skip
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if method == request.method and match:
                body = getattr(self, "_" + handler)(request, params, **match.groupdict())
                status = 204 if body is None else (201 if handler in ("post_files", "put_deployment") else 200)
                if body is None:
                    return httpx.Response(204, headers={"apim-request-id": f"req-{next(self._ids)}"})
                return httpx.Response(status, json=body, headers={"apim-request-id": f"req-{next(self._ids)}"})
        raise AzureError(404, "404", "Resource not found")

    # -- files ------------------------------------------------------------------------------------------------
    def _post_files(self, request, params):
        form = parse_multipart(request)
        if form.get("purpose") not in ("fine-tune",):
            raise AzureError(400, "invalidPayload", f"The purpose {form.get('purpose')!r} is not supported.")
        file_id = self._id("file-")
        obj = {"id": file_id, "object": "file", "bytes": len(form["file"]), "created_at": self._now(),
               "filename": form["file.filename"], "purpose": "fine-tune", "status": "pending", "_reads": 0}  # fmt: skip
        self.files[file_id] = obj
        self.file_bytes[file_id] = form["file"]
        return self._file_view(obj)

    @staticmethod
    def _file_view(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _file(self, file_id: str) -> dict[str, Any]:
        if file_id not in self.files:
            raise AzureError(404, "NotFound", f"File with id '{file_id}' not found.")
        return self.files[file_id]

    def _get_file(self, request, params, file_id):
        obj = self._file(file_id)
        obj["_reads"] += 1
        if obj["status"] == "pending" and obj["_reads"] >= self.file_reads_until_processed:
            obj["status"] = "processed"
        return self._file_view(obj)

    def _list_files(self, request, params):
        return {"object": "list", "data": [self._file_view(f) for f in self.files.values()]}

    def _delete_file(self, request, params, file_id):
        self._file(file_id)
        del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def _file_content(self, request, params, file_id):
        self._file(file_id)
        raise AzureError(400, "invalidPayload", "Downloading training files is not supported.")

    # -- jobs -------------------------------------------------------------------------------------------------
    def _event(self, job_id: str, message: str, *, data: dict | None = None, level: str = "info") -> None:
        self.events[job_id].append({"object": "fine_tuning.job.event", "id": self._id("ftevent-"),
                                    "created_at": self._now(), "level": level, "message": message,
                                    "type": "metrics" if data else "message", "data": data or {}})  # fmt: skip

    def _create_job(self, request, params):
        body = json.loads(request.content)
        self.bodies.append(body)
        if body.get("model") not in TUNABLE:
            raise AzureError(400, "invalidPayload", f"The specified base model '{body.get('model')}' does not "
                             "support fine-tuning.", param="model")  # fmt: skip
        if body.get("trainingType", "Standard") not in TRAINING_TYPES:
            raise AzureError(400, "invalidPayload", f"trainingType {body['trainingType']!r} is not valid.")
        if "integrations" in body:
            raise AzureError(400, "invalidPayload", "integrations are not supported.")
        for param in ("training_file", "validation_file"):
            file_id = body.get(param)
            if file_id is None:
                continue
            if file_id not in self.files:
                raise AzureError(400, "invalidPayload", f"The {param} '{file_id}' was not found.", param=param)
            if self.files[file_id]["status"] != "processed":
                raise AzureError(400, "invalidPayload", f"The {param} '{file_id}' is not ready: its status is "
                                 f"{self.files[file_id]['status']}.", param=param)  # fmt: skip
        job_id = self._id("ftjob-")
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        hyper = dict((method.get(method["type"]) or {}).get("hyperparameters") or {})
        for key, default in {"batch_size": 1, "learning_rate_multiplier": 1.0, "n_epochs": 3}.items():
            if hyper.get(key, "auto") == "auto":
                hyper[key] = default
        job = {"object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": self._now(),
               "fine_tuned_model": None, "organization_id": "", "result_files": [], "status": "pending",
               "training_file": body["training_file"], "validation_file": body.get("validation_file"),
               "hyperparameters": {k: hyper[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")},
               "trained_tokens": None, "error": {}, "finished_at": None, "seed": body.get("seed", 7),
               "estimated_finish": None, "method": {"type": method["type"], method["type"]: {"hyperparameters": hyper}},
               "suffix": body.get("suffix"), "trainingType": body.get("trainingType", "Standard")}  # fmt: skip
        if self.echo_metadata and body.get("metadata"):
            job["metadata"] = body["metadata"]
        self.jobs[job_id] = job
        self.job_order.append(job_id)
        self.events[job_id] = []
        self.checkpoints[job_id] = []
        self._event(job_id, "Job enqueued. Waiting for jobs ahead to complete.")
        return job

    def advance(self, job_id: str) -> None:
        job = self.jobs[job_id]
        if job["status"] == "pending":
            job["status"] = "running"
            self._event(job_id, "Training started.")
        elif job["status"] == "running":
            step = 1 + sum(1 for e in self.events[job_id] if e["type"] == "metrics")
            self._event(job_id, f"Step {step}: training loss={1.0 / step:.4f}",
                        data={"step": step, "train_loss": 1.0 / step})  # fmt: skip
            if step == self.steps:
                model = f"{job['model']}.ft-{job_id[-12:]}" + (f"-{job['suffix']}" if job.get("suffix") else "")
                self.checkpoints[job_id].append({
                    "object": "fine_tuning.job.checkpoint", "id": self._id("ftchkpt-"), "created_at": self._now(),
                    "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{step}", "fine_tuning_job_id": job_id,
                    "metrics": {"step": float(step), "train_loss": 1.0 / step}, "step_number": step,
                })  # fmt: skip
                job.update(status="succeeded", fine_tuned_model=model, finished_at=self._now(), trained_tokens=999)
                self._event(job_id, "Training job succeeded.")

    def _job(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise AzureError(404, "NotFound", f"The specified fine-tuning job '{job_id}' was not found.")
        return self.jobs[job_id]

    def _get_job(self, request, params, job_id):
        job = self._job(job_id)
        if self.auto_advance:
            self.advance(job_id)
        return job

    @staticmethod
    def _page(items: list[dict[str, Any]], params: dict[str, str], default_limit: int) -> dict[str, Any]:
        items = list(reversed(items))
        if "after" in params:
            ids = [i["id"] for i in items]
            items = items[ids.index(params["after"]) + 1 :] if params["after"] in ids else []
        limit = int(params.get("limit", default_limit))
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    def _list_jobs(self, request, params):
        return self._page([self.jobs[i] for i in self.job_order], params, 20)

    def _list_events(self, request, params, job_id):
        self._job(job_id)
        return self._page(self.events[job_id], params, 20)

    def _list_checkpoints(self, request, params, job_id):
        self._job(job_id)
        return self._page(self.checkpoints[job_id], params, 10)

    def _cancel_job(self, request, params, job_id):
        job = self._job(job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            raise AzureError(400, "invalidPayload", f"Job {job_id} is {job['status']} and cannot be cancelled.")
        job.update(status="cancelled", finished_at=self._now())
        self._event(job_id, "Job cancelled.")
        return job

    def _pause_job(self, request, params, job_id):
        job = self._job(job_id)
        if job["status"] != "running":
            raise AzureError(400, "invalidPayload", f"Job {job_id} is {job['status']}; only running jobs pause.")
        job["status"] = "paused"
        self._event(job_id, "Job paused.")
        return job

    def _resume_job(self, request, params, job_id):
        job = self._job(job_id)
        if job["status"] != "paused":
            raise AzureError(400, "invalidPayload", f"Job {job_id} is {job['status']}; only paused jobs resume.")
        job["status"] = "running"
        self._event(job_id, "Job resumed.")
        return job

    # -- control plane ------------------------------------------------------------------------------------------
    def _deployment_id(self, sub: str, rg: str, account: str, name: str) -> str:
        return (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/"
                f"{account}/deployments/{name}")  # fmt: skip

    def _put_deployment(self, request, params, sub, rg, account, name):
        body = json.loads(request.content)
        model = ((body.get("properties") or {}).get("model") or {}).get("name")
        if not any(job.get("fine_tuned_model") == model for job in self.jobs.values()):
            raise AzureError(400, "DeploymentModelNotSupported", f"The model '{model}' is not available.")
        deployment = {"id": self._deployment_id(sub, rg, account, name), "type":
                      "Microsoft.CognitiveServices/accounts/deployments", "name": name, "sku": body.get("sku"),
                      "properties": {"model": body["properties"]["model"], "provisioningState": "Succeeded"}}  # fmt: skip
        self.deployments[name] = deployment
        return deployment

    def _get_deployment(self, request, params, sub, rg, account, name):
        if name not in self.deployments:
            raise AzureError(404, "DeploymentNotFound", f"Deployment '{name}' not found.")
        return self.deployments[name]

    def _list_deployments(self, request, params, sub, rg, account):
        names = sorted(self.deployments)
        start = int(params.get("$skipToken", 0))
        page = names[start : start + 2]
        result: dict[str, Any] = {"value": [self.deployments[n] for n in page]}
        if start + 2 < len(names):
            base = f"https://management.azure.com{request.url.path}"
            result["nextLink"] = f"{base}?api-version={params['api-version']}&$skipToken={start + 2}"
        return result

    def _delete_deployment(self, request, params, sub, rg, account, name):
        self.deployments.pop(name, None)
        return None
