"""Evaluation reports: one run rendered as Markdown (+ PNG plots), one self-contained HTML file, and JSON.

The input is the evaluation runner's run dict (see :func:`render_report`); nothing here re-grades or re-tests.
Every number comes from the run (grade summaries, paired comparisons, latency summaries) or, for plots, from the
per-item values it holds, so the report can never disagree with ``tuneport eval --json``.

Why three formats: Markdown reads well in a pull request or a terminal and keeps its plots as PNG files next to it;
the HTML file is for looking at items side by side (a disagreement filter, word-level diffs) and must open offline
years later, so it carries its CSS, script and images inline; the JSON keeps the inputs of the report so it can be
rendered again (``render_report(**load_report_json(path), out_dir=...)``).

Model outputs are hostile text: every value from the run is escaped for the format it lands in (HTML escaping in
HTML; code fences longer than any backtick run, and escaped table cells, in Markdown).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneport.errors import EvaluationError

__all__ = [
    "render_report",
    "build_report_model",
    "load_report_json",
    "loss_curve",
    "word_diff",
    "last_user_turn",
    "REPORT_FORMATS",
    "REPORT_JSON_FORMAT",
]

REPORT_FORMATS = ("md", "html", "json")
REPORT_JSON_FORMAT = "tuneport.report/1"
_MAX_DIFF_TOKENS = 4000  # beyond this, difflib's quadratic worst case is not worth a highlight
_MD_MAX_ITEMS = 100


# --------------------------------------------------------------------------------------------------------------
# Small helpers shared by the renderers
# --------------------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fmt_pct(value: Any, places: int = 1) -> str:
    x = _num(value)
    return "n/a" if x is None else f"{100.0 * x:.{places}f}%"


def fmt_num(value: Any, places: int = 3) -> str:
    x = _num(value)
    return "n/a" if x is None else f"{x:.{places}f}"


def fmt_signed(value: Any, places: int = 3) -> str:
    x = _num(value)
    return "n/a" if x is None else f"{x:+.{places}f}"


def fmt_p(value: Any) -> str:
    x = _num(value)
    if x is None:
        return "n/a"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def fmt_ci(pair: Any, pct: bool = True) -> str:
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        return "n/a"
    f = fmt_pct if pct else fmt_num
    return f"[{f(pair[0])}, {f(pair[1])}]"


def fmt_time(value: Any) -> str:
    x = _num(value)
    if x is not None and x > 0:
        return _dt.datetime.fromtimestamp(x, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def as_text(value: Any) -> str:
    """A reference or output as display text (JSON references are shown as JSON)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        parts = [p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content]
        return "\n".join(p for p in parts if p)
    return as_text(content)


def last_user_turn(prompt: Any) -> str:
    """The prompt's last user message (what a reader needs to judge the answers), or the whole prompt as text."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        for message in reversed(prompt):
            if isinstance(message, Mapping) and message.get("role") == "user":
                return _content_text(message.get("content"))
        if prompt and isinstance(prompt[-1], Mapping):
            return _content_text(prompt[-1].get("content"))
    return as_text(prompt)


_DIFF_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def word_diff(reference: str, output: str) -> list[tuple[str, str]] | None:
    """Word-level diff of ``output`` against ``reference``: ``[(op, text), ...]`` with op ``equal``, ``insert``
    (in the output, not the reference) or ``delete`` (in the reference, missing from the output).

    Whitespace runs are tokens too, so joining every ``equal`` and ``insert`` text gives back the output exactly.
    ``None`` when either side is too long to diff quickly (the report then shows the output plainly).
    """
    a = _DIFF_TOKEN.findall(reference)
    b = _DIFF_TOKEN.findall(output)
    if len(a) > _MAX_DIFF_TOKENS or len(b) > _MAX_DIFF_TOKENS:
        return None
    out: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("equal", "".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            out.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(("insert", "".join(b[j1:j2])))
    return out


def loss_curve(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Train / valid loss against step from a job's events (OpenAI's ``metrics`` event shape, any backend).

    Events without a numeric step are ignored; a repeated step keeps its last value (a resumed job re-reports).
    """
    train: dict[float, float] = {}
    valid: dict[float, float] = {}
    accuracy: dict[float, float] = {}
    total: float | None = None
    for event in events:
        data = event.get("data") if isinstance(event, Mapping) else None
        if not isinstance(data, Mapping):
            continue
        if event.get("type") not in (None, "metrics") and "train_loss" not in data:
            continue
        step = _num(data.get("step"))
        if step is None:
            continue
        for key, target in (
            ("train_loss", train),
            ("valid_loss", valid),
            ("train_mean_token_accuracy", accuracy),
        ):
            value = _num(data.get(key))
            if value is not None:
                target[step] = value
        total = _num(data.get("total_steps")) or total
    return {
        "train_loss": sorted(train.items()),
        "valid_loss": sorted(valid.items()),
        "train_mean_token_accuracy": sorted(accuracy.items()),
        "total_steps": total,
    }


