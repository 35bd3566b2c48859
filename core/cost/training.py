"""Training costs: hosted (billed tokens x OpenAI's price) and local (measured or estimated seconds x $/hour).

- Hosted estimate = billed tokens (from :func:`tuneport.data.validate.validate_file`'s stats: tokens per epoch x
  epochs) x price / 1M; hosted actual = the job's ``trained_tokens`` x price / 1M.
- Local actual = the job's measured seconds x $/hour / 3600; local estimate = tokens to train / measured
  throughput (tokens/s) x $/hour / 3600.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from tuneport.cost.catalog import ModelInfo, list_models, lookup_model
from tuneport.cost.figures import Figure, HourlyRate, rate_figure
from tuneport.cost.money import MILLION, SECONDS, SECONDS_PER_HOUR, TOKENS_PER_SECOND, bounded
from tuneport.errors import SpecError, TuneportError

__all__ = [
    "unknown_model",
    "training_price",
    "hosted_training_estimate",
    "hosted_training_actual",
    "measured_seconds",
    "throughput_from_job",
    "local_training_actual",
    "local_training_estimate",
]


def unknown_model(model: str) -> SpecError:
    """The error for a model the price catalog does not know, listing the ones it does."""
    known = ", ".join(m.id for m in list_models())
    return SpecError(
        f"{model!r} is not an OpenAI model in the price catalog; known: {known}",
        hint="Use one of those ids (or an alias / ft: id of one), or add the model to your catalog file "
        "(TUNEPORT_CATALOG).",
    )


def training_price(model: str, method: str = "supervised") -> tuple[Decimal, ModelInfo]:
    """OpenAI's training price per 1M tokens for ``model`` (id, alias or ``ft:`` id) and ``method``."""
    info = lookup_model(model)
    if info is None:
        raise unknown_model(model)
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
                "seconds": bounded(data["seconds"], f"seconds in {path}", SECONDS),
                "train_seconds": bounded(train, f"train_seconds in {path}", SECONDS) if train else None,
                "device": data.get("device"),
                "from": str(path),
            }
    summary = outputs.get("result") or {}
    if isinstance(summary, Mapping) and summary.get("seconds"):
        train = summary.get("train_seconds")
        return {
            "seconds": bounded(summary["seconds"], "the job row's outputs.result.seconds", SECONDS),
            "train_seconds": bounded(train, "outputs.result.train_seconds", SECONDS) if train else None,
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
    return rate_figure(
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
    tps = bounded(tokens_per_second, "tokens per second", TOKENS_PER_SECOND)
    if tokens < 0:
        raise SpecError(f"tokens to train must be >= 0, not {tokens}")
    seconds = Decimal(int(tokens)) / tps
    inputs = {
        "tokens": int(tokens),
        "tokens_per_second": tps,
        "throughput": dict(throughput_inputs) if throughput_inputs else {"source": "given by the user"},
        "seconds": seconds,
    }
    return rate_figure(
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
