"""A realistic evaluation run for the report tests, computed with the real graders and statistics.

Nothing here is a hand-typed number: grades come from ``make_grader``, summaries from ``summarize_grades``,
comparisons from ``paired_grades`` + ``compare_paired``, latency from ``latency_summary``. The outputs are made up
deterministically (a tuned endpoint that follows the JSON format and labels better than its base), with the nasty
cases a report must survive: a hostile output with markup and script, a failed request, a JSON-breaking output.
"""

from __future__ import annotations

import json
import random
from typing import Any

from tuneport.evaluation.graders import make_grader, paired_grades
from tuneport.evaluation.stats import compare_paired, latency_summary

HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)> ```` | ** `tick`'
LABELS = ["billing", "bug", "feature"]
GRADER_CONFIGS = [
    {"name": "label", "id": "category", "path": "category", "labels": LABELS},
    {"name": "rouge_l", "id": "rouge", "threshold": 0.5},
]


def _reply(rng: random.Random, label: str, quality: float, i: int) -> str:
    if rng.random() > quality:
        label = rng.choice([x for x in LABELS if x != label] + ["urgent"])
    if rng.random() > quality + 0.1:
        return f"I think this is about {label}, please route it."
    return json.dumps({"category": label, "summary": f"ticket {i} about {label}"})


def build_run(
    n_items: int = 40, *, status: str = "complete", seed: int = 7, same: bool = False
) -> dict[str, Any]:
    """``same``: the tuned endpoint answers exactly like the base one (no difference to find)."""
    rng = random.Random(seed)
    graders = [make_grader(c) for c in GRADER_CONFIGS]
    endpoints = [
        {"name": "base", "base_url": "http://127.0.0.1:8000/v1", "model": "tiny-chat", "kind": "live", "job_id": None},
        {"name": "tuned", "base_url": "http://127.0.0.1:8000/v1", "model": "tiny-chat:support", "kind": "recorded",
         "job_id": "ftjob-local-abc123"},
    ]  # fmt: skip
    quality = {"base": 0.55, "tuned": 0.9}
    items = []
    for i in range(n_items):
        label = LABELS[i % len(LABELS)]
        reference = json.dumps({"category": label, "summary": f"ticket {i} about {label}"})
        prompt = [
            {"role": "system", "content": "Classify the support ticket. Answer JSON."},
            {"role": "user", "content": f"Ticket {i}: my problem is with {label} <b>bold</b> & more"},
        ]
        results = {}
        for ep in endpoints:
            name = ep["name"]
            error = None
            output: str | None = _reply(rng, label, quality[name], i)
            if name == "tuned" and i == 3:
                output = HOSTILE
            if same and name == "tuned":
                output, error = results["base"]["output"], results["base"]["error"]
            if name == "base" and i == 5:
                output, error = None, "APIConnectionError: connection refused"
            grades = {}
            for g in graders:
                grades[g.id] = g.grade(output if output is not None else "", reference).to_dict()
            results[name] = {
                "output": output,
                "error": error,
                "latency_ms": None
                if error
                else round(rng.uniform(80, 400) * (1.6 if name == "base" else 1.0), 1),
                "usage": {"prompt_tokens": 30 + i % 7, "completion_tokens": 12 + i % 5},
                "cached": name == "tuned" and i % 10 == 0,
                "grades": grades,
            }
        items.append({"index": i, "prompt": prompt, "reference": reference, "results": results})

    from tuneport.evaluation.graders import GradeResult

    def column(name: str, gid: str) -> list[GradeResult]:
        out = []
        for item in items:
            d = item["results"][name]["grades"][gid]
            out.append(GradeResult(d["score"], d["passed"], label=d["label"], error=d["error"],
                                   details=d["details"], reference_label=d["reference_label"]))  # fmt: skip
        return out

    summary = {}
    for ep in endpoints:
        name = ep["name"]
        lat = latency_summary([it["results"][name]["latency_ms"] for it in items
                               if it["results"][name]["latency_ms"] is not None])  # fmt: skip
        prompt_tokens = sum(it["results"][name]["usage"]["prompt_tokens"] for it in items)
        summary[name] = {
            "graders": {g.id: g.summarize(column(name, g.id)).to_dict() for g in graders},
            "latency": lat.to_dict() if lat else None,
            "tokens": {"prompt": prompt_tokens, "completion": 500},
            "cost": {"per_item": "0.000120", "per_1000": "0.120000", "currency": "USD",
                     "inputs": {"price_per_1m_input": "0.30", "source": "openai pricing page", "as_of": "2026-11-01"}},
            "errors": sum(1 for it in items if it["results"][name]["error"]),
        }  # fmt: skip
    comparisons = []
    for g in graders:
        a_s, b_s, a_p, b_p, _ = paired_grades(column("base", g.id), column("tuned", g.id))
        comp = compare_paired(a_s, b_s, a_p, b_p, n_resamples=500)
        excluded = {"request_errors": 0, "ungradable": 0}
        comparisons.append(
            {"a": "base", "b": "tuned", "grader": g.id, "excluded": excluded, **comp.to_dict()}
        )
    return {
        "id": "run-20261121-report",
        "created_at": 1795000000,
        "status": status,
        "dataset": {"path": "fixtures/data/support.jsonl", "sha256": "ab" * 32, "n_items": n_items + (5 if status != "complete" else 0)},
        "endpoints": endpoints,
        "graders": [{"id": g.id, "name": g.name, "params": g.params} for g in graders],
        "params": {"temperature": 0.0, "max_tokens": 128, "seed": 0},
        "items": items,
        "summary": summary,
        "comparisons": comparisons,
        "warnings": [
            "leakage: 2 of 40 eval items repeat training items (2 exactly, 0 after normalization; checked against "
            "train.jsonl): their scores measure memory, not skill"
        ],
        "notes": ["graders chosen from the references: label (JSON with a 'category' field)"],
        "leakage": {"leaked": 2, "exact": 2, "normalized": 0, "candidate": {"items": 40},
                    "reference": {"path": "train.jsonl"}},
    }  # fmt: skip


