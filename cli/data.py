"""``tuneport data ...``: check and describe datasets before anyone spends money on them.

Parse arguments, call :mod:`tuneport.data.validate`, render (rich tables, or ``--json``). Nothing else lives here;
tiktoken and the validator load only when a command runs, so ``tuneport --help`` stays instant.
"""

from __future__ import annotations

import json
from typing import Any

import click

LISTED_FINDINGS = 50


@click.group("data")
def data() -> None:
    """Check, describe and split chat datasets (JSONL)."""


_model_option = click.option(
    "--model",
    "-m",
    default=None,
    help="Model whose tokenizer, token limit and price apply (OpenAI id, alias, ft: id, or a local tokenizer folder).",
)
_method_option = click.option(
    "--method",
    type=click.Choice(["auto", "sft", "dpo"]),
    default="auto",
    show_default=True,
    help="Dataset format: chat examples (sft), preference pairs (dpo), or detect from the data.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (for scripts).")


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


def _render_stats(console: Any, stats: Any) -> None:
    from rich.table import Table

    table = Table(title="Statistics (examples without errors)", title_justify="left", show_edge=False)
    table.add_column("per example")
    for col in ("min", "median", "p90", "max", "total"):
        table.add_column(col, justify="right")
    for label, dist in (
        ("messages", stats.messages),
        ("tokens", stats.tokens),
        ("assistant tokens", stats.assistant_tokens),
    ):
        table.add_row(label, *(_fmt(getattr(dist, c)) for c in ("min", "median", "p90", "max", "total")))
    console.print(table)
    exact = "exact" if stats.exact else "ESTIMATE"
    console.print(
        f"tokens: {stats.encoding} ({exact})" + (f" - {stats.token_note}" if stats.token_note else "")
    )
    console.print(
        f"examples: {stats.examples:,}; over the {stats.token_limit:,}-token limit: {stats.over_limit:,} "
        f"(limit: {stats.token_limit_source})"
    )
    console.print(
        f"billed tokens: {stats.billed_tokens_per_epoch:,} per epoch x {stats.n_epochs} epochs "
        f"({stats.n_epochs_source}) = {stats.billed_tokens:,}"
    )
    if stats.estimated_price_usd is not None:
        from decimal import ROUND_HALF_UP, Decimal

        cents = stats.estimated_price_usd.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        console.print(
            f"estimated training price: ${cents} at ${stats.price_per_1m_usd} per 1M tokens "
            f"(source: {stats.price_source}, as of {stats.price_as_of})"
        )
    for note in stats.notes:
        console.print(f"note: {note}")


