"""``tuneport cost ...``: what training and inference cost, hosted vs self-hosted, with every input shown.

Parse, call the :mod:`tuneport.cost` modules (training, inference, figures), render (plain lines, or ``--json``), and record each computed figure in the
store's ``costs`` table. The validator, the store and matplotlib load only when a command runs.
"""

from __future__ import annotations

import json
from typing import Any

import click

from tuneport.cost.money import MAX_ACCELERATORS, MAX_TOKENS_PER_MONTH

_json_option = click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (for scripts).")
_no_record_option = click.option(
    "--no-record", is_flag=True, help="Do not save the computed figures in the store's costs table."
)


_TOKENS_PER_MONTH = click.IntRange(min=0, max=MAX_TOKENS_PER_MONTH)


def _hardware_options(fn: Any) -> Any:
    fn = click.option("--gpus", "count", type=click.IntRange(min=1, max=MAX_ACCELERATORS), default=1, show_default=True,
                      help="Accelerators billed together (per replica when serving).")(fn)  # fmt: skip
    fn = click.option(
        "--hourly", default=None, help="Your own $/hour (instead of --gpu/--cloud list prices)."
    )(fn)
    fn = click.option(
        "--cloud", default=None, help="Cloud whose list price applies (aws, gcp, azure, lambda, ...)."
    )(fn)
    return click.option("--gpu", default=None, help="Hardware from the price catalog: h100, a100-80gb, a100-40gb, "
                        "l4, cpu (`tuneport cost catalog` lists them).")(fn)  # fmt: skip


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def _show_figure(figure: Any) -> None:
    click.echo(f"{figure.label}: {figure.display()}")
    click.echo(f"  = {figure.formula}")
    for key, value in figure.inputs.items():
        if key == "hourly" and isinstance(value, dict):
            per = value.get("per_accelerator_hour")
            if per:
                for p in per:
                    click.echo(f"    {p['hardware']} @ {p['cloud']}: ${p['min']}-${p['max']}/h "
                               f"({p['source']}, as of {p['as_of']})")  # fmt: skip
            else:
                click.echo(f"    hourly: {value.get('source', '')}")
            continue
        if isinstance(value, dict):
            value = json.dumps(value, default=str)
        click.echo(f"    {key}: {value}")
    for note in figure.notes:
        click.echo(f"  note: {note}")


def _store() -> Any:
    from tuneport.jobs.store import Store

    return Store()


@click.group("cost")
def cost() -> None:
    """Cost estimates and comparisons: hosted vs local training, hosted vs self-hosted inference."""


@cost.command("train")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--model", "-m", required=True, help="OpenAI model to price (id, alias or ft: id), or a local tokenizer."
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1, max=50),
    default=None,
    help="Epochs, 1-50 (default: OpenAI's auto rule).",
)
@click.option("--method", type=click.Choice(["auto", "sft", "dpo"]), default="auto", show_default=True)
@click.option("--tokens-per-second", default=None, help="Local training throughput, for a local estimate.")
@click.option("--from-job", default=None, help="Take the local throughput from this finished local job.")
@_hardware_options
@_no_record_option
@_json_option
def train_cmd(file: str, model: str, epochs: int | None, method: str, tokens_per_second: str | None,
              from_job: str | None, gpu: str | None, cloud: str | None, hourly: str | None, count: int,
              no_record: bool, as_json: bool) -> None:  # fmt: skip
    """Estimate what training on FILE costs before launch: hosted (billed tokens x epochs x price) and, with a
    throughput and hardware, locally (tokens / tokens-per-second x $/hour)."""
    from tuneport.cost import figures, records, training
    from tuneport.cost.catalog import lookup_model
    from tuneport.cost.inference import parse_tokens_per_second
    from tuneport.data.validate import validate_file
    from tuneport.errors import SpecError

    if tokens_per_second is not None and from_job is not None:
        raise SpecError(
            "give --tokens-per-second or --from-job, not both", hint="Either is the local throughput."
        )
    wants_local = tokens_per_second is not None or from_job is not None
    if (gpu or hourly) and not wants_local:
        raise SpecError("--gpu/--hourly need a throughput for a local estimate",
                        hint="Add --tokens-per-second X or --from-job JOB_ID.")  # fmt: skip
    hosted_model = lookup_model(model) is not None
    if not hosted_model and not wants_local:
        raise training.unknown_model(model)
    report = validate_file(file, model=model, method=method, n_epochs=epochs)
    stats = report.stats
    store = None if no_record else _store()
    sha = records.file_sha256(file)
    hosted = local = None
    recorded = []
    if hosted_model:
        hosted = training.hosted_training_estimate(stats, errors=report.errors)
        if store is not None:
            recorded.append(
                records.record_figure(store, "train_estimate_hosted", hosted, dataset_sha256=sha)["id"]
            )
    if wants_local:
        rate = figures.hourly_rate(gpu, cloud, hourly, count=count)
        if from_job is not None:
            job = (store or _store()).get_job(from_job)
            if job is None:
                raise _no_job(from_job)
            tps, tp_inputs = training.throughput_from_job(job)
            ran_on = (tp_inputs.get("device") or "cpu").split(":")[0]
            if (ran_on == "cpu") != ((gpu or "cpu") == "cpu") and hourly is None:
                raise SpecError(
                    f"job {from_job} ran on {ran_on}: its throughput says nothing about {gpu or 'a CPU'}",
                    hint="Price it on the hardware it ran on, or give --tokens-per-second measured on the target "
                    "hardware (e.g. from a short run there).",
                )
        else:
            tps, tp_inputs = parse_tokens_per_second(tokens_per_second), None
        local = training.local_training_estimate(stats.billed_tokens, tps, rate, throughput_inputs=tp_inputs)
        if store is not None:
            recorded.append(
                records.record_figure(store, "train_estimate_local", local, dataset_sha256=sha)["id"]
            )
    if as_json:
        _echo_json({
            "file": file, "model": model, "dataset_sha256": sha,
            "validation": {"examples": report.examples, "valid_examples": report.valid_examples,
                           "errors": report.errors, "warnings": report.warnings},
            "hosted": hosted.to_dict() if hosted else None,
            "local": local.to_dict() if local else None,
            "recorded_cost_ids": recorded,
        })  # fmt: skip
        return
    if report.errors:
        click.echo(
            f"warning: {report.errors} error(s) in {file}; `tuneport data validate {file}` lists them",
            err=True,
        )
    for figure in (hosted, local):
        if figure is not None:
            _show_figure(figure)
    if hosted and local:
        cheaper = "local" if local.amount < hosted.amount else "hosted"
        click.echo(f"cheaper: {cheaper}")


