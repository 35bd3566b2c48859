"""What answering one item costs on an endpoint.

The endpoint's backend says how it is priced (:mod:`tuneport.providers`): a backend billed by the token gives its
per-token prices for the model (:meth:`~tuneport.providers.base.Provider.inference_prices`); anything else is
self-hosted and costs the machine's $/hour times the wall time measured while it answered. Kept apart from the
runner so the price source can change without touching the run loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from tuneport.evaluation.responses import _checked_usage
from tuneport.providers.registry import backend_for_endpoint

__all__ = ["endpoint_cost", "judge_cost", "money"]


def endpoint_cost(
    target: Mapping[str, Any], n_ok: int, prompt: int, completion: int, timing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Cost per item and per 1,000 items of ``target`` (an endpoint's stored description: ``endpoint_kind``,
    ``base_url``, ``model``, ``hourly_usd``) for ``n_ok`` answered items that used ``prompt``/``completion``
    tokens, with the inputs of the figure and where its prices come from."""
    base = {"per_item": None, "per_1000": None, "currency": "USD"}
    if n_ok == 0:
        return {**base, "inputs": {"note": "n/a (no answers)"}}
    backend = backend_for_endpoint(target.get("endpoint_kind"), target.get("base_url"))
    if backend is not None and backend.billing == "tokens":
        return {**base, **_token_cost(backend, target["model"], n_ok, prompt, completion)}
    return {**base, **_hourly_cost(target.get("hourly_usd"), timing)}


def _token_cost(backend: Any, model: str, n_ok: int, prompt: int, completion: int) -> dict[str, Any]:
    prices = backend.inference_prices(model)
    if prices is None:
        return {"inputs": {"note": f"n/a (no catalog inference price for {model})"}}
    total = (Decimal(prompt) * prices.input_per_1m + Decimal(completion) * prices.output_per_1m) / Decimal(
        1_000_000
    )
    per_item = total / n_ok
    return {"per_item": money(per_item), "per_1000": money(per_item * 1000), "inputs": {
        "method": "tokens x catalog price", "backend": backend.name, "model": prices.model,
        "input_per_1m": str(prices.input_per_1m), "output_per_1m": str(prices.output_per_1m),
        "prompt_tokens": prompt, "completion_tokens": completion, "items": n_ok, "source": prices.source,
        "as_of": prices.as_of, "note": prices.note}}  # fmt: skip


def _hourly_cost(hourly: Any, timing: Mapping[str, Any] | None) -> dict[str, Any]:
    if hourly is None:
        return {"inputs": {"note": "n/a (self-hosted: give --hourly)"}}
    if not timing or not timing.get("requests"):
        return {"inputs": {"note": "n/a (no requests were timed: every answer came from the cache; "
                                   "re-run with --no-cache to measure)", "hourly_usd": hourly}}  # fmt: skip
    seconds = Decimal(str(round(timing["wall_s"], 6)))
    per_item = Decimal(hourly) * seconds / Decimal(3600) / Decimal(timing["requests"])
    return {"per_item": money(per_item), "per_1000": money(per_item * 1000), "inputs": {
        "method": "hourly price x measured wall time", "hourly_usd": hourly, "wall_s": str(seconds),
        "requests": timing["requests"], "concurrency": timing.get("concurrency")}}  # fmt: skip


def money(value: Decimal) -> str:
    """A dollar figure as a plain string, to 1e-8 $ (a cheap item costs fractions of a cent)."""
    return str(value.quantize(Decimal("0.00000001")).normalize())


def judge_cost(judge: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The tokens a pairwise judge used on one pair (its stored answers ``rows``) and what they cost, priced like
    any endpoint (``judge``: the judge as the run stored it), so a report's totals include the judge's share.
    Answers without usage, failed, or with impossible counts are counted as requests but not as tokens."""
    requests = prompt = completion = priced = 0
    for row in rows:
        requests += 1
        p, c, refused = _checked_usage(row.get("prompt_tokens"), row.get("completion_tokens"))
        if row.get("error") is None and refused is None and p is not None and c is not None:
            prompt, completion, priced = prompt + p, completion + c, priced + 1
    target = {"endpoint_kind": judge.get("endpoint_kind"), "base_url": judge.get("base_url"),
              "model": judge.get("model"), "hourly_usd": None}  # fmt: skip
    cost = endpoint_cost(target, priced, prompt, completion, None)
    per_item = cost.get("per_item")
    total = None if per_item is None else money(Decimal(per_item) * priced)
    return {"usage": {"requests": requests, "priced": priced, "prompt_tokens": prompt, "completion_tokens": completion},
            "cost": {"total": total, "currency": "USD", "inputs": cost.get("inputs") or {}}}  # fmt: skip
