"""Cost figures: hosted vs self-hosted training and inference, each with the inputs it came from.

Why this shape: a cost report is only as believable as its inputs. Every number here is a :class:`Figure` -- an
exact :class:`~decimal.Decimal` amount plus the formula and the inputs (token counts, measured seconds, prices with
their ``source`` and ``as_of`` date) that produced it -- so a report can show its working and a later reader can
redo the arithmetic. Money is never a float; amounts are rounded only when displayed.

Prices come from :mod:`tuneport.cost.catalog`: OpenAI's per-1M-token training and fine-tuned inference prices, and
on-demand list $/hour ranges for GPUs (and a small CPU VM) at several clouds.

- Hosted training: estimate = billed tokens (from :func:`tuneport.data.validate.validate_file`'s stats: tokens per
  epoch x epochs) x price / 1M; actual = the job's ``trained_tokens`` x price / 1M.
- Local training: actual = the job's measured seconds x $/hour / 3600; estimate = tokens to train / measured
  throughput (tokens/s) x $/hour / 3600.
- Inference: hosted monthly = tokens x $/1M by kind (input, cached input, output); self-hosted monthly = replicas
  x 730 h x $/hour, always on, where one replica serves ``tokens/s x 3600 x 730`` output tokens a month. The
  break-even volume is where one always-on replica costs what the hosted API would: ``V = 730 x $/h / blended
  $/token``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError, TuneportError

__all__ = [
    "Figure",
    "HourlyRate",
    "InferenceComparison",
    "HOURS_PER_MONTH",
    "hourly_rate",
    "training_price",
    "hosted_training_estimate",
    "hosted_training_actual",
    "measured_seconds",
    "throughput_from_job",
    "local_training_actual",
    "local_training_estimate",
    "read_serving_throughput",
    "compare_inference",
    "plot_inference",
    "record_figure",
    "catalog_summary",
    "file_sha256",
]

MILLION = Decimal(1_000_000)
SECONDS_PER_HOUR = Decimal(3600)
#: Hours in an average month (365 x 24 / 12), the usual basis of cloud monthly prices.
HOURS_PER_MONTH = Decimal(730)
_LIST_PRICE_NOTE = "on-demand list prices at their as_of date, not quotes"


def _dec(value: Any, what: str) -> Decimal:
    """A user- or file-given number as an exact Decimal (floats go through their shortest repr)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise SpecError(
            f"{what} must be a number, not {value!r}", hint=f"Give {what} as e.g. 2.50."
        ) from None
    if not number.is_finite():
        raise SpecError(f"{what} must be a finite number, not {value!r}", hint=f"Give {what} as e.g. 2.50.")
    return number


def _positive(value: Any, what: str) -> Decimal:
    number = _dec(value, what)
    if number <= 0:
        raise SpecError(f"{what} must be greater than 0, not {value}", hint=f"Give a positive {what}.")
    return number


def money(amount: Decimal, places: int = 2) -> str:
    """Display an amount (the only place money is rounded): ``$1,234.57``; small amounts keep more digits."""
    if amount != 0 and abs(amount) < Decimal("0.01"):
        places = max(places, 6)
    q = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"${q:,.{places}f}"


