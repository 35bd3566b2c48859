"""LoRA adapters to serve: ``--adapter NAME=JOB_ID|PATH`` turned into checked folders, before any engine starts.

Checked here, not by the engine: the folder is a LoRA adapter, every LoRA weight fits a module of the served base
(an adapter trained on another base is refused with the module that does not fit, not a confusing engine error),
and its rank is one vLLM accepts. Both engines load only :class:`AdapterSpec` s built here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.errors import ServeError
from tuneport.jobs.store import open_store
from tuneport.local_backend.serving.weights import base_shapes, tensor_shapes
from tuneport.local_backend.training.export import BASE_IDENTITY_FILE, BASE_IDENTITY_KEYS
from tuneport.local_backend.training.train_config import VLLM_LORA_RANKS
from tuneport.models.resolve import TINY_MODEL_NAME

__all__ = [
    "AdapterError",
    "AdapterSpec",
    "VLLM_LORA_RANKS",
    "parse_adapter_arg",
    "job_adapter",
    "resolve_adapter",
    "check_adapter",
    "lora_rank_for",
]


class AdapterError(ServeError):
    """An adapter cannot be served: unknown name or job, not a LoRA folder, another base model, rank too big."""

    default_hint = "`tuneport jobs list` shows finished jobs; an adapter folder holds adapter_config.json."




@dataclass(frozen=True)
class AdapterSpec:
    """A checked LoRA adapter: the name requests use in ``model``, its folder and its rank."""

    name: str
    path: Path
    rank: int
    source: str = ""  # what the user gave (job id or path), for messages
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def vllm_compatible_reasons(self) -> list[str]:
        """Why vLLM would refuse this adapter (empty when it can load it)."""
        reasons = []
        if self.config.get("use_dora"):
            reasons.append("it is a DoRA adapter")
        if self.config.get("modules_to_save"):
            reasons.append(f"it has modules_to_save ({', '.join(self.config['modules_to_save'])})")
        if self.config.get("rank_pattern") or self.config.get("alpha_pattern"):
            reasons.append("it has per-module rank/alpha patterns")
        if self.rank > VLLM_LORA_RANKS[-1]:
            reasons.append(f"its rank {self.rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")
        return reasons


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-/]*")


def parse_adapter_arg(text: str) -> tuple[str | None, str]:
    """Split ``NAME=JOB_ID|PATH`` (or a bare ``JOB_ID|PATH``) into (name or None, source)."""
    name, sep, source = text.partition("=")
    if not sep:
        return None, text
    if not name or not source:
        raise AdapterError(
            f"--adapter {text!r}: expected NAME=JOB_ID or NAME=PATH",
            hint="For example --adapter support=ftjob-abc123 or --adapter support=./runs/adapter.",
        )
    if not _NAME.fullmatch(name):
        raise AdapterError(
            f"--adapter {text!r}: the name {name!r} may hold only letters, digits and . _ : - /",
            hint="Requests address the adapter by this name in `model`; pick a plain one.",
        )
    return name, source


def job_adapter(source: str, store: Any | None) -> tuple[Path, str] | None:
    """The adapter folder and model name of a local job given by id (``ftjob-...``) or fine-tuned model name."""
    if not (source.startswith("ftjob-") or source.startswith("ft:")):
        return None
    own = store is None
    store = store or open_store()
    try:
        row = store.find_job(source)
    finally:
        if own:
            store.close()
    if row is None:
        raise AdapterError(
            f"--adapter {source!r}: no such job in the store",
            hint="`tuneport jobs list` shows the ids of your jobs; or pass the adapter folder's path.",
        )
    if row.get("status") != "succeeded":
        raise AdapterError(
            f"job {row['id']} is {row.get('status')}, so it has no final adapter to serve",
            hint=f"`tuneport jobs wait {row['id']}` waits for it; `tuneport jobs checkpoints {row['id']}` lists "
            "checkpoints you can serve by path.",
        )
    outputs = row.get("outputs") or {}
    adapter = outputs.get("adapter")
    if not adapter:
        serve_path = outputs.get("serve_path") or outputs.get("model") or outputs.get("merged")
        raise AdapterError(
            f"job {row['id']} produced a full model, not a LoRA adapter"
            + (f" ({serve_path})" if serve_path else ""),
            hint="Serve it as the base model: `tuneport serve --model " + (serve_path or "PATH") + "`.",
        )
    return Path(adapter), row.get("fine_tuned_model") or row["id"]


def hosted_adapter(source: str, store: Any | None) -> tuple[Path, str] | None:
    """``BACKEND:JOB_ID`` (``together:ft-...``): the hosted job's adapter, downloaded into the store by its
    backend (:meth:`~tuneport.providers.base.Provider.download_adapter`); None for anything else."""
    from tuneport.providers.registry import get_provider, provider_names

    backend, sep, job_id = source.partition(":")
    if not sep or not job_id or backend not in provider_names():
        return None
    with get_provider(backend, **({"store": store} if store is not None else {})) as provider:
        return provider.download_adapter(job_id), f"{backend}-{job_id}"


def resolve_adapter(text: str, *, base_model: str, base_path: Path, store: Any | None = None) -> AdapterSpec:
    """Turn one ``--adapter`` value into a checked :class:`AdapterSpec` (see :func:`check_adapter`)."""
    name, source = parse_adapter_arg(text)
    job = hosted_adapter(source, store) or job_adapter(source, store)
    if job is not None:
        path, default_name = job
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise AdapterError(
                f"--adapter {text!r}: {path} does not exist (and it is not a job id: those start with ftjob-)",
                hint="Pass an adapter folder (it holds adapter_config.json) or the id of a finished local job.",
            )
        default_name = path.resolve().name
    return check_adapter(
        name or default_name, path, base_model=base_model, base_path=base_path, source=source
    )



_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def _same_base(declared: str, base_model: str, base_path: Path) -> bool:
    if not declared:
        return True
    if declared in (base_model, str(base_path)) or Path(declared).name == base_path.name:
        return True
    with contextlib.suppress(OSError):
        if Path(declared).expanduser().resolve() == base_path.resolve():
            return True
    return False


def _check_base_identity(where: str, folder: Path, base_model: str, base_path: Path) -> None:
    """Refuse an adapter whose recorded base (written at training) is another architecture or size than this base."""
    record = folder / BASE_IDENTITY_FILE
    base_config = base_path / "config.json"
    if not record.is_file() or not base_config.is_file():
        return
    try:
        trained_on = json.loads(record.read_text("utf-8"))
        served = json.loads(base_config.read_text("utf-8"))
    except (OSError, ValueError):
        return
    differs = [
        f"{key} {trained_on.get(key)!r} (served base: {served.get(key)!r})"
        for key in BASE_IDENTITY_KEYS
        if key in trained_on and trained_on.get(key) != served.get(key)
    ]
    if differs:
        raise AdapterError(
            f"{where} was trained on another kind of base model than {base_model!r}: " + "; ".join(differs),
            hint="Serve it with the base model it was trained on (its adapter_config.json names it), or pick an "
            f"adapter trained on {base_model}.",
        )


def check_adapter(
    name: str, path: str | os.PathLike[str], *, base_model: str, base_path: Path, source: str = ""
) -> AdapterSpec:
    """Check an adapter folder can run on ``base_path`` and return its spec.

    Checked: it is a LoRA folder (``adapter_config.json`` + ``adapter_model.safetensors``), every LoRA weight
    sits on a module the base has with matching input/output sizes (so an adapter trained for another base is
    refused here, not by a confusing engine error), and its declared base names this base when the declared base
    is a local folder or the built-in model (hub ids can differ from a local copy's folder name: those are only
    shape-checked).
    """
    folder = Path(path).expanduser()
    where = f"adapter {name!r} ({folder})"
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(
            f"{where} has no adapter_config.json, so it is not a LoRA adapter folder",
            hint="Point at the folder peft's save_pretrained wrote (a job's outputs.adapter).",
        )
    try:
        config = json.loads(config_file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{config_file} cannot be read as JSON: {exc}") from None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(
            f"{where} is a {config.get('peft_type')} adapter; only LoRA adapters can be served"
        )
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise AdapterError(
            f"{where} has no adapter_model.safetensors",
            hint="Save the adapter with safe_serialization=True (the default in recent peft).",
        )
    rank = int(config.get("r") or 0)
    declared = str(config.get("base_model_name_or_path") or "")
    if declared and not _same_base(declared, base_model, base_path):
        declared_path = Path(declared).expanduser()
        if declared == TINY_MODEL_NAME or base_model == TINY_MODEL_NAME or declared_path.is_dir():
            raise AdapterError(
                f"{where} was trained on {declared!r}, not on the served base model {base_model!r}",
                hint=f"Serve it with `--model {declared}`, or pick an adapter trained on {base_model}.",
            )
    _check_base_identity(where, folder, base_model, base_path)
    base = base_shapes(base_path)
    problems = []
    for key, shape in tensor_shapes(weights).items():
        m = _LORA_KEY.match(key)
        if not m or len(shape) != 2:
            continue
        module = m.group("module")
        base_shape = base.get(module + ".weight")
        if base_shape is None:
            problems.append(f"{module} (not in the base model)")
            continue
        if len(base_shape) != 2:
            continue
        out_dim, in_dim = base_shape
        ok = shape[1] == in_dim if m.group("ab") == "A" else shape[0] == out_dim
        if not ok:
            problems.append(f"{key} has shape {list(shape)} but the base's {module} is {list(base_shape)}")
        rank = max(rank, shape[0] if m.group("ab") == "A" else shape[1])
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise AdapterError(
            f"{where} does not fit the base model {base_model!r}: {shown}",
            hint=f"The adapter was trained on another base model ({declared or 'unknown'}); serve it with that "
            "model as --model.",
        )
    return AdapterSpec(
        name=name, path=folder.resolve(), rank=rank, source=source or str(folder), config=config
    )


def lora_rank_for(ranks: Iterable[int], requested: int | None = None) -> int:
    """The ``--max-lora-rank`` for these adapter ranks: the smallest vLLM rank that holds them all.

    A ``requested`` rank (the user's flag, or headroom for adapters loaded later) must be one vLLM accepts and
    at least the largest adapter's.
    """
    top = max(ranks, default=0)
    if requested is not None:
        if requested not in VLLM_LORA_RANKS:
            raise ServeError(
                f"--max-lora-rank {requested} is not a rank vLLM accepts ({', '.join(map(str, VLLM_LORA_RANKS))})",
                hint="Pick the smallest allowed rank at least as large as your adapters' ranks.",
            )
        if requested < top:
            raise AdapterError(
                f"an adapter has rank {top}, above --max-lora-rank {requested}",
                hint=f"Raise --max-lora-rank to {next((r for r in VLLM_LORA_RANKS if r >= top), top)}.",
            )
        return requested
    for r in VLLM_LORA_RANKS:
        if r >= max(top, 16):  # 16 is vLLM's own default: headroom for adapters loaded at runtime
            return r
    raise AdapterError(f"an adapter has rank {top}; vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}")