def _render_report(console: Any, report: Any, *, limit: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(
        f"[bold]{escape(report.path)}[/bold]: {report.lines:,} lines, {report.examples:,} examples, "
        f"format {report.method} ({report.method_source})"
    )
    if report.counts:
        table = Table(title="Findings by category", title_justify="left", show_edge=False)
        table.add_column("severity")
        table.add_column("category")
        table.add_column("count", justify="right")
        for severity, style in (("error", "red"), ("warning", "yellow")):
            for cat, n in sorted(report.by_severity(severity).items(), key=lambda kv: (-kv[1], kv[0])):
                table.add_row(f"[{style}]{severity}[/{style}]", cat, f"{n:,}")
        console.print(table)
        shown = report.findings[:limit]
        for f in shown:
            where = f"line {f.line}" if f.line is not None else "file"
            if f.path:
                where += f" {f.path}"
            style = "red" if f.severity == "error" else "yellow"
            console.print(
                f"[{style}]{f.severity}[/{style}] {escape(where)}: {escape(f.message)} [dim]\\[{f.category}][/dim]"
            )
            if f.hint:
                console.print(f"    [dim]hint: {escape(f.hint)}[/dim]")
        more = report.errors + report.warnings - len(shown)
        if more > 0:
            console.print(f"... {more:,} more findings (use --json to see all)")
    else:
        console.print("[green]no problems found[/green]")
    for note in report.notes:
        if note != report.stats.token_note:
            console.print(f"note: {escape(note)}")


def _run(
    file: str, model: str | None, method: str, n_epochs: int | None = None, max_findings: int | None = 10000
):
    from tuneport.data.validate import validate_file

    return validate_file(file, model=model, method=method, n_epochs=n_epochs, max_findings=max_findings)


@data.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@_model_option
@_method_option
@click.option(
    "--max-findings",
    type=int,
    default=10000,
    show_default=True,
    help="Findings kept in memory and printed by --json (0 = no limit); counts by category are always complete.",
)
@_json_option
def validate_cmd(file: str, model: str | None, method: str, max_findings: int, as_json: bool) -> None:
    """Check FILE the way OpenAI's fine-tuning does, before you upload it.

    Every problem is listed with its line, JSON path, what is wrong and what to do. Exits non-zero when there are
    errors; warnings alone (duplicates, over-long examples, a BOM) exit 0.
    """
    report = _run(file, model, method, max_findings=max_findings or None)
    if as_json:
        # Scripts get one JSON document on stdout either way; errors still set the exit code.
        _echo_json(report.to_dict())
        if not report.ok:
            from tuneport.errors import DataError

            click.echo(f"error: {report.errors:,} errors in {report.path}", err=True)
            raise click.exceptions.Exit(DataError.exit_code)
        return
    else:
        console = _console()
        _render_report(console, report, limit=LISTED_FINDINGS)
        console.print()
        _render_stats(console, report.stats)
        if report.ok:
            console.print(f"[green]OK[/green]: {report.examples:,} examples, {report.warnings:,} warnings")
            return
    report.raise_for_errors()


@data.command("stats")
@click.argument("file", type=click.Path(dir_okay=False))
@_model_option
@_method_option
@click.option(
    "--epochs",
    "n_epochs",
    type=click.IntRange(1, 50),
    default=None,
    help="Epochs for the cost estimate (default: OpenAI's auto rule).",
)
@_json_option
def stats_cmd(file: str, model: str | None, method: str, n_epochs: int | None, as_json: bool) -> None:
    """Describe FILE: examples, messages and tokens per example, billed tokens, epochs and training price.

    Statistics cover the examples without errors; the counts of errors and warnings are included (run
    `tuneport data validate FILE` for the details).
    """
    report = _run(file, model, method, n_epochs=n_epochs, max_findings=0)
    if as_json:
        payload = report.stats.to_dict()
        payload.update(
            {
                "path": report.path,
                "format": report.method,
                "lines": report.lines,
                "invalid_examples": report.invalid_examples,
                "errors": report.errors,
                "warnings": report.warnings,
            }
        )
        _echo_json(payload)
        return
    console = _console()
    from rich.markup import escape

    console.print(f"[bold]{escape(report.path)}[/bold]: format {report.method} ({report.method_source})")
    _render_stats(console, report.stats)
    if report.errors:
        console.print(
            f"[red]{report.errors:,} errors in {report.invalid_examples:,} examples[/red] (excluded above): "
            f"run `tuneport data validate {escape(file)}`"
        )


@data.command("convert")
@click.argument("src", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--from", "fmt", type=click.Choice(["auto", "prompt-completion", "alpaca", "sharegpt"]),
              default="auto", show_default=True, help="The input's format (auto: named from the first example).")  # fmt: skip
@_model_option
@_json_option
def convert_cmd(src: str, out: str, fmt: str, model: str | None, as_json: bool) -> None:
    """Convert IN (prompt/completion, Alpaca or ShareGPT JSONL) to chat JSONL at OUT, then validate OUT.

    Alpaca instruction + input become the user turn; ShareGPT roles (human/gpt/system/function_call/observation)
    become chat roles, function calls assistant tool_calls answered by tool messages. Lines that cannot be
    converted are listed with their field, and nothing is written.
    """
    from tuneport.data.convert import convert_file

    result = convert_file(src, out, fmt=fmt, model=model)
    if as_json:
        _echo_json(result.to_dict())
    else:
        how = "detected" if result.detected else "given"
        click.echo(f"{result.source}: {result.format} ({how}) -> {result.output}: {result.examples:,} chat examples")
        console = _console()
        _render_report(console, result.report, limit=LISTED_FINDINGS)
        if result.report.ok:
            console.print(f"[green]OK[/green]: {result.report.examples:,} examples, {result.report.warnings:,} warnings")
    if not result.report.ok:
        result.report.raise_for_errors()


def _add_split_commands() -> None:
    from tuneport.cli.data_split import leakage_cmd, split_cmd

    data.add_command(split_cmd)
    data.add_command(leakage_cmd)


_add_split_commands()
