"""The local backend behind OpenAI's API: ``/v1/files``, ``/v1/uploads``, ``/v1/fine_tuning/jobs``, ``/v1/models``.

Any OpenAI client (the official SDK, ``tuneport`` itself with ``OPENAI_BASE_URL``) can then fine-tune on this
machine without a line changed. Every route is a thin translation onto :class:`~tuneport.providers.local.
LocalProvider` (jobs, events, checkpoints) and :class:`~tuneport.local_backend.api.files.FileService` (files,
uploads, which hand their bytes to the same provider): there is no second way to create or control a job.

``/v1/chat/completions`` is not served here: training and serving are separate processes. With a serving engine's
URL (``--serve-url`` / ``TUNEPORT_SERVE_URL``, e.g. ``tuneport serve``'s) requests are forwarded to it and its answer
streamed back; without one the route answers 503 saying how to start it.

Why the standard library (``ThreadingHTTPServer``) and not a web framework: the server needs no dependency beyond
tuneport's own, starts in milliseconds, and reads upload bodies as they stream (the size cap holds whatever the
client claims). Security defaults: loopback only unless a bearer token is set (refused otherwise), the token
checked on every request in constant time, uploads capped, ids matched against strict patterns before they reach a
path, client file names reduced to a bare name, no filesystem path accepted from a client (a job names a model
this server offers, never a folder, and its outputs go where the server puts them), a read timeout on every
connection, and every error in OpenAI's error object (:mod:`tuneport.local_backend.protocol`, shared with the
fallback serving engine).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tuneport.errors import ProviderError, SpecError, TuneportError
from tuneport.local_backend.api.files import FileService, check_id
from tuneport.local_backend.api.multipart import boundary_of, parse_multipart
from tuneport.local_backend.api.public import public_items, public_job
from tuneport.local_backend.protocol import (
    DEFAULT_READ_TIMEOUT,
    ApiError,
    BodyTooLarge,
    check_bearer,
    check_token,
    content_length,
    is_chunked,
    is_loopback,
    parse_json_object,
    read_body_chunks,
)
from tuneport.spec.jobspec import JobSpec, LocalSettings

__all__ = [
    "ApiServer",
    "ServerConfig",
    "make_server",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "BASE_MODEL",
    "SERVE_URL_ENV",
]

log = logging.getLogger("tuneport.local_backend.api.server")

DEFAULT_MAX_UPLOAD_BYTES = 1024**3
#: the largest JSON body accepted (job creation, upload completion)
MAX_JSON_BYTES = 1024 * 1024
#: the room multipart framing (boundaries, part headers, small fields) takes on top of the file itself
_FORM_OVERHEAD = 256 * 1024
BASE_MODEL = "tiny-chat"
SERVE_URL_ENV = "TUNEPORT_SERVE_URL"
TOKEN_ENV = "TUNEPORT_SERVER_TOKEN"
#: what a 413 on a JSON body says: that cap is fixed (JSON requests are small), unlike the file cap
_JSON_TOO_LARGE = (
    "JSON requests are small; send training data as a file (POST /v1/files, or /v1/uploads in parts), whose "
    "limit --max-upload-bytes sets"
)
_CHAT_TOO_LARGE = "a chat request this large cannot fit a model's context: send fewer or shorter messages"
_FILE_TOO_LARGE = "restart `tuneport server` with a larger --max-upload-bytes"
#: ``local`` settings that name a place on disk: a client of this server never chooses one
PATH_FIELDS = tuple(
    name for name in LocalSettings.model_fields if name.endswith(("_dir", "_path", "_file", "_folder"))
)


class ServerConfig:
    """What ``tuneport server`` was started with."""

    def __init__(
        self,
        *,
        token: str | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        serve_url: str | None = None,
        base_model: str = BASE_MODEL,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        if max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")
        if not read_timeout > 0:
            raise ValueError("read_timeout must be positive")
        self.token = check_token(token, source=f"the server token (--token / {TOKEN_ENV})")
        self.read_timeout = read_timeout
        self.max_upload_bytes = max_upload_bytes
        self.serve_url = (serve_url or "").rstrip("/") or None
        self.base_model = base_model


# -- routing -----------------------------------------------------------------------------------------------------

_ROUTES: list[tuple[str, re.Pattern[str], str]] = []


def _route(method: str, pattern: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        _ROUTES.append((method, re.compile(f"^/v1{pattern}$"), fn.__name__))
        return fn

    return register


class ApiServer(ThreadingHTTPServer):
    """The HTTP server; ``app`` holds the provider, the file service and the configuration."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], config: ServerConfig, provider: Any) -> None:
        self.config = config
        self.provider = provider
        self.files = FileService(provider, max_upload_bytes=config.max_upload_bytes)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"


