"""The HTML evaluation report: one self-contained file (inline CSS, inline script, images as ``data:`` URIs).

Why self-contained: a report is attached to a ticket or archived next to a model and must open offline, with no
server and no CDN. A Content-Security-Policy ``<meta>`` makes that a guarantee rather than a habit: the page may
load nothing from the network, and only the one inline script whose SHA-256 is listed may run. So even if some
model output slipped past escaping (every value from the run goes through :func:`esc`), an injected script would
not execute.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from html import escape
from typing import Any

from tuneport._version import __version__
from tuneport.report.diff import word_diff
from tuneport.report.format import as_text, flat_rows, fmt_ci, fmt_num, fmt_pct, fmt_signed, is_link, readable
from tuneport.report.questions import questions_html
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

__all__ = ["render_html", "esc"]


def esc(value: Any) -> str:
    """Escape any value for HTML text and attribute values (quotes included)."""
    return escape("" if value is None else str(value), quote=True)


CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dee7; --bg:#ffffff; --soft:#f5f7fa; --pass:#1a7f37; --fail:#c62828;
  --warn-bg:#fff4e5; --warn-line:#f0a020; --ins:#d7f5dd; --del:#ffe0e0; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 8px; } h2 { font-size: 19px; margin: 32px 0 10px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; } h3 { font-size: 15px; margin: 18px 0 6px; }
nav { display: flex; flex-wrap: wrap; gap: 12px; font-size: 13px; margin: 8px 0 16px; }
nav a { color: #2457c5; text-decoration: none; }
.meta { color: var(--muted); font-size: 13px; } .meta code { color: var(--fg); }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warnings { background: var(--warn-bg); border: 1px solid var(--warn-line); border-left: 6px solid var(--warn-line);
  padding: 10px 16px; margin: 16px 0; border-radius: 4px; }
.warnings h2 { border: 0; margin: 0 0 6px; font-size: 16px; } .warnings li { margin: 3px 0; }
.comparison { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; margin: 10px 0; }
.verdict { font-weight: 600; } .win { color: var(--pass); } .nowin { color: var(--muted); }
.cw { color: #8a5a00; font-size: 13px; }
img.plot { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
.filter { position: sticky; top: 0; background: var(--bg); padding: 8px 0; border-bottom: 1px solid var(--line);
  z-index: 2; display: flex; gap: 16px; align-items: center; }
.item { border: 1px solid var(--line); border-radius: 6px; margin: 12px 0; padding: 8px 12px; }
.item[data-disagree="1"] { border-left: 5px solid var(--warn-line); }
.item h3 { margin: 4px 0; } .tag { font-size: 12px; color: #8a5a00; font-weight: normal; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 10px; }
.col { background: var(--soft); border-radius: 4px; padding: 6px 8px; min-width: 0; }
pre { white-space: pre-wrap; word-break: break-word; margin: 4px 0; font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono",
  Menlo, monospace; background: var(--soft); padding: 6px 8px; border-radius: 4px; }
.col pre { background: #fff; }
.label { font-size: 12px; color: var(--muted); margin-top: 6px; }
ins { background: var(--ins); text-decoration: none; } del { background: var(--del); color: #8b1a1a; }
.badge { display: inline-block; font-size: 11.5px; padding: 0 6px; border-radius: 9px; margin: 1px 2px 1px 0;
  border: 1px solid var(--line); background: #fff; }
.badge.pass { color: var(--pass); border-color: var(--pass); } .badge.fail { color: var(--fail); border-color: var(--fail); }
.badge.error { color: #8a5a00; border-color: var(--warn-line); } .err { color: var(--fail); }
[hidden] { display: none !important; }
.verdicts { background: #eef6ee; border: 1px solid #b7dfb9; border-left: 6px solid var(--pass); border-radius: 4px;
  padding: 8px 16px; margin: 16px 0; } .verdicts h2 { border: 0; margin: 0 0 4px; font-size: 17px; }
.verdicts li { font-size: 15px; margin: 4px 0; }
table.kv th { font-weight: 500; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; margin: 32px 0 8px; }
"""

