"""``tuneport import openai|azure|together JOB_ID``: turn a hosted fine-tuning job into a local spec + dataset.

The work is :func:`tuneport.jobs.importer.import_job` (each backend's part is its provider's); these commands parse
options and print the result. One command per hosted backend, all built by :func:`_import_command`.
"""

from __future__ import annotations

import json

import click

__all__ = ["import_"]

#: the command name -> how the help text calls the service
_HOSTED = {"openai": "OpenAI", "azure": "Azure OpenAI", "together": "Together AI"}


@click.group("import")
def import_() -> None:
    """Bring a job trained elsewhere to this machine."""


def _import_command(backend: str, label: str) -> click.Command:
    @click.argument("job_id")
    @click.option("--output", "-o", "output", type=click.Path(file_okay=False), default=None,
                  help="Folder for spec.yaml and the data files (default: ./JOB_ID).")  # fmt: skip
    @click.option("--base-model", default="tiny-chat", show_default=True,
                  help=f"Local base model for the spec ({label}'s hosted model is not run here): a folder or a "
                  "name.")  # fmt: skip
    @click.option("--force", is_flag=True, help="Replace spec.yaml and data files already in the folder.")
    @click.option("--training-file", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="Your copy of the job's training file, instead of downloading it (Azure hands none out).")
    @click.option("--validation-file", type=click.Path(dir_okay=False, exists=True), default=None,
                  help="Your copy of the job's validation file, instead of downloading it.")
    @click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
    def command(job_id: str, output: str | None, base_model: str, force: bool, training_file: str | None,
                validation_file: str | None, as_json: bool) -> None:  # fmt: skip
        from tuneport.jobs.importer import import_job

        copies = {k: v for k, v in (("training_file", training_file), ("validation_file", validation_file)) if v}
        result = import_job(backend, job_id, output or job_id.replace("/", "_"), base_model=base_model,
                            overwrite=force, local_files=copies)  # fmt: skip
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

    command.__doc__ = f"Download {label} job JOB_ID's files, method and hyperparameters into a local spec."
    return click.command(backend)(command)


for _name, _label in _HOSTED.items():
    import_.add_command(_import_command(_name, _label))
