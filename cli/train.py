"""``tuneport train SPEC``: start a fine-tuning job from a spec, on OpenAI or on this machine.

The spec is loaded and checked here (every problem at once, with file and line), its warnings for the chosen
backend printed, its files handed to the backend and the job created. Then the command prints the job id and
returns: a local job runs in its own detached process, so closing the terminal does not stop it. ``--follow``
streams its progress, ``--wait`` waits silently; both exit 11 when the job fails.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import click

from tuneport.cli._options import BackendChoice

__all__ = ["train"]


@click.command("train")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    type=BackendChoice(),
    default=None,
    help="Where to train (default: the spec's `backend`, which defaults to local).",
)
@click.option("--follow", "-f", is_flag=True, help="Stream events with a progress bar until the job ends.")
@click.option("--wait", is_flag=True, help="Wait silently until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON (for scripts).")
@click.option(
    "--yes", "-y", is_flag=True, help="Start a paid (hosted) job without asking; required with --json there."
)
def train(spec_path: str, backend: str | None, follow: bool, wait: bool, as_json: bool, yes: bool) -> None:
    """Start a fine-tuning job from SPEC (YAML or TOML); print its id."""
    from tuneport.cli.jobs import finish, follow_job, get_backend
    from tuneport.providers.registry import provider_class
    from tuneport.spec.jobspec import load_spec
    from tuneport.spec.mapping import check_spec

    if follow and wait:
        raise click.UsageError("--follow and --wait exclude each other")
    spec = load_spec(spec_path)
    if backend is not None:
        spec = spec.for_backend(backend)
    for warning in check_spec(spec):
        click.echo(f"warning: {warning}", err=True)
    backend = provider_class(spec.backend)
    if backend.paid:
        confirm_paid_job(spec, yes=yes, as_json=as_json)
    with get_backend(spec.backend) as provider, _upload_bar(enabled=backend.paid and not as_json) as bar:
        job = provider.start(spec, progress=bar)
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


def paid_job_estimate(spec: Any) -> dict | None:
    """Billed tokens and price of the spec's training file on its backend (None when nothing can be counted)."""
    from tuneport.providers.registry import provider_class

    estimate = provider_class(spec.backend).estimate(spec)
    return None if estimate is None else estimate.to_dict()


def confirm_paid_job(spec: Any, *, yes: bool, as_json: bool) -> None:
    """Show what a hosted job will bill and ask before starting it (``--yes`` skips; ``--json`` never prompts).

    Why: a hosted job is paid the moment it starts, and a dataset that is larger than expected (or an epoch count
    left on "auto") can cost many times what the user had in mind.
    """
    from tuneport.errors import SpecError
    from tuneport.providers.registry import provider_class

    label = provider_class(spec.backend).label or spec.backend
    if as_json and not yes:
        raise SpecError(
            f"--json never prompts, and starting a job on {label} costs money: confirm it with --yes",
            hint="Run `tuneport data stats FILE --model MODEL` to see the estimate, then add --yes.",
            exit_code=2,
        )
    estimate = paid_job_estimate(spec)
    if estimate is not None:
        price = estimate["estimated_price_usd"]
        cost = f"about ${price:,.2f}" if price is not None else "unknown (no price known for this model)"
        click.echo(
            f"{label} will bill about {estimate['billed_tokens']:,} training tokens "
            f"({estimate['examples']:,} examples x {estimate['n_epochs']} epochs of {estimate['file']}): {cost}.",
            err=True,
        )
    if yes:
        return
    if not click.confirm(f"Start this paid fine-tuning job on {label}?", default=False, err=True):
        raise click.Abort()


@contextlib.contextmanager
def _upload_bar(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar for dataset uploads (the provider calls it with bytes done / total, possibly from threads)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    lock = threading.Lock()
    tasks: dict[int, Any] = {}
    with Progress(TextColumn("upload"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  transient=True, console=_stderr_console()) as bar:  # fmt: skip

        def update(done: int, total: int) -> None:
            with lock:
                if total not in tasks:
                    tasks[total] = bar.add_task("upload", total=total)
                bar.update(tasks[total], completed=done)

        yield update


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