# The only script on the page: the disagreement filter. Its hash goes into the CSP, so it must not vary.
SCRIPT = """
(function () {
  var box = document.getElementById("only-disagree");
  var count = document.getElementById("shown-count");
  var items = document.querySelectorAll(".item");
  function apply() {
    var only = box.checked, shown = 0;
    for (var i = 0; i < items.length; i++) {
      var hide = only && items[i].getAttribute("data-disagree") !== "1";
      items[i].hidden = hide;
      if (!hide) { shown++; }
    }
    count.textContent = shown + " of " + items.length + " items shown";
  }
  if (box) { box.addEventListener("change", apply); apply(); }
})();
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def _table(header: list[str] | tuple[str, ...], rows: list[list[Any]], num_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i >= num_from else ''}>{esc(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _diff_html(reference: str, output: str) -> str:
    ops = word_diff(reference, output) if reference else None
    if ops is None:
        return esc(output)
    parts = []
    for op, text in ops:
        if op == "equal":
            parts.append(esc(text))
        elif op == "insert":
            parts.append(f"<ins>{esc(text)}</ins>")
        elif text.strip():  # a deleted run of pure whitespace says nothing
            parts.append(f"<del>{esc(text)}</del>")
    return "".join(parts)


def _badge(grader: str, grade: Any) -> str:
    if not isinstance(grade, Mapping):
        return f'<span class="badge">{esc(grader)}: not graded</span>'
    if grade.get("error"):
        return f'<span class="badge error" title="{esc(grade["error"])}">{esc(grader)}: ungradable</span>'
    score = fmt_num(grade.get("score"), 2)
    reason = (grade.get("details") or {}).get("reason") or ""
    passed = grade.get("passed")
    if passed is True:
        return (
            f'<span class="badge pass" title="score {esc(score)}">{esc(grader)} &#10003; {esc(score)}</span>'
        )
    if passed is False:
        return f'<span class="badge fail" title="{esc(reason)}">{esc(grader)} &#10007; {esc(score)}</span>'
    return f'<span class="badge" title="{esc(reason)}">{esc(grader)} {esc(score)}</span>'


def _comparison(c: Mapping[str, Any]) -> str:
    a, b = esc(c.get("a")), esc(c.get("b"))
    out = [
        f'<div class="comparison"><h3>{b} vs {a} on <code>{esc(c.get("grader"))}</code> (n = {esc(c.get("n"))})</h3><ul>'
    ]
    passed = c.get("pass")
    if isinstance(passed, Mapping):
        ra, rb = passed.get("rate_a") or {}, passed.get("rate_b") or {}
        mc = passed.get("mcnemar") or {}
        klass = "win" if passed.get("winner") else "nowin"
        out.append(
            f"<li>pass rate {a}: {esc(fmt_pct(ra.get('rate')))} {esc(fmt_ci([ra.get('low'), ra.get('high')]))}; "
            f"{b}: {esc(fmt_pct(rb.get('rate')))} {esc(fmt_ci([rb.get('low'), rb.get('high')]))}; "
            f"difference {esc(fmt_signed(passed.get('rate_diff')))}</li>"
            f'<li class="verdict {klass}">{esc(mcnemar_sentence(c))}</li>'
            f"<li>discordant pairs {esc(mc.get('n_discordant'))} (discordance {esc(fmt_pct(passed.get('discordance')))}); "
            f"minimum detectable pass-rate difference {esc(fmt_pct(passed.get('mde')))}</li>"
        )  # fmt: skip
    scores = c.get("scores") or {}
    klass = "win" if scores.get("winner") else "nowin"
    out.append(
        f"<li>mean score {a}: {esc(fmt_num(scores.get('mean_a')))}, {b}: {esc(fmt_num(scores.get('mean_b')))}</li>"
        f'<li class="verdict {klass}">{esc(bootstrap_sentence(c))}</li>'
        f"<li>minimum detectable score difference {esc(fmt_num(scores.get('mde')))}</li>"
    )
    if excluded := excluded_sentence(c):
        out.append(f"<li>{esc(excluded)}</li>")
    out += [f'<li class="cw">&#9888; {esc(w)}</li>' for w in c.get("warnings") or []]
    return "".join(out) + "</ul></div>"


def _pairwise(entry: Mapping[str, Any]) -> str:
    """One pair's judge summary and its per-item verdicts (every value escaped)."""
    s = entry.get("summary") or {}
    judge = entry.get("judge") or {}
    klass = "win" if s.get("winner") else "nowin"
    out = [
        f'<div class="comparison"><h3>{esc(entry.get("b"))} vs {esc(entry.get("a"))} on '
        f"<code>{esc(entry.get('grader'))}</code> (judge <code>{esc(judge.get('name'))}</code>, "
        f"n = {esc(s.get('n'))})</h3><ul>",
        f'<li class="verdict {klass}">{esc(pairwise_sentence(entry))}</li>',
    ]
    out += [f'<li class="cw">&#9888; {esc(n)}</li>' for n in pairwise_notes(entry)]
    out.append("</ul>")
    rows = [r for r in entry.get("items") or [] if isinstance(r, Mapping)]
    if rows:
        body = []
        for r in rows:
            cells = [r.get("index"), pairwise_verdict(entry, r), *pairwise_orders(entry, r)]
            klass = ' class="err"' if r.get("error") else ""
            body.append(
                f'<tr{klass}><td><a href="#item-{esc(r.get("index"))}">{esc(cells[0])}</a></td>'
                + "".join(f"<td>{esc(c)}</td>" for c in cells[1:])
                + "</tr>"
            )
        out.append(
            "<details><summary>per-item verdicts</summary><table><thead><tr><th>item</th><th>verdict</th>"
            "<th>with A shown first</th><th>with B shown first</th></tr></thead><tbody>"
            + "".join(body)
            + "</tbody></table></details>"
        )
    return "".join(out) + "</div>"


