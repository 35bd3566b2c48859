"""Keeping cost figures: saved in the store's ``costs`` table, tied to the dataset bytes they were computed from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tuneport.cost.figures import Figure

__all__ = ["record_figure", "file_sha256"]


def record_figure(
    store: Any, kind: str, figure: Figure, *, job_id: str | None = None, dataset_sha256: str | None = None
) -> dict[str, Any]:
    """Save a figure in the store's ``costs`` table, its inputs and formula alongside (never secrets)."""
    details = figure.to_dict()
    inputs = {k: v for k, v in details.items() if k not in ("amount", "currency", "display")}
    return store.add_cost(kind, figure.amount, currency=figure.currency, inputs=inputs, job_id=job_id,
                          dataset_sha256=dataset_sha256)  # fmt: skip


def file_sha256(path: str | Path) -> str:
    """The dataset's sha256, to tie a recorded estimate to the exact bytes it was computed from."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
