"""The whole loop on the built-in default, as one call: the README's first command runs it.

Build the tiny model ``tiny-chat`` -> validate the example data (and check the test split does not leak from the
training split) -> train a LoRA adapter locally -> serve base + adapter in one server (vLLM where it is installed,
else the transformers engine) -> evaluate both on the held-out split -> write the report with the cost figures.
Every step goes through the same public pieces a user would call one by one (validate_file, LocalProvider,
start_server, run_eval, render_report, the tuneport.cost modules); nothing here is a shortcut.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tuneport.errors import EvaluationError, JobFailedError

__all__ = ["QuickstartResult", "run_quickstart", "quickstart_spec_path"]

#: The adapter's name on the server (and the fine-tuned endpoint's label in the report).
ADAPTER_NAME = "support-ft"
BASE_NAME = "tiny-chat"
#: Graders for the support-triage answers (a JSON object with a category and a priority).
GRADERS: list[dict[str, Any]] = [
    {"name": "json_valid"},
    {"name": "json_match"},
    {"name": "label", "id": "category", "path": "category"},
    {"name": "label", "id": "priority", "path": "priority"},
]

Progress = Callable[[str, str], None]


@dataclass
class QuickstartResult:
    """What the quickstart produced; ``headline`` is the paired comparison the README promises."""

    output_dir: Path
    job_id: str
    fine_tuned_model: str
    engine: str
    run_id: str
    report: dict[str, Path]
    headline: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "job_id": self.job_id,
            "fine_tuned_model": self.fine_tuned_model,
            "engine": self.engine,
            "run_id": self.run_id,
            "report": {k: str(v) for k, v in self.report.items()},
            "headline": self.headline,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


def quickstart_spec_path() -> Path:
    """The built-in job spec (LoRA on tiny-chat over the support-triage example data), shipped with the package."""
    return Path(str(resources.files("tuneport.fixtures").joinpath("quickstart.yaml")))


def _data_file(name: str) -> Path:
    return Path(str(resources.files("tuneport.fixtures").joinpath(f"data/{name}")))


def run_quickstart(
    output_dir: str | Path = "tuneport-quickstart",
    *,
    engine: str = "auto",
    progress: Progress | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> QuickstartResult:
    """Run the whole loop and return where everything is. ``progress(step, message)`` reports each stage;
    ``on_event`` receives the training job's events as they arrive (for a progress bar)."""
    from tuneport.data.leakage import find_leakage
    from tuneport.data.validate import validate_file
    from tuneport.fixtures.tiny_model import ensure_tiny_model
    from tuneport.spec.jobspec import load_spec

    say = progress or (lambda step, message: None)
    out = Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = now - clock
        clock = now

    say("model", "building the built-in model tiny-chat (first use only)")
    model_dir = ensure_tiny_model()
    lap("model")

    train_file, val_file, test_file = (_data_file(f"support_{s}.jsonl") for s in ("train", "val", "test"))
    for path in (train_file, val_file, test_file):
        report = validate_file(path, model=str(model_dir))
        report.raise_for_errors()
        say("data", f"{path.name}: {report.examples} examples, no errors ({report.warnings} warnings)")
    leak = find_leakage(train_file, test_file)
    say("data", f"held-out split vs training split: {leak.leaked} leaked items (exact or normalized user turns)")
    lap("data")

    spec = load_spec(quickstart_spec_path())
    job = _train(spec, say, on_event)
    lap("train")

    from tuneport.local_backend.serving.serve import start_server

    say("serve", f"starting the server for tiny-chat + adapter {ADAPTER_NAME} (engine: {engine})")
    server = start_server(BASE_NAME, [f"{ADAPTER_NAME}={job.id}"], engine=engine, log=lambda line: say("serve", line))
    try:
        say("serve", f"{server.engine} is serving {', '.join(server.models())} at {server.base_url}")
        lap("serve")
        run = _evaluate(server.base_url, test_file, train_file, job.id, say)
        lap("eval")
    finally:
        server.stop()
    engine_used = server.engine

    costs = _costs(job.id, train_file, run, out, say)
    from tuneport.jobs.store import Store
    from tuneport.report.render import render_report

    with Store() as store:
        events = store.list_events(job.id, limit=None)
    paths = render_report(run, out, job_events={job.id: events}, costs=costs)
    lap("report")
    headline = _headline(run)
    say("report", f"report written to {paths.get('html', out)}")
    return QuickstartResult(out, job.id, job.fine_tuned_model or "", engine_used, run["id"], paths, headline, seconds)


def _train(spec: Any, say: Progress, on_event: Callable[[Any], None] | None) -> Any:
    from tuneport.providers.registry import get_provider

    with get_provider("local") as provider:
        job = provider.start(spec)
        say("train", f"training job {job.id} started (LoRA r={spec.local.lora_r} on tiny-chat, CPU)")
        for event in provider.follow(job.id, poll=0.5):
            if on_event is not None:
                on_event(event)
        job = provider.get(job.id)
    if job.status != "succeeded":
        message = job.error.message if job.error else f"the job ended {job.status}"
        raise JobFailedError(f"quickstart training job {job.id} {job.status}: {message}")
    say("train", f"trained {job.fine_tuned_model} ({job.trained_tokens or 0:,} tokens)")
    return job