# ---------------------------------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figure:
    """An amount of money, exact, with what it was computed from.

    ``low``/``high`` are set when a price was a range (the list prices of several instance shapes or clouds):
    ``amount`` is then computed at the range's midpoint.
    """

    label: str
    amount: Decimal
    formula: str
    inputs: dict[str, Any]
    currency: str = "USD"
    low: Decimal | None = None
    high: Decimal | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as exact decimal strings, plus a rounded ``display``."""
        out: dict[str, Any] = {
            "label": self.label,
            "amount": _dstr(self.amount),
            "currency": self.currency,
            "display": self.display(),
            "formula": self.formula,
            "inputs": _jsonable(self.inputs),
        }
        if self.low is not None and self.high is not None:
            out["low"], out["high"] = _dstr(self.low), _dstr(self.high)
        out["notes"] = list(self.notes)
        return out

    def display(self) -> str:
        text = money(self.amount)
        if self.low is not None and self.high is not None and self.low != self.high:
            text += f" (range {money(self.low)} to {money(self.high)})"
        return text


def _dstr(value: Decimal) -> str:
    """An exact decimal string without exponent notation (``730000000``, not ``7.3000E+8``)."""
    return format(value, "f")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _dstr(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class HourlyRate:
    """The $/hour used for self-hosted figures: a catalog range (one cloud, or all that list the hardware) or a
    user-given rate. ``amount`` is the range midpoint; ``count`` accelerators are billed together."""

    amount: Decimal
    low: Decimal
    high: Decimal
    inputs: dict[str, Any]

    @property
    def is_range(self) -> bool:
        return self.low != self.high


def hourly_rate(
    gpu: str | None = None, cloud: str | None = None, hourly: Any = None, *, count: int = 1
) -> HourlyRate:
    """Resolve ``--gpu X [--cloud Y]`` or ``--hourly Z`` to a $/hour for ``count`` accelerators.

    Without ``cloud`` the range spans every cloud that lists the hardware. Unknown names raise a
    :class:`SpecError` that lists the known ones.
    """
    from tuneport.cost.catalog import list_hardware, lookup_hardware

    if count < 1:
        raise SpecError(
            f"the number of accelerators must be at least 1, not {count}", hint="Give --gpus 1 or more."
        )
    if hourly is not None:
        if gpu is not None or cloud is not None:
            raise SpecError(
                "give either --hourly or --gpu/--cloud, not both",
                hint="--hourly is your own $/hour; --gpu/--cloud look up list prices in the catalog.",
            )
        rate = _positive(hourly, "--hourly ($/hour)")
        total = rate * count
        return HourlyRate(
            total, total, total, {"hourly_usd": rate, "count": count, "source": "given by the user"}
        )
    if gpu is None:
        raise SpecError(
            "no hardware price: give --gpu (with an optional --cloud) or --hourly",
            hint=f"Known hardware: {', '.join(h.id for h in list_hardware())}; or --hourly 2.50 for your own rate.",
        )
    info = lookup_hardware(gpu)
    if info is None:
        known = ", ".join(f"{h.id} ({h.label})" for h in list_hardware())
        raise SpecError(
            f"unknown GPU {gpu!r}; known hardware: {known}",
            hint="Pick one of those, add it to your catalog file (TUNEPORT_CATALOG), or give --hourly.",
        )
    if cloud is not None:
        price = info.prices.get(cloud.strip().lower())
        if price is None:
            raise SpecError(
                f"no list price for {info.id} at cloud {cloud!r}; clouds with {info.id} prices: "
                f"{', '.join(sorted(info.prices))}",
                hint="Pick one of those clouds, leave --cloud out for the range over all of them, or give --hourly.",
            )
        prices = [price]
    else:
        prices = [info.prices[c] for c in sorted(info.prices)]
        if not prices:
            raise SpecError(
                f"the catalog has no prices for {info.id}", hint="Give --cloud with a price, or --hourly."
            )
    low = min(p.min for p in prices) * count
    high = max(p.max for p in prices) * count
    inputs = {
        "hardware": info.id,
        "label": info.label,
        "cloud": cloud.strip().lower() if cloud else "any (" + ", ".join(p.cloud for p in prices) + ")",
        "count": count,
        "per_accelerator_hour": [p.to_dict() for p in prices],
        "price_kind": _LIST_PRICE_NOTE,
    }
    return HourlyRate((low + high) / 2, low, high, inputs)


def _rate_figure(label: str, formula: str, rate: HourlyRate, compute: Any, inputs: dict[str, Any],
                 notes: list[str]) -> Figure:  # fmt: skip
    """A figure computed at the rate's midpoint, low and high (``compute(hourly) -> Decimal``)."""
    if rate.is_range:
        notes = [
            *notes,
            f"$/hour is the midpoint of the list-price range {money(rate.low)} to {money(rate.high)}",
        ]
        return Figure(label, compute(rate.amount), formula, {**inputs, "hourly": rate.inputs,
                      "hourly_usd": rate.amount}, low=compute(rate.low), high=compute(rate.high),
                      notes=tuple(notes))  # fmt: skip
    return Figure(label, compute(rate.amount), formula, {**inputs, "hourly": rate.inputs, "hourly_usd": rate.amount},
                  notes=tuple(notes))  # fmt: skip


# ---------------------------------------------------------------------------------------------------- training


def _unknown_model(model: str) -> SpecError:
    from tuneport.cost.catalog import list_models

    known = ", ".join(m.id for m in list_models())
    return SpecError(
        f"{model!r} is not an OpenAI model in the price catalog; known: {known}",
        hint="Use one of those ids (or an alias / ft: id of one), or add the model to your catalog file "
        "(TUNEPORT_CATALOG).",
    )


