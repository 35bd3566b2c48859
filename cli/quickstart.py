"""``tuneport quickstart``: the whole loop on the built-in default (tiny model, CPU, no API key)."""

from __future__ import annotations

import json

import click


@click.command("quickstart")
@click.option("--output", "-o", "output", default="tuneport-quickstart", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the report (Markdown, HTML, JSON, plots).")  # fmt: skip
@click.option("--engine", type=click.Choice(["auto", "vllm", "transformers"]), default="auto", show_default=True,
              help="Serving engine: vLLM where installed (auto), or the slower transformers fallback.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (progress goes to stderr).")
def quickstart(output: str, engine: str, as_json: bool) -> None:
    """Build tiny-chat, validate the example data, train a LoRA adapter, serve base + adapter, evaluate both on
    the held-out split and write the report with costs: the whole loop, on this machine, in a few minutes."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tuneport.quickstart import run_quickstart

    console = Console(stderr=as_json, highlight=False)
    bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                   TimeElapsedColumn(), console=console, transient=True)  # fmt: skip
    task = None

    def say(step: str, message: str) -> None:
        console.print(f"[bold]{step:>6}[/bold]  {message}")

    def on_event(event) -> None:
        nonlocal task
        data = event.data or {}
        if event.type == "metrics" and data.get("total_steps"):
            if task is None:
                bar.start()
                task = bar.add_task("train", total=data["total_steps"], loss="")
            loss = data.get("train_loss")
            bar.update(task, completed=data.get("step", 0), loss=f"loss {loss:.4f}" if loss is not None else "")
        elif event.level in ("warn", "error"):
            console.print(f"[yellow]{event.level}[/yellow] {event.message}")

    try:
        result = run_quickstart(output, engine=engine, progress=say, on_event=on_event)
    finally:
        bar.stop()
    head = result.headline
    rate_a, rate_b = (head.get("pass") or {}).get("rate_a") or {}, (head.get("pass") or {}).get("rate_b") or {}
    mcnemar = (head.get("pass") or {}).get("mcnemar") or {}
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    console.print()
    console.print(f"[bold]exact JSON answers on the held-out split[/bold] (n={head.get('n')}):")
    for name, rate in ((head.get("a"), rate_a), (head.get("b"), rate_b)):
        console.print(f"  {name}: {rate.get('rate', 0):.1%} [{rate.get('low', 0):.1%}, {rate.get('high', 0):.1%}]")
    console.print(f"  exact McNemar test: b={mcnemar.get('b')}, c={mcnemar.get('c')}, "
                  f"p = {mcnemar.get('p_value', float('nan')):.3g}")  # fmt: skip
    console.print(f"served by {result.engine}; total {sum(result.seconds.values()):.0f} s")
    for kind, path in result.report.items():
        console.print(f"  {kind}: {path}")
