"""The report's cost view, decided once for every format: cost per 1,000 items per endpoint with its interval, the
judge's share, the run's totals, the prompt tokens a fine-tune saves (the ROI line) and the payback of its training.

Why here and not in the runner: these are readings of what the run already measured (token counts, latencies, the
prices the endpoint's backend gave), combined with figures recorded outside the run (a job's training cost) and a
reader's choice (the monthly volume). Nothing is re-priced: an endpoint the run could not price stays "n/a" with
the run's reason, so a base model is never shown at someone else's price.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from tuneport.cost.money import money
from tuneport.report.format import num

__all__ = ["DEFAULT_MONTHLY_REQUESTS", "cost_view", "per_item_costs", "training_cost_of", "dec"]

#: The monthly request volume the ROI line assumes unless the reader gives one (``tuneport report
#: --monthly-requests``): 100,000 requests, about two a minute around the clock.
DEFAULT_MONTHLY_REQUESTS = 100_000
#: Two-sided 95% normal quantile for the interval of a mean cost per item.
_Z95 = 1.959963984540054
_TRAINING_LABEL = re.compile(r"^(local|hosted) training actual \((?P<job>[^)]*)\)")


def dec(value: Any) -> Decimal | None:
    """A finite Decimal from a run's money string or number; ``None`` for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _usd(value: Decimal | None) -> str:
    return "n/a" if value is None else money(value)


def _rate(value: Decimal) -> str:
    """A price ($/hour, $/1M tokens) with the digits it has, from cents up to six places: $0.096, not $0.10."""
    places = max(2, min(6, -value.normalize().as_tuple().exponent))  # type: ignore[operator]
    return money(value, places)


