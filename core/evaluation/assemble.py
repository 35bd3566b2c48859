"""Assembling a run's dict from the store: every item's answers and grades, each endpoint's summary, the
paired comparisons, the judges' verdicts and the warnings. :func:`load_run` rebuilds a finished run this way."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuneport.errors import EvaluationError, TuneportError
from tuneport.evaluation.configure import _make_graders
from tuneport.evaluation.graders import Grader
from tuneport.evaluation.pairwise import _pairwise_results
from tuneport.evaluation.pricing import endpoint_cost
from tuneport.evaluation.prompting import reload_train_sample
from tuneport.evaluation.questions import noninferiority_rows, overfitting_rows, paired_comparison
from tuneport.evaluation.responses import _checked_usage, _response_text
from tuneport.evaluation.spec import EvalItem, EvalSpec, load_items
from tuneport.evaluation.stats import latency_summary
from tuneport.evaluation.targets import train_label
from tuneport.jobs.store import Store


def load_run(run_id: str, *, store: Store | None = None) -> dict[str, Any]:
    """Rebuild a run's dict from the store (re-reading its dataset, whose sha256 must still match, and grading
    the stored responses with the run's graders)."""
    own = store is None
    store = store or Store()
    try:
        return _assemble(store, run_id)
    finally:
        if own:
            store.close()


def _assemble(
    store: Store, run_id: str, *, items: Sequence[EvalItem] | None = None, train_items: Sequence[EvalItem] | None = None
) -> dict[str, Any]:
    """The run dict (see :mod:`tuneport.evaluation.runner`) of ``run_id`` as the store holds it now."""
    row = _eval_run_row(store, run_id)
    meta, config = row.get("metadata") or {}, row["config"]
    spec = EvalSpec.model_validate(config["spec"])
    if items is None:
        items = _reread_items(row, spec)
    prompting = config.get("prompting") or {}
    if train_items is None:
        train_items = reload_train_sample(prompting)
    targets = config["targets"]
    labels = [t["name"] for t in targets]
    all_graders = _make_graders(config["graders"])
    graders = [g for g in all_graders if g.kind != "pairwise"]
    answers = _stored_answers(store, run_id, labels)
    graded = _grade_items(items, labels, graders, answers)
    warnings: list[str] = []
    summary = {
        t["name"]: _endpoint_summary(
            t, graders, graded, answers[t["name"]], (meta.get("timing") or {}).get(t["name"])
        )
        for t in targets
    }
    for t in targets:
        warnings += _endpoint_warnings(
            t["name"], graders, summary[t["name"]], graded, answers[t["name"]], run_id
        )
    comparisons = _comparisons(labels, graders, graded, warnings)
    noninferiority = []
    if spec.baseline is not None and spec.margin is not None:
        noninferiority = noninferiority_rows(spec.baseline, spec.margin, labels, graded.grades, graded.ok,
                                             [g.id for g in graders], warnings)  # fmt: skip
    train_labels = [train_label(t["name"]) for t in targets if t["kind"] == "live"] if train_items else []
    # the training sample's answers are read only when the run has one (reading every response row is the run's
    # largest cost after the requests themselves)
    train_answers = _stored_answers(store, run_id, train_labels) if train_labels else {}
    train_graded = _grade_items(train_items or [], train_labels, graders, train_answers)
    overfitting = overfitting_rows(
        graded.grades, {label: train_graded.grades[train_label(label)] for label in labels
                        if train_label(label) in train_graded.grades},
    )  # fmt: skip
    pairwise, judged_all = _pairwise_results(
        store, run_id, items, labels, graded.items, [g for g in all_graders if g.kind == "pairwise"],
        config.get("judges") or {}, warnings,
    )  # fmt: skip
    leakage = meta.get("leakage")
    if leakage and leakage.get("leaked"):
        warnings.append(_leakage_warning(leakage))
    complete = all(all(v) for v in (*graded.ok.values(), *train_graded.ok.values())) and judged_all
    for label, flags in train_graded.ok.items():
        if not all(flags):
            warnings.append(f"{label}: {flags.count(False)} of {len(flags)} training-sample items have no answer; "
                            f"they are left out of the training score. Resume with `tuneport eval --resume {run_id}`.")  # fmt: skip
    return {
        "id": run_id,
        "name": row.get("name"),
        "created_at": row["created_at"],
        "status": "complete" if complete else "incomplete",
        "dataset": {"path": str(spec.dataset), "sha256": row.get("dataset_sha256"), "n_items": len(items)},
        "endpoints": [{k: t[k] for k in ("name", "base_url", "model", "kind", "job_id")} for t in targets],
        "graders": [{"id": g.id, "name": g.name, "params": g.params} for g in graders],
        "params": spec.params.body(),
        "items": graded.items,
        "summary": summary,
        "comparisons": comparisons,
        "pairwise": pairwise,
        "warnings": warnings,
        "notes": [config["grader_note"]] if config.get("grader_note") else [],
        "leakage": leakage,
        "prompting": prompting or None,
        "overfitting": overfitting,
        "noninferiority": noninferiority,
        "baseline": {"endpoint": spec.baseline, "margin": spec.margin} if spec.baseline else None,
    }


