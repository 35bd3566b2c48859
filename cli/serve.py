"""``tuneport serve``: one OpenAI-compatible server for a base model and any number of LoRA adapters."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import click


def _follow(path: Path, stop: threading.Event) -> None:
    """Copy the engine's log to stderr as it grows (vLLM runs as a child writing to a file)."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.2)
    with path.open("rb") as fh:
        while not stop.is_set():
            line = fh.readline()
            if line:
                sys.stderr.write(line.decode("utf-8", "replace"))
                sys.stderr.flush()
            else:
                time.sleep(0.2)


@click.command(
    "serve",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Flags after `--` go to vLLM unchanged (and replace tuneport's default for the same flag), e.g. "
    "`tuneport serve --model tiny-chat -- --max-num-seqs 64`.",
)
@click.option(
    "--model", "model", default="tiny-chat", show_default=True, help="Base model: a folder or tiny-chat."
)
@click.option(
    "--adapter",
    "adapters",
    multiple=True,
    metavar="NAME=JOB_ID|PATH",
    help="A LoRA adapter, by finished job id (or ft: model name) or folder; repeatable. Requests use NAME as model.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback requires --api-key.",
)
@click.option(
    "--api-key",
    "api_key",
    default=None,
    envvar="TUNEPORT_SERVE_API_KEY",
    help="Bearer token every request (but /health) must carry (env TUNEPORT_SERVE_API_KEY; `tuneport server "
    "--serve-url` forwards with it).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port."
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "vllm", "transformers"]),
    default="auto",
    show_default=True,
    help="auto: vLLM when installed, else the slower transformers fallback.",
)
@click.option(
    "--tensor-parallel-size", type=click.IntRange(1), default=None, help="GPUs (default: all visible)."
)
@click.option(
    "--max-loras",
    type=click.IntRange(1),
    default=None,
    help="LoRA slots (default: the adapters given, plus one spare on CPU); room for adapters loaded later.",
)
@click.option(
    "--max-lora-rank", type=int, default=None, help="Largest adapter rank (default: from the adapters)."
)
@click.option(
    "--max-model-len", type=click.IntRange(1), default=None, help="Context length (default: the model's)."
)
@click.option(
    "--startup-timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for health."
)
@click.option(
    "--watch-jobs",
    is_flag=True,
    help="While serving, load the adapter of each local job on this base model that succeeds, as the job's "
    "model name (vLLM: reserves 4 LoRA slots for them unless --max-loras is given).",
)
@click.option(
    "--watch-interval",
    type=click.FloatRange(0.2),
    default=5.0,
    show_default=True,
    help="Seconds between checks for finished jobs (with --watch-jobs).",
)
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="Run the model repository's own Python code (only for a model whose config maps its classes there; "
    "read that code first).",
)
@click.option("--quiet", is_flag=True, help="Do not copy the engine's log to stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line (base_url, models) once ready.")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def serve(
    model: str,
    adapters: tuple[str, ...],
    host: str,
    api_key: str | None,
    port: int,
    engine: str,
    tensor_parallel_size: int | None,
    max_loras: int | None,
    max_lora_rank: int | None,
    max_model_len: int | None,
    startup_timeout: float,
    watch_jobs: bool,
    watch_interval: float,
    trust_remote_code: bool,
    quiet: bool,
    as_json: bool,
    extra: tuple[str, ...],
) -> None:
    """Serve MODEL plus adapters behind one OpenAI-compatible API (vLLM, or the transformers fallback).

    Runs in the foreground until Ctrl-C or SIGTERM, then stops the engine and every process it started.

    With --watch-jobs, jobs that finish while it serves join it without a restart. There is deliberately no
    command to add or remove adapters of a running server from another terminal: on CPU, vLLM keeps an unloaded
    adapter's weights in its LoRA slot, so only the serving process can count the slots used since start and
    keep the last one empty (the mixed-batch guard); a request sent straight to the server would bypass that.
    """
    from tuneport.local_backend.protocol import is_loopback
    from tuneport.local_backend.serving.engine import EngineOptions
    from tuneport.local_backend.serving.serve import start_server
    from tuneport.local_backend.serving.watch import WATCH_SLOTS, JobWatcher

    def log(line: str) -> None:
        if not as_json or line.startswith("serving with the transformers"):
            click.echo(f"tuneport serve: {line}", err=True)

    stop_follow = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    options = EngineOptions(
        host=host,
        port=port or None,
        token=api_key,
        max_loras=max_loras,
        max_lora_rank=max_lora_rank,
        max_model_len=max_model_len,
        tensor_parallel_size=tensor_parallel_size,
        extra_args=extra,
        log=log,
        runtime_slots=WATCH_SLOTS if watch_jobs else 0,
        trust_remote_code=trust_remote_code,
    )  # checks the address and the token before anything starts
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    server = None
    watcher = None
    try:
        server = start_server(
            model,
            adapters,
            engine=engine,  # type: ignore[arg-type]
            options=options,
            startup_timeout=startup_timeout,
        )
        log_path = getattr(server, "log_path", None)
        info = {
            "engine": server.engine,
            "base_url": server.base_url,
            "listen": server.listen,
            "auth": options.token is not None,
            "model": server.model,
            "models": server.models(),
            "log": str(log_path) if log_path else None,
        }
        if as_json:
            click.echo(json.dumps(info))
        else:
            click.echo(
                f"Serving {', '.join(info['models'])} with {server.engine} at {server.base_url} "
                "(put a name in a request's `model`; Ctrl-C stops)"
            )
        if not is_loopback(host):
            click.echo(
                f"tuneport serve: listening on {server.listen}, reachable from other machines; every request "
                "but /health needs `Authorization: Bearer <token>`",
                err=True,
            )
        sys.stdout.flush()
        if watch_jobs:
            watcher = JobWatcher(server, interval=watch_interval, log=log).start()
        if log_path is not None and not quiet and not as_json:
            threading.Thread(target=_follow, args=(Path(log_path), stop_follow), daemon=True).start()
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_follow.set()
        if watcher is not None:
            watcher.stop()
        if server is not None:
            click.echo("tuneport serve: stopping", err=True)
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
