"""``tuneport endpoints add|list|rm``: named OpenAI-compatible endpoints (the logic lives in tuneport.endpoints.registry)."""

from __future__ import annotations

import json
from typing import Any

import click

from tuneport.cli._options import BackendChoice

__all__ = ["endpoints"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def _public(row: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name",
        "base_url",
        "model",
        "api_key_env",
        "key_set",
        "kind",
        "job_id",
        "created_at",
        "updated_at",
    )
    return {key: row.get(key) for key in keys}


@click.group()
def endpoints() -> None:
    """Named endpoints: where a model answers chat requests (an OpenAI-compatible base URL + model).

    Anywhere an ENDPOINT is asked for, you can also write openai:MODEL (OpenAI's API, key in OPENAI_API_KEY) or
    URL#MODEL (any OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1#tiny-chat).
    """


@endpoints.command("add")
@click.argument("name")
@click.option("--base-url", required=True, help="The API root, e.g. http://127.0.0.1:8000/v1.")
@click.option("--model", required=True, help="The model name the server knows.")
@click.option(
    "--api-key-env",
    metavar="VAR",
    default=None,
    help="NAME of the environment variable holding the key (e.g. OPENAI_API_KEY); the key itself is never stored.",
)
@click.option("--kind", type=BackendChoice(extra=("url",)), default=None,
              help="What serves it: a backend's name (priced as that backend prices) or url.")
@click.option("--replace", is_flag=True, help="Overwrite an endpoint of the same name.")
@click.option("--api-key", "api_key", default=None, hidden=True, expose_value=True)
@_json_option
def add(
    name: str,
    base_url: str,
    model: str,
    api_key_env: str | None,
    kind: str | None,
    replace: bool,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Save endpoint NAME."""
    from tuneport.endpoints.client import EndpointError
    from tuneport.endpoints.registry import add_endpoint, list_endpoints
    from tuneport.jobs.store import Store

    if api_key is not None:
        raise EndpointError(
            "tuneport does not take API keys on the command line and never stores them.",
            hint="Export the key in an environment variable (export MY_KEY=...) and pass its NAME: "
            "--api-key-env MY_KEY.",
        )
    with Store() as store:
        add_endpoint(
            store, name, base_url=base_url, model=model, api_key_env=api_key_env, kind=kind, replace=replace
        )
        row = next(r for r in list_endpoints(store) if r["name"] == name)
    if as_json:
        _echo_json(_public(row))
        return
    click.echo(f"saved endpoint {name}: {row['base_url']} model {row['model']}")
    if row["key_set"] is False:
        click.echo(
            f"note: {row['api_key_env']} is not set in this shell; set it before using the endpoint.",
            err=True,
        )


@endpoints.command("list")
@_json_option
def list_(as_json: bool) -> None:
    """Show the saved endpoints."""
    from tuneport.endpoints.registry import list_endpoints
    from tuneport.jobs.store import Store

    with Store() as store:
        rows = [_public(row) for row in list_endpoints(store)]
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("no saved endpoints (`tuneport endpoints add NAME --base-url URL --model M` saves one)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "model", "base url", "key", "kind", "job"):
        table.add_column(column, overflow="fold")  # wrap long ids and URLs rather than cut them off
    for row in rows:
        env = row["api_key_env"]
        key = "-" if env is None else f"{env} ({'set' if row['key_set'] else 'NOT set'})"
        table.add_row(row["name"], row["model"], row["base_url"], key, row["kind"], row["job_id"] or "-")
    Console(highlight=False, soft_wrap=True).print(table)


@endpoints.command("rm")
@click.argument("name")
@_json_option
def rm(name: str, as_json: bool) -> None:
    """Remove endpoint NAME."""
    from tuneport.endpoints.registry import remove_endpoint
    from tuneport.jobs.store import Store

    with Store() as store:
        remove_endpoint(store, name)
    if as_json:
        _echo_json({"removed": name})
    else:
        click.echo(f"removed endpoint {name}")
