"""Inference costs: hosted $/1M tokens against always-on self-hosted replicas, and the break-even volume.

Hosted monthly = tokens x $/1M by kind (input, cached input, output); self-hosted monthly = replicas x 730 h x
$/hour, always on, where one replica serves ``tokens/s x 3600 x 730`` output tokens a month. The break-even volume
is where one always-on replica costs what the hosted API would: ``V = 730 x $/h / blended $/token``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuneport.cost.catalog import lookup_model
from tuneport.cost.figures import Figure, HourlyRate, rate_figure
from tuneport.cost.money import (
    HOURS_PER_MONTH,
    MAX_TOKENS_PER_MONTH,
    MILLION,
    SECONDS_PER_HOUR,
    TOKENS_PER_SECOND,
    bounded,
    jsonable,
    money,
)
from tuneport.cost.training import unknown_model
from tuneport.errors import SpecError

__all__ = ["InferenceComparison", "compare_inference", "read_serving_throughput", "parse_tokens_per_second"]


def parse_tokens_per_second(value: Any, what: str = "--tokens-per-second") -> Decimal:
    """A throughput given on the command line, within :data:`~tuneport.cost.money.TOKENS_PER_SECOND`."""
    return bounded(value, what, TOKENS_PER_SECOND)


def read_serving_throughput(path: str | Path) -> tuple[Decimal, dict[str, Any]]:
    """Output tokens/s from a serving benchmark's JSON (``{"output_tokens_per_s": ...}``, as written by
    ``benchmarks/bench_serve.py``)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except OSError as exc:
        raise SpecError(f"{p}: cannot read the throughput file ({exc.strerror or exc})",
                        hint="Give the JSON written by benchmarks/bench_serve.py.") from None  # fmt: skip
    except ValueError as exc:
        raise SpecError(
            f"{p}: not JSON ({exc})", hint="Give the JSON written by benchmarks/bench_serve.py."
        ) from None
    value = data.get("output_tokens_per_s") if isinstance(data, dict) else None
    if value is None:
        raise SpecError(
            f"{p}: no `output_tokens_per_s` field at the top level",
            hint='The file must look like {"output_tokens_per_s": 812.5}; or give --tokens-per-second.',
        )
    tps = bounded(value, f"output_tokens_per_s in {p}", TOKENS_PER_SECOND)
    return tps, {"from": str(p), **{k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))}}


@dataclass(frozen=True)
class InferenceComparison:
    """Hosted vs self-hosted inference for one model and traffic mix."""

    model: str
    prices_per_1m: dict[str, Decimal]
    price_source: str
    price_as_of: str
    mix: dict[str, Decimal]  # shares of input / cached_input / output in the total token volume
    mix_source: str
    tokens_per_second: Decimal
    throughput_inputs: dict[str, Any]
    rate: HourlyRate
    volume: dict[str, int] | None  # tokens per month by kind, when given
    hosted: Figure | None
    self_hosted: Figure | None
    self_hosted_replicas: int | None
    capacity_output_tokens_per_month: Decimal
    blended_per_1m: Decimal
    always_on_monthly: Figure
    break_even: dict[str, Any]

    def hosted_cost(self, total_tokens: Decimal) -> Decimal:
        return total_tokens * self.blended_per_1m / MILLION

    def self_hosted_cost(self, total_tokens: Decimal, hourly: Decimal | None = None) -> Decimal:
        replicas = _replicas(total_tokens * self.mix["output"], self.capacity_output_tokens_per_month)
        return replicas * HOURS_PER_MONTH * (self.rate.amount if hourly is None else hourly)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "model": self.model,
            "hosted_prices_per_1m_usd": self.prices_per_1m,
            "price_source": self.price_source,
            "price_as_of": self.price_as_of,
            "mix": self.mix,
            "mix_source": self.mix_source,
            "tokens_per_second": self.tokens_per_second,
            "throughput": self.throughput_inputs,
            "hourly": {"amount": self.rate.amount, "low": self.rate.low, "high": self.rate.high, **self.rate.inputs},
            "hours_per_month": HOURS_PER_MONTH,
            "capacity_output_tokens_per_month": self.capacity_output_tokens_per_month,
            "blended_hosted_per_1m_usd": self.blended_per_1m,
            "volume_tokens_per_month": self.volume,
            "hosted_monthly": self.hosted.to_dict() if self.hosted else None,
            "self_hosted_monthly": self.self_hosted.to_dict() if self.self_hosted else None,
            "self_hosted_replicas": self.self_hosted_replicas,
            "always_on_monthly": self.always_on_monthly.to_dict(),
            "break_even": self.break_even,
        })  # fmt: skip


