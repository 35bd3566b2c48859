"""``/v1/models`` and ``/v1/fine_tuning/jobs`` of ``tuneport server``: jobs go through the local provider.

A client names the model by what ``/v1/models`` offers and never a path; ``local`` settings that name a folder
are refused (a job's outputs go to the job's own folder); what comes back carries no folder of this machine
(:mod:`.public`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from tuneport.local_backend.api.files import check_id
from tuneport.local_backend.api.handler import BaseHandler, route
from tuneport.local_backend.api.public import public_items, public_job
from tuneport.local_backend.protocol import ApiError
from tuneport.spec.jobspec import JobSpec, LocalSettings

__all__ = ["JobRoutes", "PATH_FIELDS"]

#: ``local`` settings that name a place on disk: a client of this server never chooses one
PATH_FIELDS = tuple(
    name for name in LocalSettings.model_fields if name.endswith(("_dir", "_path", "_file", "_folder"))
)


class JobRoutes(BaseHandler):
    """Models (the base model and finished jobs' models) and fine-tuning jobs (create, list, control, follow)."""

    # -- models -------------------------------------------------------------------------------------------------

    def _models(self) -> list[dict[str, Any]]:
        store = self.server.provider.store
        created = int(os.path.getmtime(store.path)) if Path(store.path).exists() else int(time.time())
        models = [{"id": self.server.config.base_model, "object": "model", "created": created,
                   "owned_by": "tuneport"}]  # fmt: skip
        for row in store.list_jobs(backend=self.server.provider.name, status="succeeded"):
            if row.get("fine_tuned_model"):
                models.append({"id": row["fine_tuned_model"], "object": "model",
                               "created": row.get("finished_at") or row["created_at"], "owned_by": "tuneport"})  # fmt: skip
        return models

    @route("GET", "/models")
    def list_models(self, params: dict[str, str]) -> None:
        self._send(200, {"object": "list", "data": self._models()})

    @route("GET", "/models/(?P<model>[^/]+)")
    def get_model(self, params: dict[str, str]) -> None:
        for model in self._models():
            if model["id"] == params["model"]:
                return self._send(200, model)
        raise ApiError(404, f"The model {params['model'][:200]!r} does not exist", param="model",
                       code="model_not_found")  # fmt: skip

    # -- fine-tuning jobs ---------------------------------------------------------------------------------------

    @staticmethod
    def _job(job: Any) -> dict[str, Any]:
        return public_job(job.to_api())  # paths on this machine are not a client's business

    def _check_no_paths(self, body: dict[str, Any]) -> None:
        """Refuse every filesystem path in a job request: where a job writes is the server's choice alone."""
        local = body.get("local")
        if local is None:
            return
        if not isinstance(local, dict):
            raise ApiError(400, "local must be an object of local training settings", param="local")
        given = [name for name in PATH_FIELDS if name in local]
        if given:
            raise ApiError(
                400,
                f"local.{given[0]} names a folder on the server, which a client cannot choose: a job's outputs "
                "go to the job's own folder on the server. Remove it from the request.",
                param=f"local.{given[0]}",
                code="path_not_allowed",
            )

    def _check_model(self, body: dict[str, Any]) -> None:
        """The job's model must be one this server offers to fine-tune: a name, never a path (no probing)."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "model is required", param="model")
        offered = self.server.config.base_model
        if model != offered:
            raise ApiError(
                400,
                f"The model {model[:100]!r} does not exist or cannot be fine-tuned on this server; it fine-tunes "
                f"{offered!r} (GET /v1/models lists what it serves)",
                param="model",
                code="model_not_found",
            )

    @route("POST", "/fine_tuning/jobs")
    def create_job(self, params: dict[str, str]) -> None:
        body = self._json_body()
        for name in ("training_file", "validation_file"):
            value = body.get(name)
            if value is not None:
                if not isinstance(value, str):
                    raise ApiError(400, f"{name} must be a file id", param=name)
                check_id("file_id", value)
        if "training_file" not in body:
            raise ApiError(400, "training_file is required", param="training_file")
        self._check_model(body)
        self._check_no_paths(body)
        body = {**body, "backend": "local"}
        spec = JobSpec.from_dict(body, source="request body")
        files = self.server.files
        for name in ("training_file", "validation_file"):
            if body.get(name) is not None:
                try:
                    files.get(body[name])
                except ApiError as exc:
                    raise ApiError(400, f"{name}: {exc.message}", param=name, code="invalid_file") from None
        job = self.server.provider.create(
            spec, training_file=body["training_file"], validation_file=body.get("validation_file")
        )
        self._send(200, self._job(job))

    @route("GET", "/fine_tuning/jobs")
    def list_jobs(self, params: dict[str, str]) -> None:
        metadata: dict[str, str] = {}
        for key, value in self.query:
            m = re.fullmatch(r"metadata\[(.+)\]", key)
            if m:
                metadata[m.group(1)] = value
        after = self._query("after")
        if after is not None:
            check_id("fine_tuning_job_id", after)
        page = self.server.provider.list(
            after=after, limit=self._int_query("limit", 20, 1, 100), metadata=metadata or None
        )
        data = page.to_api()
        data["data"] = [self._job(j) for j in page.data]
        data.pop("first_id", None)
        data.pop("last_id", None)
        self._send(200, data)

    def _job_id(self, params: dict[str, str]) -> str:
        return check_id("fine_tuning_job_id", params["job_id"])

    @route("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)")
    def get_job(self, params: dict[str, str]) -> None:
        self._send(200, self._job(self.server.provider.get(self._job_id(params))))

    def _control(self, params: dict[str, str], action: str) -> None:
        job_id = self._job_id(params)
        self._drain()
        self._send(200, self._job(getattr(self.server.provider, action)(job_id)))

    @route("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/cancel")
    def cancel_job(self, params: dict[str, str]) -> None:
        self._control(params, "cancel")

    @route("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/pause")
    def pause_job(self, params: dict[str, str]) -> None:
        self._control(params, "pause")

    @route("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/resume")
    def resume_job(self, params: dict[str, str]) -> None:
        self._control(params, "resume")

    def _paged(self, params: dict[str, str], kind: str, prefix: str, default: int) -> None:
        job_id = self._job_id(params)
        after = self._query("after")
        if after is not None and not re.fullmatch(rf"{prefix}\d{{1,18}}", after):
            raise ApiError(400, f"after must be an id like {prefix}123, not {after[:80]!r}", param="after")
        page = getattr(self.server.provider, kind)(
            job_id, after=after, limit=self._int_query("limit", default, 1, 100)
        )
        data = page.to_api()
        data["data"] = public_items(data["data"])  # no folder of this machine in what a client reads
        if kind == "events":
            data.pop("first_id", None)
            data.pop("last_id", None)
        self._send(200, data)

    @route("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)/events")
    def job_events(self, params: dict[str, str]) -> None:
        self._paged(params, "events", "ftevent-", 20)

    @route("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)/checkpoints")
    def job_checkpoints(self, params: dict[str, str]) -> None:
        self._paged(params, "checkpoints", "ftckpt-", 10)