def _no_job(job_id: str) -> Exception:
    from tuneport.errors import StoreError

    return StoreError(
        f"no job {job_id!r} in the store", hint="`tuneport jobs list` shows the jobs tuneport knows."
    )


@cost.command("job")
@click.argument("job_id")
@_hardware_options
@_no_record_option
@_json_option
def job_cmd(job_id: str, gpu: str | None, cloud: str | None, hourly: str | None, count: int, no_record: bool,
            as_json: bool) -> None:  # fmt: skip
    """What a finished job cost: hosted from its trained tokens; local from its measured seconds x $/hour
    (--gpu/--cloud or --hourly; a CPU-only job defaults to a small CPU VM's list prices)."""
    from tuneport.cost import figures, records, training
    from tuneport.errors import SpecError

    store = _store()
    job = store.get_job(job_id)
    if job is None:
        raise _no_job(job_id)
    from tuneport.providers.registry import provider_class

    if provider_class(job["backend"]).billing == "hourly":  # self-hosted: priced by the machine's hour
        if gpu is None and hourly is None:
            measured = training.measured_seconds(job)
            if (measured.get("device") or "cpu") != "cpu":
                raise SpecError(
                    f"job {job_id} ran on {measured.get('device')}: say which hardware to price",
                    hint="Add --gpu h100 [--cloud aws] or --hourly 2.50.",
                )
            gpu = "cpu"
        figure = training.local_training_actual(job, figures.hourly_rate(gpu, cloud, hourly, count=count))
        kind = "train_actual_local"
    else:
        if gpu or cloud or hourly:
            raise SpecError(f"job {job_id} ran on {job['backend']}: --gpu/--cloud/--hourly apply to local jobs only",
                            hint="Drop those options; a hosted job is priced from its trained tokens.")  # fmt: skip
        figure = training.hosted_training_actual(job)
        kind = "train_actual_hosted"
    recorded = None if no_record else records.record_figure(store, kind, figure, job_id=job_id)["id"]
    if as_json:
        _echo_json({
            "job": {k: job.get(k) for k in ("id", "backend", "status", "model", "trained_tokens")},
            "cost": figure.to_dict(),
            "recorded_cost_id": recorded,
        })  # fmt: skip
        return
    _show_figure(figure)


@cost.command("inference")
@click.option(
    "--model", "-m", required=True, help="Hosted model to compare with (OpenAI id, alias or ft: id)."
)
@click.option(
    "--tokens-per-second", default=None, help="Measured self-hosted serving throughput (output tokens/s)."
)
@click.option("--throughput-file", type=click.Path(dir_okay=False), default=None,
              help='JSON from benchmarks/bench_serve.py ({"output_tokens_per_s": ...}).')  # fmt: skip