def _labels(entry: Mapping[str, Any]) -> str:
    m = entry["metrics"]
    rows = label_rows(m)
    cols = m.get("columns") or []
    confusion = m.get("confusion") or {}
    peak = max((n for row in confusion.values() for n in row.values() if isinstance(n, int)), default=0) or 1
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for gold, row in confusion.items():
        cells = []
        for col in cols:
            n = row.get(col, 0)
            shade = 0.08 + 0.6 * (n / peak) if n else 0
            color = "26,127,55" if col == gold else "198,40,40"
            style = f' style="background:rgba({color},{shade:.2f})"' if n else ""
            cells.append(f"<td class=num{style}>{esc(n)}</td>")
        body.append(f"<tr><th>{esc(gold)}</th>{''.join(cells)}</tr>")
    return (
        f"<h3>{esc(entry['endpoint'])}: <code>{esc(entry['grader'])}</code></h3><div class=cols><div>"
        + _table(LABEL_HEADER, rows)
        + f"</div><div><div class=label>confusion matrix (rows: reference, columns: predicted)</div>"
        f"<table><thead><tr><th>reference \\ predicted</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        "</div></div>"
    )


def _link(value: Any) -> str:
    """A source as a link when it is an http(s) address (opens elsewhere; the page itself loads nothing)."""
    if is_link(value):
        return f'<a href="{esc(value)}" rel="noreferrer noopener" target="_blank">{esc(value)}</a>'
    return esc(value)


def _kv(mapping: Mapping[str, Any]) -> str:
    """A figure's inputs as a two-column table: nested inputs flattened, values rounded, sources as links."""
    rows = [f"<tr><th>{esc(k)}</th><td>{_link(v) if is_link(v) else esc(readable(v))}</td></tr>"
            for k, v in flat_rows(mapping)]  # fmt: skip
    return f'<table class="kv">{"".join(rows)}</table>' if rows else ""