# --------------------------------------------------------------------------------------------------------------
# The report model: everything the renderers show, derived once from the run
# --------------------------------------------------------------------------------------------------------------


def _check_run(run: Any) -> None:
    if not isinstance(run, Mapping):
        raise EvaluationError(
            f"a report needs an evaluation run (a mapping), got {type(run).__name__}",
            hint="Pass the dict that `tuneport eval --json` prints, or a run id to `tuneport report`.",
        )
    for key, kind in (("id", (str, int)), ("endpoints", list), ("items", list)):
        if not isinstance(run.get(key), kind):
            raise EvaluationError(
                f"the evaluation run has no valid {key!r} field (got {type(run.get(key)).__name__})",
                hint="Is this an evaluation run's JSON? It needs 'id', 'endpoints' and 'items'.",
            )
    for i, ep in enumerate(run["endpoints"]):
        if not isinstance(ep, Mapping) or not isinstance(ep.get("name"), str) or not ep["name"]:
            raise EvaluationError(f"the evaluation run's endpoints[{i}] has no 'name'")
    for i, item in enumerate(run["items"]):
        if not isinstance(item, Mapping) or not isinstance(item.get("results", {}), Mapping):
            raise EvaluationError(f"the evaluation run's items[{i}] is not an item with 'results'")


def _grader_ids(run: Mapping[str, Any]) -> list[str]:
    ids = [str(g.get("id") or g.get("name")) for g in run.get("graders") or [] if isinstance(g, Mapping)]
    seen = dict.fromkeys(ids)
    for item in run["items"]:  # graders the run forgot to list still show up
        for result in item.get("results", {}).values():
            for gid in (result or {}).get("grades") or {}:
                seen.setdefault(str(gid))
    return list(seen)


def _verdict(grade: Any) -> str:
    """pass / fail / error / score (a grade with no pass verdict) / none (not graded)."""
    if not isinstance(grade, Mapping):
        return "none"
    if grade.get("error"):
        return "error"
    if grade.get("passed") is True:
        return "pass"
    if grade.get("passed") is False:
        return "fail"
    return "score"


def _disagreement(item: Mapping[str, Any], endpoints: Sequence[str], graders: Sequence[str]) -> list[str]:
    """Why the endpoints disagree on this item: graders whose pass/fail differs, and request errors on one side."""
    results = item.get("results") or {}
    why: list[str] = []
    failed = {ep for ep in endpoints if (results.get(ep) or {}).get("error")}
    if failed and len(failed) < len(endpoints):
        why.append("request failed on " + ", ".join(sorted(failed)))
    for gid in graders:
        verdicts = {_verdict(((results.get(ep) or {}).get("grades") or {}).get(gid)) for ep in endpoints}
        if "pass" in verdicts and "fail" in verdicts:
            why.append(gid)
    return why


def pairwise_verdict(entry: Mapping[str, Any], row: Mapping[str, Any]) -> str:
    """One judged item in words: who the judge preferred (in both orders), a tie and why, or the error."""
    winner = row.get("winner")
    if winner in ("a", "b"):
        return f"{entry.get(winner)} better (both orders agree)"
    if winner == "tie":
        details = row.get("details") or {}
        why = (
            " (the orders disagree)"
            if details.get("orders_disagree")
            else " (identical answers)"
            if details.get("shortcut")
            else ""
        )
        return "tie" + why
    return f"no verdict: {row.get('error') or 'unknown error'}"