def make_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    config: ServerConfig | None = None,
    provider: Any = None,
) -> ApiServer:
    """Bind the server (``port=0`` picks a free one); refuses a non-loopback ``host`` without a token."""
    config = config or ServerConfig()
    if not is_loopback(host) and not config.token:
        raise TuneportError(
            f"refusing to listen on {host}: anyone who can reach it could read your data and start jobs",
            hint="Set a bearer token (--token or TUNEPORT_SERVER_TOKEN) to listen beyond this machine, "
            "or keep the default --host 127.0.0.1.",
            exit_code=2,
        )
    if provider is None:
        from tuneport.providers.local import LocalProvider

        provider = LocalProvider(allow_output_dir=False)  # nothing a client sends is written outside a job
    return ApiServer((host, port), config, provider)


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "tuneport"
    sys_version = ""

    # -- plumbing -----------------------------------------------------------------------------------------------

    def setup(self) -> None:
        # socketserver puts this timeout on the connection: an idle or stalled client is dropped, not kept forever
        self.timeout = self.server.config.read_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.info("%s %s", self.address_string(), format % args)

    def _dispatch(self, method: str) -> None:
        # A request without a body has nothing left unread: its connection can stay open. (Treating it as unread
        # closed every GET's connection, and a response sent outside `_send` -- file content -- did not say so:
        # the client reused the closed connection and got "server disconnected".)
        length = self.headers.get("Content-Length")
        self._body_read = "Transfer-Encoding" not in self.headers and (length is None or length.strip() == "0")
        self._response_sent = False
        self._tmp: tempfile.TemporaryDirectory | None = None
        try:
            parts = urlsplit(self.path)
            self.query = parse_qsl(parts.query, keep_blank_values=True)
            self._check_auth()
            path = parts.path.rstrip("/") or "/"
            name, params = self._match(method, path)
            getattr(self, name)(params)
        except ApiError as exc:
            if exc.close:
                self.close_connection = True
            self._error(exc)
        except SpecError as exc:
            self._error(ApiError(400, str(exc), code="invalid_spec"))
        except ProviderError as exc:
            status = 404 if exc.code == "not_found" else 400
            self._error(ApiError(status, str(exc.message), code=exc.code))
        except TuneportError as exc:
            self._error(ApiError(400, exc.message))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception:  # a bug: answer 500 (never a dropped connection) and keep the server up
            traceback.print_exc(file=sys.stderr)
            self._error(ApiError(500, "internal server error (see the server's log)", type="server_error"))
            self.close_connection = True
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
            if not self._body_read and not self.close_connection:
                self.close_connection = True  # an unread body would be taken as the next request

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _other_method(self) -> None:
        """Any other method: OpenAI's 405 (or 404) error object, not the standard library's HTML 501 page."""
        if self.command == "HEAD":
            self.close_connection = True  # the client reads no body after a HEAD: don't leave one in the stream
        self._dispatch(self.command)

    def __getattr__(self, name: str) -> Any:
        # The standard library looks up ``do_<METHOD>``; every method without one gets :meth:`_other_method`.
        if name.startswith("do_"):
            return self._other_method
        raise AttributeError(name)

    def _match(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        allowed = False
        for route_method, pattern, name in _ROUTES:
            m = pattern.match(path)
            if m:
                if route_method == method:
                    return name, {k: unquote(v) for k, v in m.groupdict().items()}
                allowed = True
        if allowed:
            raise ApiError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
        raise ApiError(404, f"Unknown route: {method} {path}", code="unknown_url")

    def _check_auth(self) -> None:
        check_bearer(self.headers.get("Authorization"), self.server.config.token)

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection or not self._body_read:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self._response_sent = True

    def _error(self, exc: ApiError) -> None:
        if self._response_sent:
            return
        if not self._body_read:
            self.close_connection = True
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        self._send(exc.status, exc.body(), headers)

    def _query(self, name: str) -> str | None:
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None

    def _int_query(self, name: str, default: int, lo: int, hi: int) -> int:
        raw = self._query(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer, not {raw!r}", param=name) from None
        if not lo <= value <= hi:
            raise ApiError(400, f"{name} must be between {lo} and {hi} (got {value})", param=name)
        return value

    def _chunks(self, limit: int, too_large: str = _JSON_TOO_LARGE, code: str = "request_too_large") -> Any:
        self._body_read = True
        chunked = is_chunked(self.headers)
        length = None if chunked else content_length(self.headers)
        if length is None and not chunked:
            raise ApiError(411, "a request body needs Content-Length or chunked Transfer-Encoding", close=True)
        return read_body_chunks(
            self.rfile, content_length=length, chunked=chunked, limit=limit, too_large=too_large, code=code
        )

    def _json_body(self) -> dict[str, Any]:
        data = b"".join(self._chunks(MAX_JSON_BYTES)) if self._has_body() else b""
        return parse_json_object(data, empty={})

    def _has_body(self) -> bool:
        if is_chunked(self.headers):
            return True
        if not content_length(self.headers):
            self._body_read = True
            return False
        return True

    def _drain(self) -> None:
        """Read (and ignore) an optional JSON body, so the connection can serve the next request."""
        if self._has_body():
            self._json_body()

    def _form(self, file_field: str, file_limit: int) -> Any:
        boundary = boundary_of(self.headers.get("Content-Type"))
        self._tmp = tempfile.TemporaryDirectory(prefix=".form-", dir=self._scratch())
        chunks = self._chunks(file_limit + _FORM_OVERHEAD, _FILE_TOO_LARGE, "file_too_large")
        try:
            return parse_multipart(
                chunks, boundary, folder=Path(self._tmp.name), file_fields=(file_field,), file_limit=file_limit
            )
        except BodyTooLarge as exc:
            if exc.code == "file_too_large":
                raise
            raise BodyTooLarge(exc.limit, _FILE_TOO_LARGE, code="file_too_large") from None

    @staticmethod
    def _scratch() -> Path:
        """Temporary files go next to their destination (same file system: a rename, not a copy)."""
        from tuneport.providers.local import files_dir

        return files_dir()

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

    @_route("GET", "/models")
    def list_models(self, params: dict[str, str]) -> None:
        self._send(200, {"object": "list", "data": self._models()})

    @_route("GET", "/models/(?P<model>[^/]+)")
    def get_model(self, params: dict[str, str]) -> None:
        for model in self._models():
            if model["id"] == params["model"]:
                return self._send(200, model)
        raise ApiError(404, f"The model {params['model'][:200]!r} does not exist", param="model",
                       code="model_not_found")  # fmt: skip

    # -- files --------------------------------------------------------------------------------------------------

    @_route("POST", "/files")
    def create_file(self, params: dict[str, str]) -> None:
        form = self._form("file", self.server.config.max_upload_bytes)
        purpose = self.server.files.check_purpose(form.fields.get("purpose"))
        upload = form.files.get("file")
        if upload is None:
            raise ApiError(400, "the form has no 'file' field", param="file")
        self._send(200, self.server.files.add(upload.path, upload.filename, purpose))

    @_route("GET", "/files")
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

    @_route("GET", "/files/(?P<file_id>[^/]+)")
    def get_file(self, params: dict[str, str]) -> None:
        self._send(200, self.server.files.get(params["file_id"]))

    @_route("DELETE", "/files/(?P<file_id>[^/]+)")
    def delete_file(self, params: dict[str, str]) -> None:
        self._send(200, self.server.files.delete(params["file_id"]))

    @_route("GET", "/files/(?P<file_id>[^/]+)/content")
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

    @_route("POST", "/uploads")
    def create_upload(self, params: dict[str, str]) -> None:
        self._send(200, self.server.files.create_upload(self._json_body()))

    @_route("POST", "/uploads/(?P<upload_id>[^/]+)/parts")
    def add_upload_part(self, params: dict[str, str]) -> None:
        upload_id = check_id("upload_id", params["upload_id"])
        limit = self.server.files.part_limit(upload_id)
        form = self._form("data", max(limit, 0))
        part = form.files.get("data")
        if part is None:
            raise ApiError(400, "the form has no 'data' field", param="data")
        self._send(200, self.server.files.add_part(upload_id, part.path, part.size))

    @_route("POST", "/uploads/(?P<upload_id>[^/]+)/complete")
    def complete_upload(self, params: dict[str, str]) -> None:
        upload_id = check_id("upload_id", params["upload_id"])
        self._send(200, self.server.files.complete(upload_id, self._json_body()))

    @_route("POST", "/uploads/(?P<upload_id>[^/]+)/cancel")
    def cancel_upload(self, params: dict[str, str]) -> None:
        upload_id = check_id("upload_id", params["upload_id"])
        self._drain()
        self._send(200, self.server.files.cancel(upload_id))

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

    @_route("POST", "/fine_tuning/jobs")
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

    @_route("GET", "/fine_tuning/jobs")
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

    @_route("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)")
    def get_job(self, params: dict[str, str]) -> None:
        self._send(200, self._job(self.server.provider.get(self._job_id(params))))

    def _control(self, params: dict[str, str], action: str) -> None:
        job_id = self._job_id(params)
        self._drain()
        self._send(200, self._job(getattr(self.server.provider, action)(job_id)))

    @_route("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/cancel")
    def cancel_job(self, params: dict[str, str]) -> None:
        self._control(params, "cancel")

    @_route("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/pause")
    def pause_job(self, params: dict[str, str]) -> None:
        self._control(params, "pause")

    @_route("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/resume")
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

    @_route("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)/events")
    def job_events(self, params: dict[str, str]) -> None:
        self._paged(params, "events", "ftevent-", 20)

    @_route("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)/checkpoints")
    def job_checkpoints(self, params: dict[str, str]) -> None:
        self._paged(params, "checkpoints", "ftckpt-", 10)

    # -- chat ---------------------------------------------------------------------------------------------------

    @_route("POST", "/chat/completions")
    def chat_completions(self, params: dict[str, str]) -> None:
        serve_url = self.server.config.serve_url
        if serve_url is None:
            raise ApiError(
                503,
                "No model is being served: this server trains, it does not answer chat requests. Start "
                "`tuneport serve --model tiny-chat --adapter NAME=JOB_ID`, then restart `tuneport server` with "
                f"--serve-url http://127.0.0.1:PORT/v1 (or set {SERVE_URL_ENV}) to forward chat requests to it.",
                type="server_error",
                code="serving_not_running",
            )
        body = b"".join(self._chunks(MAX_JSON_BYTES * 16, _CHAT_TOO_LARGE))
        self._forward(serve_url + "/chat/completions", body)

    def _forward(self, url: str, body: bytes) -> None:
        import httpx

        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        key = os.environ.get("TUNEPORT_SERVE_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client,
                client.stream("POST", url, content=body, headers=headers) as upstream,
            ):
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")  # the length is unknown: the end of the body is EOF
                self.end_headers()
                self._response_sent = True
                self.close_connection = True
                for chunk in upstream.iter_raw():
                    self.wfile.write(chunk)
                    self.wfile.flush()
        except httpx.HTTPError as exc:
            if self._response_sent:
                return
            raise ApiError(
                502,
                f"the serving engine at {url} did not answer ({type(exc).__name__}: {exc}); "
                "is `tuneport serve` still running?",
                type="server_error",
                code="serving_unreachable",
            ) from None


def serve_forever(server: ApiServer, *, ready: threading.Event | None = None) -> None:
    """Run until interrupted (Ctrl-C), then close the listening socket and the provider."""
    if ready is not None:
        ready.set()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.provider.close()
