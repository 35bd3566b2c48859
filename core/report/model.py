"""The report model: everything the renderers show, derived once from an evaluation run, as plain data.

Why a model between the run and the formats: Markdown, HTML and JSON must never disagree, so the checks of the run,
the disagreement marks, the warnings and the loss curves are computed here once; the renderers only lay them out
and escape them. Nothing here re-grades or re-tests: every number comes from the run or the job events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.report.costs import DEFAULT_MONTHLY_REQUESTS, cost_view
from tuneport.report.format import as_text, fmt_time, num, short_value
from tuneport.report.sentences import pairwise_verdict, winner_name
from tuneport.report.verdicts import verdict_sentences

__all__ = ["build_report_model", "check_nesting", "loss_curve", "last_user_turn", "verdict", "MAX_NESTING"]

#: Deepest nesting of lists and objects a run may hold. A real run is about ten levels deep; the renderers and the
#: JSON writer recurse once per level, so a deeper (hostile or broken) document is refused up front.
MAX_NESTING = 100
#: The largest monthly request volume the ROI line accepts (far past any real service).
MAX_MONTHLY_REQUESTS = 10**12


def check_nesting(document: Any, origin: str, limit: int = MAX_NESTING) -> None:
    """Raise :class:`EvaluationError` naming ``origin`` and the path where ``document`` nests deeper than ``limit``.

    Walks with an explicit stack, so the check itself cannot run out of recursion on any input.
    """
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(document, 0, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, Mapping):
            children: Iterable[tuple[Any, Any]] = value.items()
        elif isinstance(value, (list, tuple)):
            children = enumerate(value)
        else:
            continue
        if depth >= limit:
            where = (
                "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path).lstrip(".")
                or "the top level"
            )
            raise EvaluationError(
                f"{origin} nests lists/objects more than {limit} levels deep (at {short_value(where, 200)})",
                hint="An evaluation run is a few levels deep; is this the JSON that `tuneport eval --json` or "
                "`tuneport report` wrote?",
            )
        stack.extend((child, depth + 1, (*path, key)) for key, child in children)


def _check_run(run: Any) -> None:
    if not isinstance(run, Mapping):
        raise EvaluationError(
            f"a report needs an evaluation run (a mapping), got {type(run).__name__}",
            hint="Pass the dict that `tuneport eval --json` prints, or a run id to `tuneport report`.",
        )
    check_nesting(run, "the evaluation run")
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
        step = num(data.get("step"))
        if step is None:
            continue
        for key, target in (
            ("train_loss", train),
            ("valid_loss", valid),
            ("train_mean_token_accuracy", accuracy),
        ):
            value = num(data.get(key))
            if value is not None:
                target[step] = value
        total = num(data.get("total_steps")) or total
    return {
        "train_loss": sorted(train.items()),
        "valid_loss": sorted(valid.items()),
        "train_mean_token_accuracy": sorted(accuracy.items()),
        "total_steps": total,
    }


def _grader_ids(run: Mapping[str, Any]) -> list[str]:
    ids = [str(g.get("id") or g.get("name")) for g in run.get("graders") or [] if isinstance(g, Mapping)]
    seen = dict.fromkeys(ids)
    for item in run["items"]:  # graders the run forgot to list still show up
        for result in item.get("results", {}).values():
            for gid in (result or {}).get("grades") or {}:
                seen.setdefault(str(gid))
    return list(seen)


def verdict(grade: Any) -> str:
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
        verdicts = {verdict(((results.get(ep) or {}).get("grades") or {}).get(gid)) for ep in endpoints}
        if "pass" in verdicts and "fail" in verdicts:
            why.append(gid)
    return why


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
    facts = ", ".join(f"{k}={short_value(v)}" for k, v in leakage.items() if not isinstance(v, (dict, list)))
    return "possible overlap between the evaluation set and training data" + (f" ({facts})" if facts else "")


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


def _judged_by_item(pairwise: Sequence[Mapping[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """The pairwise judge's verdicts, grouped by item index."""
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
    return judged


def _items(
    run: Mapping[str, Any], endpoints: Sequence[str], graders: Sequence[str], judged: Mapping[Any, Any]
) -> list[dict[str, Any]]:
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
    return items


