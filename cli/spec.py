"""``tuneport spec``: check a job spec and see what it becomes on each backend, without starting anything.

Only click is imported at module level; pydantic, yaml and rich load inside the command, so ``tuneport --help``
stays instant. Errors are raised as :class:`tuneport.errors.SpecError` and rendered by ``tuneport.cli.main``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

_BACKENDS = ("openai", "local")


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


def _upload_placeholder(value: str) -> str:
    return f"<file id of {Path(value).name} after upload>"


def build_report(job: Any, backends: tuple[str, ...]) -> dict[str, Any]:
    """What ``spec check`` shows: the canonical spec, its hash, its files and each backend's parameters."""
    from tuneport.errors import DataError
    from tuneport.spec.jobspec import is_openai_file_id
    from tuneport.spec.mapping import check_spec, resolve_local_hyperparameters, to_openai_create_body

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
    if "openai" in backends:
        train = files["training_file"]
        valid = files.get("validation_file")
        body = to_openai_create_body(
            job,
            None if train["kind"] == "openai_file_id" else _upload_placeholder(job.training_file),
            None
            if valid is None or valid["kind"] == "openai_file_id"
            else _upload_placeholder(job.validation_file),
        )
        report["openai"] = {"create_body": body, "warnings": check_spec(job, "openai")}
    if "local" in backends:
        local: dict[str, Any] = {"plan": None, "warnings": check_spec(job, "local")}
        n_examples = files["training_file"].get("examples")
        if n_examples:
            try:
                local["plan"] = resolve_local_hyperparameters(job, n_examples).to_dict()
            except DataError as exc:  # pragma: no cover - n_examples >= 1 here
                local["reason"] = exc.message
        elif files["training_file"]["kind"] == "openai_file_id":
            local["reason"] = (
                "training_file is an OpenAI file id: the local plan needs the examples "
                "(`tuneport import openai` downloads them)"
            )
        else:
            local["reason"] = "training_file has no examples"
        report["local"] = local
    return report


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _render(report: dict[str, Any]) -> None:
    import yaml
    from rich.console import Console
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

    if "openai" in report:
        console.print()
        console.print("[bold]OpenAI: POST /v1/fine_tuning/jobs[/]")
        console.print(
            Syntax(json.dumps(report["openai"]["create_body"], indent=2), "json", theme="ansi_dark")
        )
        for warning in report["openai"]["warnings"]:
            console.print(f"[yellow]warning (openai)[/]: {warning}")

    if "local" in report:
        local = report["local"]
        console.print()
        plan = local["plan"]
        if plan is None:
            console.print(f"[bold]Local trainer[/]: plan not resolved: {local.get('reason')}")
        else:
            table = Table(title="Local trainer plan", show_header=True, header_style="bold")
            table.add_column("setting")
            table.add_column("value")
            for key, value in plan.items():
                if key == "notes":
                    continue
                shown = (
                    ", ".join(value) if isinstance(value, list) else ("-" if value is None else str(value))
                )
                table.add_row(key, shown)
            console.print(table)
            for note in plan["notes"]:
                console.print(f"  [dim]{note}[/]")
        for warning in local["warnings"]:
            console.print(f"[yellow]warning (local)[/]: {warning}")


@spec.command("check")
@click.argument("spec_file", metavar="SPEC")
@click.option(
    "--backend",
    type=click.Choice(_BACKENDS),
    default=None,
    help="Check for this backend only (default: show both, warnings for each).",
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
    report = build_report(job, (backend,) if backend else _BACKENDS)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        _render(report)
