"""``/v1/files`` and ``/v1/uploads`` of ``tuneport server``: thin translations onto :class:`.files.FileService`."""

from __future__ import annotations

import os
import shutil

from tuneport.local_backend.api.files import check_id
from tuneport.local_backend.api.handler import BaseHandler, route
from tuneport.local_backend.protocol import ApiError

__all__ = ["FileRoutes"]


class FileRoutes(BaseHandler):
    """Files (multipart uploads, listing, content, deletion) and Uploads (large files in parts)."""

    # -- files --------------------------------------------------------------------------------------------------

    @route("POST", "/files")
    def create_file(self, params: dict[str, str]) -> None:
        form = self._form("file", self.server.config.max_upload_bytes)
        purpose = self.server.files.check_purpose(form.fields.get("purpose"))
        upload = form.files.get("file")
        if upload is None:
            raise ApiError(400, "the form has no 'file' field", param="file")
        self._send(200, self.server.files.add(upload.path, upload.filename, purpose))

    @route("GET", "/files")
    def list_files(self, params: dict[str, str]) -> None:
        order = self._query("order") or "desc"
        if order not in ("asc", "desc"):
            raise ApiError(400, f"order must be asc or desc, not {order!r}", param="order")
        purpose = self._query("purpose")
        page = self.server.files.list(
            purpose=purpose, after=self._query("after"), limit=self._int_query("limit", 10000, 1, 10000),
            order=order,
        )  # fmt: skip
        self._send(200, page)

    @route("GET", "/files/(?P<file_id>[^/]+)")
    def get_file(self, params: dict[str, str]) -> None:
        self._send(200, self.server.files.get(params["file_id"]))

    @route("DELETE", "/files/(?P<file_id>[^/]+)")
    def delete_file(self, params: dict[str, str]) -> None:
        self._send(200, self.server.files.delete(params["file_id"]))

    @route("GET", "/files/(?P<file_id>[^/]+)/content")
    def file_content(self, params: dict[str, str]) -> None:
        path = self.server.files.path(params["file_id"])
        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self._response_sent = True
            shutil.copyfileobj(src, self.wfile, 1024 * 1024)

    # -- uploads ------------------------------------------------------------------------------------------------

    @route("POST", "/uploads")
    def create_upload(self, params: dict[str, str]) -> None:
        self._send(200, self.server.files.create_upload(self._json_body()))

    @route("POST", "/uploads/(?P<upload_id>[^/]+)/parts")
    def add_upload_part(self, params: dict[str, str]) -> None:
        upload_id = check_id("upload_id", params["upload_id"])
        limit = self.server.files.part_limit(upload_id)
        form = self._form("data", max(limit, 0))
        part = form.files.get("data")
        if part is None:
            raise ApiError(400, "the form has no 'data' field", param="data")
        self._send(200, self.server.files.add_part(upload_id, part.path, part.size))

    @route("POST", "/uploads/(?P<upload_id>[^/]+)/complete")
    def complete_upload(self, params: dict[str, str]) -> None:
        upload_id = check_id("upload_id", params["upload_id"])
        self._send(200, self.server.files.complete(upload_id, self._json_body()))

    @route("POST", "/uploads/(?P<upload_id>[^/]+)/cancel")
    def cancel_upload(self, params: dict[str, str]) -> None:
        upload_id = check_id("upload_id", params["upload_id"])
        self._drain()
        self._send(200, self.server.files.cancel(upload_id))
