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

import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from tuneport.errors import TuneportError
from tuneport.local_backend.api.chat_route import SERVE_URL_ENV, ChatRoute
from tuneport.local_backend.api.file_routes import FileRoutes
from tuneport.local_backend.api.files import FileService
from tuneport.local_backend.api.job_routes import JobRoutes
from tuneport.local_backend.protocol import DEFAULT_READ_TIMEOUT, check_token, is_loopback

__all__ = [
    "ApiServer",
    "ServerConfig",
    "make_server",
    "serve_forever",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "BASE_MODEL",
    "SERVE_URL_ENV",
    "TOKEN_ENV",
]

DEFAULT_MAX_UPLOAD_BYTES = 1024**3
BASE_MODEL = "tiny-chat"
TOKEN_ENV = "TUNEPORT_SERVER_TOKEN"


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


class _RequestHandler(FileRoutes, JobRoutes, ChatRoute):
    """Every route of the server (see :mod:`.handler` for the plumbing they share)."""

    server: ApiServer


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