def _replicas(output_tokens: Decimal, capacity: Decimal) -> int:
    if output_tokens <= 0:
        return 1
    return max(1, math.ceil(output_tokens / capacity))


def _break_even(
    blended_per_token: Decimal, hourly: Decimal, out_share: Decimal, capacity: Decimal
) -> Decimal | None:
    """Tokens/month where one always-on replica costs what hosted does; None if one replica cannot serve that much
    (then more replicas never catch up either: at full use each costs more per token than the API)."""
    if blended_per_token <= 0:
        return None
    volume = HOURS_PER_MONTH * hourly / blended_per_token
    if volume * out_share > capacity:
        return None
    return volume


def compare_inference(
    model: str,
    tokens_per_second: Any,
    rate: HourlyRate,
    *,
    input_tokens_per_month: int | None = None,
    output_tokens_per_month: int | None = None,
    cached_input_tokens_per_month: int | None = None,
    throughput_inputs: Mapping[str, Any] | None = None,
) -> InferenceComparison:
    """Hosted ($/1M tokens of ``model``, fine-tuned prices for an ``ft:`` id) against self-hosted (always-on
    replicas at ``rate``, each serving ``tokens_per_second`` output tokens) for a monthly volume or a mix.

    Without any volume the mix is 1 input : 1 output token and only the break-even and per-volume curves apply.
    """
    info = lookup_model(model)
    if info is None:
        raise unknown_model(model)
    prices = dict(info.inference_per_1m)
    for kind in ("input", "output"):
        if kind not in prices:
            raise SpecError(f"the catalog has no {kind} inference price for {info.id}",
                            hint="Add it to your catalog file (TUNEPORT_CATALOG).")  # fmt: skip
    tps = bounded(tokens_per_second, "tokens per second", TOKENS_PER_SECOND)
    given = {"input": input_tokens_per_month, "cached_input": cached_input_tokens_per_month,
             "output": output_tokens_per_month}  # fmt: skip
    for kind, value in given.items():
        if value is not None and not 0 <= int(value) <= MAX_TOKENS_PER_MONTH:
            raise SpecError(
                f"{kind} tokens per month (--{kind.replace('_', '-')}-tokens-per-month) must be between 0 and "
                f"{MAX_TOKENS_PER_MONTH:,}, not {value}",
                hint="Give the monthly volume in tokens within that range.",
            )
    if given["cached_input"] and "cached_input" not in prices:
        raise SpecError(
            f"the catalog has no cached-input price for {info.id}", hint="Count those tokens as input."
        )
    volume: dict[str, int] | None = None
    if any(v is not None for v in given.values()):
        volume = {k: int(v or 0) for k, v in given.items()}
        total = sum(volume.values())
        if total == 0:
            raise SpecError(
                "the monthly volume is 0 tokens", hint="Give --input/--output-tokens-per-month above 0."
            )
        mix = {k: Decimal(v) / Decimal(total) for k, v in volume.items()}
        mix_source = "from the given monthly volume"
    else:
        mix = {"input": Decimal("0.5"), "cached_input": Decimal(0), "output": Decimal("0.5")}
        mix_source = "default 1 input : 1 output token (give --input/--output-tokens-per-month for yours)"
    blended_per_1m = sum((mix[k] * prices.get(k, Decimal(0)) for k in mix), Decimal(0))
    capacity = tps * SECONDS_PER_HOUR * HOURS_PER_MONTH
    price_inputs = {"model": info.id, "prices_per_1m_usd": prices, "price_source": info.source,
                    "price_as_of": info.as_of}  # fmt: skip
    tp_inputs = dict(throughput_inputs) if throughput_inputs else {"source": "given by the user"}

    hosted = self_hosted = None
    replicas = None
    if volume is not None:
        hosted = Figure(
            label=f"hosted inference per month ({info.id})",
            amount=sum(
                (Decimal(volume[k]) * prices.get(k, Decimal(0)) / MILLION for k in volume), Decimal(0)
            ),
            formula="sum over input, cached_input, output of tokens_per_month x price_per_1m / 1,000,000",
            inputs={**price_inputs, "tokens_per_month": volume},
        )
        replicas = _replicas(Decimal(volume["output"]), capacity)
        self_inputs = {"tokens_per_second": tps, "throughput": tp_inputs, "hours_per_month": HOURS_PER_MONTH,
                       "capacity_output_tokens_per_month": capacity, "replicas": replicas,
                       "output_tokens_per_month": volume["output"]}  # fmt: skip
        n = Decimal(replicas)
        self_hosted = rate_figure(
            "self-hosted inference per month (always on)",
            "replicas x hours_per_month x hourly_usd; replicas = ceil(output_tokens_per_month / "
            "(tokens_per_second x 3600 x hours_per_month))",
            rate,
            lambda hourly: n * HOURS_PER_MONTH * hourly,
            self_inputs,
            ["throughput is output tokens/s measured at some request mix: a different mix changes it"],
        )
    always_on = rate_figure(
        "one always-on replica per month",
        "hours_per_month x hourly_usd",
        rate,
        lambda hourly: HOURS_PER_MONTH * hourly,
        {"hours_per_month": HOURS_PER_MONTH},
        [],
    )
    per_token = blended_per_1m / MILLION
    be = _break_even(per_token, rate.amount, mix["output"], capacity)
    break_even: dict[str, Any] = {
        "formula": "hours_per_month x hourly_usd / blended_hosted_price_per_token",
        "tokens_per_month": be,
        "blended_hosted_per_1m_usd": blended_per_1m,
        "mix": mix,
    }
    if rate.is_range:
        break_even["tokens_per_month_low"] = _break_even(per_token, rate.low, mix["output"], capacity)
        break_even["tokens_per_month_high"] = _break_even(per_token, rate.high, mix["output"], capacity)
    if be is None:
        at_full = HOURS_PER_MONTH * rate.amount / capacity * MILLION
        break_even["never_because"] = (
            f"at full use one replica costs {money(at_full, 4)} per 1M output tokens, more than the hosted "
            f"{money(blended_per_1m / mix['output'] if mix['output'] else blended_per_1m, 4)} per 1M output tokens "
            "at this mix: self-hosting never breaks even at this throughput and $/hour"
        )
    else:
        break_even["output_tokens_per_month"] = be * mix["output"]
        break_even["utilization_at_break_even"] = be * mix["output"] / capacity
    return InferenceComparison(
        model=info.id,
        prices_per_1m=prices,
        price_source=info.source,
        price_as_of=info.as_of,
        mix=mix,
        mix_source=mix_source,
        tokens_per_second=tps,
        throughput_inputs=tp_inputs,
        rate=rate,
        volume=volume,
        hosted=hosted,
        self_hosted=self_hosted,
        self_hosted_replicas=replicas,
        capacity_output_tokens_per_month=capacity,
        blended_per_1m=blended_per_1m,
        always_on_monthly=always_on,
        break_even=break_even,
    )
