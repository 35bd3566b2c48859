"""``tuneport chat ENDPOINT``: a quick conversation with any endpoint, through the one inference client."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from tuneport.cli.main import render_error
from tuneport.errors import ProviderError

__all__ = ["chat"]


@click.command()
@click.argument("endpoint")
@click.option("--system", "system", default=None, help="A system message to start the conversation with.")
@click.option(
    "--message", "-m", "message", default=None, help="Ask this one question, print the answer, exit."
)
@click.option(
    "--temperature", type=float, default=None, help="Sampling temperature (server default if unset)."
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Longest answer, in tokens.")
@click.option("--seed", type=int, default=None, help="Sampling seed, where the server supports one.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds one request may take.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print each answer as JSON with usage and latency.")
def chat(
    endpoint: str,
    system: str | None,
    message: str | None,
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Talk to ENDPOINT: a saved name, openai:MODEL, or URL#MODEL (e.g. http://127.0.0.1:8000/v1#tiny-chat).

    With --message, one turn. Without, a conversation: one line per message on stdin, until end of input or
    /exit (/reset forgets the conversation so far).
    """
    from tuneport.endpoints.client import InferenceClient, resolve_endpoint

    target = resolve_endpoint(endpoint)  # errors (unknown name, bad URL) before anything else
    params: dict[str, Any] = {}
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if seed is not None:
        params["seed"] = seed
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    loop = asyncio.new_event_loop()
    client = InferenceClient(concurrency=1, timeout=timeout)
    try:

        def ask(text: str) -> Any:
            messages = [*history, {"role": "user", "content": text}]
            result = loop.run_until_complete(client.chat(target, messages, **params))
            history.extend([{"role": "user", "content": text}, {"role": "assistant", "content": result.text}])
            return result

        if message is not None:
            _show(ask(message), as_json)
            return
        _conversation(ask, history, system, as_json)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


def _show(result: Any, as_json: bool) -> None:
    if as_json:
        payload = result.to_dict()
        payload.pop("token_ids", None)
        click.echo(json.dumps(payload, ensure_ascii=False))
    else:
        click.echo(result.text)


def _conversation(ask: Any, history: list[dict[str, str]], system: str | None, as_json: bool) -> None:
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo("(type /exit or press Ctrl-D to leave, /reset to start over)", err=True)
    while True:
        if interactive:
            click.echo("you> ", nl=False, err=True)
        line = sys.stdin.readline()
        if not line:
            break
        text = line.rstrip("\r\n")
        if text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            del history[1 if system else 0 :]
            continue
        if not text.strip():
            continue
        try:
            _show(ask(text), as_json)
        except ProviderError as exc:  # one failed turn does not end the conversation
            if not interactive:
                raise
            render_error(exc, as_json=False)  # the CLI's one way of printing an error