def _loss(
    run: Mapping[str, Any], job_events: Mapping[str, Sequence[Mapping[str, Any]]] | None
) -> list[dict[str, Any]]:
    """One loss curve per fine-tuning job: the jobs behind the endpoints, then any other job with events."""
    jobs: dict[str, list[str]] = {}
    for ep in run["endpoints"]:
        if ep.get("job_id"):
            jobs.setdefault(str(ep["job_id"]), []).append(ep["name"])
    for job_id in job_events or {}:
        jobs.setdefault(str(job_id), [])
    return [
        {"job_id": job_id, "endpoints": names, "curve": loss_curve((job_events or {}).get(job_id) or []),
         "base_model": base_model_of((job_events or {}).get(job_id) or [])}
        for job_id, names in jobs.items()
    ]  # fmt: skip


def base_model_of(events: Sequence[Mapping[str, Any]]) -> str | None:
    """"Qwen/Qwen2.5-0.5B-Instruct at commit 1a2b3c4d5e6f" for a job trained on a Hub model (the provenance its
    runner recorded in an event), None when the job names none."""
    for event in events:
        data = event.get("data")
        source = data.get("base_model") if isinstance(data, Mapping) else None
        if isinstance(source, Mapping) and source.get("repo_id") and source.get("sha"):
            return f"{source['repo_id']} at commit {str(source['sha'])[:12]}"
    return None


def build_report_model(
    run: Mapping[str, Any],
    *,
    job_events: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    costs: Sequence[Mapping[str, Any]] | None = None,
    monthly_requests: int = DEFAULT_MONTHLY_REQUESTS,
) -> dict[str, Any]:
    """Everything a renderer shows, as plain data (no plots): checked, ordered, with derived views computed once.

    ``monthly_requests`` is the volume the ROI line assumes (prompt tokens saved per request x this)."""
    if isinstance(monthly_requests, bool) or not isinstance(monthly_requests, int) or not (
        1 <= monthly_requests <= MAX_MONTHLY_REQUESTS
    ):
        raise EvaluationError(
            f"the monthly request volume must be a whole number from 1 to {MAX_MONTHLY_REQUESTS:,}, "
            f"not {monthly_requests!r}",
            hint="Give --monthly-requests as the requests a month you expect, e.g. 100000.",
        )
    _check_run(run)
    check_nesting(job_events or {}, "the job events")
    check_nesting(list(costs or []), "the cost figures")
    endpoints = [ep["name"] for ep in run["endpoints"]]
    graders = _grader_ids(run)
    summary = run.get("summary") or {}
    pairwise = [dict(p) for p in run.get("pairwise") or [] if isinstance(p, Mapping)]
    items = _items(run, endpoints, graders, _judged_by_item(pairwise))

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
            and (v := num(item["results"][ep].get("latency_ms"))) is not None
        ]
        for ep in endpoints
    }
    model = {
        "id": str(run["id"]),
        "created_at": fmt_time(run.get("created_at")),
        "status": run.get("status") or "unknown",
        "dataset": dict(run.get("dataset") or {}),
        "endpoints": [dict(ep) for ep in run["endpoints"]],
        "endpoint_names": endpoints,
        "graders": [dict(g) for g in run.get("graders") or [] if isinstance(g, Mapping)],
        "grader_ids": graders,
        "params": dict(run.get("params") or {}),
        "confidence": num((run.get("params") or {}).get("confidence")) or 0.95,
        "warnings": _warnings(run, endpoints, len(items)),
        "notes": [str(n) for n in run.get("notes") or []],
        "leakage": run.get("leakage"),
        "scores": scores,
        "comparisons": [dict(c) for c in run.get("comparisons") or [] if isinstance(c, Mapping)],
        "pairwise": pairwise,
        "noninferiority": [dict(t) for t in run.get("noninferiority") or [] if isinstance(t, Mapping)],
        "overfitting": [dict(g) for g in run.get("overfitting") or [] if isinstance(g, Mapping)],
        "prompting": dict(run["prompting"]) if isinstance(run.get("prompting"), Mapping) else None,
        "labels": labels,
        "latency": {ep: (summary.get(ep) or {}).get("latency") for ep in endpoints},
        "latencies": latencies,
        "tokens": {ep: (summary.get(ep) or {}).get("tokens") for ep in endpoints},
        "endpoint_costs": {ep: (summary.get(ep) or {}).get("cost") for ep in endpoints},
        "errors": {ep: (summary.get(ep) or {}).get("errors") for ep in endpoints},
        "answered": {ep: (summary.get(ep) or {}).get("n_answered") for ep in endpoints},
        "loss": _loss(run, job_events),
        "costs": [dict(c) for c in costs or [] if isinstance(c, Mapping)],
        "items": items,
        "n_disagree": sum(1 for it in items if it["disagree"]),
    }
    model["cost_view"] = cost_view(model, monthly_requests)
    model["verdicts"] = verdict_sentences(model)
    return model