#: The instructions the prompted base model gets (the fine-tune learned the format from examples instead).
PROMPTED_SYSTEM = "Classify the support ticket. Answer with one JSON object with the keys category and priority."
#: Training items scored per endpoint for the training-vs-held-out row (small: the quickstart stays quick).
QUICKSTART_TRAIN_SAMPLE = 12


def _evaluate(base_url: str, test_file: Path, train_file: Path, job_id: str, say: Progress) -> dict[str, Any]:
    from tuneport.cost.figures import hourly_rate
    from tuneport.evaluation.prompting import prompted_label
    from tuneport.evaluation.runner import run_eval
    from tuneport.evaluation.spec import EndpointConfig

    say("eval", f"evaluating {BASE_NAME} and {ADAPTER_NAME} on {test_file.name} (held out)")
    # the base model also prompted (instructions + 2 examples from the training file): the row that says whether
    # fine-tuning beat good prompting; and a training sample per endpoint: the row that says whether it overfit
    endpoints = [
        EndpointConfig(endpoint=f"{base_url}#{BASE_NAME}", name=BASE_NAME),
        EndpointConfig(endpoint=f"{base_url}#{ADAPTER_NAME}", name=ADAPTER_NAME, job_id=job_id),
        EndpointConfig(endpoint=f"{base_url}#{BASE_NAME}", name=prompted_label(BASE_NAME, True, 2),
                       system=PROMPTED_SYSTEM, shots=2),
    ]  # base vs fine-tune first: the report's opening sentence
    run = run_eval(
        test_file,
        endpoints=endpoints,
        graders=GRADERS,
        params={"temperature": 0, "max_tokens": 32},
        train=train_file,
        concurrency=8,
        hourly=hourly_rate("cpu").amount,  # this machine, priced as a cloud CPU VM: self-hosted $ per 1,000 items
        name="quickstart",
        train_sample=QUICKSTART_TRAIN_SAMPLE,
    )
    if run.get("status") != "complete":
        raise EvaluationError(
            f"the quickstart evaluation {run['id']} is incomplete",
            hint=f"`tuneport eval --resume {run['id']}` continues it once the server answers again.",
        )
    return run


def _costs(job_id: str, train_file: Path, run: dict[str, Any], out: Path, say: Progress) -> list[dict[str, Any]]:
    """Cost figures for the report: this CPU run priced at a cloud CPU VM, what OpenAI would have charged to train
    on the same data, and hosted vs self-hosted inference from the throughput measured during the evaluation."""
    from tuneport.cost.figures import hourly_rate
    from tuneport.cost.inference import compare_inference
    from tuneport.cost.plot import plot_inference
    from tuneport.cost.training import hosted_training_estimate, local_training_actual
    from tuneport.data.validate import validate_file
    from tuneport.jobs.store import Store

    figures = []
    with Store() as store:
        job = store.get_job(job_id)
        figures.append(local_training_actual(job, hourly_rate("cpu")))
    hosted_model = "gpt-4.1-mini-2025-04-14"
    stats = validate_file(train_file, model=hosted_model).stats
    figures.append(hosted_training_estimate(stats))
    ft = run["summary"].get(ADAPTER_NAME, {})
    tps = _measured_tokens_per_second(run, ADAPTER_NAME)
    if tps:
        comparison = compare_inference(
            f"ft:{hosted_model}:quickstart",
            tps,
            hourly_rate("cpu"),
            throughput_inputs={"source": f"evaluation run {run['id']}", "endpoint": ADAPTER_NAME},
        )
        figures.append(comparison.always_on_monthly)
        try:
            plot = plot_inference(comparison, out / "inference_cost.png")
            say("report", f"inference cost plot: {plot}")
        except Exception as exc:  # a missing matplotlib must not lose the report
            say("report", f"no inference cost plot: {exc}")
    elif ft:
        say("report", "no serving throughput measured: inference cost comparison skipped")
    return [f.to_dict() for f in figures]


def _measured_tokens_per_second(run: dict[str, Any], endpoint: str) -> float | None:
    """Output tokens per second of one endpoint over the evaluation (completion tokens / summed latency)."""
    tokens = 0
    latency_ms = 0.0
    for item in run["items"]:
        result = item["results"].get(endpoint) or {}
        usage = result.get("usage") or {}
        if result.get("error") is None and result.get("latency_ms"):
            tokens += int(usage.get("completion_tokens") or 0)
            latency_ms += float(result["latency_ms"])
    return tokens / (latency_ms / 1000) if tokens and latency_ms else None


def _headline(run: dict[str, Any]) -> dict[str, Any]:
    """The paired comparison of base vs fine-tuned on exact field-by-field JSON match."""
    for comparison in run.get("comparisons", []):
        if comparison.get("grader") == "json_match" and {comparison.get("a"), comparison.get("b")} == {
            BASE_NAME,
            ADAPTER_NAME,
        }:
            return comparison
    raise EvaluationError("the quickstart evaluation produced no base-vs-fine-tuned comparison")
