"""The request plumbing of ``tuneport server``: routing, auth, bodies, answers, and errors in OpenAI's shape.

Route handlers live by resource in :mod:`.file_routes`, :mod:`.job_routes` and :mod:`.chat_route`; each is a
method registered with :func:`route`, given the path's parameters. Whatever one raises becomes OpenAI's error
object with the right status (a bug: a logged 500, never a dropped connection), and a body left unread closes
the connection so it cannot be taken for the next request.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from tuneport.errors import ProviderError, SpecError, TuneportError
from tuneport.local_backend.api.multipart import boundary_of, parse_multipart
from tuneport.local_backend.protocol import (
    ApiError,
    BodyTooLarge,
    check_bearer,
    content_length,
    is_chunked,
    parse_json_object,
    read_body_chunks,
)
from tuneport.providers.local import files_dir

__all__ = ["BaseHandler", "route", "MAX_JSON_BYTES"]

log = logging.getLogger("tuneport.local_backend.api.server")

#: the largest JSON body accepted (job creation, upload completion)
MAX_JSON_BYTES = 1024 * 1024
#: the room multipart framing (boundaries, part headers, small fields) takes on top of the file itself
_FORM_OVERHEAD = 256 * 1024
#: what a 413 on a JSON body says: that cap is fixed (JSON requests are small), unlike the file cap
_JSON_TOO_LARGE = (
    "JSON requests are small; send training data as a file (POST /v1/files, or /v1/uploads in parts), whose "
    "limit --max-upload-bytes sets"
)
_FILE_TOO_LARGE = "restart `tuneport server` with a larger --max-upload-bytes"

_ROUTES: list[tuple[str, re.Pattern[str], str]] = []


def route(method: str, pattern: str) -> Callable[[Callable], Callable]:
    """Register the decorated handler method for ``method`` on ``/v1`` + ``pattern`` (named groups: params)."""

    def register(fn: Callable) -> Callable:
        _ROUTES.append((method, re.compile(f"^/v1{pattern}$"), fn.__name__))
        return fn

    return register


class ServerState(Protocol):
    """What handlers read from their server (:class:`~tuneport.local_backend.api.server.ApiServer`)."""

    config: Any  # ServerConfig
    provider: Any  # LocalProvider
    files: Any  # FileService


class BaseHandler(BaseHTTPRequestHandler):
    """Plumbing every route handler uses; see the module docstring."""

    server: ServerState  # type: ignore[assignment]
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
        return files_dir()