def _item(it: Mapping[str, Any], endpoints: list[str], graders: list[str]) -> str:
    tag = f' <span class="tag">disagree: {esc("; ".join(it["disagree_on"]))}</span>' if it["disagree"] else ""
    cols = []
    for ep in endpoints:
        res = it["results"].get(ep) or {}
        grades = res.get("grades") or {}
        badges = "".join(_badge(g, grades.get(g)) for g in graders)
        latency = res.get("latency_ms")
        facts = []
        if isinstance(latency, (int, float)):
            facts.append(f"{latency:.0f} ms")
        if res.get("cached"):
            facts.append("cached")
        if res.get("error"):
            body = f'<div class="err">request failed: {esc(res["error"])}</div>'
        elif res.get("output") is None:
            body = '<div class="err">no output</div>'
        else:
            body = f"<pre>{_diff_html(it['reference'], as_text(res.get('output')))}</pre>"
        cols.append(
            f'<div class="col"><strong>{esc(ep)}</strong> <span class="meta">{esc(", ".join(facts))}</span>'
            f"<div>{badges}</div>{body}</div>"
        )
    judged = "".join(
        f'<div class="label{" err" if v["error"] else ""}">judge: {esc(v["title"])}: {esc(v["verdict"])}</div>'
        for v in it.get("judged") or []
    )
    return (
        f'<section class="item" id="item-{esc(it["index"])}" data-disagree="{1 if it["disagree"] else 0}">'
        f"<h3>Item {esc(it['index'])}{tag}</h3>"
        f'<div class="label">prompt (last user turn)</div><pre>{esc(it["question"])}</pre>'
        f'<div class="label">reference</div><pre>{esc(it["reference"])}</pre>'
        f'<div class="cols">{"".join(cols)}</div>{judged}</section>'
    )


Model = Mapping[str, Any]
Pngs = Mapping[str, bytes]

_SECTIONS = [("verdict", "Verdict"), ("scores", "Scores"), ("comparisons", "Paired comparisons"), ("pairwise", "Pairwise judge"),
             ("labels", "Label metrics"), ("latency", "Latency"), ("costs", "Costs"), ("loss", "Training loss"),
             ("items", "Items")]  # fmt: skip


def _head(model: Model) -> list[str]:
    ds = model["dataset"]
    return [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_csp())}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evaluation report: {esc(model['id'])}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Evaluation report: {esc(model['id'])}</h1>",
        f'<div class="meta">status <strong>{esc(model["status"])}</strong>'
        + (f" &middot; created {esc(model['created_at'])}" if model["created_at"] else "")
        + f" &middot; dataset <code>{esc(ds.get('path'))}</code> ({esc(ds.get('n_items'))} items, sha256 "
        f"<code>{esc(str(ds.get('sha256') or '')[:12])}</code>)</div>",
    ]


def _nav(model: Model) -> list[str]:
    present = {"scores", "latency", "items"} | {
        k for k in ("comparisons", "pairwise", "labels", "loss", "costs") if model.get(k)
    }
    if model["verdicts"]:
        present.add("verdict")
    if any(model["endpoint_costs"].values()) or any(model["tokens"].values()):
        present.add("costs")
    return ["<nav>" + "".join(f'<a href="#{k}">{t}</a>' for k, t in _SECTIONS if k in present) + "</nav>"]


def _warnings_and_endpoints(model: Model) -> list[str]:
    parts = []
    if model["warnings"]:
        parts.append('<div class="warnings" role="alert"><h2>&#9888; Warnings</h2><ul>'
                     + "".join(f"<li>{esc(w)}</li>" for w in model["warnings"]) + "</ul></div>")  # fmt: skip
    if model["notes"]:
        parts.append(
            "<ul class=meta>" + "".join(f"<li>note: {esc(n)}</li>" for n in model["notes"]) + "</ul>"
        )
    endpoint_rows = [[ep.get("name"), ep.get("model"), ep.get("base_url"), ep.get("kind"), ep.get("job_id") or ""]
                     for ep in model["endpoints"]]  # fmt: skip
    parts.append(
        "<h2>Endpoints</h2>"
        + _table(("name", "model", "base URL", "kind", "job"), endpoint_rows, num_from=99)
    )
    return parts


