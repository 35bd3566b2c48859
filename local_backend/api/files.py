"""Files and Uploads of the local API server, kept where the local backend keeps them.

A file arriving over HTTP goes through :meth:`LocalProvider.upload` like a file given on the command line (the
same content-addressed copy in ``$TUNEPORT_HOME/files`` and the same store record), so a job created over HTTP
and a job created with ``tuneport train`` train on files held the same way.

Uploads (OpenAI's API for large files in parts) live in ``$TUNEPORT_HOME/uploads/<upload id>/``: ``upload.json``
and one file per part. Completing one joins the parts in the order the client lists them, checks the byte count
and (when given) the md5, and hands the result to :meth:`LocalProvider.upload`.

Every id that reaches a path is checked against a strict pattern first (:func:`check_id`): a crafted id can
never name anything outside these folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import string
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tuneport.errors import ProviderError
from tuneport.local_backend.protocol import ApiError

__all__ = ["FileService", "check_id", "ID_PATTERNS", "MAX_PART_BYTES"]

_ALNUM = string.ascii_letters + string.digits
#: What every id this server issues looks like; anything else is refused before it reaches a path or a query.
ID_PATTERNS: dict[str, re.Pattern[str]] = {
    "file_id": re.compile(r"^file-[A-Za-z0-9]{1,64}$"),
    "upload_id": re.compile(r"^upload_[A-Za-z0-9]{1,64}$"),
    "part_id": re.compile(r"^part_[A-Za-z0-9]{1,64}$"),
    "fine_tuning_job_id": re.compile(r"^ftjob-[A-Za-z0-9]{1,64}$"),
}
#: OpenAI's largest Upload part
MAX_PART_BYTES = 64 * 1024 * 1024
UPLOAD_TTL_S = 3600
PURPOSES = ("fine-tune",)


def check_id(kind: str, value: str) -> str:
    """``value`` if it is a well-formed id of ``kind``, else a 400 naming the parameter."""
    if not ID_PATTERNS[kind].match(value):
        raise ApiError(400, f"{value[:80]!r} is not a valid {kind}", param=kind, code="invalid_id")
    return value


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(24))


class FileService:
    """Files and Uploads over one :class:`~tuneport.providers.local.LocalProvider`."""

    def __init__(self, provider: Any, *, max_upload_bytes: int) -> None:
        self.provider = provider
        self.max_upload_bytes = max_upload_bytes
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        return self.provider.store

    # -- files ----------------------------------------------------------------------------------------------------

    @staticmethod
    def check_purpose(purpose: str | None) -> str:
        if purpose not in PURPOSES:
            raise ApiError(
                400,
                f"purpose must be one of {', '.join(PURPOSES)} on this server (got {purpose!r}): "
                "the local backend holds training data only",
                param="purpose",
            )
        return purpose

    def add(self, source: Path, filename: str, purpose: str) -> dict[str, Any]:
        """Store ``source`` (a finished temporary file) as an uploaded file named ``filename``."""
        from tuneport.providers.local import files_dir

        # LocalProvider.upload records the file's own name: give it the client's (sanitized) name.
        with tempfile.TemporaryDirectory(dir=files_dir(), prefix=".incoming-") as tmp:
            named = Path(tmp) / filename
            os.replace(source, named)
            # The same bytes uploaded again come back as the file already held (with its first name).
            return self.provider.upload(named, purpose=purpose, take=True).to_api()

    def _row(self, file_id: str) -> dict[str, Any]:
        from tuneport.providers.local import files_dir

        check_id("file_id", file_id)
        row = self.store.get_file(self.provider.name, file_id)
        if row is None or not (files_dir() / f"{file_id}.jsonl").is_file():
            raise ApiError(404, f"No such File object: {file_id}", param="file_id", code="not_found")
        return row

    @staticmethod
    def _object(row: dict[str, Any]) -> dict[str, Any]:
        from tuneport.jobs.objects import FileObject

        return FileObject(
            id=row["provider_file_id"], bytes=row["size_bytes"] or 0, created_at=row["created_at"],
            filename=row["filename"] or f"{row['provider_file_id']}.jsonl", purpose=row["purpose"],
        ).to_api()  # fmt: skip

    def get(self, file_id: str) -> dict[str, Any]:
        return self._object(self._row(file_id))

    def path(self, file_id: str) -> Path:
        """Where the file's bytes are (for ``GET /files/{id}/content``)."""
        from tuneport.providers.local import files_dir

        self._row(file_id)
        return files_dir() / f"{file_id}.jsonl"

    def list(self, *, purpose: str | None, after: str | None, limit: int, order: str) -> dict[str, Any]:
        from tuneport.providers.local import files_dir

        rows = [
            r for r in self.store.list_files(self.provider.name, purpose=purpose)
            if (files_dir() / f"{r['provider_file_id']}.jsonl").is_file()
        ]  # fmt: skip
        if order == "asc":
            rows.reverse()
        if after is not None:
            check_id("file_id", after)
            ids = [r["provider_file_id"] for r in rows]
            if after not in ids:
                raise ApiError(400, f"No file {after!r} to list after", param="after")
            rows = rows[ids.index(after) + 1 :]
        page = [self._object(r) for r in rows[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else "",
            "last_id": page[-1]["id"] if page else "",
            "has_more": len(rows) > limit,
        }

    def delete(self, file_id: str) -> dict[str, Any]:
        """Delete a file, unless an unfinished job trains on it (it would lose its data mid-run)."""
        from tuneport.local_backend.training import jobs as J
        from tuneport.providers.local import files_dir

        self._row(file_id)
        unfinished = (*J.ACTIVE_STATUSES, "paused")
        for job in self.store.list_jobs(backend=self.provider.name, status=unfinished):
            if file_id in (job.get("training_file"), job.get("validation_file")):
                raise ApiError(
                    409,
                    f"File {file_id} is in use by job {job['id']} ({job['status']}); cancel the job or let it "
                    "finish before deleting the file",
                    param="file_id",
                    code="file_in_use",
                )
        (files_dir() / f"{file_id}.jsonl").unlink(missing_ok=True)
        self.store.forget_file(self.provider.name, file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    # -- uploads --------------------------------------------------------------------------------------------------

    @staticmethod
    def _uploads_dir() -> Path:
        from tuneport.paths import home_dir

        path = home_dir() / "uploads"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _folder(self, upload_id: str) -> Path:
        return self._uploads_dir() / check_id("upload_id", upload_id)

    def _load(self, upload_id: str) -> dict[str, Any]:
        meta = self._folder(upload_id) / "upload.json"
        try:
            upload = json.loads(meta.read_text("utf-8"))
        except FileNotFoundError:
            raise ApiError(404, f"No such Upload: {upload_id}", param="upload_id", code="not_found") from None
        if upload["status"] == "pending" and time.time() > upload["expires_at"]:
            upload["status"] = "expired"
            self._save(upload)
        return upload

    def _save(self, upload: dict[str, Any]) -> None:
        meta = self._folder(upload["id"]) / "upload.json"
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(upload), "utf-8")
        os.replace(tmp, meta)

    @staticmethod
    def _public(upload: dict[str, Any]) -> dict[str, Any]:
        keep = ("id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status", "file")
        return {k: upload.get(k) for k in keep}

    def _pending(self, upload_id: str) -> dict[str, Any]:
        upload = self._load(upload_id)
        if upload["status"] != "pending":
            raise ApiError(
                400,
                f"Upload {upload_id} is {upload['status']}: it no longer accepts changes",
                param="upload_id",
            )
        return upload

    def create_upload(self, body: dict[str, Any]) -> dict[str, Any]:
        for name, kind in (("bytes", int), ("filename", str), ("purpose", str), ("mime_type", str)):
            value = body.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ApiError(400, f"{name} is required and must be a {kind.__name__}", param=name)
        self.check_purpose(body["purpose"])
        size = body["bytes"]
        if size < 1:
            raise ApiError(400, "bytes must be at least 1", param="bytes")
        if size > self.max_upload_bytes:
            raise ApiError(
                413,
                f"bytes={size} is more than this server accepts ({self.max_upload_bytes}); "
                "restart `tuneport server` with a larger --max-upload-bytes",
                param="bytes",
                code="file_too_large",
            )
        now = int(time.time())
        upload = {
            "id": _new_id("upload_"), "object": "upload", "bytes": size, "created_at": now,
            "expires_at": now + UPLOAD_TTL_S, "filename": self._filename(body["filename"]),
            "purpose": body["purpose"], "status": "pending", "file": None, "mime_type": body["mime_type"],
            "parts": [],
        }  # fmt: skip
        (self._uploads_dir() / upload["id"] / "parts").mkdir(parents=True)
        self._save(upload)
        return self._public(upload)

    @staticmethod
    def _filename(name: str) -> str:
        from tuneport.local_backend.api.multipart import safe_filename

        return safe_filename(name)

    def part_limit(self, upload_id: str) -> int:
        """How many bytes the next part of this upload may hold (so the body is capped while it streams)."""
        with self._lock:
            upload = self._pending(upload_id)
            received = sum(p["bytes"] for p in upload["parts"])
        return min(MAX_PART_BYTES, upload["bytes"] - received)

    def add_part(self, upload_id: str, data: Path, size: int) -> dict[str, Any]:
        with self._lock:
            upload = self._pending(upload_id)
            received = sum(p["bytes"] for p in upload["parts"])
            if received + size > upload["bytes"]:
                raise ApiError(
                    400,
                    f"the parts of Upload {upload_id} would hold {received + size} bytes, more than the "
                    f"{upload['bytes']} it was created with",
                    param="data",
                )
            part = {"id": _new_id("part_"), "object": "upload.part", "created_at": int(time.time()),
                    "upload_id": upload_id}  # fmt: skip
            os.replace(data, self._folder(upload_id) / "parts" / part["id"])
            upload["parts"].append({"id": part["id"], "bytes": size})
            self._save(upload)
        return part

    def complete(self, upload_id: str, body: dict[str, Any]) -> dict[str, Any]:
        part_ids = body.get("part_ids")
        if not isinstance(part_ids, list) or not all(isinstance(p, str) for p in part_ids) or not part_ids:
            raise ApiError(400, "part_ids must be a non-empty list of part ids", param="part_ids")
        md5 = body.get("md5")
        if md5 is not None and not isinstance(md5, str):
            raise ApiError(400, "md5 must be a string", param="md5")
        with self._lock:
            upload = self._pending(upload_id)
            folder = self._folder(upload_id)
            known = {p["id"] for p in upload["parts"]}
            for part_id in part_ids:
                check_id("part_id", part_id)
                if part_id not in known:
                    raise ApiError(
                        400, f"part {part_id} is not a part of Upload {upload_id}", param="part_ids"
                    )
            if len(set(part_ids)) != len(part_ids):
                raise ApiError(400, "part_ids lists a part more than once", param="part_ids")
            digest = hashlib.md5(usedforsecurity=False)
            joined = folder / "joined"
            size = 0
            with open(joined, "wb") as out:
                for part_id in part_ids:
                    with open(folder / "parts" / part_id, "rb") as src:
                        while block := src.read(1024 * 1024):
                            digest.update(block)
                            size += len(block)
                            out.write(block)
            try:
                if size != upload["bytes"]:
                    raise ApiError(
                        400,
                        f"the listed parts hold {size} bytes but Upload {upload_id} was created with "
                        f"bytes={upload['bytes']}",
                        param="part_ids",
                    )
                if md5 is not None and md5.lower() != digest.hexdigest():
                    raise ApiError(
                        400,
                        f"md5 mismatch: the joined parts have md5 {digest.hexdigest()}, the request says {md5}",
                        param="md5",
                    )
                try:
                    upload["file"] = self.add(joined, upload["filename"], upload["purpose"])
                except ProviderError as exc:
                    raise ApiError(400, str(exc)) from exc
            finally:
                joined.unlink(missing_ok=True)
            upload["status"] = "completed"
            shutil.rmtree(folder / "parts", ignore_errors=True)
            self._save(upload)
        return self._public(upload)

    def cancel(self, upload_id: str) -> dict[str, Any]:
        with self._lock:
            upload = self._pending(upload_id)
            upload["status"] = "cancelled"
            shutil.rmtree(self._folder(upload_id) / "parts", ignore_errors=True)
            self._save(upload)
        return self._public(upload)
