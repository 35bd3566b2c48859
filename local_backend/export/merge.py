"""Fold a LoRA adapter into its base and prove the merged folder computes what base + adapter computes.

Merged models that are worse than the adapter are a common report (a merge in the wrong dtype, an adapter config
the merge reads differently, tied weights saved twice). So the merged folder is written to a temporary folder,
loaded back as a plain model, and its logits on real conversations are compared with base + adapter through
peft; only a folder within tolerance is moved into place, and the figures are returned for the report.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.training.export import save_full_model

__all__ = ["MergeCheck", "TOLERANCE", "merge_checked", "check_logits", "probe_ids"]

# Largest |merged - (base + adapter)| logit allowed, relative to the largest |logit| (at least 1), by the dtype the
# merged weights are saved in: float32 only reorders sums; half precisions round every merged weight.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}


@dataclass(frozen=True)
class MergeCheck:
    """How close the merged model's logits came to base + adapter's, on ``tokens`` probe tokens."""

    max_abs_diff: float
    scale: float
    tolerance: float
    dtype: str
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "relative_diff": self.max_abs_diff / self.scale,
                "tolerance": self.tolerance, "dtype": self.dtype, "tokens": self.tokens}  # fmt: skip


def probe_ids(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[list[int]]:
    """Each conversation as the token ids the model sees (chat template, generation prompt)."""
    out = []
    for conversation in conversations:
        ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def _logits(model: Any, sequences: list[list[int]]) -> list[Any]:
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids])).logits[0].float() for ids in sequences]


def check_logits(reference: list[Any], merged: list[Any], *, dtype: str, where: str) -> MergeCheck:
    """Compare logits sequence by sequence; :class:`ExportError` with the figures when beyond tolerance."""
    diff = max(float((a - b).abs().max()) for a, b in zip(reference, merged, strict=True))
    scale = max(1.0, max(float(a.abs().max()) for a in reference))
    tolerance = TOLERANCE.get(dtype, TOLERANCE["bfloat16"])
    check = MergeCheck(max_abs_diff=diff, scale=scale, tolerance=tolerance, dtype=dtype,
                       tokens=sum(int(a.shape[0]) for a in reference))  # fmt: skip
    if not diff / scale <= tolerance:  # also catches NaN
        raise ExportError(
            f"the merged model in {where} does not compute what base + adapter computes: its logits differ by "
            f"up to {diff:.3g} ({diff / scale:.2e} of the largest logit {scale:.3g}; {dtype} allows "
            f"{tolerance:.0e}) over {check.tokens} tokens",
            hint="Export --format adapter and serve base + adapter (`tuneport serve --adapter`), or report this "
            "adapter: its config is read differently by the merge than by peft.",
        )
    return check


def _saved_dtype(base: Path) -> str:
    import json

    config = json.loads((base / "config.json").read_text("utf-8"))
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def merge_checked(base_path: Path, adapter: Path, out_dir: Path, conversations: list[list[dict[str, str]]]) -> MergeCheck:
    """Write base + ``adapter`` merged into ``out_dir`` (a plain model folder) once its logits are checked."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    sequences = probe_ids(tokenizer, conversations)
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=torch.float32).eval()
    with_adapter = PeftModel.from_pretrained(base, str(adapter)).eval()
    reference = _logits(with_adapter, sequences)
    merged = with_adapter.merge_and_unload(safe_merge=True)
    dtype = _saved_dtype(base_path)
    merged = merged.to(getattr(torch, dtype, torch.float32))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.merging-", dir=out_dir.parent))
    try:
        save_full_model(merged, tokenizer, tmp)
        del merged, with_adapter, base
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32).eval()
        check = check_logits(reference, _logits(reloaded, sequences), dtype=dtype, where=str(out_dir))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return check
