"""``tuneport import openai JOB_ID``: turn a hosted fine-tuning job into a local spec + dataset.

The work is :func:`tuneport.jobs.importer.import_openai_job`; this command parses options and prints the result.
"""

from __future__ import annotations

import json

import click

__all__ = ["import_"]


@click.group("import")
def import_() -> None:
    """Bring a job trained elsewhere to this machine."""


@import_.command("openai")
@click.argument("job_id")
@click.option("--output", "-o", "output", type=click.Path(file_okay=False), default=None,
              help="Folder for spec.yaml and the data files (default: ./JOB_ID).")  # fmt: skip
@click.option("--base-model", default="tiny-chat", show_default=True,
              help="Local base model for the spec (OpenAI's models cannot run here): a folder or a name.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace spec.yaml and data files already in the folder.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def openai_job(job_id: str, output: str | None, base_model: str, force: bool, as_json: bool) -> None:
    """Download OpenAI job JOB_ID's files, method and hyperparameters into a local spec."""
    from tuneport.jobs.importer import import_openai_job

    result = import_openai_job(job_id, output or job_id, base_model=base_model, overwrite=force)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    info = result.to_dict()
    click.echo(str(result.spec_path))
    for name, path in info["files"].items():
        click.echo(f"  {name}: {path}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"next: {info['next']}", err=True)