def training_price(model: str, method: str = "supervised") -> tuple[Decimal, Any]:
    """OpenAI's training price per 1M tokens for ``model`` (id, alias or ``ft:`` id) and ``method``."""
    from tuneport.cost.catalog import lookup_model

    info = lookup_model(model)
    if info is None:
        raise _unknown_model(model)
    key = {"sft": "supervised", "auto": "supervised"}.get(method, method)
    per_1m = info.training_per_1m.get(key)
    if per_1m is None:
        raise SpecError(
            f"the catalog has no {key} training price for {info.id} (it lists: "
            f"{', '.join(sorted(info.training_per_1m)) or 'none'})",
            hint="Add the price to your catalog file (TUNEPORT_CATALOG) if OpenAI publishes one.",
        )
    return per_1m, info


def hosted_training_estimate(stats: Any, *, errors: int = 0) -> Figure:
    """Estimate hosted training from a dataset's stats (``validate_file(path, model=...).stats``): billed tokens
    x price / 1M. The tokens are not recounted; ``errors`` (the report's error count) adds a warning."""
    if not stats.model:
        raise SpecError("no model: the estimate needs the OpenAI model to price", hint="Give --model.")
    per_1m, info = training_price(stats.model, "dpo" if stats.method == "dpo" else "supervised")
    amount = Decimal(stats.billed_tokens) * per_1m / MILLION
    notes = list(stats.notes)
    if not stats.exact:
        notes.append("token counts are ESTIMATES (" + (stats.token_note or "no exact tokenizer") + ")")
    if errors:
        notes.append(f"{errors} error(s) in the dataset: OpenAI rejects the file until they are fixed; the "
                     "estimate counts only the valid examples")  # fmt: skip
    return Figure(
        label=f"hosted training estimate ({info.id})",
        amount=amount,
        formula="billed_tokens_per_epoch x n_epochs x price_per_1m / 1,000,000",
        inputs={
            "model": info.id,
            "method": stats.method,
            "examples": stats.examples,
            "billed_tokens_per_epoch": stats.billed_tokens_per_epoch,
            "n_epochs": stats.n_epochs,
            "n_epochs_source": stats.n_epochs_source,
            "billed_tokens": stats.billed_tokens,
            "encoding": stats.encoding,
            "exact_tokens": stats.exact,
            "price_per_1m_usd": per_1m,
            "price_source": info.source,
            "price_as_of": info.as_of,
        },
        notes=tuple(notes),
    )


def _job_method(job: Mapping[str, Any]) -> str:
    method = job.get("method") or {}
    if isinstance(method, Mapping) and method.get("type"):
        return str(method["type"])
    spec = job.get("spec") or {}
    if isinstance(spec, Mapping) and isinstance(spec.get("method"), Mapping) and spec["method"].get("type"):
        return str(spec["method"]["type"])
    return "supervised"


def hosted_training_actual(job: Mapping[str, Any]) -> Figure:
    """What a hosted job cost: its ``trained_tokens`` x price / 1M (the job row from the store)."""
    tokens = job.get("trained_tokens")
    if not tokens:
        raise TuneportError(
            f"job {job.get('id')} has no trained_tokens yet (status {job.get('status')}): OpenAI reports them "
            "when the job succeeds",
            hint=f"`tuneport jobs wait {job.get('id')}` then try again; before launch, `tuneport cost train FILE "
            "--model M` estimates.",
        )
    method = _job_method(job)
    model = job.get("model") or ""
    per_1m, info = training_price(model, method)
    return Figure(
        label=f"hosted training actual ({job.get('id')})",
        amount=Decimal(int(tokens)) * per_1m / MILLION,
        formula="trained_tokens x price_per_1m / 1,000,000",
        inputs={
            "job_id": job.get("id"),
            "model": info.id,
            "method": method,
            "trained_tokens": int(tokens),
            "price_per_1m_usd": per_1m,
            "price_source": info.source,
            "price_as_of": info.as_of,
        },
    )


