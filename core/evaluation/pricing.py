"""What answering one item costs on an endpoint: catalog token prices for hosted OpenAI models, the $/hour figure
times the measured wall time for self-hosted ones. Kept apart from the runner so the price source can change
without touching the run loop."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _cost(
    target: Mapping[str, Any], n_ok: int, prompt: int, completion: int, timing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Cost per item and per 1,000 items: catalog token prices for OpenAI models; the $/hour figure times the
    measured wall time for self-hosted ones."""
    from tuneport.cost.catalog import lookup_model

    base = {"per_item": None, "per_1000": None, "currency": "USD"}
    if n_ok == 0:
        return {**base, "inputs": {"note": "n/a (no answers)"}}
    hosted = target.get("endpoint_kind") == "openai" or "api.openai.com" in (target.get("base_url") or "")
    if hosted:
        info = lookup_model(target["model"])
        prices = info.inference_per_1m if info else {}
        if not info or "input" not in prices or "output" not in prices:
            return {**base, "inputs": {"note": f"n/a (no catalog inference price for {target['model']})"}}
        total = (Decimal(prompt) * prices["input"] + Decimal(completion) * prices["output"]) / Decimal(
            1_000_000
        )
        per_item = total / n_ok
        return {**base, "per_item": _money(per_item), "per_1000": _money(per_item * 1000), "inputs": {
            "method": "tokens x catalog price", "model": info.id, "input_per_1m": str(prices["input"]),
            "output_per_1m": str(prices["output"]), "prompt_tokens": prompt, "completion_tokens": completion,
            "items": n_ok, "source": info.source, "as_of": info.as_of,
            "note": "catalog price of the fine-tuned model" if target["model"].startswith("ft:") else
                    "the catalog lists fine-tuned inference prices; the base model's own price may be lower"}}  # fmt: skip
    hourly = target.get("hourly_usd")
    if hourly is None:
        return {**base, "inputs": {"note": "n/a (self-hosted: give --hourly)"}}
    if not timing or not timing.get("requests"):
        return {**base, "inputs": {"note": "n/a (no requests were timed: every answer came from the cache; "
                                           "re-run with --no-cache to measure)", "hourly_usd": hourly}}  # fmt: skip
    seconds = Decimal(str(round(timing["wall_s"], 6)))
    per_item = Decimal(hourly) * seconds / Decimal(3600) / Decimal(timing["requests"])
    return {**base, "per_item": _money(per_item), "per_1000": _money(per_item * 1000), "inputs": {
        "method": "hourly price x measured wall time", "hourly_usd": hourly, "wall_s": str(seconds),
        "requests": timing["requests"], "concurrency": timing.get("concurrency")}}  # fmt: skip


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.00000001")).normalize())
