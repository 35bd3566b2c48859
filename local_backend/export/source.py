"""What an export starts from: a finished local job's base model, its adapter or full model, and its system prompt.

Checked here, before anything long runs: the job exists, is local and succeeded; its base model folder is still
there; its adapter fits that base (an adapter trained on another base is refused with the module that does not
fit, using the same check as ``tuneport serve``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneport.errors import ServeError
from tuneport.jobs.store import open_store
from tuneport.local_backend.export.errors import ExportError
from tuneport.local_backend.serving.adapters import check_adapter

__all__ = ["ExportSource", "job_source", "source_from_folders", "common_system_prompt"]


@dataclass(frozen=True)
class ExportSource:
    """A job's outputs as an export needs them. ``adapter`` is None for a full fine-tune (then ``model`` is set)."""

    job_id: str
    base_model: str  # the spec's ``model`` (a built-in name or a folder)
    base_path: Path
    adapter: Path | None
    model: Path | None
    system_prompt: str | None
    fine_tuned_model: str | None = None


def job_source(job: str, *, store: Any | None = None) -> ExportSource:
    """The :class:`ExportSource` of ``job`` (an ``ftjob-...`` id or its ``ft:...`` model name)."""
    own = store is None
    store = store or open_store()
    try:
        row = store.find_job(job)
    finally:
        if own:
            store.close()
    if row is None:
        raise ExportError(
            f"no job {job!r} in the local store",
            hint="`tuneport jobs list` shows your jobs; export takes a job id (ftjob-...) or its ft: model name.",
        )
    if row.get("backend") != "local":
        raise ExportError(
            f"job {row['id']} was trained by the {row.get('backend')} backend; export works on local jobs",
            hint=f"Hosted models stay on {row.get('backend')}: `tuneport jobs download {row['id']}` fetches an "
            "adapter where the backend hands it out, and `tuneport serve --adapter PATH` serves it.",
        )
    if row.get("status") != "succeeded":
        raise ExportError(
            f"job {row['id']} is {row.get('status')}: only a succeeded job has a final model to export",
            hint=f"`tuneport jobs wait {row['id']}` waits for a running job; `tuneport jobs events {row['id']}` "
            "says why one failed.",
        )
    outputs = row.get("outputs") or {}
    base_path = outputs.get("model_path")
    if not base_path:
        raise ExportError(f"job {row['id']} recorded no base model folder (outputs.model_path)")
    system = None
    training = outputs.get("training_path")
    if training and Path(training).is_file():
        system = common_system_prompt(Path(training))
    return source_from_folders(
        job_id=row["id"],
        base_model=row.get("model") or str(base_path),
        base_path=Path(base_path),
        adapter=Path(outputs["adapter"]) if outputs.get("adapter") else None,
        model=Path(outputs["model"]) if outputs.get("model") else None,
        system_prompt=system,
        fine_tuned_model=row.get("fine_tuned_model"),
    )


def source_from_folders(
    *,
    job_id: str,
    base_model: str,
    base_path: Path,
    adapter: Path | None,
    model: Path | None,
    system_prompt: str | None = None,
    fine_tuned_model: str | None = None,
) -> ExportSource:
    """Check the folders of a job's outputs and return them as an :class:`ExportSource`."""
    if adapter is None and model is None:
        raise ExportError(f"job {job_id} recorded neither an adapter nor a model folder")
    if adapter is not None:
        if not (base_path / "config.json").is_file():
            raise ExportError(
                f"the base model of job {job_id} is gone: {base_path} has no config.json",
                hint="Rebuild or restore that folder (tiny-chat rebuilds itself on `tuneport train`), then export.",
            )
        if not adapter.is_dir():
            raise ExportError(f"the adapter folder of job {job_id} is gone: {adapter}")
        try:
            check_adapter(job_id, adapter, base_model=base_model, base_path=base_path, source=job_id)
        except ServeError as exc:
            raise ExportError(
                f"job {job_id}'s adapter does not belong to its base model: {exc.message}",
                hint="Export the job that trained this adapter, or point the job at the base it was trained on.",
            ) from None
    if model is not None and not (model / "config.json").is_file():
        raise ExportError(f"the model folder of job {job_id} is gone: {model} has no config.json")
    return ExportSource(
        job_id=job_id, base_model=base_model, base_path=base_path, adapter=adapter, model=model,
        system_prompt=system_prompt, fine_tuned_model=fine_tuned_model,
    )  # fmt: skip


def common_system_prompt(training_file: Path, *, limit: int = 100_000) -> str | None:
    """The system prompt the job was trained with: the system message that opens every training example.

    None when any example opens without one or with another text: then no prompt is the model's default, and
    guessing one would change what it answers. Preference (DPO) records keep their messages under ``input``.
    """
    prompt: str | None = None
    with training_file.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if n >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                return None
            messages = record.get("messages") or (record.get("input") or {}).get("messages") or []
            first = messages[0] if messages else {}
            content = first.get("content") if first.get("role") == "system" else None
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            if not isinstance(content, str) or (prompt is not None and content != prompt):
                return None
            prompt = content
    return prompt