def per_item_costs(cost: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> list[float]:
    """What each answered item cost on one endpoint, from the prices its cost figure was computed with.

    Token-billed: the item's prompt and completion tokens at the endpoint's $/1M prices. Hour-billed: the item's
    share of the measured wall time (its latency over the summed latencies of the timed answers), so the mean
    is the figure the run reported. Empty when the figure does not carry its prices (nothing to spread).
    """
    inputs = cost.get("inputs") or {}
    good = [r for r in results if not r.get("error") and r.get("output") is not None]
    p_in, p_out = dec(inputs.get("input_per_1m")), dec(inputs.get("output_per_1m"))
    if p_in is not None and p_out is not None:
        out = []
        for r in good:
            usage = r.get("usage") or {}
            prompt, completion = num(usage.get("prompt_tokens")), num(usage.get("completion_tokens"))
            if prompt is None or completion is None or r.get("usage_refused"):
                continue
            out.append((prompt * float(p_in) + completion * float(p_out)) / 1_000_000)
        return out
    hourly, wall = dec(inputs.get("hourly_usd")), dec(inputs.get("wall_s"))
    if hourly is None or wall is None:
        return []
    timed = [v for r in good if not r.get("cached") and (v := num(r.get("latency_ms"))) is not None and v > 0]
    total = sum(timed)
    if not timed or total <= 0:
        return []
    per_s = float(hourly) / 3600 * float(wall) / (total / 1000)
    return [per_s * v / 1000 for v in timed]


def _interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The 95% normal interval of the mean of ``values`` (clipped at 0), or ``None`` for fewer than two."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = _Z95 * sd / math.sqrt(n)
    return max(0.0, mean - half), mean + half


def _prices_text(inputs: Mapping[str, Any]) -> str:
    p_in, p_out = dec(inputs.get("input_per_1m")), dec(inputs.get("output_per_1m"))
    if p_in is not None and p_out is not None:
        return f"{_rate(p_in)} input / {_rate(p_out)} output per 1M tokens" + (
            f" ({inputs['model']})" if inputs.get("model") else ""
        )
    hourly = dec(inputs.get("hourly_usd"))
    if hourly is not None:
        wall = dec(inputs.get("wall_s"))
        timed = f" x {float(wall):,.1f} s measured for {inputs.get('requests')} requests" if wall is not None else ""
        return f"{_rate(hourly)} per hour{timed}"
    return ""


def _method(inputs: Mapping[str, Any]) -> str:
    method = str(inputs.get("method") or "")
    if method.startswith("tokens"):
        return "per token"
    if method.startswith("hourly"):
        return "per hour (self-hosted)"
    return "n/a"


def _reason(cost: Mapping[str, Any]) -> str:
    inputs = cost.get("inputs") or {}
    note = inputs.get("note")
    if cost.get("per_1000") is None:
        return str(note or "n/a (the run holds no cost figure for this endpoint)")
    return str(note or "")


def _endpoint_row(name: str, cost: Mapping[str, Any] | None, results: Sequence[Mapping[str, Any]],
                  tokens: Mapping[str, Any] | None, answered: Any) -> dict[str, Any]:  # fmt: skip
    cost = cost if isinstance(cost, Mapping) else {}
    inputs = cost.get("inputs") if isinstance(cost.get("inputs"), Mapping) else {}
    per_item, per_1000 = dec(cost.get("per_item")), dec(cost.get("per_1000"))
    spread = _interval(per_item_costs(cost, results)) if per_1000 is not None else None
    per_item_tokens = (tokens or {}).get("per_item") or {}
    return {
        "endpoint": name,
        "billed": _method(inputs),
        "per_item": per_item,
        "per_1000": per_1000,
        "per_1000_text": _usd(per_1000),
        "low": None if spread is None else spread[0] * 1000,
        "high": None if spread is None else spread[1] * 1000,
        "interval_text": "n/a" if spread is None else
        f"[{money(Decimal(repr(spread[0] * 1000)))}, {money(Decimal(repr(spread[1] * 1000)))}]",
        "prices": _prices_text(inputs),
        "source": str(inputs.get("source") or ""),
        "as_of": str(inputs.get("as_of") or ""),
        "reason": _reason(cost),
        "prompt_per_item": num(per_item_tokens.get("prompt")),
        "completion_per_item": num(per_item_tokens.get("completion")),
        "prompt_tokens": num((tokens or {}).get("prompt")),
        "completion_tokens": num((tokens or {}).get("completion")),
        "answered": answered if isinstance(answered, int) else len(
            [r for r in results if not r.get("error") and r.get("output") is not None]
        ),
    }  # fmt: skip


def _judge_rows(pairwise: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The judge's tokens and cost per judged pair, where the run recorded them."""
    rows = []
    for entry in pairwise:
        usage = entry.get("usage")
        if not isinstance(usage, Mapping):
            continue
        cost = entry.get("cost") if isinstance(entry.get("cost"), Mapping) else {}
        judge = (entry.get("judge") or {}).get("name") or "judge"
        total = dec(cost.get("total"))
        rows.append({
            "judge": str(judge), "pair": f"{entry.get('b')} vs {entry.get('a')} ({entry.get('grader')})",
            "requests": usage.get("requests"), "prompt_tokens": num(usage.get("prompt_tokens")),
            "completion_tokens": num(usage.get("completion_tokens")), "total": total, "total_text": _usd(total),
            "reason": "" if total is not None else str((cost.get("inputs") or {}).get("note") or "n/a"),
        })  # fmt: skip
    return rows


def _totals(rows: Sequence[Mapping[str, Any]], judges: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    prompt = sum(r["prompt_tokens"] or 0 for r in rows) + sum(j["prompt_tokens"] or 0 for j in judges)
    completion = sum(r["completion_tokens"] or 0 for r in rows) + sum(j["completion_tokens"] or 0 for j in judges)
    amounts = [r["per_item"] * r["answered"] for r in rows if r["per_item"] is not None]
    amounts += [j["total"] for j in judges if j["total"] is not None]
    unpriced = [r["endpoint"] for r in rows if r["per_item"] is None]
    unpriced += [j["judge"] for j in judges if j["total"] is None]
    total = sum(amounts, Decimal(0)) if amounts else None
    return {"prompt_tokens": int(prompt), "completion_tokens": int(completion), "judge_included": bool(judges),
            "amount": total, "amount_text": _usd(total), "unpriced": unpriced}  # fmt: skip


def training_cost_of(job_id: str, figures: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The recorded training cost of ``job_id`` (``tuneport cost job``'s figure, or the quickstart's), if any."""
    for fig in reversed(list(figures)):
        kind = str(fig.get("kind") or "")
        inputs = fig.get("inputs") if isinstance(fig.get("inputs"), Mapping) else {}
        match = _TRAINING_LABEL.match(str(fig.get("label") or ""))
        same_job = (match and match.group("job") == job_id) or inputs.get("job_id") == job_id
        if (kind.startswith("train_actual") or match) and same_job and dec(fig.get("amount")) is not None:
            return {"label": str(fig.get("label")), "amount": dec(fig.get("amount"))}
    return None


def _roi_line(base: Mapping[str, Any], tuned: Mapping[str, Any], job_id: str | None, monthly: int,
              figures: Sequence[Mapping[str, Any]], base_cost: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    saved = base["prompt_per_item"] - tuned["prompt_per_item"]
    tokens_month = saved * monthly
    p_in = dec(((base_cost or {}).get("inputs") or {}).get("input_per_1m"))
    if p_in is not None:
        monthly_usd: Decimal | None = Decimal(repr(tokens_month)) * p_in / Decimal(1_000_000)
        priced_at = f"{base['endpoint']}'s input price {_rate(p_in)} per 1M tokens"
        why = ""
    else:
        monthly_usd, priced_at = None, ""
        why = (f"{base['endpoint']} is not priced per token ({base['billed']}): its prompt tokens cost machine "
               "time, counted in the per-1,000-items figures above")  # fmt: skip
    diff = None
    if base["per_item"] is not None and tuned["per_item"] is not None:
        diff = (base["per_item"] - tuned["per_item"]) * monthly
    training = training_cost_of(job_id, figures) if job_id else None
    saving = monthly_usd if monthly_usd is not None else diff
    payback = None
    if training is not None and saving is not None and saving > 0:
        payback = training["amount"] / saving
    return {
        "base": base["endpoint"], "tuned": tuned["endpoint"], "saved_per_request": saved,
        "base_prompt": base["prompt_per_item"], "tuned_prompt": tuned["prompt_per_item"],
        "monthly_requests": monthly, "tokens_per_month": tokens_month, "monthly_usd": monthly_usd,
        "priced_at": priced_at, "why_not_priced": why, "cost_difference_monthly": diff,
        "training": training, "payback_months": payback,
    }  # fmt: skip


def roi_sentence(line: Mapping[str, Any]) -> str:
    """The ROI line in words, the same in every format."""
    saved = line["saved_per_request"]
    verb = "saves" if saved >= 0 else "costs"
    text = (f"{line['tuned']} {verb} {abs(saved):,.0f} prompt tokens per request against {line['base']} "
            f"({line['base_prompt']:,.0f} vs {line['tuned_prompt']:,.0f}); at {line['monthly_requests']:,} "
            f"requests a month that is {abs(line['tokens_per_month']):,.0f} tokens")  # fmt: skip
    if line["monthly_usd"] is not None:
        text += f" = {money(abs(line['monthly_usd']))} a month {'saved' if saved >= 0 else 'more'} at {line['priced_at']}"
    else:
        text += f" a month ($ n/a: {line['why_not_priced']})"
    if line["cost_difference_monthly"] is not None:
        d = line["cost_difference_monthly"]
        text += f"; at the measured costs per item, {line['tuned']} costs {money(abs(d))} a month {'less' if d >= 0 else 'more'}"
    training = line["training"]
    if training is None:
        text += "; payback n/a (no training cost recorded for its job: `tuneport cost job JOB` records it)"
    elif line["payback_months"] is None:
        text += f"; training cost {money(training['amount'])}, no payback (it saves nothing a month)"
    else:
        months = line["payback_months"]
        text += f"; training cost {money(training['amount'])} is paid back in {_months(months)}"
    return text + "."


def _months(months: Decimal) -> str:
    m = float(months)
    if m < 1:
        return f"{m * 30.4:,.1f} days"
    return f"{m:,.1f} months"


def cost_view(model: Mapping[str, Any], monthly_requests: int = DEFAULT_MONTHLY_REQUESTS) -> dict[str, Any]:
    """The cost section's data from the report model: per-endpoint rows, judge rows, totals, ROI lines."""
    names = list(model["endpoint_names"])
    results = {ep: [it["results"].get(ep) or {} for it in model["items"]] for ep in names}
    answered = {ep: (model.get("answered") or {}).get(ep) for ep in names}
    rows = [
        _endpoint_row(ep, model["endpoint_costs"].get(ep), results[ep], model["tokens"].get(ep), answered[ep])
        for ep in names
    ]
    judges = _judge_rows(model.get("pairwise") or [])
    by_name = {r["endpoint"]: r for r in rows}
    jobs = {ep.get("name"): ep.get("job_id") for ep in model["endpoints"]}
    roi = []
    for tuned in names:
        if not jobs.get(tuned):
            continue
        for base in names:
            if jobs.get(base) or base == tuned:
                continue
            b, t = by_name[base], by_name[tuned]
            if b["prompt_per_item"] is None or t["prompt_per_item"] is None:
                continue
            if round(b["prompt_per_item"], 3) == round(t["prompt_per_item"], 3):
                continue
            line = _roi_line(b, t, jobs.get(tuned), monthly_requests, model.get("costs") or [],
                             model["endpoint_costs"].get(base) or {})  # fmt: skip
            line["sentence"] = roi_sentence(line)
            roi.append(line)
    return {"endpoints": rows, "judges": judges, "totals": _totals(rows, judges), "roi": roi,
            "monthly_requests": monthly_requests}  # fmt: skip
