"""The Markdown report: reads well in a pull request or a terminal, with its plots as PNG files beside it.

Model outputs are hostile text: table cells are escaped (:func:`md_cell`) and outputs go into code fences longer
than any backtick run inside them (:func:`md_code`), so no output can close a fence, open raw HTML or break a table.
Only the items where the endpoints disagree are listed (at most :data:`MD_MAX_ITEMS`); the HTML report has all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tuneport.report.format import (
    as_text,
    flat_rows,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_signed,
    readable,
    short_value,
)
from tuneport.report.model import verdict
from tuneport.report.questions import questions_markdown
from tuneport.report.sentences import (
    bootstrap_sentence,
    excluded_sentence,
    mcnemar_sentence,
    pairwise_notes,
    pairwise_orders,
    pairwise_sentence,
    pairwise_verdict,
)
from tuneport.report.tables import (
    COST_HEADER,
    JUDGE_HEADER,
    LABEL_HEADER,
    LATENCY_HEADER,
    NO_ROI,
    SCORE_HEADER,
    figure_amount,
    label_rows,
    latency_rows,
    score_cells,
    totals_sentence,
)

__all__ = ["render_markdown", "md_cell", "md_code", "MD_MAX_ITEMS"]

MD_MAX_ITEMS = 100

Model = Mapping[str, Any]
Plots = Mapping[str, str]


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: no pipes, no line breaks, no raw HTML, no code spans."""
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|").replace("`", "\\`").replace("*", "\\*").replace("_", "\\_")
    return " ".join(text.split())