def _eval_run_row(store: Store, run_id: str) -> dict[str, Any]:
    row = store.get_eval_run(run_id)
    if row is None:
        raise EvaluationError(
            f"No evaluation run {run_id!r} in the store.", hint="`tuneport eval` prints run ids."
        )
    if (row.get("metadata") or {}).get("kind") != "eval":
        raise EvaluationError(f"{run_id} is a recording, not an evaluation run.")
    return row


def _reread_items(row: Mapping[str, Any], spec: EvalSpec) -> list[EvalItem]:
    """The run's items from its dataset file, which must still be the file the run was made on."""
    try:
        items, sha = load_items(spec.dataset)
    except TuneportError as exc:
        raise EvaluationError(
            f"run {row['id']}: its dataset {spec.dataset} cannot be read again: {exc.message}",
            hint="The run's answers are kept; restore the dataset file at that path to see the run.",
        ) from None
    _check_same_dataset(row, sha)
    return items


def _stored_answers(store: Store, run_id: str, labels: Sequence[str]) -> dict[str, dict[int, dict[str, Any]]]:
    """Every endpoint's stored response rows, by item index."""
    answers: dict[str, dict[int, dict[str, Any]]] = {label: {} for label in labels}
    for r in store.list_responses(run_id):
        if r["endpoint"] in answers and r["sample"] == 0:
            answers[r["endpoint"]][r["item_index"]] = r
    return answers