def pairwise_orders(entry: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
    """The judge's verdict in each order (A shown first, then B shown first), as endpoint names."""
    orders = [o for o in row.get("orders") or [] if isinstance(o, Mapping)]
    if not orders:
        return ["", ""]
    names = {"a": entry.get("a"), "b": entry.get("b"), "tie": "tie"}
    return [str(names.get(o.get("verdict"), "no verdict")) for o in orders[:2]] + [""] * (2 - len(orders[:2]))


def pairwise_sentence(entry: Mapping[str, Any]) -> str:
    """Wins / ties / losses of the second endpoint against the first, the sign test and its verdict."""
    s = entry.get("summary") or {}
    a, b = entry.get("a"), entry.get("b")
    won = winner_name(entry, s.get("winner"))
    p = fmt_p(s.get("p_value"))
    verdict = (
        f"{won} is preferred significantly more often" if won else "no significant difference at alpha = 0.05"
    )
    return (
        f"{b} wins {s.get('wins_b')}, ties {s.get('ties')}, loses {s.get('wins_a')} against {a} "
        f"(win rate with half ties {fmt_pct(s.get('win_rate_b'))}); exact sign test on the wins: "
        f"p {p if p.startswith('<') else '= ' + p}: {verdict}"
    )


def pairwise_notes(entry: Mapping[str, Any]) -> list[str]:
    """What the pairwise numbers leave out or count as ties, in words."""
    s = entry.get("summary") or {}
    notes = []
    if s.get("orders_disagree"):
        notes.append(f"the judge's verdict changed with the order of the answers on {s['orders_disagree']} items "
                     "(position bias): counted as ties")  # fmt: skip
    if s.get("errors"):
        notes.append(
            f"{s['errors']} items have no parseable verdict: errors, counted neither as wins nor ties"
        )
    ex = entry.get("excluded") or {}
    if ex.get("no_answer"):
        notes.append(f"{ex['no_answer']} items left out: an endpoint has no answer")
    if ex.get("judge_failed"):
        notes.append(f"{ex['judge_failed']} items left out: the judge's request failed or was not made")
    return notes


def _leakage_flagged(leakage: Mapping[str, Any]) -> bool:
    for key in ("detected", "found", "flagged"):
        if key in leakage and isinstance(leakage[key], bool):
            return leakage[key]
    # The runner's LeakageReport counts leaked items under "leaked".
    for key in ("leaked", "n_overlap", "n_leaked", "overlap_count", "count"):
        if isinstance(leakage.get(key), bool):
            return leakage[key]
        if key in leakage and isinstance(leakage[key], int) and not isinstance(leakage[key], bool):
            return leakage[key] > 0
    return True


def _leakage_text(leakage: Mapping[str, Any]) -> str:
    message = leakage.get("message") or leakage.get("warning")
    if isinstance(message, str) and message:
        return message
    facts = ", ".join(f"{k}={_short_value(v)}" for k, v in leakage.items() if not isinstance(v, (dict, list)))
    return "possible overlap between the evaluation set and training data" + (f" ({facts})" if facts else "")


def _short_value(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _warnings(run: Mapping[str, Any], endpoints: Sequence[str], n_items: int) -> list[str]:
    out: list[str] = []
    if run.get("status") not in (None, "complete"):
        done = sum(
            1 for item in run["items"]
            if all((item.get("results") or {}).get(ep) is not None for ep in endpoints)
        )  # fmt: skip
        expected = (run.get("dataset") or {}).get("n_items")
        of = f"{expected}" if isinstance(expected, int) else f"{n_items}"
        out.append(
            f"This run is {run.get('status')}: {done} of {of} items have results from every endpoint. "
            "Scores and comparisons cover only the finished items; resume the run before drawing conclusions."
        )
    summary = run.get("summary") or {}
    # The runner words its own warnings for failed requests and leakage; add ours only where it did not.
    theirs = [str(w) for w in run.get("warnings") or []]
    for ep in endpoints:
        if any(w.startswith(f"{ep}: ") and "no answer" in w for w in theirs):
            continue
        errors = (summary.get(ep) or {}).get("errors")
        if errors is None:
            errors = sum(
                1 for item in run["items"] if ((item.get("results") or {}).get(ep) or {}).get("error")
            )
        if isinstance(errors, int) and errors > 0:
            out.append(
                f"{errors} request{'s' if errors != 1 else ''} to endpoint {ep!r} failed; those items have no output "
                "from it (see the items below)."
            )
    leakage = run.get("leakage")
    already = any(w.lower().startswith("leakage") for w in theirs)
    if isinstance(leakage, Mapping) and leakage and _leakage_flagged(leakage) and not already:
        out.append("Data leakage: " + _leakage_text(leakage))
    out.extend(theirs)
    return out


def build_report_model(
    run: Mapping[str, Any],
    *,
    job_events: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    costs: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything a renderer shows, as plain data (no plots): checked, ordered, with derived views computed once."""
    _check_run(run)
    endpoints = [ep["name"] for ep in run["endpoints"]]
    graders = _grader_ids(run)
    summary = run.get("summary") or {}
    pairwise = [dict(p) for p in run.get("pairwise") or [] if isinstance(p, Mapping)]
    judged: dict[Any, list[dict[str, Any]]] = {}
    for entry in pairwise:
        for row in entry.get("items") or []:
            if isinstance(row, Mapping):
                judged.setdefault(row.get("index"), []).append({
                    "title": f"{entry.get('b')} vs {entry.get('a')} ({entry.get('grader')})",
                    "verdict": pairwise_verdict(entry, row),
                    "preferred": winner_name(entry, row.get("winner")),
                    "error": bool(row.get("error")) and not row.get("excluded"),
                })  # fmt: skip
    items: list[dict[str, Any]] = []
    for pos, item in enumerate(run["items"]):
        why = _disagreement(item, endpoints, graders) if len(endpoints) > 1 else []
        verdicts = judged.get(item.get("index", pos), [])
        why += [f"judge prefers {v['preferred']}" for v in verdicts if v["preferred"]]
        items.append({
            "index": item.get("index", pos),
            "question": last_user_turn(item.get("prompt")),
            "reference": as_text(item.get("reference")),
            "disagree": bool(why),
            "disagree_on": why,
            "results": {ep: dict((item.get("results") or {}).get(ep) or {}) for ep in endpoints},
            "judged": verdicts,
        })  # fmt: skip

    scores = []
    labels = []
    for ep in endpoints:
        for gid in graders:
            gs = ((summary.get(ep) or {}).get("graders") or {}).get(gid)
            if not isinstance(gs, Mapping):
                continue
            scores.append({"endpoint": ep, "grader": gid, **gs})
            if isinstance(gs.get("labels"), Mapping):
                labels.append({"endpoint": ep, "grader": gid, "metrics": gs["labels"]})

    latencies = {
        ep: [
            v
            for item in items
            if not item["results"][ep].get("error")
            and (v := _num(item["results"][ep].get("latency_ms"))) is not None
        ]
        for ep in endpoints
    }

    jobs: dict[str, list[str]] = {}
    for ep in run["endpoints"]:
        if ep.get("job_id"):
            jobs.setdefault(str(ep["job_id"]), []).append(ep["name"])
    for job_id in job_events or {}:
        jobs.setdefault(str(job_id), [])
    loss = [
        {"job_id": job_id, "endpoints": names, "curve": loss_curve((job_events or {}).get(job_id) or [])}
        for job_id, names in jobs.items()
    ]

    n_items = len(items)
    return {
        "id": str(run["id"]),
        "created_at": fmt_time(run.get("created_at")),
        "status": run.get("status") or "unknown",
        "dataset": dict(run.get("dataset") or {}),
        "endpoints": [dict(ep) for ep in run["endpoints"]],
        "endpoint_names": endpoints,
        "graders": [dict(g) for g in run.get("graders") or [] if isinstance(g, Mapping)],
        "grader_ids": graders,
        "params": dict(run.get("params") or {}),
        "confidence": _num((run.get("params") or {}).get("confidence")) or 0.95,
        "warnings": _warnings(run, endpoints, n_items),
        "notes": [str(n) for n in run.get("notes") or []],
        "leakage": run.get("leakage"),
        "scores": scores,
        "comparisons": [dict(c) for c in run.get("comparisons") or [] if isinstance(c, Mapping)],
        "pairwise": pairwise,
        "labels": labels,
        "latency": {ep: (summary.get(ep) or {}).get("latency") for ep in endpoints},
        "latencies": latencies,
        "tokens": {ep: (summary.get(ep) or {}).get("tokens") for ep in endpoints},
        "endpoint_costs": {ep: (summary.get(ep) or {}).get("cost") for ep in endpoints},
        "errors": {ep: (summary.get(ep) or {}).get("errors") for ep in endpoints},
        "loss": loss,
        "costs": [dict(c) for c in costs or [] if isinstance(c, Mapping)],
        "items": items,
        "n_disagree": sum(1 for it in items if it["disagree"]),
    }


def winner_name(comparison: Mapping[str, Any], winner: Any) -> str | None:
    if winner == "a":
        return str(comparison.get("a"))
    if winner == "b":
        return str(comparison.get("b"))
    return None


def mcnemar_sentence(comparison: Mapping[str, Any]) -> str | None:
    """One line: the exact McNemar counts, p-value and verdict (a winner is named only when significant)."""
    passed = comparison.get("pass")
    if not isinstance(passed, Mapping) or not isinstance(passed.get("mcnemar"), Mapping):
        return None
    mc = passed["mcnemar"]
    a, b = comparison.get("a"), comparison.get("b")
    alpha = _num(mc.get("alpha")) or _num(comparison.get("alpha")) or 0.05
    won = winner_name(comparison, passed.get("winner"))
    verdict = (
        f"{won} passes significantly more items" if won else f"no significant difference at alpha = {alpha:g}"
    )
    p = fmt_p(mc.get("p_value"))
    return (
        f"McNemar (exact): b = {mc.get('b')} ({a} passed, {b} failed), c = {mc.get('c')} ({b} passed, {a} failed), "
        f"p {p if p.startswith('<') else '= ' + p}: {verdict}"
    )


def excluded_sentence(comparison: Mapping[str, Any]) -> str | None:
    """Which items the comparison left out (on both sides), when the runner says so."""
    ex = comparison.get("excluded")
    if not isinstance(ex, Mapping):
        return None
    parts = [f"{n} {what}" for what, n in (("with a failed request", ex.get("request_errors")),
                                            ("that could not be graded", ex.get("ungradable"))) if n]  # fmt: skip
    return (
        (
            "left out on both sides: "
            + " and ".join(f"{p} item{'s' if not p.startswith('1 ') else ''}" for p in parts)
        )
        if parts
        else None
    )


def bootstrap_sentence(comparison: Mapping[str, Any]) -> str:
    scores = comparison.get("scores") or {}
    boot = scores.get("bootstrap") or {}
    conf = _num(boot.get("confidence")) or _num(comparison.get("confidence")) or 0.95
    won = winner_name(comparison, scores.get("winner"))
    verdict = (
        f"{won} scores higher (interval excludes 0)"
        if won
        else "the interval includes 0: no significant difference"
    )
    return (
        f"mean score difference ({comparison.get('b')} - {comparison.get('a')}) = {fmt_signed(scores.get('mean_diff'))}, "
        f"{conf:.0%} paired bootstrap CI [{fmt_signed(boot.get('low'))}, {fmt_signed(boot.get('high'))}]: {verdict}"
    )


# --------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------


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


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _score_row(row: Mapping[str, Any]) -> list[str]:
    acc = row.get("accuracy")
    return [
        row["endpoint"], row["grader"], row.get("n"), row.get("n_errors"), fmt_num(row.get("mean_score")),
        "n/a" if acc is None else f"{fmt_pct(acc)} ({row.get('n_passed')}/{row.get('n_judged')})",
        fmt_ci(row.get("accuracy_ci")),
    ]  # fmt: skip


SCORE_HEADER = ("endpoint", "grader", "items", "ungraded", "mean score", "accuracy", "Wilson interval")


def _md_comparison(c: Mapping[str, Any]) -> list[str]:
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


def _md_pairwise(entry: Mapping[str, Any]) -> list[str]:
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
    shown = rows[:_MD_MAX_ITEMS]
    if shown:
        lines += [f"Per-item verdicts ({len(shown)} of {len(rows)} items" + (", the HTML report has all" if len(rows) > len(shown) else "") + "):", ""]  # fmt: skip
        lines += _md_table(
            ("item", "verdict", "with A shown first", "with B shown first"),
            ([r.get("index"), pairwise_verdict(entry, r), *pairwise_orders(entry, r)] for r in shown),
        )
    return lines


def _md_grade(grade: Any) -> str:
    v = _verdict(grade)
    if v == "none":
        return "not graded"
    score = fmt_num(grade.get("score"), 2)
    reason = grade.get("error") or (grade.get("details") or {}).get("reason")
    return f"{v} ({score})" + (f": {reason}" if reason and v != "pass" else "")


def render_markdown(model: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The report as Markdown; ``plots`` maps a plot key to its PNG file name (relative to the Markdown)."""
    eps = model["endpoint_names"]
    lines = [f"# Evaluation report: {md_cell(model['id'])}", ""]
    ds = model["dataset"]
    lines += [
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

    lines += ["## Scores", ""]
    if model["scores"]:
        lines += _md_table(SCORE_HEADER, (_score_row(r) for r in model["scores"]))
        lines += [f"Accuracy intervals are {model['confidence']:.0%} Wilson score intervals over items with a "
                  "pass/fail verdict; ungraded items are left out of both.", ""]  # fmt: skip
    else:
        lines += ["No grader summaries in this run.", ""]

    if model["comparisons"]:
        lines += [
            "## Paired comparisons",
            "",
            "Differences are the second endpoint minus the first, on the same items.",
            "",
        ]
        for c in model["comparisons"]:
            lines += _md_comparison(c)

    if model["pairwise"]:
        lines += ["## Pairwise judge", "",
                  "An LLM judge compared the answers of each pair of endpoints item by item, asked in both orders; "
                  "a win counts only when both orders agree, anything else is a tie.", ""]  # fmt: skip
        for entry in model["pairwise"]:
            lines += _md_pairwise(entry)

    if model["labels"]:
        lines += ["## Label metrics", ""]
        for entry in model["labels"]:
            m = entry["metrics"]
            lines += [f"### {md_cell(entry['endpoint'])}: {md_cell(entry['grader'])}", ""]
            rows = [[lbl, fmt_num(v.get("precision")), fmt_num(v.get("recall")), fmt_num(v.get("f1")), v.get("support")]
                    for lbl, v in (m.get("per_label") or {}).items()]  # fmt: skip
            for avg in ("macro", "micro"):
                v = m.get(avg) or {}
                rows.append(
                    [
                        f"({avg} avg)",
                        fmt_num(v.get("precision")),
                        fmt_num(v.get("recall")),
                        fmt_num(v.get("f1")),
                        "",
                    ]
                )
            lines += _md_table(("label", "precision", "recall", "F1", "support"), rows)
            cols = m.get("columns") or []
            confusion = m.get("confusion") or {}
            lines += ["Confusion matrix (rows: reference label, columns: predicted):", ""]
            lines += _md_table(
                ["reference \\ predicted", *cols],
                ([g, *[row.get(c, 0) for c in cols]] for g, row in confusion.items()),
            )

    lines += ["## Latency", ""]
    rows = []
    for ep in eps:
        lat = model["latency"].get(ep) or {}
        rows.append(
            [
                ep,
                lat.get("n", len(model["latencies"][ep])),
                *(fmt_num(lat.get(k), 0) for k in ("mean", "p50", "p95", "p99", "max")),
                model["errors"].get(ep),
            ]
        )
    lines += _md_table(
        ("endpoint", "requests", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"), rows
    )
    if "latency" in plots:
        lines += [f"![latency distributions]({plots['latency']})", ""]

    if any(model["tokens"].values()) or any(model["endpoint_costs"].values()):
        lines += ["## Tokens and cost per endpoint", ""]
        for ep in eps:
            tokens = model["tokens"].get(ep) or {}
            cost = model["endpoint_costs"].get(ep) or {}
            parts = [f"{md_cell(k)} tokens {md_cell(_short_value(v))}" for k, v in tokens.items()]
            if cost:
                cur = cost.get("currency") or ""
                if cost.get("per_item") is None:
                    parts.append("cost n/a")
                else:
                    parts.append(
                        f"cost per item {md_cell(cost.get('per_item'))} {md_cell(cur)}, "
                        f"per 1,000 items {md_cell(cost.get('per_1000'))} {md_cell(cur)}"
                    )
                if cost.get("inputs"):
                    parts.append("inputs: " + md_cell(_short_value(cost["inputs"], 400)))
            lines.append(f"- **{md_cell(ep)}**: " + "; ".join(parts))
        lines.append("")

    if model["loss"]:
        lines += ["## Training loss", ""]
        for entry in model["loss"]:
            curve = entry["curve"]
            who = (
                f" (endpoint {', '.join(md_cell(n) for n in entry['endpoints'])})"
                if entry["endpoints"]
                else ""
            )
            lines.append(f"### Job {md_cell(entry['job_id'])}{who}")
            lines.append("")
            if not curve["train_loss"] and not curve["valid_loss"]:
                lines += ["No loss metrics were reported for this job.", ""]
                continue
            last_t = curve["train_loss"][-1] if curve["train_loss"] else None
            last_v = curve["valid_loss"][-1] if curve["valid_loss"] else None
            lines.append(
                f"- final train loss: {fmt_num(last_t[1]) if last_t else 'n/a'}"
                + (f" at step {last_t[0]:g}" if last_t else "")
                + f"; final valid loss: {fmt_num(last_v[1]) if last_v else 'n/a'}"
                + (f" at step {last_v[0]:g}" if last_v else "")
            )
            lines.append("")
            key = f"loss:{entry['job_id']}"
            if key in plots:
                lines += [f"![loss curve of {md_cell(entry['job_id'])}]({plots[key]})", ""]

    if model["costs"]:
        lines += ["## Costs", ""]
        for fig in model["costs"]:
            amount = fig.get("display") or f"{fig.get('amount')} {fig.get('currency') or ''}".strip()
            lines += [f"### {md_cell(fig.get('label'))}: {md_cell(amount)}", ""]
            if fig.get("formula"):
                lines += [f"- formula: {md_cell(fig['formula'])}"]
            for key, value in (fig.get("inputs") or {}).items():
                lines.append(f"- {md_cell(key)}: {md_cell(_short_value(value, 400))}")
            lines += [f"- note: {md_cell(n)}" for n in fig.get("notes") or []]
            lines.append("")

    lines += ["## Items where the endpoints disagree", ""]
    shown = [it for it in model["items"] if it["disagree"]]
    if len(eps) < 2:
        lines += ["Only one endpoint: nothing to disagree about (the HTML report shows every item).", ""]
    elif not shown:
        lines += ["None: every grader gave every endpoint the same verdict on every item.", ""]
    else:
        lines += [f"{len(shown)} of {len(model['items'])} items"
                  + (f" (the first {_MD_MAX_ITEMS} shown; the HTML report has all)" if len(shown) > _MD_MAX_ITEMS else "")
                  + ".", ""]  # fmt: skip
        for it in shown[:_MD_MAX_ITEMS]:
            lines += [f"### Item {md_cell(it['index'])} (disagree: {md_cell('; '.join(it['disagree_on']))})", "",
                      "Prompt (last user turn):", "", md_code(it["question"]), "", "Reference:", "",
                      md_code(it["reference"]), ""]  # fmt: skip
            for ep in eps:
                res = it["results"][ep]
                grades = res.get("grades") or {}
                verdicts = "; ".join(
                    f"{md_cell(g)}: {md_cell(_md_grade(grades.get(g)))}" for g in model["grader_ids"]
                )
                lines += [f"**{md_cell(ep)}**: {verdicts}", ""]
                if res.get("error"):
                    lines += [f"request failed: {md_cell(res['error'])}", ""]
                else:
                    lines += [md_code(as_text(res.get("output"))), ""]
            for v in it.get("judged") or []:
                lines += [f"**judge** {md_cell(v['title'])}: {md_cell(v['verdict'])}", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)  # Decimal amounts stay exact as strings


def render_json(run: Mapping[str, Any], model: Mapping[str, Any], job_events: Any, costs: Any) -> str:
    """The report's inputs (to render it again) plus the derived views a script would otherwise recompute."""
    payload = {
        "format": REPORT_JSON_FORMAT,
        "run": run,
        "job_events": job_events or {},
        "costs": list(costs or []),
        "report": {
            "warnings": model["warnings"],
            "disagreements": [{"index": it["index"], "graders": it["disagree_on"]} for it in model["items"] if it["disagree"]],
            "loss_curves": {e["job_id"]: e["curve"] for e in model["loss"]},
        },
    }  # fmt: skip
    return json.dumps(payload, ensure_ascii=False, indent=2, default=_json_default) + "\n"


def load_report_json(path: str | Path) -> dict[str, Any]:
    """Read a run JSON (``tuneport eval --json`` output) or a report JSON back as ``render_report`` arguments:
    ``{"run": ..., "job_events": ..., "costs": ...}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvaluationError(f"cannot read {p}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise EvaluationError(
            f"{p} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            hint="Give a run id, or the JSON file that `tuneport eval --json` or `tuneport report` wrote.",
        ) from exc
    if isinstance(data, Mapping) and data.get("format") == REPORT_JSON_FORMAT:
        return {
            "run": data.get("run"),
            "job_events": data.get("job_events") or None,
            "costs": data.get("costs") or None,
        }
    return {"run": data, "job_events": None, "costs": None}


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80] or "job"


def render_report(
    run: Mapping[str, Any],
    out_dir: str | Path,
    *,
    job_events: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    costs: Sequence[Mapping[str, Any]] | None = None,
    formats: Sequence[str] = REPORT_FORMATS,
) -> dict[str, Path]:
    """Write the report of one evaluation run into ``out_dir``; returns ``{"md"|"html"|"json"|"plot:...": path}``.

    ``run``: the evaluation runner's run dict (``id``, ``status``, ``dataset``, ``endpoints``, ``graders``,
    ``params``, ``items`` with per-endpoint results and grades, ``summary``, ``comparisons``, ``warnings``,
    ``leakage``). ``job_events``: ``{job_id: [event rows]}`` from the store, for the loss curves of fine-tuned
    endpoints. ``costs``: cost figure dicts (``label``, ``amount``, ``currency``, ``formula``, ``inputs``).
    Markdown goes to ``report.md`` with its plots as PNG files beside it; HTML to ``report.html`` (self-contained);
    JSON to ``report.json``. Without matplotlib the report is still written, without plots, and says so.
    """
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in REPORT_FORMATS]
    if unknown or not wanted:
        raise EvaluationError(
            f"unknown report format(s) {unknown or wanted}",
            hint=f"Choose from {', '.join(REPORT_FORMATS)}.",
        )
    model = build_report_model(run, job_events=job_events, costs=costs)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvaluationError(
            f"cannot create the report folder {out}: {exc.strerror or exc}",
            hint="Pick a writable folder with --output.",
        ) from exc

    from tuneport.report import plots as report_plots

    pngs: dict[str, bytes] = {}
    files: dict[str, str] = {}
    if ("md" in wanted or "html" in wanted) and report_plots.matplotlib_available():
        if png := report_plots.latency_png(model["latencies"]):
            pngs["latency"], files["latency"] = png, "latency.png"
        for entry in model["loss"]:
            if png := report_plots.loss_png(entry["curve"], f"job {entry['job_id']}"):
                key = f"loss:{entry['job_id']}"
                pngs[key], files[key] = png, f"loss-{_safe_name(entry['job_id'])}.png"
    elif "md" in wanted or "html" in wanted:
        model["warnings"].append(
            "Plots were skipped: matplotlib is not installed (pip install matplotlib) for latency and loss plots."
        )

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
            from tuneport.report.html import render_html

            written["html"] = out / "report.html"
            written["html"].write_text(render_html(model, pngs), encoding="utf-8")
        if "json" in wanted:
            written["json"] = out / "report.json"
            written["json"].write_text(render_json(run, model, job_events, costs), encoding="utf-8")
    except OSError as exc:
        raise EvaluationError(
            f"cannot write the report into {out}: {exc.strerror or exc}",
            hint="Pick a writable folder with --output.",
        ) from exc
    return written
