"""``tuneport server``: the local backend behind OpenAI's fine-tuning API, for any OpenAI client.

Point a client at it (``OPENAI_BASE_URL=http://127.0.0.1:8000/v1``) and ``files.create``, ``fine_tuning.jobs.create``
and the rest train on this machine. The logic is in :mod:`tuneport.local_backend.api.server`; this command parses
options and runs it.
"""

from __future__ import annotations

import os

import click

__all__ = ["server"]


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback requires --token.")  # fmt: skip
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed at start).")  # fmt: skip
@click.option("--token", default=None, envvar="TUNEPORT_SERVER_TOKEN",
              help="Bearer token every request must carry (env TUNEPORT_SERVER_TOKEN).")  # fmt: skip
@click.option("--max-upload-bytes", default=None, type=click.IntRange(1),
              help="Largest file accepted (POST /v1/files, or a whole /v1/uploads), in bytes (default 1 GiB). "
              "JSON requests have their own fixed 1 MiB cap.")  # fmt: skip
@click.option("--read-timeout", default=None, type=click.FloatRange(0.1),
              help="Seconds a connection may stay silent (idle, or stalled mid-request) before it is closed "
              "(default 60).")  # fmt: skip
@click.option("--serve-url", default=None, envvar="TUNEPORT_SERVE_URL",
              help="Base URL of a serving engine (`tuneport serve`, e.g. http://127.0.0.1:8001/v1) that "
              "/v1/chat/completions is forwarded to (env TUNEPORT_SERVE_URL).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the listening URL as JSON when ready.")
def server(
    host: str,
    port: int,
    token: str | None,
    max_upload_bytes: int | None,
    read_timeout: float | None,
    serve_url: str | None,
    as_json: bool,
) -> None:
    """Serve OpenAI's files / uploads / fine-tuning / models API over the local backend."""
    import json

    from tuneport.local_backend.api.server import (
        DEFAULT_MAX_UPLOAD_BYTES,
        ServerConfig,
        make_server,
        serve_forever,
    )
    from tuneport.local_backend.protocol import DEFAULT_READ_TIMEOUT

    config = ServerConfig(
        token=token,
        max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
        serve_url=serve_url,
        read_timeout=read_timeout or DEFAULT_READ_TIMEOUT,
    )
    try:
        httpd = make_server(host, port, config=config)
    except OSError as exc:
        from tuneport.errors import TuneportError

        raise TuneportError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="Pick another --port (0 picks a free one), or stop what is using this one.",
        ) from exc
    if as_json:
        click.echo(json.dumps({"url": httpd.url, "pid": os.getpid(), "auth": bool(config.token)}), nl=True)
    else:
        click.echo(f"tuneport server listening on {httpd.url}", err=True)
        click.echo(
            f"  use it with: OPENAI_BASE_URL={httpd.url} OPENAI_API_KEY={'<token>' if config.token else 'local'}",
            err=True,
        )
        if config.serve_url:
            click.echo(f"  chat completions go to {config.serve_url}", err=True)
        click.echo("  Ctrl-C stops it.", err=True)
    import sys

    sys.stdout.flush()
    serve_forever(httpd)
