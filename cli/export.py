"""``tuneport export JOB``: a finished local job's model as an adapter, a merged folder, a GGUF or an Ollama folder.

Rendering only: the checks and the writing live in :mod:`tuneport.local_backend.export`, imported when the
command runs (it pulls in the serving checks; ``tuneport --help`` stays instant).
"""

from __future__ import annotations

import json

import click

__all__ = ["export"]


@click.command("export")
@click.argument("job")
@click.option("--format", "fmt", type=click.Choice(["adapter", "merged", "gguf", "ollama"]), required=True,
              help="adapter: the LoRA folder; merged: safetensors with the adapter folded in (logits checked); "
              "gguf: one llama.cpp file; ollama: the GGUF plus a Modelfile for `ollama create`.")
@click.option("--quant", type=click.Choice(["f16", "q8_0"]), default=None,
              help="GGUF weights: f16 (default) or q8_0 (half the size; rows must be multiples of 32).")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Folder to write (default: ./JOB-FORMAT[-QUANT]); an earlier export there is replaced.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def export(job: str, fmt: str, quant: str | None, output: str | None, as_json: bool) -> None:  # fmt: skip
    """Export JOB (ftjob-... or its ft: model name) for llama.cpp, Ollama or any transformers runtime."""
    from tuneport.local_backend.export.run import export_job

    def progress(message: str) -> None:
        if not as_json:
            click.echo(message, err=True)

    result = export_job(job, fmt, quant=quant, output=output, progress=progress)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    label = fmt + (f" ({result.quant})" if result.quant else "")
    click.echo(f"exported {result.job_id} as {label} to {result.output} in {result.seconds:.1f} s")
    click.echo(f"  files: {', '.join(result.files)}")
    if result.merge_check:
        m = result.merge_check
        click.echo(f"  merge check: logits within {m['max_abs_diff']:.2e} of base + adapter "
                   f"({m['relative_diff']:.1e} relative, {m['dtype']} allows {m['tolerance']:.0e}) "
                   f"over {m['tokens']} tokens")  # fmt: skip
    if result.stops:
        click.echo(f"  stops at: {', '.join(result.stops)}")
    if fmt == "ollama":
        click.echo(f"  system prompt: {'from the training data' if result.system_prompt else 'none'}")
        click.echo(f"  next: cd {result.output} && ollama create NAME -f Modelfile")
    elif fmt == "gguf":
        click.echo(f"  next: llama-cli -m {result.output / 'model.gguf'} -cnv")
    for note in result.notes:
        click.echo(f"  note: {note}")