def measured_seconds(job: Mapping[str, Any]) -> dict[str, Any]:
    """A local job's measured time: ``seconds`` (the whole run: loading, training, export -- what a rented machine
    bills) and ``train_seconds`` (the training loop only, for throughput), with where they were read.

    Reads the trainer's ``result.json`` in the job's output folder, else the summary the runner stored in the job
    row. Raises :class:`TuneportError` when the job has no measurement (not finished, or not a local job).
    """
    outputs = job.get("outputs") or {}
    candidates = []
    if outputs.get("output_dir"):
        candidates.append(Path(outputs["output_dir"]) / "result.json")
    for path in candidates:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("seconds"):
            train = data.get("train_seconds")
            return {
                "seconds": _dec(data["seconds"], f"seconds in {path}"),
                "train_seconds": _dec(train, f"train_seconds in {path}") if train else None,
                "device": data.get("device"),
                "from": str(path),
            }
    summary = outputs.get("result") or {}
    if isinstance(summary, Mapping) and summary.get("seconds"):
        train = summary.get("train_seconds")
        return {
            "seconds": _dec(summary["seconds"], "the job row's outputs.result.seconds"),
            "train_seconds": _dec(train, "outputs.result.train_seconds") if train else None,
            "device": summary.get("device"),
            "from": "job row outputs.result",
        }
    raise TuneportError(
        f"job {job.get('id')} has no measured seconds (status {job.get('status')}, backend {job.get('backend')}): "
        "only a finished local job records how long it ran",
        hint="Wait for the job to finish (`tuneport jobs wait ID`); for a planned run, `tuneport cost train FILE "
        "--tokens-per-second X --gpu ...` estimates from a throughput.",
    )


def throughput_from_job(job: Mapping[str, Any]) -> tuple[Decimal, dict[str, Any]]:
    """Measured training throughput of a finished local job: trained_tokens / train_seconds (tokens/s)."""
    measured = measured_seconds(job)
    tokens = job.get("trained_tokens")
    if not tokens:
        raise TuneportError(
            f"job {job.get('id')} recorded no trained_tokens, so its throughput is unknown",
            hint="Give --tokens-per-second yourself.",
        )
    seconds = measured["train_seconds"] or measured["seconds"]
    tps = Decimal(int(tokens)) / seconds
    return tps, {
        "job_id": job.get("id"),
        "trained_tokens": int(tokens),
        "seconds": seconds,
        "seconds_kind": "train_seconds (training loop only)"
        if measured["train_seconds"]
        else "seconds (whole run)",
        "device": measured.get("device"),
        "from": measured["from"],
    }


def local_training_actual(job: Mapping[str, Any], rate: HourlyRate) -> Figure:
    """What a local job cost on rented hardware: measured seconds x $/hour / 3600."""
    measured = measured_seconds(job)
    seconds = measured["seconds"]
    inputs = {
        "job_id": job.get("id"),
        "seconds": seconds,
        "seconds_from": measured["from"],
        "device": measured.get("device"),
        "trained_tokens": job.get("trained_tokens"),
    }
    if measured["train_seconds"] and job.get("trained_tokens"):
        inputs["tokens_per_second"] = Decimal(int(job["trained_tokens"])) / measured["train_seconds"]
    return _rate_figure(
        f"local training actual ({job.get('id')})",
        "seconds x hourly_usd / 3600",
        rate,
        lambda hourly: seconds * hourly / SECONDS_PER_HOUR,
        inputs,
        ["seconds cover the whole run (loading, training, export): what a rented machine bills"],
    )


def local_training_estimate(
    tokens: int,
    tokens_per_second: Any,
    rate: HourlyRate,
    *,
    throughput_inputs: Mapping[str, Any] | None = None,
) -> Figure:
    """Estimate a local run before launch: tokens / (tokens/s) seconds, x $/hour / 3600."""
    tps = _positive(tokens_per_second, "tokens per second")
    if tokens < 0:
        raise SpecError(f"tokens to train must be >= 0, not {tokens}")
    seconds = Decimal(int(tokens)) / tps
    inputs = {
        "tokens": int(tokens),
        "tokens_per_second": tps,
        "throughput": dict(throughput_inputs) if throughput_inputs else {"source": "given by the user"},
        "seconds": seconds,
    }
    return _rate_figure(
        "local training estimate",
        "tokens / tokens_per_second x hourly_usd / 3600",
        rate,
        lambda hourly: seconds * hourly / SECONDS_PER_HOUR,
        inputs,
        [
            "the training loop only: loading and export add a little time; throughput depends on the hardware it "
            "was measured on"
        ],  # fmt: skip
    )


