"""``/v1/chat/completions`` of ``tuneport server``: forwarded to a serving engine, or a 503 saying how to start one.

Training and serving are separate processes; with ``--serve-url`` (or ``TUNEPORT_SERVE_URL``) the request goes to
that engine (``tuneport serve``, with ``TUNEPORT_SERVE_API_KEY`` as its bearer token) and its answer streams back.
"""

from __future__ import annotations

import os

import httpx

from tuneport.local_backend.api.handler import MAX_JSON_BYTES, BaseHandler, route
from tuneport.local_backend.protocol import ApiError

__all__ = ["ChatRoute", "SERVE_URL_ENV"]

SERVE_URL_ENV = "TUNEPORT_SERVE_URL"
_CHAT_TOO_LARGE = "a chat request this large cannot fit a model's context: send fewer or shorter messages"


class ChatRoute(BaseHandler):
    """Chat completions, proxied."""

    # -- chat ---------------------------------------------------------------------------------------------------

    @route("POST", "/chat/completions")
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