def md_code(text: str, lang: str = "text") -> str:
    """A fenced block that no backtick run inside ``text`` can close early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _grade(grade: Any) -> str:
    v = verdict(grade)
    if v == "none":
        return "not graded"
    score = fmt_num(grade.get("score"), 2)
    reason = grade.get("error") or (grade.get("details") or {}).get("reason")
    return f"{v} ({score})" + (f": {reason}" if reason and v != "pass" else "")


def _title(model: Model) -> list[str]:
    return [f"# Evaluation report: {md_cell(model['id'])}", ""]


def _header(model: Model) -> list[str]:
    ds = model["dataset"]
    lines = [
        f"- status: **{md_cell(model['status'])}**" + (f", created {md_cell(model['created_at'])}" if model["created_at"] else ""),
        f"- dataset: {md_cell(ds.get('path'))} ({md_cell(ds.get('n_items'))} items, sha256 {md_cell(str(ds.get('sha256') or '')[:12])})",
        "- endpoints: " + ", ".join(
            f"{md_cell(ep['name'])} ({md_cell(ep.get('model'))} at {md_cell(ep.get('base_url'))}, {md_cell(ep.get('kind'))}"
            + (f", job {md_cell(ep.get('job_id'))})" if ep.get("job_id") else ")")
            for ep in model["endpoints"]
        ),
        "- graders: " + ", ".join(md_cell(g) for g in model["grader_ids"]),
        "",
    ]  # fmt: skip
    if model["warnings"]:
        lines += ["## Warnings", ""] + [f"> - **warning:** {md_cell(w)}" for w in model["warnings"]] + [""]
    if model["notes"]:
        lines += [f"- note: {md_cell(n)}" for n in model["notes"]] + [""]
    return lines


def _scores(model: Model) -> list[str]:
    lines = ["## Scores", ""]
    if not model["scores"]:
        return lines + ["No grader summaries in this run.", ""]
    lines += _table(SCORE_HEADER, (score_cells(r) for r in model["scores"]))
    return lines + [f"Accuracy intervals are {model['confidence']:.0%} Wilson score intervals over items with a "
                    "pass/fail verdict; ungraded items are left out of both.", ""]  # fmt: skip


def _comparison(c: Mapping[str, Any]) -> list[str]:
    lines = [
        f"### {md_cell(c.get('b'))} vs {md_cell(c.get('a'))} on {md_cell(c.get('grader'))} (n = {c.get('n')})",
        "",
    ]
    passed = c.get("pass")
    if isinstance(passed, Mapping):
        ra, rb = passed.get("rate_a") or {}, passed.get("rate_b") or {}
        lines += [
            f"- pass rate {md_cell(c.get('a'))}: {fmt_pct(ra.get('rate'))} {fmt_ci([ra.get('low'), ra.get('high')])}; "
            f"{md_cell(c.get('b'))}: {fmt_pct(rb.get('rate'))} {fmt_ci([rb.get('low'), rb.get('high')])}; "
            f"difference {fmt_signed(passed.get('rate_diff'))}",
            f"- {md_cell(mcnemar_sentence(c))}",
            f"- minimum detectable pass-rate difference: {fmt_pct(passed.get('mde'))} "
            f"(discordance {fmt_pct(passed.get('discordance'))})",
        ]
    scores = c.get("scores") or {}
    lines += [
        f"- {md_cell(bootstrap_sentence(c))}",
        f"- minimum detectable score difference: {fmt_num(scores.get('mde'))}",
    ]
    if excluded := excluded_sentence(c):
        lines.append(f"- {md_cell(excluded)}")
    lines += [f"- **warning:** {md_cell(w)}" for w in c.get("warnings") or []]
    return lines + [""]


def _comparisons(model: Model) -> list[str]:
    if not model["comparisons"]:
        return []
    lines = [
        "## Paired comparisons",
        "",
        "Differences are the second endpoint minus the first, on the same items.",
        "",
    ]
    for c in model["comparisons"]:
        lines += _comparison(c)
    return lines


def _pair(entry: Mapping[str, Any]) -> list[str]:
    s = entry.get("summary") or {}
    judge = entry.get("judge") or {}
    lines = [
        f"### {md_cell(entry.get('b'))} vs {md_cell(entry.get('a'))} on {md_cell(entry.get('grader'))} "
        f"(judge {md_cell(judge.get('name'))}, n = {md_cell(s.get('n'))})",
        "",
        f"- {md_cell(pairwise_sentence(entry))}",
    ]
    lines += [f"- {md_cell(n)}" for n in pairwise_notes(entry)]
    lines.append("")
    rows = [r for r in entry.get("items") or [] if isinstance(r, Mapping)]
    shown = rows[:MD_MAX_ITEMS]
    if shown:
        lines += [f"Per-item verdicts ({len(shown)} of {len(rows)} items" + (", the HTML report has all" if len(rows) > len(shown) else "") + "):", ""]  # fmt: skip
        lines += _table(
            ("item", "verdict", "with A shown first", "with B shown first"),
            ([r.get("index"), pairwise_verdict(entry, r), *pairwise_orders(entry, r)] for r in shown),
        )
    return lines


def _pairwise(model: Model) -> list[str]:
    if not model["pairwise"]:
        return []
    lines = ["## Pairwise judge", "",
             "An LLM judge compared the answers of each pair of endpoints item by item, asked in both orders; "
             "a win counts only when both orders agree, anything else is a tie.", ""]  # fmt: skip
    for entry in model["pairwise"]:
        lines += _pair(entry)
    return lines


def _labels(model: Model) -> list[str]:
    if not model["labels"]:
        return []
    lines = ["## Label metrics", ""]
    for entry in model["labels"]:
        m = entry["metrics"]
        lines += [f"### {md_cell(entry['endpoint'])}: {md_cell(entry['grader'])}", ""]
        lines += _table(LABEL_HEADER, label_rows(m))
        cols = m.get("columns") or []
        confusion = m.get("confusion") or {}
        lines += ["Confusion matrix (rows: reference label, columns: predicted):", ""]
        lines += _table(
            ["reference \\ predicted", *cols],
            ([g, *[row.get(c, 0) for c in cols]] for g, row in confusion.items()),
        )
    return lines


def _latency(model: Model, plots: Plots) -> list[str]:
    lines = ["## Latency", ""] + _table(LATENCY_HEADER, latency_rows(model))
    if "latency" in plots:
        lines += [f"![latency distributions]({plots['latency']})", ""]
    return lines


def _final_losses(curve: Mapping[str, Any]) -> str:
    last_t = curve["train_loss"][-1] if curve["train_loss"] else None
    last_v = curve["valid_loss"][-1] if curve["valid_loss"] else None
    return (
        f"- final train loss: {fmt_num(last_t[1]) if last_t else 'n/a'}"
        + (f" at step {last_t[0]:g}" if last_t else "")
        + f"; final valid loss: {fmt_num(last_v[1]) if last_v else 'n/a'}"
        + (f" at step {last_v[0]:g}" if last_v else "")
    )


def _loss(model: Model, plots: Plots) -> list[str]:
    if not model["loss"]:
        return []
    lines = ["## Training loss", ""]
    for entry in model["loss"]:
        curve = entry["curve"]
        who = f" (endpoint {', '.join(md_cell(n) for n in entry['endpoints'])})" if entry["endpoints"] else ""
        lines += [f"### Job {md_cell(entry['job_id'])}{who}", ""]
        if entry.get("base_model"):
            lines += [f"Trained on {md_cell(entry['base_model'])}.", ""]
        if not curve["train_loss"] and not curve["valid_loss"]:
            lines += ["No loss metrics were reported for this job.", ""]
            continue
        lines += [_final_losses(curve), ""]
        key = f"loss:{entry['job_id']}"
        if key in plots:
            lines += [f"![loss curve of {md_cell(entry['job_id'])}]({plots[key]})", ""]
    return lines


def _verdict(model: Model) -> list[str]:
    """The opening: one sentence per comparison, before any detail."""
    if not model["verdicts"]:
        return []
    lines = ["## Verdict", ""]
    if model["status"] != "complete":
        lines += [f"**This run is {md_cell(model['status'])}: these cover only its finished items (see the warnings).**", ""]
    return lines + [f"- {md_cell(v)}" for v in model["verdicts"]] + [""]


def _tokens(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _cost_tables(view: Mapping[str, Any], plots: Plots) -> list[str]:
    rows = [[r["endpoint"], r["billed"], r["per_1000_text"], r["interval_text"], _tokens(r["prompt_per_item"]),
             _tokens(r["completion_per_item"]), r["prices"], r["source"] + (f" ({r['as_of']})" if r["as_of"] else ""),
             r["reason"]] for r in view["endpoints"]]  # fmt: skip
    lines = _table(COST_HEADER, rows)
    lines += ["The interval is the 95% interval of the mean cost per item over the answered items (x 1,000).", ""]
    if "cost" in plots:
        lines += [f"![cost per 1,000 items per endpoint]({plots['cost']})", ""]
    if view["judges"]:
        lines += _table(JUDGE_HEADER, ([j["judge"], j["pair"], j["requests"], _tokens(j["prompt_tokens"]),
                                        _tokens(j["completion_tokens"]), j["total_text"], j["reason"]]
                                       for j in view["judges"]))  # fmt: skip
    lines += [f"- {md_cell(totals_sentence(view['totals']))}", ""]
    return lines


def _costs(model: Model, plots: Plots) -> list[str]:
    view = model["cost_view"]
    has_endpoint_costs = any(model["endpoint_costs"].values()) or any(model["tokens"].values())
    if not (has_endpoint_costs or model["costs"]):
        return []
    lines = ["## Costs", ""]
    if has_endpoint_costs:
        lines += _cost_tables(view, plots)
        lines += ["### What the fine-tune saves", ""]
        lines += [f"- {md_cell(line['sentence'])}" for line in view["roi"]] or [f"- {md_cell(NO_ROI)}"]
        lines.append("")
    for fig in model["costs"]:
        lines += [f"### {md_cell(fig.get('label'))}: {md_cell(figure_amount(fig))}", ""]
        if fig.get("formula"):
            lines += [f"- formula: {md_cell(fig['formula'])}"]
        for key, value in flat_rows(fig.get("inputs") or {}):
            lines.append(f"- {md_cell(key)}: {md_cell(short_value(readable(value), 400))}")
        lines += [f"- note: {md_cell(n)}" for n in fig.get("notes") or []]
        lines.append("")
    return lines


def _item(model: Model, it: Mapping[str, Any]) -> list[str]:
    lines = [f"### Item {md_cell(it['index'])} (disagree: {md_cell('; '.join(it['disagree_on']))})", "",
             "Prompt (last user turn):", "", md_code(it["question"]), "", "Reference:", "",
             md_code(it["reference"]), ""]  # fmt: skip
    for ep in model["endpoint_names"]:
        res = it["results"][ep]
        grades = res.get("grades") or {}
        verdicts = "; ".join(f"{md_cell(g)}: {md_cell(_grade(grades.get(g)))}" for g in model["grader_ids"])
        lines += [f"**{md_cell(ep)}**: {verdicts}", ""]
        if res.get("error"):
            lines += [f"request failed: {md_cell(res['error'])}", ""]
        else:
            lines += [md_code(as_text(res.get("output"))), ""]
    for v in it.get("judged") or []:
        lines += [f"**judge** {md_cell(v['title'])}: {md_cell(v['verdict'])}", ""]
    return lines


def _disagreements(model: Model) -> list[str]:
    lines = ["## Items where the endpoints disagree", ""]
    shown = [it for it in model["items"] if it["disagree"]]
    if len(model["endpoint_names"]) < 2:
        return lines + [
            "Only one endpoint: nothing to disagree about (the HTML report shows every item).",
            "",
        ]
    if not shown:
        return lines + ["None: every grader gave every endpoint the same verdict on every item.", ""]
    lines += [f"{len(shown)} of {len(model['items'])} items"
              + (f" (the first {MD_MAX_ITEMS} shown; the HTML report has all)" if len(shown) > MD_MAX_ITEMS else "")
              + ".", ""]  # fmt: skip
    for it in shown[:MD_MAX_ITEMS]:
        lines += _item(model, it)
    return lines


def render_markdown(model: Model, plots: Plots) -> str:
    """The report as Markdown; ``plots`` maps a plot key to its PNG file name (relative to the Markdown)."""
    sections = [
        _title(model), _verdict(model), _header(model), _scores(model), questions_markdown(model), _comparisons(model), _pairwise(model),
        _labels(model), _latency(model, plots), _costs(model, plots), _loss(model, plots), _disagreements(model),
    ]  # fmt: skip
    return "\n".join(line for section in sections for line in section).rstrip() + "\n"
