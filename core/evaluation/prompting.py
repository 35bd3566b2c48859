"""Prompted baselines and training samples: what is drawn from the training file, and how.

Why: "is the fine-tune better than the base model with good prompting?" needs the base model given instructions
and examples, and "is it overfit?" needs training items scored like held-out ones. Both draw from the training
file, never from the eval items: a training example that repeats an eval item (exactly or after normalization,
by :mod:`tuneport.data.leakage`) is left out of the pool, and the run says how many were. The draw is seeded
(``sample_seed``, recorded with the run) so a re-run asks the same prompts; the few-shot examples and the
training sample never overlap (a shot in the prompt would answer its own item).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.data.leakage import ReferenceIndex
from tuneport.data.reader import file_sha256
from tuneport.errors import EvaluationError, SpecError
from tuneport.evaluation.spec import EndpointConfig, EvalItem, EvalSpec, load_items

__all__ = ["Drawn", "draw", "prompted_label", "reload_train_sample"]


@dataclass
class Drawn:
    """The spec with every ``shots: K`` turned into few-shot messages, the training sample, and the record of
    both (stored with the run as ``config["prompting"]``)."""

    spec: EvalSpec
    train_items: list[EvalItem] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def prompted_label(endpoint: str, system: bool, shots: int | None) -> str:
    """The row name of a prompted endpoint: ``tiny-chat (prompted: system + 3-shot)``."""
    parts = (["system"] if system else []) + ([f"{shots}-shot"] if shots else [])
    return f"{endpoint} (prompted: {' + '.join(parts)})" if parts else endpoint


def _pool(train: Path, items: Sequence[EvalItem]) -> tuple[list[EvalItem], int]:
    """The training items that repeat no eval item, and how many did."""
    train_items, _ = load_items(train)
    index = ReferenceIndex.from_items(
        {"messages": [*it.prompt, {"role": "assistant", "content": it.reference}]} for it in items
    )
    pool = [it for it in train_items
            if index.match_item({"messages": [*it.prompt, {"role": "assistant", "content": it.reference}]}) is None]  # fmt: skip
    return pool, len(train_items) - len(pool)


def _shot_messages(shots: Sequence[EvalItem]) -> list[dict[str, Any]]:
    """Each example's turns (its own system message left out: the endpoint's system prompt leads) and answer."""
    messages: list[dict[str, Any]] = []
    for it in shots:
        messages += [{"role": m["role"], "content": m["content"]} for m in it.prompt if m.get("role") != "system"]
        messages.append({"role": "assistant", "content": it.reference})
    return messages


def draw(spec: EvalSpec, items: Sequence[EvalItem]) -> Drawn:
    """Draw the few-shot examples and the training sample ``spec`` asks for (nothing when it asks for neither)."""
    configs = spec.endpoint_configs()
    wanted = max((c.shots or 0 for c in configs), default=0)
    if not wanted and not spec.train_sample:
        return Drawn(spec)
    if spec.train is None:
        what = "--few-shot" if wanted else "--train-sample"
        raise SpecError(
            f"{what} draws from the training file, but none was given",
            hint="Name it: --train-file train.jsonl (or `train:` in the eval spec).",
        )
    pool, repeated = _pool(Path(spec.train), items)
    need = wanted + (spec.train_sample or 0)
    if need > len(pool):
        said = f" ({repeated} more repeat eval items and are never used)" if repeated else ""
        raise SpecError(
            f"{spec.train} has {len(pool)} usable training examples{said}, but "
            + " + ".join(x for x in ((f"{wanted} few-shot" if wanted else ""),
                                     (f"{spec.train_sample} for --train-sample" if spec.train_sample else "")) if x)
            + f" = {need} are asked for",
            hint="Ask for fewer (--few-shot K, --train-sample N), or give a larger training file.",
        )  # fmt: skip
    rng = random.Random(spec.sample_seed)
    order = rng.sample(range(len(pool)), need)
    shot_items = [pool[i] for i in order[:wanted]]
    sample = [pool[i] for i in order[wanted:]]
    record: dict[str, Any] = {"seed": spec.sample_seed, "train": str(spec.train), "repeated_eval_items": repeated}
    new_configs: list[EndpointConfig | str] = []
    shots_by: dict[str, Any] = {}
    for cfg in configs:
        if cfg.shots:
            if cfg.few_shot:
                raise SpecError(
                    f"endpoint {cfg.label!r} has both few_shot messages and shots: {cfg.shots}",
                    hint="Give the examples literally (few_shot) or have them drawn (shots / --few-shot), not both.",
                )
            chosen = shot_items[: cfg.shots]
            name = cfg.name or prompted_label(cfg.endpoint, cfg.system is not None, cfg.shots)
            cfg = cfg.model_copy(update={"few_shot": _shot_messages(chosen), "name": name})
            shots_by[cfg.label] = {"shots": cfg.shots, "lines": [it.lineno for it in chosen],
                                   "system": cfg.system is not None}  # fmt: skip
        elif cfg.system is not None:
            shots_by[cfg.label] = {"shots": 0, "lines": [], "system": True}
        new_configs.append(cfg)
    record["endpoints"] = shots_by
    if spec.train_sample:
        record["train_sample"] = {"n": len(sample), "lines": [it.lineno for it in sample],
                                  "sha256": file_sha256(spec.train)}  # fmt: skip
    out = spec.model_copy(update={"endpoints": new_configs})
    return Drawn(out, [_renumber(it, i) for i, it in enumerate(sample)], record)


def _renumber(item: EvalItem, index: int) -> EvalItem:
    return EvalItem(index, item.lineno, item.prompt, item.reference, item.key)


def reload_train_sample(record: dict[str, Any] | None) -> list[EvalItem]:
    """The training sample a run was made with, read again from its training file (which must be unchanged)."""
    sample = (record or {}).get("train_sample")
    if not sample:
        return []
    path = Path(record["train"])  # type: ignore[index]
    try:
        sha = file_sha256(path)
    except OSError:
        sha = None
    if sha != sample["sha256"]:
        raise EvaluationError(
            f"the training file {path} of this run's --train-sample is missing or has changed since it ran",
            hint="Restore the file to see the training-vs-held-out scores, or start a new evaluation.",
        )
    by_line = {it.lineno: it for it in load_items(path)[0]}
    return [_renumber(by_line[line], i) for i, line in enumerate(sample["lines"])]