def _scores(model: Model) -> list[str]:
    parts = ['<h2 id="scores">Scores</h2>']
    if not model["scores"]:
        return parts + ["<p>No grader summaries in this run.</p>"]
    parts.append(_table(SCORE_HEADER, [score_cells(r) for r in model["scores"]], num_from=2))
    parts.append(f'<p class="meta">Accuracy intervals are {model["confidence"]:.0%} Wilson score intervals over '
                 "items with a pass/fail verdict; ungraded items are left out of both.</p>")  # fmt: skip
    reasons = [(r["endpoint"], r["grader"], reason, n) for r in model["scores"]
               for reason, n in (r.get("failure_reasons") or {}).items()]  # fmt: skip
    if reasons:
        parts.append("<h3>Why outputs failed</h3>"
                     + _table(("endpoint", "grader", "reason", "items"), [list(x) for x in reasons], num_from=3))  # fmt: skip
    return parts


def _statistics(model: Model) -> list[str]:
    """The paired comparisons, the pairwise judge and the label metrics (each only where the run has them)."""
    parts = []
    if model["comparisons"]:
        parts.append('<h2 id="comparisons">Paired comparisons</h2><p class="meta">Differences are the second endpoint '
                     "minus the first, on the same items. A winner is named only when the test is significant.</p>")  # fmt: skip
        parts += [_comparison(c) for c in model["comparisons"]]
    if model.get("pairwise"):
        parts.append('<h2 id="pairwise">Pairwise judge</h2><p class="meta">An LLM judge compared the answers of each '
                     "pair of endpoints item by item, asked in both orders; a win counts only when both orders agree, "
                     "anything else is a tie. A winner is named only when the sign test is significant.</p>")  # fmt: skip
        parts += [_pairwise(e) for e in model["pairwise"]]
    if model["labels"]:
        parts.append('<h2 id="labels">Label metrics</h2>')
        parts += [_labels(e) for e in model["labels"]]
    return parts


def _latency(model: Model, pngs: Pngs) -> list[str]:
    parts = ['<h2 id="latency">Latency</h2>', _table(LATENCY_HEADER, latency_rows(model))]
    if "latency" in pngs:
        parts.append(_img(pngs["latency"], "latency distributions per endpoint"))
    return parts


def _loss(model: Model, pngs: Pngs) -> list[str]:
    if not model["loss"]:
        return []
    parts = ['<h2 id="loss">Training loss</h2>']
    for entry in model["loss"]:
        who = f" (endpoint {esc(', '.join(entry['endpoints']))})" if entry["endpoints"] else ""
        parts.append(f"<h3>Job <code>{esc(entry['job_id'])}</code>{who}</h3>")
        if entry.get("base_model"):
            parts.append(f"<p>Trained on <code>{esc(entry['base_model'])}</code>.</p>")
        key = f"loss:{entry['job_id']}"
        if key in pngs:
            parts.append(_img(pngs[key], f"train and valid loss of job {entry['job_id']}"))
        elif not entry["curve"]["train_loss"] and not entry["curve"]["valid_loss"]:
            parts.append("<p>No loss metrics were reported for this job.</p>")
    return parts


