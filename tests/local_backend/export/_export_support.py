"""Helpers for the export tests: a job row in the store pointing at given folders."""

from __future__ import annotations

from pathlib import Path


def add_job(store, job_id: str, *, base: Path, adapter: Path | None = None, model: Path | None = None,
            status: str = "succeeded", backend: str = "local", training: Path | None = None) -> str:  # fmt: skip
    outputs = {"model_path": str(base)}
    if adapter is not None:
        outputs["adapter"] = str(adapter)
    if model is not None:
        outputs["model"] = str(model)
    if training is not None:
        outputs["training_path"] = str(training)
    store.insert_job(job_id, backend=backend, status=status, model=str(base), outputs=outputs,
                     fine_tuned_model=f"ft:tiny:local:{job_id[-8:]}")  # fmt: skip
    return job_id
