"""Which checkpoint a run can resume from: the newest one whose files are all intact.

A checkpoint folder can be damaged after HF wrote it completely (a disk that filled up, a copy cut short, a bad
sector): ``trainer_state.json`` is there, but ``optimizer.pt`` is truncated and loading it fails, every time.
Resuming then falls back to the newest checkpoint whose files check out, and the damaged folder is renamed
``damaged-checkpoint-N`` (kept for inspection, no longer picked up by resume or by HF's checkpoint rotation).

The checks read the files without torch: torch's ``.pt``/``.pth``/``.bin`` files are zip archives whose every
member has a CRC (:meth:`zipfile.ZipFile.testzip`), safetensors files state their own length in their header,
and JSON parses. Files in torch's legacy (non-zip) format cannot be checked this way and are trusted.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path

__all__ = ["checkpoint_problem", "resume_point", "set_aside", "checkpoint_step"]

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
_WEIGHTS = (
    "adapter_model.safetensors",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
)
_ZIP_MAGIC = b"PK\x03\x04"


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """N for a ``checkpoint-N`` folder, else None."""
    match = _CHECKPOINT.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def checkpoint_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why HF could not resume from ``folder`` (a file missing or damaged), or None when it can."""
    path = Path(folder)
    if not path.is_dir():
        return "it is not a checkpoint folder (no such folder)"
    if not (path / "trainer_state.json").is_file():
        return "it is not a checkpoint folder (no trainer_state.json)"
    missing = [name for name in _REQUIRED if not (path / name).is_file()]
    if not any((path / name).is_file() for name in _WEIGHTS):
        missing.append("the weights (" + " or ".join(_WEIGHTS[:2]) + ")")
    if missing:
        return f"{', '.join(missing)} missing"
    for file in sorted(path.iterdir()):
        if file.is_file():
            problem = _file_problem(file)
            if problem is not None:
                return f"{file.name} is damaged ({problem})"
    return None


def _file_problem(file: Path) -> str | None:
    suffix = file.suffix
    try:
        if suffix == ".json":
            json.loads(file.read_text("utf-8"))
        elif suffix == ".safetensors":
            return _safetensors_problem(file)
        elif suffix in (".pt", ".pth", ".bin"):
            return _torch_file_problem(file)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _safetensors_problem(file: Path) -> str | None:
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes: shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"header of {n} bytes in a {size}-byte file"
        header = json.loads(fh.read(n))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        return f"{size} bytes, the header describes {8 + n + end}"
    return None


def _torch_file_problem(file: Path) -> str | None:
    with open(file, "rb") as fh:
        magic = fh.read(4)
    if magic != _ZIP_MAGIC:
        return None if magic else "empty file"  # torch's legacy pickle format: not checkable without loading
    try:
        with zipfile.ZipFile(file) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        return f"truncated or corrupt archive: {exc}"
    return f"member {bad} fails its CRC check" if bad is not None else None


def resume_point(checkpoints_dir: str | os.PathLike[str]) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest intact checkpoint under ``checkpoints_dir`` (or None), and the newer ones skipped, with why.

    Folders without ``trainer_state.json`` are ones a kill interrupted mid-save (HF writes it last): they are
    passed over silently, as they always were, not reported as damaged.
    """
    folder = Path(checkpoints_dir)
    found: list[tuple[int, Path]] = []
    if folder.is_dir():
        for child in folder.iterdir():
            step = checkpoint_step(child)
            if step is not None and (child / "trainer_state.json").is_file():
                found.append((step, child))
    skipped: list[tuple[Path, str]] = []
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged ``checkpoint-N`` to ``damaged-checkpoint-N`` (a number suffix if that exists)."""
    target = checkpoint.with_name(f"damaged-{checkpoint.name}")
    n = 1
    while target.exists():
        n += 1
        target = checkpoint.with_name(f"damaged-{checkpoint.name}-{n}")
    os.replace(checkpoint, target)
    return target
