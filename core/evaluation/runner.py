"""The evaluation runner: ask every endpoint every held-out item, grade, and compare with paired statistics.

What a user relies on, and how it is kept:

- **One client.** Every request goes through :class:`tuneport.endpoints.client.InferenceClient` (bounded concurrency,
  retries honouring Retry-After, typed errors), so OpenAI, vLLM and any OpenAI-compatible server behave alike.
- **Nothing is asked twice.** Responses are cached in the store under a key of the endpoint (base URL + model),
  the sampling parameters and the exact messages: re-running an evaluation, or adding a grader, costs nothing.
  ``use_cache=False`` (``--no-cache``) asks again.
- **A crash loses nothing.** Responses are written as they arrive (batched into one transaction every few dozen,
  so the store never throttles the run); re-running the same evaluation, or ``--resume RUN_ID``, asks only for
  the items still missing.
- **Never a silently wrong score.** An endpoint that fails mid-run leaves its finished items in place, the failed
  ones marked with their error, and the run ``incomplete`` (resumable). Errored items are counted and left out of
  *both* sides of every paired comparison, so a model is never compared on easier items than its rival.
- **A judge that cannot be fooled by order.** A ``pairwise_judge`` grader names a judge endpoint (``--judge
  ENDPOINT``; in a spec ``{name: pairwise_judge, judge: NAME}``, resolved like ``--endpoint``). After both
  endpoints of a pair have answered an item, the judge is asked which answer is better in both orders, through
  the same client, bound, retries and cache; a win counts only when both orders agree. An answer with no
  verdict is a per-item error (never a tie); a judge that fails mid-run leaves the run incomplete (resumable).
- **Record and replay.** :func:`record_endpoint` stores an endpoint's answers under a name; ``recorded:NAME`` then
  works wherever an endpoint does, serving those answers by item (matched by the prompt, not the line), so a
  hosted fine-tuned model can be compared after it retires.

The result of :func:`run_eval` and :func:`load_run` is one plain dict (the contract with the report renderer);
``graders`` lists the graders that score each endpoint, pairwise judges are under ``pairwise``::

    {"id", "created_at", "status": "complete"|"incomplete", "dataset": {"path", "sha256", "n_items"},
     "endpoints": [{"name", "base_url", "model", "kind": "live"|"recorded", "job_id"}],
     "graders": [{"id", "name", "params"}], "params": {...sampling},
     "items": [{"index", "prompt", "reference", "results": {endpoint: {"output", "error", "latency_ms", "usage",
                "cached", "grades": {grader_id: GradeResult dict}}}}],
     "summary": {endpoint: {"graders": {grader_id: GradeSummary dict}, "latency": LatencySummary dict | None,
                 "tokens": {"prompt", "completion", "per_item"}, "cost": {"per_item", "per_1000", "currency",
                 "inputs"}, "errors": int}},
     "comparisons": [{"a", "b", "grader", "excluded", **PairedComparison.to_dict()}],
     "pairwise": [{"a", "b", "grader", "judge": {"name", "base_url", "model"},
                   "excluded": {"no_answer", "judge_failed"}, "summary": PairwiseSummary dict,
                   "items": [{"index", "winner": "a"|"b"|"tie"|None, "error": str|None, "excluded": bool,
                              "orders": [{"order": "a-b"|"b-a", "verdict", "raw"}], "details"}]}],
     "warnings": [str], "notes": [str], "leakage": LeakageReport dict | None,
     "prompting": {"seed", "train", "repeated_eval_items", "endpoints": {label: {"system", "shots", "lines"}},
                   "train_sample": {"n", "lines", "sha256"}} | None,
     "overfitting": [{"endpoint", "grader", "kind", "train", "heldout", "gap", "gap_ci", "method", "flag", ...}],
     "noninferiority": [{"candidate", "baseline", "grader", "excluded", **NonInferiority.to_dict()}],
     "baseline": {"endpoint", "margin"} | None}

Money is computed as :class:`~decimal.Decimal` and given as a decimal string (``None`` with ``inputs["note"]``
saying why when there is no price).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneport.data.leakage import find_leakage
from tuneport.errors import EvaluationError
from tuneport.evaluation.asking import Progress
from tuneport.evaluation.assemble import _assemble, _check_same_dataset, load_run
from tuneport.evaluation.collect import _collect, _Collected
from tuneport.evaluation.configure import _grader_configs, _make_graders, build_spec, default_graders
from tuneport.evaluation.judging import _judge_pairs
from tuneport.evaluation.lease import run_lease
from tuneport.evaluation.prompting import draw, reload_train_sample
from tuneport.evaluation.recording import record_endpoint
from tuneport.evaluation.spec import EndpointConfig, EvalItem, EvalSpec, load_items
from tuneport.evaluation.targets import (
    RECORDED_PREFIX,
    _judges_from_config,
    _resolve_judges,
    _resolve_targets,
    _run_fingerprint,
    _Target,
    _targets_from_config,
    train_label,
)
from tuneport.jobs.store import Store

if TYPE_CHECKING:
    from tuneport.http import RetryPolicy

__all__ = [
    "run_eval",
    "load_run",
    "record_endpoint",
    "build_spec",
    "default_graders",
    "RECORDED_PREFIX",
]


def run_eval(
    spec: EvalSpec | str | Path | None = None,
    *,
    endpoints: Sequence[str | EndpointConfig] = (),
    graders: Sequence[str | Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    train: str | Path | None = None,
    concurrency: int | None = None,
    use_cache: bool = True,
    resume: str | None = None,
    hourly: Mapping[str, Decimal] | Decimal | None = None,
    name: str | None = None,
    judges: Sequence[str] = (),
    store: Store | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    progress: Progress | None = None,
    train_sample: int | None = None,
    sample_seed: int | None = None,
    baseline: str | None = None,
    margin: float | None = None,
) -> dict[str, Any]:
    """Evaluate endpoints on a held-out dataset and return the run dict (see the module docstring).

    ``judges`` (endpoint references, like ``endpoints``) each add a pairwise LLM judge grader: after both
    endpoints of a pair have answered an item, the judge is asked which answer is better, in both orders, and a
    win counts only when both orders agree (``result["pairwise"]``). Judge answers are cached like any other.

    ``spec`` is an :class:`~tuneport.evaluation.spec.EvalSpec`, a spec file, or a held-out ``.jsonl`` (then
    ``endpoints`` name what to evaluate). Re-running the same evaluation continues an unfinished run of it;
    ``resume=RUN_ID`` continues that run exactly as it was configured. Raises EvaluationError, SpecError,
    DataError or EndpointError before any request for anything the user has to fix.

    Endpoints with ``shots: K`` get K few-shot examples drawn from the training file (``train``); ``train_sample``
    also scores that many training items per endpoint (``result["overfitting"]``); ``baseline`` + ``margin``
    test every other endpoint non-inferior to the baseline (``result["noninferiority"]``). Draws are seeded by
    ``sample_seed`` (default 0) and recorded in ``result["prompting"]``.
    """
    own = store is None
    store = store or Store()
    try:
        if resume is not None:
            spec_obj, targets, items, sha, stored_judges = _resumed(store, resume, concurrency, hourly, name)
            prompting = (store.get_eval_run(resume) or {}).get("config", {}).get("prompting") or {}
            train_items = reload_train_sample(prompting)
        else:
            if spec is None:
                raise EvaluationError("run_eval needs a spec, a spec file or a dataset")
            spec_obj = build_spec(spec, endpoints=endpoints, graders=graders, params=params, train=train,
                                  concurrency=concurrency, name=name, judges=judges, train_sample=train_sample,
                                  sample_seed=sample_seed, baseline=baseline, margin=margin)  # fmt: skip
            items, sha = load_items(spec_obj.dataset)
            drawn = draw(spec_obj, items)
            spec_obj, train_items, prompting = drawn.spec, drawn.train_items, drawn.record
            targets = _resolve_targets(spec_obj, store, hourly)
            stored_judges = None
        _check_baseline(spec_obj, targets)
        grader_configs, note = _grader_configs(spec_obj, items)
        graders_now = _make_graders(grader_configs)  # a bad grader config fails here, before any request
        if stored_judges and set(stored_judges) == {g.id for g in graders_now if g.kind == "pairwise"}:
            judges_now = _judges_from_config(
                stored_judges
            )  # --resume asks the judge the run was started with
        else:
            judges_now = _resolve_judges(grader_configs, store)
        leakage = _leakage(spec_obj, targets, store)
        config = {"spec": spec_obj.model_dump(mode="json"), "targets": [t.config() for t in targets],
                  "graders": grader_configs, "grader_note": note,
                  "judges": {gid: j.config() for gid, j in judges_now.items()},
                  "prompting": prompting}  # fmt: skip
        sample = (prompting.get("train_sample") or {}).get("lines")
        fingerprint = _run_fingerprint(sha, targets, "eval" if not sample else f"eval+train{sample}")
        run_id = resume or _unfinished_run(store, fingerprint)
        existing = run_id is not None
        if run_id is None:
            run_id = store.create_eval_run(
                name=spec_obj.name, status="running", config=config, spec_hash=fingerprint, dataset_sha256=sha,
                endpoints=[t.label for t in targets],
                metadata={"kind": "eval", "timing": {}, "leakage": leakage, "dataset_path": str(spec_obj.dataset)},
            )["id"]  # fmt: skip
        with run_lease(store, run_id):
            if existing:
                _continue(store, run_id, config, leakage, name)
            collected = _collect(store, run_id, targets, items, concurrency=spec_obj.concurrency,
                                 use_cache=use_cache, retry=retry, timeout=timeout, progress=progress)  # fmt: skip
            train_targets = [replace(t, label=train_label(t.label)) for t in targets if t.kind == "live"]
            if train_items and train_targets:
                more = _collect(store, run_id, train_targets, train_items, concurrency=spec_obj.concurrency,
                                use_cache=use_cache, retry=retry, timeout=timeout, progress=progress)  # fmt: skip
                for part in ("timing", "asked", "cached"):
                    getattr(collected, part).update(getattr(more, part))
            meta = _record_session(store, run_id, collected, spec_obj.concurrency)
            judged = _judge_pairs(store, run_id, [t.label for t in targets], items, graders_now, judges_now,
                                  concurrency=spec_obj.concurrency, use_cache=use_cache, retry=retry,
                                  timeout=timeout, progress=progress)  # fmt: skip
            if judged:
                meta["last_session"]["judge"] = judged
                store.update_eval_run(run_id, metadata=meta)
            result = _assemble(store, run_id, items=items, train_items=train_items)
            store.update_eval_run(
                run_id, status=result["status"], finished_at=int(time.time()),
                summary={"summary": result["summary"], "comparisons": result["comparisons"],
                         "pairwise": [{k: v for k, v in p.items() if k != "items"} for p in result["pairwise"]],
                         "warnings": result["warnings"]},
            )  # fmt: skip
        result["session"] = {"asked": collected.asked, "cached": collected.cached,
                             "wall_s": {k: v.wall_s for k, v in collected.timing.items()}}  # fmt: skip
        if judged:
            result["session"]["judge"] = judged
        return result
    finally:
        if own:
            store.close()


def _check_baseline(spec: EvalSpec, targets: Sequence[_Target]) -> None:
    """``--baseline`` names an endpoint of the run, and comes with its ``--margin`` (and the reverse)."""
    if (spec.baseline is None) != (spec.margin is None):
        raise EvaluationError(
            "a non-inferiority test needs both --baseline ENDPOINT and --margin M"
            + (f" (only --baseline {spec.baseline} was given)" if spec.baseline else f" (only --margin {spec.margin})"),
            hint="For example --baseline openai-ft --margin 0.05: is each other endpoint at most 5 points worse?",
        )
    labels = [t.label for t in targets]
    if spec.baseline is not None and spec.baseline not in labels:
        raise EvaluationError(
            f"--baseline {spec.baseline!r} is not one of the evaluated endpoints ({', '.join(labels)})",
            hint="Name the baseline as its row is named (an endpoint's `name`, else its reference).",
        )
    if spec.baseline is not None and len(labels) < 2:
        raise EvaluationError("a non-inferiority test needs a candidate besides the baseline: add another -e")


def _resumed(
    store: Store,
    run_id: str,
    concurrency: int | None,
    hourly: Mapping[str, Decimal] | Decimal | None,
    name: str | None,
) -> tuple[EvalSpec, list[_Target], list[EvalItem], str, dict[str, Any] | None]:
    """What ``--resume RUN_ID`` continues: the run's own spec (with a new concurrency or name), its endpoints as
    they were resolved (a price given now applies where the run had none), its items (the dataset must be
    unchanged) and its judges."""
    row = store.get_eval_run(run_id)
    if row is None or (row.get("metadata") or {}).get("kind") != "eval":
        raise EvaluationError(
            f"No evaluation run {run_id!r} to resume.",
            hint="`tuneport eval` prints the run id; re-running the same evaluation also resumes it.",
        )
    config = row["config"]
    spec = EvalSpec.model_validate(config["spec"])
    changes = {k: v for k, v in (("concurrency", concurrency), ("name", name)) if v is not None}
    if changes:
        spec = spec.model_copy(update=changes)
    items, sha = load_items(spec.dataset)
    _check_same_dataset(row, sha)
    targets = _targets_from_config(config["targets"], store)
    for t in targets:
        if t.hourly is None and isinstance(hourly, Decimal):
            t.hourly = hourly
        elif t.hourly is None and isinstance(hourly, Mapping):
            t.hourly = hourly.get(t.label)
    return spec, targets, items, sha, config.get("judges")


def _continue(store: Store, run_id: str, config: Mapping[str, Any], leakage: Any, name: str | None) -> None:
    """Mark an existing run running again with the configuration it continues under (and a ``--name`` given
    now: a rerun that continues a run used to keep its old name silently)."""
    row = store.get_eval_run(run_id)
    assert row is not None
    meta = {**(row.get("metadata") or {}), "leakage": leakage}
    fields: dict[str, Any] = {"status": "running", "config": config, "metadata": meta}
    if name is not None:
        fields["name"] = name
    store.update_eval_run(run_id, **fields)


def _record_session(store: Store, run_id: str, collected: _Collected, concurrency: int) -> dict[str, Any]:
    """Add this session's measured wall time and requests to the run's timing (the basis of self-hosted cost)
    and note what it asked and took from the cache; returns the run's metadata as written."""
    meta = dict((store.get_eval_run(run_id) or {}).get("metadata") or {})
    timing = dict(meta.get("timing") or {})
    for label, t in collected.timing.items():
        old = timing.get(label) or {"wall_s": 0.0, "requests": 0}
        timing[label] = {"wall_s": old["wall_s"] + t.wall_s, "requests": old["requests"] + t.requests,
                         "concurrency": concurrency}  # fmt: skip
    meta["timing"] = timing
    meta["last_session"] = {"asked": collected.asked, "cached": collected.cached}
    store.update_eval_run(run_id, metadata=meta)
    return meta


def _unfinished_run(store: Store, fingerprint: str) -> str | None:
    for run in store.list_eval_runs():
        if run.get("spec_hash") == fingerprint and run.get("status") != "complete":
            return run["id"]
    return None


def _leakage(spec: EvalSpec, targets: Sequence[_Target], store: Store) -> dict[str, Any] | None:
    """Check the eval items against the training data: ``spec.train``, else the training file of any job an
    endpoint came from (when that file is here)."""
    train = spec.train
    source = "--train"
    if train is None:
        for t in targets:
            if not t.job_id:
                continue
            job = store.get_job(t.job_id) or {}
            candidates = [(job.get("spec") or {}).get("training_file"), job.get("training_file")]
            found = next((c for c in candidates if isinstance(c, str) and Path(c).is_file()), None)
            if found:
                train, source = found, f"training file of job {t.job_id} ({t.label})"
                break
    if train is None:
        return None
    report = find_leakage(train, spec.dataset, max_hits=20).to_dict()
    report["source"] = source
    return report
