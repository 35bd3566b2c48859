"""``render_report``: one evaluation run written as Markdown (+ PNG plots), one self-contained HTML file, and JSON.

The orchestration only: build the report model once (:mod:`tuneport.report.model`), draw the plots when matplotlib
is there (:mod:`tuneport.report.plots`), and hand the same model to each renderer, so the formats cannot disagree.

Why three formats: Markdown reads well in a pull request or a terminal and keeps its plots as PNG files next to it;
the HTML file is for looking at items side by side (a disagreement filter, word-level diffs) and must open offline
years later, so it carries its CSS, script and images inline; the JSON keeps the inputs of the report so it can be
rendered again (``render_report(**load_report_json(path), out_dir=...)``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.report import plots as report_plots
from tuneport.report.costs import DEFAULT_MONTHLY_REQUESTS
from tuneport.report.html import render_html
from tuneport.report.json_file import render_json
from tuneport.report.markdown import render_markdown
from tuneport.report.model import build_report_model

__all__ = ["render_report", "REPORT_FORMATS"]

REPORT_FORMATS = ("md", "html", "json")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80] or "job"


def _check_formats(formats: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in REPORT_FORMATS]
    if unknown or not wanted:
        raise EvaluationError(
            f"unknown report format(s) {unknown or wanted}",
            hint=f"Choose from {', '.join(REPORT_FORMATS)}.",
        )
    return wanted


def _plots(model: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, str]]:
    """PNG bytes and file names by plot key (``latency``, ``loss:JOB``); none, with a warning, without matplotlib."""
    pngs: dict[str, bytes] = {}
    files: dict[str, str] = {}
    if not report_plots.matplotlib_available():
        model["warnings"].append(
            "Plots were skipped: matplotlib is not installed (pip install matplotlib) for latency and loss plots."
        )
        return pngs, files
    if png := report_plots.latency_png(model["latencies"]):
        pngs["latency"], files["latency"] = png, "latency.png"
    if png := report_plots.cost_png(model["cost_view"]["endpoints"]):
        pngs["cost"], files["cost"] = png, "cost.png"
    for entry in model["loss"]:
        if png := report_plots.loss_png(entry["curve"], f"job {entry['job_id']}"):
            key = f"loss:{entry['job_id']}"
            pngs[key], files[key] = png, f"loss-{_safe_name(entry['job_id'])}.png"
    return pngs, files


def render_report(
    run: Mapping[str, Any],
    out_dir: str | Path,
    *,
    job_events: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    costs: Sequence[Mapping[str, Any]] | None = None,
    formats: Sequence[str] = REPORT_FORMATS,
    monthly_requests: int = DEFAULT_MONTHLY_REQUESTS,
) -> dict[str, Path]:
    """Write the report of one evaluation run into ``out_dir``; returns ``{"md"|"html"|"json"|"plot:...": path}``.

    ``run``: the evaluation runner's run dict (``id``, ``status``, ``dataset``, ``endpoints``, ``graders``,
    ``params``, ``items`` with per-endpoint results and grades, ``summary``, ``comparisons``, ``warnings``,
    ``leakage``). ``job_events``: ``{job_id: [event rows]}`` from the store, for the loss curves of fine-tuned
    endpoints. ``costs``: cost figure dicts (``label``, ``amount``, ``currency``, ``formula``, ``inputs``).
    Markdown goes to ``report.md`` with its plots as PNG files beside it; HTML to ``report.html`` (self-contained);
    JSON to ``report.json``. ``monthly_requests``: the volume of the ROI line (prompt tokens saved per request x
    requests a month), kept in the JSON so a re-render says the same. Without matplotlib the report is still written, without plots, and says so.
    """
    wanted = _check_formats(formats)
    model = build_report_model(run, job_events=job_events, costs=costs, monthly_requests=monthly_requests)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(
            f"cannot create the report folder {out}: {exc.strerror or exc}",
            hint="Pick a writable folder with --output.",
        ) from exc
    pngs, files = _plots(model) if ("md" in wanted or "html" in wanted) else ({}, {})

    written: dict[str, Path] = {}
    try:
        if "md" in wanted:
            for key, png in pngs.items():
                path = out / files[key]
                path.write_bytes(png)
                written[f"plot:{key}"] = path
            written["md"] = out / "report.md"
            written["md"].write_text(render_markdown(model, files), encoding="utf-8")
        if "html" in wanted:
            written["html"] = out / "report.html"
            written["html"].write_text(render_html(model, pngs), encoding="utf-8")
        if "json" in wanted:
            written["json"] = out / "report.json"
            written["json"].write_text(render_json(run, model, job_events, costs, monthly_requests), encoding="utf-8")
    except OSError as exc:
        raise EvaluationError(
            f"cannot write the report into {out}: {exc.strerror or exc}",
            hint="Pick a writable folder with --output.",
        ) from exc
    return written
