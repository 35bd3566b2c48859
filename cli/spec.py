"""``tuneport spec``: check a job spec and see what it becomes on each backend, without starting anything.

Only click is imported at module level; pydantic, yaml and rich load inside the command, so ``tuneport --help``
stays instant. Errors are raised as :class:`tuneport.errors.SpecError` and rendered by ``tuneport.cli.main``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tuneport.cli._options import BackendChoice


def _default_backends(own: str) -> tuple[str, ...]:
    """Every registered backend, the spec's own first."""
    from tuneport.providers.registry import provider_names

    return (own, *(name for name in provider_names() if name != own))


@click.group("spec")
def spec() -> None:
    """Check job specs (YAML or TOML) and show what they map to on each backend."""


def _count_examples(path: Path) -> int:
    """Non-blank lines of a JSONL file: the example count that "auto" epochs and batch size depend on."""
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                count += 1
    return count


def build_report(job: Any, backends: tuple[str, ...]) -> dict[str, Any]:
    """What ``spec check`` shows: the canonical spec, its hash, its files and what each backend makes of it.

    Each backend says for itself what the spec becomes there (:meth:`~tuneport.providers.base.Provider.preview`)
    and what it cannot honour (``check_spec``); the report keeps the previews for rendering under ``_previews``.
    """
    from tuneport.providers.registry import provider_class
    from tuneport.spec.jobspec import is_openai_file_id
    from tuneport.spec.mapping import check_spec

    files: dict[str, Any] = {}
    for name in ("training_file", "validation_file"):
        value = getattr(job, name)
        if value is None:
            continue
        if is_openai_file_id(value):
            files[name] = {"value": value, "kind": "openai_file_id"}
        else:
            path = job.resolve_path(value)
            entry: dict[str, Any] = {
                "value": value,
                "kind": "local",
                "path": str(path),
                "exists": path.is_file(),
            }
            if path.is_file():
                entry["examples"] = _count_examples(path)
            files[name] = entry

    report: dict[str, Any] = {
        "ok": True,
        "file": job.source,
        "backend": job.backend,
        "spec_hash": job.spec_hash(),
        "spec": job.to_dict(),
        "files": files,
    }
    previews = {}
    for backend in backends:
        preview = provider_class(backend).preview(job, files)
        previews[backend] = preview
        report[backend] = {**preview.data, "warnings": check_spec(job, backend)}
    report["_previews"] = previews
    if "local" in previews:  # where the base model comes from and whether the job fits in memory here
        from tuneport.models.preview import model_preview

        plan = report["local"].get("plan") or {}
        report["model"] = model_preview(job, plan.get("per_device_train_batch_size"))
    return report


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _render(report: dict[str, Any]) -> None:
    import yaml
    from rich.console import Console
    from rich.markup import escape
    from rich.syntax import Syntax
    from rich.table import Table

    console = Console(highlight=False)
    short = report["spec_hash"][:12]
    console.print(
        f"[bold green]spec OK[/]: {report['file'] or 'spec'}  (backend {report['backend']}, hash {short})"
    )
    console.print()
    console.print("[bold]Normalized spec[/]")
    text = yaml.safe_dump(_without_nulls(report["spec"]), sort_keys=False, allow_unicode=True)
    console.print(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    for name, info in report["files"].items():
        if info["kind"] == "local":
            state = f"{info['examples']} examples" if info.get("exists") else "[red]missing[/]"
            console.print(f"{name}: {info['path']} ({state})")
        else:
            console.print(f"{name}: OpenAI file {info['value']}")

    for name, preview in report["_previews"].items():
        console.print()
        if preview.request is not None:
            console.print(f"[bold]{escape(preview.title)}[/]")
            console.print(Syntax(json.dumps(preview.request, indent=2), "json", theme="ansi_dark"))
        if preview.settings is not None:
            table = Table(title=preview.title, show_header=True, header_style="bold")
            table.add_column("setting")
            table.add_column("value")
            for key, value in preview.settings.items():
                shown = (
                    ", ".join(value) if isinstance(value, list) else ("-" if value is None else str(value))
                )
                table.add_row(key, shown)
            console.print(table)
        if preview.request is None and preview.settings is None:
            what = f": plan not resolved: {preview.reason}" if preview.reason else ""
            console.print(f"[bold]{escape(preview.title)}[/]{escape(what)}")
        for note in preview.notes:
            console.print(f"  [dim]{escape(note)}[/]")
        for warning in report[name]["warnings"]:
            console.print(f"[yellow]warning ({name})[/]: {escape(warning)}")
    model = report.get("model") or {}
    if model.get("source") or model.get("fit"):
        console.print(f"model: {escape('; '.join(x for x in (model.get('source'), model.get('fit')) if x))}")


@spec.command("check")
@click.argument("spec_file", metavar="SPEC")
@click.option(
    "--backend",
    type=BackendChoice(),
    default=None,
    help="Check for this backend only (default: show every backend, warnings for each).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def check(spec_file: str, backend: str | None, as_json: bool) -> None:
    """Validate SPEC and print the normalized spec and the parameters it maps to.

    Every problem is listed as FILE:LINE: PATH: MESSAGE; the exit code is 3 when the spec is invalid.
    """
    from tuneport.spec.jobspec import load_spec

    job = load_spec(spec_file)
    if backend is not None:
        job = job.for_backend(backend)
    report = build_report(job, (backend,) if backend else _default_backends(job.backend))
    if as_json:
        click.echo(json.dumps({k: v for k, v in report.items() if k != "_previews"}, indent=2, ensure_ascii=False))
    else:
        _render(report)
