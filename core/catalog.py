"""The model and price catalog: shipped as data, every number with its ``source`` and ``as_of`` date.

A user file overrides or extends it: ``$TUNEPORT_HOME/catalog.json`` (or the path in ``TUNEPORT_CATALOG``), with the
same shape; models are matched by ``id`` and replace the shipped entry whole. Prices are :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError

__all__ = ["ModelInfo", "lookup_model", "base_model_of", "list_models", "wind_down"]

# Encodings of model families, for models the catalog does not list (e.g. a newer snapshot).
_FAMILY_ENCODINGS = [
    (re.compile(r"^(gpt-4\.1|gpt-4o|gpt-4\.5|gpt-5|o\d|chatgpt-4o)"), "o200k_base"),
    (re.compile(r"^(gpt-4|gpt-3\.5|text-embedding-3|text-embedding-ada-002)"), "cl100k_base"),
    (re.compile(r"^(davinci-002|babbage-002)"), "cl100k_base"),
]


@dataclass(frozen=True)
class ModelInfo:
    """What tuneport knows about one fine-tunable model."""

    id: str
    encoding: str
    methods: tuple[str, ...]
    max_example_tokens: int
    training_per_1m: dict[str, Decimal]
    inference_per_1m: dict[str, Decimal]
    source: str
    as_of: str
    aliases: tuple[str, ...] = field(default=())


def _user_catalog_path() -> Path | None:
    env = os.environ.get("TUNEPORT_CATALOG")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("TUNEPORT_HOME")
    if home:
        candidate = Path(home).expanduser() / "catalog.json"
        if candidate.exists():
            return candidate
    return None


def _parse_model(entry: dict[str, Any], origin: str) -> ModelInfo:
    try:
        return ModelInfo(
            id=entry["id"],
            encoding=entry["encoding"],
            methods=tuple(entry.get("methods", ["supervised"])),
            max_example_tokens=int(entry["max_example_tokens"]),
            training_per_1m={k: Decimal(str(v)) for k, v in entry.get("training_per_1m", {}).items()},
            inference_per_1m={k: Decimal(str(v)) for k, v in entry.get("inference_per_1m", {}).items()},
            source=entry["source"],
            as_of=entry["as_of"],
            aliases=tuple(entry.get("aliases", ())),
        )
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise SpecError(
            f"{origin}: catalog entry {entry.get('id', '?')!r} is malformed ({exc!r})",
            hint="Every model needs id, encoding, max_example_tokens, source and as_of; prices are decimal strings.",
        ) from None


@lru_cache(maxsize=4)
def _load(user_path: str | None) -> tuple[dict[str, ModelInfo], dict[str, Any]]:
    shipped = json.loads(resources.files("tuneport").joinpath("resources/openai_models.json").read_text("utf-8"))
    models = {m["id"]: _parse_model(m, "shipped catalog") for m in shipped["models"]}
    wind = dict(shipped.get("wind_down", {}))
    if user_path:
        try:
            user = json.loads(Path(user_path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise SpecError(f"{user_path}: cannot read the user catalog ({exc})", hint="Fix or remove the file.") from None
        for m in user.get("models", []):
            models[m["id"]] = _parse_model(m, user_path)
        wind.update(user.get("wind_down", {}))
    return models, wind


def _catalog() -> tuple[dict[str, ModelInfo], dict[str, Any]]:
    path = _user_catalog_path()
    return _load(str(path) if path else None)


def base_model_of(model: str) -> str:
    """The base model of a fine-tuned id: ``ft:gpt-4.1-mini-2025-04-14:org::abc`` -> ``gpt-4.1-mini-2025-04-14``.

    Checkpoint ids (``ft:...:ckpt-step-10``) resolve the same way. Other ids are returned unchanged.
    """
    if model.startswith("ft:"):
        parts = model.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    return model


def lookup_model(model: str) -> ModelInfo | None:
    """Catalog entry for a model id, alias, dated snapshot or ``ft:`` id; None when unknown."""
    models, _ = _catalog()
    base = base_model_of(model)
    if base in models:
        return models[base]
    for info in models.values():
        if base in info.aliases:
            return info
    return None


def encoding_for(model: str) -> str | None:
    """The tiktoken encoding name for a model (resolving ``ft:`` ids to their base first), or None if unknown."""
    info = lookup_model(model)
    if info is not None:
        return info.encoding
    base = base_model_of(model)
    for pattern, encoding in _FAMILY_ENCODINGS:
        if pattern.match(base):
            return encoding
    return None


def list_models() -> list[ModelInfo]:
    """Every catalog model, shipped and user-supplied."""
    return list(_catalog()[0].values())


def wind_down() -> dict[str, Any]:
    """The fine-tuning wind-down facts (dates, note, source, as_of)."""
    return dict(_catalog()[1])