def _cost_table(view: Mapping[str, Any]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in COST_HEADER)
    body = []
    for r in view["endpoints"]:
        source = _link(r["source"]) + (f' <span class="meta">({esc(r["as_of"])})</span>' if r["as_of"] else "")
        cells = [f"<td>{esc(r['endpoint'])}</td>", f"<td>{esc(r['billed'])}</td>",
                 f"<td class=num><strong>{esc(r['per_1000_text'])}</strong></td>",
                 f"<td class=num>{esc(r['interval_text'])}</td>",
                 f"<td class=num>{esc(_tokens(r['prompt_per_item']))}</td>",
                 f"<td class=num>{esc(_tokens(r['completion_per_item']))}</td>",
                 f"<td>{esc(r['prices'])}</td>", f"<td>{source}</td>", f"<td class=meta>{esc(r['reason'])}</td>"]  # fmt: skip
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="cost-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _tokens(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _costs(model: Model, pngs: Pngs) -> list[str]:
    view = model["cost_view"]
    has_endpoint_costs = any(model["endpoint_costs"].values()) or any(model["tokens"].values())
    if not (has_endpoint_costs or model["costs"]):
        return []
    parts = ['<h2 id="costs">Costs</h2>']
    if has_endpoint_costs:
        parts.append("<h3>Cost per 1,000 items</h3>" + _cost_table(view))
        parts.append('<p class="meta">The interval is the 95% interval of the mean cost per item over the answered '
                     "items (x 1,000). n/a says why an endpoint has no price.</p>")  # fmt: skip
        if "cost" in pngs:
            parts.append(_img(pngs["cost"], "cost per 1,000 items per endpoint with its 95% interval"))
        if view["judges"]:
            rows = [[j["judge"], j["pair"], j["requests"], _tokens(j["prompt_tokens"]), _tokens(j["completion_tokens"]),
                     j["total_text"], j["reason"]] for j in view["judges"]]  # fmt: skip
            parts.append("<h3>The judge</h3>" + _table(JUDGE_HEADER, rows, num_from=2))
        parts.append(f'<p id="cost-totals">{esc(totals_sentence(view["totals"]))}</p>')
        lines = [line["sentence"] for line in view["roi"]] or [NO_ROI]
        parts.append('<h3>What the fine-tune saves</h3><ul id="roi">'
                     + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>")  # fmt: skip
    for fig in model["costs"]:
        parts.append(f"<h3>{esc(fig.get('label'))}: {esc(figure_amount(fig))}</h3>")
        if fig.get("formula"):
            parts.append(f"<div>= <code>{esc(fig['formula'])}</code></div>")
        if isinstance(fig.get("inputs"), Mapping):
            parts.append(_kv(fig["inputs"]))
        parts += [f'<div class="meta">note: {esc(n)}</div>' for n in fig.get("notes") or []]
    return parts


def _verdict(model: Model) -> list[str]:
    """The opening: one sentence per comparison, before any table."""
    if not model["verdicts"]:
        return []
    partial = ("" if model["status"] == "complete" else
               f'<p class="cw">This run is {esc(model["status"])}: these cover only its finished items.</p>')  # fmt: skip
    return ['<section id="verdict" class="verdicts"><h2>Verdict</h2>' + partial + "<ul>"
            + "".join(f"<li>{esc(v)}</li>" for v in model["verdicts"]) + "</ul></section>"]  # fmt: skip


def _items(model: Model) -> list[str]:
    parts = [
        f'<h2 id="items">Items</h2><div class="filter"><label><input type="checkbox" id="only-disagree"> '
        f"show only items where the endpoints disagree ({esc(model['n_disagree'])})</label>"
        f'<span id="shown-count" class="meta">{len(model["items"])} items</span>'
        '<span class="meta"><ins>added</ins> / <del>missing</del>: output words vs the reference</span></div>'
    ]
    return parts + [_item(it, model["endpoint_names"], model["grader_ids"]) for it in model["items"]]


def render_html(model: Model, pngs: Pngs) -> str:
    """The whole page. ``pngs`` maps plot keys (``latency``, ``loss:JOB``) to PNG bytes, embedded as data: URIs."""
    parts = [
        *_head(model), *_verdict(model), *_nav(model), *_warnings_and_endpoints(model), *_scores(model), *questions_html(model), *_statistics(model),
        *_latency(model, pngs), *_costs(model, pngs), *_loss(model, pngs), *_items(model),
        f"<footer>tuneport {esc(__version__)} &middot; run <code>{esc(model['id'])}</code></footer>",
        f"</main><script>{SCRIPT}</script></body></html>",
    ]  # fmt: skip
    return "\n".join(parts) + "\n"
