"""Model resolution: a spec's ``model`` (built-in name, local folder, Hub id) -> the folder the local backend loads.

Why it lives here and not with the fixtures: training, serving and the job watcher all turn a model name into a
folder at run time, while ``tuneport.fixtures.tiny_model`` only holds the recipe that builds ``tiny-chat``. The
order is: built-in names (built on first use), then local folders with a ``config.json``, then Hugging Face Hub
ids (``org/name`` or ``org/name@revision``: the cached snapshot, or a download with progress on stderr; offline
and not cached is an error naming the fetch command, see :mod:`tuneport.models.hub`); anything else is an error
that says what to do. :func:`resolve_model_source` also says where the folder came from (the commit sha of a Hub
model), for the job's provenance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError
from tuneport.fixtures.families import FAMILIES, ensure_family, family_dir
from tuneport.fixtures.tiny_model import TINY_MODEL_NAME, ensure_tiny_model, tiny_model_dir
from tuneport.models.hub import fetch_hub_model, parse_hub_id

__all__ = [
    "BUILT_IN_MODELS",
    "TINY_MODEL_NAME",
    "BuiltInModel",
    "ResolvedModel",
    "is_built_in",
    "model_folder",
    "resolve_model",
    "resolve_model_source",
]


@dataclass(frozen=True)
class BuiltInModel:
    """A model tuneport makes itself: where its folder lives, and the recipe call that builds it there once."""

    folder: Callable[[], Path]
    ensure: Callable[[], Path]


BUILT_IN_MODELS: dict[str, BuiltInModel] = {
    TINY_MODEL_NAME: BuiltInModel(folder=tiny_model_dir, ensure=ensure_tiny_model),
    # The tiny random models of the fine-tuned families (tiny-llama3, tiny-qwen2, ...), each in its own format.
    **{
        name: BuiltInModel(folder=partial(family_dir, name), ensure=partial(ensure_family, name))
        for name in FAMILIES
    },
}

_FOLDER_HINT = "Point `model` at the folder that holds config.json, the weights and the tokenizer."
_OPENAI_PREFIXES = ("gpt-", "ft:", "o1", "o3", "o4")


def is_built_in(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is a built-in model name (such as ``tiny-chat``) rather than a path or another id."""
    return os.fspath(name) in BUILT_IN_MODELS


@dataclass(frozen=True)
class ResolvedModel:
    """A resolved ``model``: the folder, and what it is (``built_in``, ``folder`` or ``hub`` with its commit)."""

    path: Path
    kind: str
    provenance: dict[str, Any]


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Turn a spec's ``model`` into a local model folder (absolute), or raise :class:`SpecError` saying why not.

    A built-in name is built on first use; an existing folder with a ``config.json`` is used as it is; a Hub id
    comes from the cache or is downloaded into it.
    """
    return resolve_model_source(name_or_path).path


def resolve_model_source(name_or_path: str | os.PathLike[str]) -> ResolvedModel:
    """:func:`resolve_model`, with where the folder came from (for provenance: the Hub commit sha)."""
    text = os.fspath(name_or_path)
    built_in = BUILT_IN_MODELS.get(text)
    if built_in is not None:
        return ResolvedModel(built_in.ensure(), "built_in", {"source": "built_in", "name": text})
    folder = _local_folder(text)
    if folder is not None:
        return ResolvedModel(folder, "folder", {"source": "folder", "path": str(folder)})
    ref = parse_hub_id(text)
    if ref is not None and not text.startswith(_OPENAI_PREFIXES):
        hub = fetch_hub_model(ref, built_in=tuple(BUILT_IN_MODELS))
        return ResolvedModel(hub.path, "hub", hub.provenance())
    raise _unknown_model(text)


def model_folder(name_or_path: str | os.PathLike[str]) -> Path:
    """Where the folder of ``name_or_path`` is or will be, without building, reading or checking anything.

    For comparing models by folder (a job's ``model`` against the one a server loaded): a built-in name stands for
    its folder in tuneport's home, anything else for the path it spells.
    """
    text = os.fspath(name_or_path)
    built_in = BUILT_IN_MODELS.get(text)
    return built_in.folder() if built_in is not None else Path(text).expanduser()


def _local_folder(text: str) -> Path | None:
    """The model folder ``text`` names, None when nothing exists there; a file or a non-model folder is an error."""
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SpecError(
                f"model folder {path} has no config.json, so it is not a transformers model folder",
                hint=_FOLDER_HINT,
            )
        return path.resolve()
    if path.exists():
        raise SpecError(f"model {text!r} is a file, not a model folder", hint=_FOLDER_HINT)
    return None


def _unknown_model(text: str) -> SpecError:
    built_in = ", ".join(BUILT_IN_MODELS)
    hint = (
        f"Use the built-in {TINY_MODEL_NAME!r}, or download the model yourself (for example "
        "`huggingface-cli download ORG/NAME --local-dir DIR`) and set `model` to that folder."
    )
    if text.startswith(_OPENAI_PREFIXES):
        hint = f"{text!r} is an OpenAI model: train it with --backend openai. " + hint
    return SpecError(
        f"model {text!r} is not a local folder and not a built-in model (built-in: {built_in}), and not a "
        "Hugging Face Hub id (ORG/NAME or ORG/NAME@REVISION) either, so there is nothing to download; "
        "hub downloads are not available offline anyway",
        hint=hint,
    )
