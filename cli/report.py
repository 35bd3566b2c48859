"""``tuneport report RUN``: write an evaluation run's report as Markdown (+ PNG plots), self-contained HTML and JSON.

Glue only: load the run (by id from the store through :func:`tuneport.evaluation.runner.load_run`, or from a run / report
JSON file), gather the fine-tuning jobs' events (loss curves) and recorded cost figures from the store, and call
:func:`tuneport.report.render.render_report`. matplotlib and the renderers load only when the command runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from tuneport.errors import EvaluationError
from tuneport.report.costs import DEFAULT_MONTHLY_REQUESTS

__all__ = ["report", "load_run_or_file", "gather_job_events", "gather_costs", "cost_row_to_figure"]


def load_run_or_file(run: str) -> dict[str, Any]:
    """``render_report`` arguments for RUN: a path to a run / report JSON file, or a run id in the store."""
    from tuneport.report.json_file import load_report_json

    path = Path(run)
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            raise EvaluationError(
                f"no such file: {path}", hint="Give an evaluation run id or an existing JSON file."
            )
        return load_report_json(path)
    try:
        from tuneport.evaluation.runner import load_run
    except ImportError as exc:
        raise EvaluationError(
            f"cannot look up run {run!r}: this installation has no evaluation runner",
            hint="Pass the path of the run's JSON file (`tuneport eval ... --json > run.json`) instead.",
        ) from exc
    return {"run": load_run(run), "job_events": None, "costs": None}


def gather_job_events(run: dict[str, Any], store: Any) -> dict[str, list[dict[str, Any]]]:
    """Every event of each fine-tuned endpoint's job (jobs the store does not know give an empty list)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ep in run.get("endpoints") or []:
        job_id = ep.get("job_id") if isinstance(ep, dict) else None
        if job_id and job_id not in out:
            out[str(job_id)] = (
                store.list_events(str(job_id), limit=None) if store.get_job(str(job_id)) else []
            )
    return out


def cost_row_to_figure(row: dict[str, Any]) -> dict[str, Any]:
    """A store ``costs`` row (as :func:`tuneport.cost.records.record_figure` saves it) back as a cost figure dict."""
    saved = row.get("inputs") if isinstance(row.get("inputs"), dict) else {}
    figure = dict(saved) if "formula" in saved or "label" in saved else {"inputs": saved}
    figure.setdefault("label", row.get("kind") or "cost")
    figure["kind"] = row.get("kind")  # train_actual_*: the training cost the ROI line's payback divides
    figure["amount"] = str(row.get("amount"))
    figure["currency"] = row.get("currency") or "USD"
    return figure


def gather_costs(run: dict[str, Any], store: Any) -> list[dict[str, Any]]:
    """Cost figures recorded for this run or for the jobs behind its endpoints, oldest first, each once."""
    rows: dict[Any, dict[str, Any]] = {}
    for row in store.list_costs(eval_run_id=str(run.get("id"))):
        rows[row["id"]] = row
    for ep in run.get("endpoints") or []:
        if isinstance(ep, dict) and ep.get("job_id"):
            for row in store.list_costs(job_id=str(ep["job_id"])):
                rows[row["id"]] = row
    return [cost_row_to_figure(rows[k]) for k in sorted(rows)]


@click.command("report")
@click.argument("run")
@click.option("--output", "-o", type=click.Path(file_okay=False), default=None,
              help="Folder for the report files (default: ./tuneport-reports/RUN_ID).")  # fmt: skip
@click.option("--format", "formats", type=click.Choice(["md", "html", "json"]), multiple=True,
              help="Only these formats (repeatable; default: all three).")  # fmt: skip
@click.option("--monthly-requests", type=click.IntRange(1, 10**12), default=None,
              help="Requests a month for the ROI line: prompt tokens a fine-tune saves per request x this "
              f"(default {DEFAULT_MONTHLY_REQUESTS:,}).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON (for scripts).")
def report(run: str, output: str | None, formats: tuple[str, ...], monthly_requests: int | None,
           as_json: bool) -> None:  # fmt: skip
    """Write the report of evaluation run RUN (a run id, or a run / report JSON file).

    Scores with Wilson intervals, paired tests (McNemar, bootstrap) with minimum detectable differences, label
    metrics, latency plots, the fine-tuning jobs' loss curves, cost figures with their inputs, and every item side
    by side (in HTML, filterable to the items where the endpoints disagree). It opens with the verdict: one
    sentence per comparison, with each endpoint's cost per 1,000 items.
    """
    from tuneport.jobs.store import Store
    from tuneport.report.render import render_report

    args = load_run_or_file(run)
    run_dict = args["run"]
    if not isinstance(run_dict, dict):
        raise EvaluationError(f"{run!r} does not hold an evaluation run (expected a JSON object)")
    job_events, costs = args["job_events"], args["costs"]
    if job_events is None or costs is None:
        with Store() as store:
            if job_events is None:
                job_events = gather_job_events(run_dict, store)
            if costs is None:
                costs = gather_costs(run_dict, store)
    out_dir = Path(output) if output else Path("tuneport-reports") / _safe_dir(str(run_dict.get("id", "run")))
    monthly = monthly_requests or args.get("monthly_requests") or DEFAULT_MONTHLY_REQUESTS
    written = render_report(run_dict, out_dir, job_events=job_events, costs=costs,
                            formats=formats or ("md", "html", "json"), monthly_requests=monthly)  # fmt: skip
    if as_json:
        click.echo(json.dumps({k: str(v) for k, v in written.items()}, indent=2))
        return
    for key in ("md", "html", "json"):
        if key in written:
            click.echo(f"{key:5} {written[key]}")
    plots = [p for k, p in written.items() if k.startswith("plot:")]
    if plots:
        click.echo(f"plots {', '.join(str(p) for p in plots)}")


def _safe_dir(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80] or "run"