def build_events(job_id: str = "ftjob-local-abc123", steps: int = 30) -> dict[str, list[dict[str, Any]]]:
    """Metrics events shaped like the store's rows (``type``, ``data``) with a falling loss."""
    events: list[dict[str, Any]] = [
        {"id": 1, "job_id": job_id, "type": "message", "message": "started", "data": None}
    ]
    for step in range(1, steps + 1):
        data: dict[str, Any] = {"step": step, "total_steps": steps, "train_loss": 2.5 * 0.93**step + 0.1,
                                "train_mean_token_accuracy": min(0.99, 0.4 + step / 50)}  # fmt: skip
        if step % 5 == 0:
            data["valid_loss"] = 2.6 * 0.94**step + 0.2
        events.append(
            {"id": step + 1, "job_id": job_id, "type": "metrics", "message": f"step {step}", "data": data}
        )
    return {job_id: events}


def build_costs() -> list[dict[str, Any]]:
    return [
        {"label": "hosted training estimate (gpt-4.1-mini-2025-04-14)", "amount": "1.234500", "currency": "USD",
         "formula": "billed_tokens_per_epoch x n_epochs x price_per_1m / 1,000,000",
         "inputs": {"billed_tokens_per_epoch": 123450, "n_epochs": 2, "price_per_1m": "5.00",
                    "source": "https://openai.com/api/pricing", "as_of": "2026-11-01"}},
        {"label": "local training actual (ftjob-local-abc123)", "amount": "0.08", "currency": "USD",
         "formula": "seconds / 3600 x hourly_usd", "inputs": {"seconds": 288, "hourly_usd": "1.00", "source": "--hourly"}},
    ]  # fmt: skip
