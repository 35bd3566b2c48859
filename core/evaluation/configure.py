"""What an evaluation is made of before anything is asked: the spec with command-line overrides applied,
and its graders (the defaults chosen from the data, a pairwise judge's endpoint kept apart from its grader)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tuneport.errors import EvaluationError, SpecError
from tuneport.evaluation.graders import GRADERS, Grader, make_grader
from tuneport.evaluation.margins import check_margin
from tuneport.evaluation.spec import EndpointConfig, EvalItem, EvalSpec, load_eval_spec


def build_spec(
    source: str | Path | EvalSpec,
    *,
    endpoints: Sequence[str | EndpointConfig] = (),
    graders: Sequence[str | Mapping[str, Any]] | None = None,
    params: Mapping[str, Any] | None = None,
    train: str | Path | None = None,
    concurrency: int | None = None,
    name: str | None = None,
    judges: Sequence[str] = (),
    train_sample: int | None = None,
    sample_seed: int | None = None,
    baseline: str | None = None,
    margin: float | None = None,
) -> EvalSpec:
    """An :class:`~tuneport.evaluation.spec.EvalSpec` from a spec file, a held-out ``.jsonl`` (then ``endpoints`` are
    required) or a spec object, with command-line overrides applied (endpoints given here replace the spec's).

    Each of ``judges`` (``--judge ENDPOINT``) adds a pairwise judge grader asking that endpoint to the graders
    (the spec's, the ones given, or the defaults chosen from the data). ``train_sample``, ``sample_seed``,
    ``baseline`` and ``margin`` override the spec's (see :class:`~tuneport.evaluation.spec.EvalSpec`)."""
    if isinstance(source, EvalSpec):
        spec = source
    else:
        path = Path(source)
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            if not endpoints:
                raise EvaluationError(
                    f"{path}: no endpoints to evaluate",
                    hint="Name at least one: --endpoint base --endpoint my-ft (a saved name, openai:MODEL, "
                    "URL#MODEL or recorded:NAME).",
                )
            spec = EvalSpec(dataset=str(path), endpoints=list(endpoints))
        else:
            spec = load_eval_spec(path)
    changes: dict[str, Any] = {}
    if endpoints and not (
        isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".jsonl", ".ndjson")
    ):
        changes["endpoints"] = list(endpoints)
    if graders is not None:
        changes["graders"] = list(graders)
    if judges:
        current = list(changes.get("graders", spec.graders or []))
        taken = {(g.get("id") or g.get("name")) if isinstance(g, Mapping) else g for g in current}
        for ref in judges:
            gid = "pairwise_judge" if len(judges) == 1 else f"pairwise_judge:{ref}"
            while gid in taken:
                gid += "'"
            taken.add(gid)
            current.append({"name": "pairwise_judge", "id": gid, "judge": ref})
        changes["graders"] = current
    if params:
        changes["params"] = {**spec.params.model_dump(), **{k: v for k, v in params.items() if v is not None}}
    if train is not None:
        changes["train"] = str(train)
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if name is not None:
        changes["name"] = name
    if margin is not None:
        changes["margin"] = check_margin(margin)
    for key, value in (("train_sample", train_sample), ("sample_seed", sample_seed), ("baseline", baseline)):
        if value is not None:
            changes[key] = value
    if not changes:
        return spec
    try:
        return EvalSpec.model_validate({**spec.model_dump(), **changes})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise SpecError(f"invalid evaluation options: {problems}") from None


def default_graders(items: Sequence[EvalItem]) -> tuple[list[dict[str, Any]], str]:
    """Graders that fit the data when none are given, and why they were chosen.

    References that are all JSON objects get ``json_valid`` (is the output JSON at all?) and ``json_match``
    (field by field). Anything else is text: ``exact``, ``normalized`` (case, punctuation, spacing forgiven) and
    ``rouge_l`` (partial credit for overlap).
    """

    def is_object(text: str) -> bool:
        stripped = text.strip()
        if not stripped.startswith("{"):
            return False
        try:
            return isinstance(json.loads(stripped), dict) and bool(json.loads(stripped))
        except ValueError:
            return False

    if items and all(is_object(item.reference) for item in items):
        return (
            [{"name": "json_valid"}, {"name": "json_match"}],
            "every reference is a JSON object, so the graders are json_valid + json_match (field by field)",
        )
    return (
        [{"name": "exact"}, {"name": "normalized"}, {"name": "rouge_l"}],
        "the references are free text, so the graders are exact + normalized + rouge_l",
    )


#: Grader config keys the runner reads itself (a pairwise judge's endpoint and sampling), not the grader.
_RUNNER_KEYS = ("judge", "judge_params")


def _split_grader_config(config: str | Mapping[str, Any]) -> tuple[str | dict[str, Any], str | None, Any]:
    """(the config for :func:`~tuneport.evaluation.graders.make_grader`, the judge endpoint reference, the judge's sampling
    overrides): ``judge`` and ``judge_params`` name what the runner asks, so the grader never sees them."""
    if not isinstance(config, Mapping):
        return config, None, None
    rest = {k: v for k, v in config.items() if k not in _RUNNER_KEYS}
    return rest, config.get("judge"), config.get("judge_params")


def _make_graders(configs: Sequence[str | Mapping[str, Any]]) -> list[Grader]:
    """Build every grader; a pairwise judge grader must name its judge endpoint (``judge: NAME``)."""
    graders = []
    for config in configs:
        grader_config, judge, judge_params = _split_grader_config(config)
        g = make_grader(grader_config)
        if g.kind == "pairwise":
            if not isinstance(judge, str) or not judge.strip():
                raise EvaluationError(
                    f"grader {g.id!r} ({g.name}) compares two endpoints' answers with an LLM judge, but names no "
                    "judge endpoint"
                    + ("" if judge is None else f" (judge: {judge!r} is not an endpoint reference)"),
                    hint="Name one: --judge ENDPOINT, or in a spec {name: pairwise_judge, judge: NAME} (a saved "
                    "name, openai:MODEL or URL#MODEL).",
                )
        elif judge is not None or judge_params is not None:
            raise EvaluationError(
                f"grader {g.id!r} ({g.name}) grades one answer at a time and asks no judge: remove its "
                f"{'judge' if judge is not None else 'judge_params'!r}",
                hint="Only pairwise_judge uses a judge endpoint.",
            )
        graders.append(g)
    ids = [g.id for g in graders]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise EvaluationError(
            f"two graders share the id {dupes[0]!r}",
            hint='Give each an "id" (e.g. {name: json_match, id: priority, fields: [priority]}).',
        )
    return graders


def _grader_configs(spec: EvalSpec, items: Sequence[EvalItem]) -> tuple[list[Any], str | None]:
    """The run's grader configs. A pairwise judge compares endpoints but scores none of them, so when every
    grader given is a judge, the graders chosen from the data are added in front (and the run says so)."""
    given = [dict(g) if isinstance(g, Mapping) else g for g in spec.graders or []]

    def pairwise(config: Any) -> bool:
        name = config.get("name") if isinstance(config, Mapping) else config
        cls = GRADERS.get(name) if isinstance(name, str) else None
        return cls is not None and cls.kind == "pairwise"

    if given and not all(pairwise(c) for c in given):
        return given, None
    configs, why = default_graders(items)
    if given:
        return configs + given, f"only a pairwise judge was given, so its endpoints are also scored: {why}"
    return configs, f"no graders were given: {why}"