# --------------------------------------------------------------------------------------------------- inference


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
    tps = _positive(value, f"output_tokens_per_s in {p}")
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
        return _jsonable({
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
    from tuneport.cost.catalog import lookup_model

    info = lookup_model(model)
    if info is None:
        raise _unknown_model(model)
    prices = dict(info.inference_per_1m)
    for kind in ("input", "output"):
        if kind not in prices:
            raise SpecError(f"the catalog has no {kind} inference price for {info.id}",
                            hint="Add it to your catalog file (TUNEPORT_CATALOG).")  # fmt: skip
    tps = _positive(tokens_per_second, "tokens per second")
    given = {"input": input_tokens_per_month, "cached_input": cached_input_tokens_per_month,
             "output": output_tokens_per_month}  # fmt: skip
    for kind, value in given.items():
        if value is not None and int(value) < 0:
            raise SpecError(f"{kind} tokens per month must be >= 0, not {value}")
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
        self_hosted = _rate_figure(
            "self-hosted inference per month (always on)",
            "replicas x hours_per_month x hourly_usd; replicas = ceil(output_tokens_per_month / "
            "(tokens_per_second x 3600 x hours_per_month))",
            rate,
            lambda hourly: n * HOURS_PER_MONTH * hourly,
            self_inputs,
            ["throughput is output tokens/s measured at some request mix: a different mix changes it"],
        )
    always_on = _rate_figure(
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


def plot_inference(comparison: InferenceComparison, path: str | Path, *, points: int = 400) -> Path:
    """Save a PNG of monthly cost against monthly token volume: hosted (a line) vs self-hosted (steps of
    always-on replicas, shaded over the $/hour range), with the break-even marked. Needs matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise TuneportError(
            "the cost plot needs matplotlib, which is not installed",
            hint="pip install matplotlib (or pip install 'tuneport[report]').",
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    c = comparison
    be = c.break_even.get("tokens_per_month")
    candidates = [Decimal(1_000_000)]
    if be is not None:
        candidates.append(be * 2)
    if c.volume is not None:
        candidates.append(Decimal(sum(c.volume.values())) * Decimal("1.5"))
    if be is None:
        candidates.append(c.capacity_output_tokens_per_month / max(c.mix["output"], Decimal("0.01")) * 2)
    top = max(candidates)
    xs = [top * i / points for i in range(points + 1)]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        scale = Decimal(1_000_000)
        xf = [float(x / scale) for x in xs]  # floats only for drawing
        ax.plot(xf, [float(c.hosted_cost(x)) for x in xs], label=f"hosted {c.model}", color="tab:blue")
        label = "self-hosted (" + str(c.rate.inputs.get("hardware") or "given $/h") + ", always on)"
        ax.step(xf, [float(c.self_hosted_cost(x)) for x in xs], where="post", label=label, color="tab:orange")
        if c.rate.is_range:
            ax.fill_between(xf, [float(c.self_hosted_cost(x, c.rate.low)) for x in xs],
                            [float(c.self_hosted_cost(x, c.rate.high)) for x in xs], step="post",
                            color="tab:orange", alpha=0.2, label="self-hosted list-price range")  # fmt: skip
        if be is not None:
            ax.axvline(float(be / scale), color="grey", linestyle="--",
                       label=f"break-even {float(be / scale):,.0f}M tokens/month")  # fmt: skip
        if c.volume is not None:
            ax.axvline(float(Decimal(sum(c.volume.values())) / scale), color="green", linestyle=":",
                       label="your volume")  # fmt: skip
        ax.set_xlabel("tokens per month (millions)")
        ax.set_ylabel("USD per month")
        ax.set_title(
            f"Inference cost: hosted vs self-hosted ({float(c.tokens_per_second):,.0f} output tokens/s)"
        )
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(True, alpha=0.3)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    finally:
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------- store & catalog


def record_figure(
    store: Any, kind: str, figure: Figure, *, job_id: str | None = None, dataset_sha256: str | None = None
) -> dict[str, Any]:
    """Save a figure in the store's ``costs`` table, its inputs and formula alongside (never secrets)."""
    details = figure.to_dict()
    inputs = {k: v for k, v in details.items() if k not in ("amount", "currency", "display")}
    return store.add_cost(kind, figure.amount, currency=figure.currency, inputs=inputs, job_id=job_id,
                          dataset_sha256=dataset_sha256)  # fmt: skip


def catalog_summary() -> dict[str, Any]:
    """Every price tuneport uses, with its source and as_of date (what ``tuneport cost catalog`` prints)."""
    from tuneport.cost.catalog import list_hardware, list_models, wind_down

    models = [
        {"id": m.id, "aliases": list(m.aliases), "methods": list(m.methods),
         "training_per_1m_usd": _jsonable(m.training_per_1m), "inference_per_1m_usd": _jsonable(m.inference_per_1m),
         "source": m.source, "as_of": m.as_of}
        for m in list_models()
    ]  # fmt: skip
    return {
        "models": models,
        "wind_down": wind_down(),
        "hardware": [h.to_dict() for h in list_hardware()],
        "hardware_note": "USD per accelerator-hour, " + _LIST_PRICE_NOTE,
    }


def file_sha256(path: str | Path) -> str:
    """The dataset's sha256, to tie a recorded estimate to the exact bytes it was computed from."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
