"""What ``spec check`` says about a local job's base model: where it will come from, and whether it will fit.

Nothing is downloaded or loaded: a Hub id is looked up in the cache (or asked about on the Hub, when online), the
memory estimate reads config.json. Torch is not imported, so the check stays quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneport.errors import SpecError
from tuneport.models.checks import read_model_config
from tuneport.models.fit import FitSettings, check_fit
from tuneport.models.hub import parse_hub_id, plan_hub_model
from tuneport.models.resolve import BUILT_IN_MODELS, model_folder

__all__ = ["model_preview"]


def _device(local: Any) -> str:
    from tuneport.models.fit import _gpu_free

    if local.device in ("cpu", "cuda"):
        return local.device
    return "cuda" if _gpu_free() is not None else "cpu"


def model_preview(spec: Any, batch_size: int | None = None) -> dict[str, Any]:
    """``{"source": ..., "fit": ...}`` lines for the spec's model (either may be None when unknown).

    ``batch_size``: the per-device batch of the local plan (what "auto" became); else the spec's number, or 8.
    """
    model = spec.model
    folder: Path | None = None
    if model in BUILT_IN_MODELS:
        folder = model_folder(model)
        source = f"{model}: built-in" + ("" if (folder / "config.json").is_file() else ", built on first use")
    elif Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
        source = f"{model}: local folder"
    elif (ref := parse_hub_id(model)) is not None:
        plan = plan_hub_model(ref)
        source, folder = plan.describe(), plan.path
    else:
        return {"source": None, "fit": None}
    fit = None
    if folder is not None and (folder / "config.json").is_file():
        local = spec.local
        device = _device(local)
        dtype = local.dtype if local.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
        batch = batch_size or spec.hyperparameters.batch_size
        tokens = local.max_seq_length
        settings = FitSettings(
            dtype=dtype,
            finetuning_type=local.finetuning_type,
            lora_r=local.lora_r,
            target_modules=tuple(local.target_modules)
            if isinstance(local.target_modules, list)
            else local.target_modules,
            batch_size=batch if isinstance(batch, int) else 8,
            tokens=tokens,
            gradient_checkpointing=local.gradient_checkpointing,
            device=device,
        )
        try:
            result = check_fit(read_model_config(folder), settings)
        except SpecError as exc:
            fit = f"memory: no estimate ({exc.message})"
        else:
            fit = result.summary() + (
                "" if result.fits else " -- would fit: " + "; ".join(result.suggestions)
            )
    return {"source": source, "fit": fit}
