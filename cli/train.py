"""``tuneport train SPEC``: start a fine-tuning job from a spec, on OpenAI or on this machine.

The spec is loaded and checked here (every problem at once, with file and line), its warnings for the chosen
backend printed, its files handed to the backend and the job created. Then the command prints the job id and
returns: a local job runs in its own detached process, so closing the terminal does not stop it. ``--follow``
streams its progress, ``--wait`` waits silently; both exit 11 when the job fails.
"""

from __future__ import annotations

import json

import click

__all__ = ["train"]


@click.command("train")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    type=click.Choice(["openai", "local"]),
    default=None,
    help="Where to train (default: the spec's `backend`, which defaults to local).",
)
@click.option("--follow", "-f", is_flag=True, help="Stream events with a progress bar until the job ends.")
@click.option("--wait", is_flag=True, help="Wait silently until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON (for scripts).")
def train(spec_path: str, backend: str | None, follow: bool, wait: bool, as_json: bool) -> None:
    """Start a fine-tuning job from SPEC (YAML or TOML); print its id."""
    from tuneport.cli.jobs import finish, follow_job, get_backend
    from tuneport.mapping import check_spec
    from tuneport.spec import load_spec

    if follow and wait:
        raise click.UsageError("--follow and --wait exclude each other")
    spec = load_spec(spec_path)
    if backend is not None:
        spec = spec.for_backend(backend)
    for warning in check_spec(spec):
        click.echo(f"warning: {warning}", err=True)
    with get_backend(spec.backend) as provider:
        job = provider.start(spec)
        if not (follow or wait):
            if as_json:
                click.echo(json.dumps(job.to_api(), indent=2, ensure_ascii=False, default=str))
            else:
                click.echo(job.id)
                click.echo(
                    f"started on the {spec.backend} backend; follow it with `tuneport jobs events {job.id} --follow`",
                    err=True,
                )
            return
        if not as_json:
            click.echo(job.id)
        job = follow_job(provider, job.id, as_json=as_json and follow, quiet=wait)
        finish(provider, job, as_json=as_json)  # exit 11 if it failed; says how to resume if it paused