@dataclass
class _Graded:
    """Every item graded on every endpoint: the run dict's ``items``, and per endpoint the grades by grader and
    whether each item was answered (both in item order)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    grades: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    ok: dict[str, list[bool]] = field(default_factory=dict)


def _grade_items(
    items: Sequence[EvalItem],
    labels: Sequence[str],
    graders: Sequence[Grader],
    answers: Mapping[str, Mapping[int, Mapping[str, Any]]],
) -> _Graded:
    out = _Graded(
        grades={label: {g.id: [] for g in graders} for label in labels}, ok={label: [] for label in labels}
    )
    for item in items:
        results: dict[str, Any] = {}
        for label in labels:
            result = _item_result(answers[label].get(item.index), item, graders)
            out.ok[label].append(result["error"] is None)
            for g in graders:
                out.grades[label][g.id].append(result["_grades"].get(g.id))
            result.pop("_grades")
            results[label] = result
        out.items.append({"index": item.index, "line": item.lineno, "prompt": item.prompt,
                          "reference": item.reference, "results": results})  # fmt: skip
    return out


def _endpoint_warnings(
    label: str,
    graders: Sequence[Grader],
    summary: Mapping[str, Any],
    graded: _Graded,
    answers: Mapping[int, Mapping[str, Any]],
    run_id: str,
) -> list[str]:
    """What a reader of one endpoint's scores must know: unanswered items, graders that do not fit the data,
    answers whose token usage was refused."""
    warnings = []
    ok = graded.ok[label]
    errors = summary["errors"]
    if errors:
        reasons = _count(
            (answers.get(i) or {}).get("error", {}) or {"message": "no answer recorded"}
            for i, good in enumerate(ok)
            if not good
        )
        warnings.append(
            f"{label}: {errors} of {len(ok)} items have no answer ({reasons}); they are excluded from "
            f"{label}'s scores and from both sides of its comparisons. Resume with "
            f"`tuneport eval --resume {run_id}`."
        )
    for g in graders:
        s = summary["graders"][g.id]
        if s["n"] and s["n_errors"] * 2 > s["n"]:
            warnings.append(
                f"{label}: grader {g.id!r} could not grade {s['n_errors']} of {s['n']} answers "
                f"({', '.join(s['error_reasons'])}): it may not fit this data"
            )
    refused = [it["results"][label]["usage_refused"] for it, good in zip(graded.items, ok, strict=True)
               if good and it["results"][label].get("usage_refused")]  # fmt: skip
    if refused:
        warnings.append(
            f"{label}: {len(refused)} answers came with token usage that cannot be right ({refused[0]}); they are "
            "graded, but their tokens are not counted or priced"
        )
    return warnings


def _comparisons(
    labels: Sequence[str], graders: Sequence[Grader], graded: _Graded, warnings: list[str]
) -> list[dict[str, Any]]:
    """Every pair of endpoints compared on every grader, on the items both answered and both could be graded."""
    comparisons = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            both = [x and y for x, y in zip(graded.ok[a], graded.ok[b], strict=True)]
            n_request_errors = both.count(False)
            for g in graders:
                ga = [r for r, keep in zip(graded.grades[a][g.id], both, strict=True) if keep]
                gb = [r for r, keep in zip(graded.grades[b][g.id], both, strict=True) if keep]
                comparison = paired_comparison(ga, gb)
                if comparison is None:
                    warnings.append(
                        f"{a} vs {b} ({g.id}): no item has a graded answer from both, so there is nothing to "
                        "compare"
                    )
                    continue
                excluded = {"request_errors": n_request_errors, "ungradable": comparison.pop("_ungradable")}
                comparisons.append({"a": a, "b": b, "grader": g.id, "excluded": excluded, **comparison})
    return comparisons


def _leakage_warning(leakage: Mapping[str, Any]) -> str:
    return (
        f"leakage: {leakage['leaked']} of {leakage['candidate']['items']} eval items repeat training items "
        f"({leakage['exact']} exactly, {leakage['normalized']} after normalization; checked against "
        f"{leakage.get('source', leakage['reference']['path'])}): their scores measure memory, not skill"
    )


def _count(errors: Any) -> str:
    counts = Counter(str((e or {}).get("type") or "error") for e in errors)
    return ", ".join(f"{n} {kind}" for kind, n in counts.most_common())


def _item_result(r: Mapping[str, Any] | None, item: EvalItem, graders: Sequence[Grader]) -> dict[str, Any]:
    """One endpoint's result on one item: its answer graded, or why there is none. An answer whose token usage
    cannot be right (as received, or as stored before such usage was refused) carries ``usage_refused``, and its
    ``usage`` is empty."""
    if r is None:
        return {"output": None, "error": "no answer recorded (the run stopped before this item)",
                "latency_ms": None, "usage": {}, "cached": False, "grades": {}, "_grades": {}}  # fmt: skip
    prompt, completion, refused = _checked_usage(r["prompt_tokens"], r["completion_tokens"])
    stored = r["response"] if isinstance(r["response"], dict) else {}
    refused = refused or stored.get("usage_refused")
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    if r["error"] is not None:
        err = r["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        return {"output": None, "error": message, "latency_ms": r["latency_ms"], "usage": usage, "cached": False,
                "grades": {}, "_grades": {}}  # fmt: skip
    text, finish = _response_text(r["response"])
    if text is None:
        return {"output": None, "error": "the stored response has no text", "latency_ms": r["latency_ms"],
                "usage": usage, "cached": False, "grades": {}, "_grades": {}}  # fmt: skip
    item_obj = {"messages": item.prompt}
    gr = {g.id: g.grade(text, item.reference, item_obj) for g in graders}
    result = {"output": text, "error": None, "finish_reason": finish, "latency_ms": r["latency_ms"],
              "usage": usage, "cached": bool((r["response"] or {}).get("cached_from")),
              "grades": {k: v.to_dict() for k, v in gr.items()}, "_grades": gr}  # fmt: skip
    if refused:
        result["usage"] = {"prompt_tokens": None, "completion_tokens": None}
        result["usage_refused"] = refused
    return result


def _endpoint_summary(
    target: Mapping[str, Any],
    graders: Sequence[Grader],
    graded: _Graded,
    answers: Mapping[int, Mapping[str, Any]],
    timing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Scores, latency, tokens and cost of one endpoint. Tokens and their cost are over the answers whose usage
    was not refused (``tokens["priced_items"]``), so an impossible count never reaches a price."""
    label = target["name"]
    ok = graded.ok[label]
    grades = graded.grades[label]
    n_ok = sum(ok)
    summary = {g.id: g.summarize([r for r in grades[g.id] if r is not None]).to_dict() for g in graders}
    good = [answers[i] for i, flag in enumerate(ok) if flag]
    lat = latency_summary([r["latency_ms"] for r in good if r["latency_ms"] is not None])
    counted = [it["results"][label]["usage"] for it, flag in zip(graded.items, ok, strict=True)
               if flag and not it["results"][label].get("usage_refused")]  # fmt: skip
    prompt = sum(u["prompt_tokens"] or 0 for u in counted)
    completion = sum(u["completion_tokens"] or 0 for u in counted)
    n_priced = len(counted)
    tokens = {"prompt": prompt, "completion": completion,
              "per_item": {"prompt": prompt / n_priced if n_priced else None,
                           "completion": completion / n_priced if n_priced else None}}  # fmt: skip
    if n_priced != n_ok:
        tokens["priced_items"] = n_priced
    cost = _cost(target, n_ok, n_priced, prompt, completion, timing)
    return {
        "n_items": len(ok),
        "n_answered": n_ok,
        "graders": summary,
        "latency": lat.to_dict() if lat else None,
        "tokens": tokens,
        "cost": cost,
        "errors": len(ok) - n_ok,
    }


def _cost(
    target: Mapping[str, Any],
    n_ok: int,
    n_priced: int,
    prompt: int,
    completion: int,
    timing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The endpoint's cost over its ``n_priced`` answers with usable token counts (a token price averaged over
    them; an hourly price does not depend on tokens). With none, a token price cannot be given at all."""
    cost = endpoint_cost(target, n_priced or n_ok, prompt, completion, timing)
    if n_priced == n_ok:
        return cost
    cost["inputs"]["usage_refused"] = n_ok - n_priced
    if n_priced == 0 and "prompt_tokens" in cost["inputs"]:
        note = f"n/a (the token usage of all {n_ok} answers was refused: it cannot be right)"
        return {**cost, "per_item": None, "per_1000": None, "inputs": {"note": note, "usage_refused": n_ok}}
    return cost


def _check_same_dataset(row: Mapping[str, Any], sha: str) -> None:
    if row.get("dataset_sha256") and row["dataset_sha256"] != sha:
        raise EvaluationError(
            f"the dataset of run {row['id']} has changed since it ran (sha256 {row['dataset_sha256'][:12]}... "
            f"then, {sha[:12]}... now)",
            hint="Restore the original file, or start a new evaluation on the new one.",
        )
