"""What a model or adapter folder holds, read from safetensors headers alone (no weights loaded, no torch).

Serving checks (does an adapter fit this base? does the model fit in memory?) need tensor names, shapes and
dtypes before any engine starts; a safetensors header gives all three in a few kilobytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

__all__ = ["safetensors_header", "tensor_shapes", "weight_files", "base_shapes"]


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file: tensor name -> {dtype, shape, offsets} (and ``__metadata__``)."""
    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(length))


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header."""
    return {k: tuple(v["shape"]) for k, v in safetensors_header(path).items() if k != "__metadata__"}


def weight_files(model_path: Path) -> list[Path]:
    """The safetensors files of a model folder (sharded via the index, or every ``*.safetensors``)."""
    index = model_path / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text("utf-8"))["weight_map"].values()))
        return [model_path / n for n in names]
    return sorted(model_path.glob("*.safetensors"))


def base_shapes(base_path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape across a model folder's weight files."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in weight_files(base_path):
        shapes.update(tensor_shapes(f))
    return shapes