@_hardware_options
@click.option("--input-tokens-per-month", type=_TOKENS_PER_MONTH, default=None)
@click.option("--cached-input-tokens-per-month", type=_TOKENS_PER_MONTH, default=None)
@click.option("--output-tokens-per-month", type=_TOKENS_PER_MONTH, default=None)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Save a PNG of monthly cost against volume (needs matplotlib).")  # fmt: skip
@_no_record_option
@_json_option
def inference_cmd(model: str, tokens_per_second: str | None, throughput_file: str | None, gpu: str | None,
                  cloud: str | None, hourly: str | None, count: int, input_tokens_per_month: int | None,
                  cached_input_tokens_per_month: int | None, output_tokens_per_month: int | None,
                  plot_path: str | None, no_record: bool, as_json: bool) -> None:  # fmt: skip
    """Hosted $/1M tokens against an always-on self-hosted server: monthly costs, break-even volume, a plot."""
    from tuneport.cost import figures, inference, records
    from tuneport.cost.plot import plot_inference
    from tuneport.errors import SpecError

    if (tokens_per_second is None) == (throughput_file is None):
        raise SpecError("give exactly one of --tokens-per-second and --throughput-file",
                        hint="The self-hosted side needs the measured serving throughput.")  # fmt: skip
    if throughput_file is not None:
        tps, tp_inputs = inference.read_serving_throughput(throughput_file)
    else:
        tps, tp_inputs = inference.parse_tokens_per_second(tokens_per_second), None
    rate = figures.hourly_rate(gpu, cloud, hourly, count=count)
    comparison = inference.compare_inference(
        model, tps, rate,
        input_tokens_per_month=input_tokens_per_month,
        output_tokens_per_month=output_tokens_per_month,
        cached_input_tokens_per_month=cached_input_tokens_per_month,
        throughput_inputs=tp_inputs,
    )  # fmt: skip
    plot = str(plot_inference(comparison, plot_path)) if plot_path else None
    recorded = []
    if not no_record:
        store = _store()
        for kind, figure in (("inference_hosted_monthly", comparison.hosted),
                             ("inference_self_hosted_monthly", comparison.self_hosted)):  # fmt: skip
            if figure is not None:
                recorded.append(records.record_figure(store, kind, figure)["id"])
    if as_json:
        _echo_json({**comparison.to_dict(), "plot": plot, "recorded_cost_ids": recorded})
        return
    c = comparison
    click.echo(f"hosted {c.model}: ${c.blended_per_1m.normalize():f} per 1M tokens at this mix ({c.mix_source}); "
               f"prices from {c.price_source}, as of {c.price_as_of}")  # fmt: skip
    click.echo(f"self-hosted: {float(c.tokens_per_second):,.1f} output tokens/s = "
               f"{float(c.capacity_output_tokens_per_month) / 1e6:,.0f}M output tokens/month per replica")  # fmt: skip
    _show_figure(c.always_on_monthly)
    for figure in (c.hosted, c.self_hosted):
        if figure is not None:
            _show_figure(figure)
    be = c.break_even.get("tokens_per_month")
    if be is None:
        click.echo(f"break-even: never - {c.break_even['never_because']}")
    else:
        line = f"break-even: {float(be) / 1e6:,.1f}M tokens/month"
        low, high = c.break_even.get("tokens_per_month_low"), c.break_even.get("tokens_per_month_high")
        if low is not None and high is not None:
            line += f" (range {float(low) / 1e6:,.1f}M to {float(high) / 1e6:,.1f}M over the list prices)"
        click.echo(line + "; above it self-hosting is cheaper")
    if plot:
        click.echo(f"plot: {plot}")


@cost.command("catalog")
@_json_option
def catalog_cmd(as_json: bool) -> None:
    """List every price tuneport uses, with its source and as_of date."""
    from tuneport.cost.catalog import catalog_summary

    summary = catalog_summary()
    if as_json:
        _echo_json(summary)
        return
    click.echo("OpenAI fine-tuning (USD per 1M tokens):")
    for m in summary["models"]:
        train = ", ".join(f"{k} ${v}" for k, v in m["training_per_1m_usd"].items())
        infer = ", ".join(f"{k} ${v}" for k, v in m["inference_per_1m_usd"].items())
        click.echo(f"  {m['id']}: training {train}; inference {infer} ({m['source']}, as of {m['as_of']})")
    wind = summary["wind_down"]
    if wind:
        click.echo(f"wind-down: {wind.get('note', '')} (as of {wind.get('as_of', '?')})")
    click.echo(f"hardware ({summary['hardware_note']}):")
    for h in summary["hardware"]:
        click.echo(f"  {h['id']} - {h['label']}")
        for cloud, p in h["prices"].items():
            click.echo(
                f"    {cloud}: ${p['min']}-${p['max']}/h ({p['source']}, as of {p['as_of']}) {p['note']}"
            )
