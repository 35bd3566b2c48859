"""Move a hosted fine-tuning job to this machine: its data, method and hyperparameters as a local spec.

OpenAI is winding down self-serve fine-tuning, and its fine-tuned models retire with their base models. What a
user trained there is a training file, a validation file, a method with hyperparameters, a seed: everything needed
to train the same thing on an open model. :func:`import_openai_job` downloads the files (``GET /files/{id}/content``)
and writes ``spec.yaml`` next to them, ready for ``tuneport train DIR/spec.yaml --backend local``.

The hosted base model (``gpt-4o-mini-...``) cannot run locally, so the spec names a local base model
(``base_model``, default ``tiny-chat``) and keeps where it came from in ``metadata`` (``imported_from``,
``openai_job_id``, ``openai_model``, ``openai_fine_tuned_model``), so reports can pair the two later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.errors import ProviderError, SpecError

__all__ = ["ImportResult", "import_openai_job", "spec_from_openai_job"]

SPEC_NAME = "spec.yaml"
_FILES = {"training_file": "training.jsonl", "validation_file": "validation.jsonl"}
#: metadata keys tuneport adds on the hosted side; they mean nothing for the local job
_DROP_METADATA = ("tuneport_client_key",)


@dataclass
class ImportResult:
    """What was written, and what could not be carried over."""

    spec_path: Path
    files: dict[str, Path]
    job: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": str(self.spec_path),
            "files": {k: str(v) for k, v in self.files.items()},
            "openai_job_id": self.job.get("id"),
            "openai_model": self.job.get("model"),
            "openai_fine_tuned_model": self.job.get("fine_tuned_model"),
            "status": self.job.get("status"),
            "notes": list(self.notes),
            "next": f"tuneport train {self.spec_path} --backend local",
        }


def _suffix_of(job: Any) -> str | None:
    """The suffix the user chose: ``user_provided_suffix`` when the API sends it, else from the model id."""
    suffix = getattr(job, "user_provided_suffix", None)
    if isinstance(suffix, str) and suffix:
        return suffix
    name = job.fine_tuned_model or ""
    parts = name.split(":")
    # ft:BASE:ORG:SUFFIX:ID (the suffix part is empty when none was given)
    if name.startswith("ft:") and len(parts) == 5 and parts[3]:
        return parts[3]
    return None


def spec_from_openai_job(
    job: Any, *, base_model: str, files: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The local spec (as a dict) for a hosted job, and notes on what was changed or left out."""
    notes: list[str] = []
    method = dict(job.method or {})
    kind = method.get("type") or "supervised"
    if kind not in ("supervised", "dpo"):
        raise SpecError(
            f"job {job.id} uses the {kind!r} method; tuneport trains supervised and dpo jobs locally",
            hint="Import a supervised or DPO job.",
        )
    section = method.get(kind) or {}
    hyper = dict((section.get("hyperparameters") if isinstance(section, dict) else None) or {})
    if not hyper and job.hyperparameters:  # jobs created with the deprecated top-level hyperparameters
        hyper = dict(job.hyperparameters)
    hyper = {k: v for k, v in hyper.items() if v is not None}
    metadata = {k: v for k, v in (job.metadata or {}).items() if k not in _DROP_METADATA}
    provenance = {
        "imported_from": "openai",
        "openai_job_id": job.id,
        "openai_model": job.model,
    }
    if job.fine_tuned_model:
        provenance["openai_fine_tuned_model"] = job.fine_tuned_model
    for key in provenance:
        metadata.pop(key, None)
    room = 16 - len(provenance)
    if len(metadata) > room:
        dropped = sorted(metadata)[room:]
        notes.append(f"metadata keys left out (a spec holds 16): {', '.join(dropped)}")
        metadata = {k: metadata[k] for k in sorted(metadata)[:room]}
    metadata.update({k: str(v)[:512] for k, v in provenance.items()})
    spec: dict[str, Any] = {
        "model": base_model,
        "training_file": files["training_file"],
        "method": {"type": kind, kind: {"hyperparameters": hyper}},
        "backend": "local",
        "metadata": metadata,
    }
    if "validation_file" in files:
        spec["validation_file"] = files["validation_file"]
    suffix = _suffix_of(job)
    if suffix:
        spec["suffix"] = suffix
    if job.seed is not None:
        spec["seed"] = job.seed
    if job.integrations:
        notes.append(
            "integrations (e.g. Weights & Biases) were not carried over; add them back if you want them"
        )
    if "learning_rate_multiplier" in hyper:
        notes.append(
            "learning_rate_multiplier is kept as is: locally it scales tuneport's base learning rate "
            "(see docs/spec.md, and `tuneport spec check SPEC` for what it maps to); set local.learning_rate for an absolute rate"
        )
    return spec, notes


def import_openai_job(
    job_id: str,
    output_dir: str | os.PathLike[str],
    *,
    base_model: str = "tiny-chat",
    provider: Any = None,
    overwrite: bool = False,
) -> ImportResult:
    """Download a hosted job's files and write a local spec for it into ``output_dir``.

    ``provider``: an :class:`~tuneport.providers.openai.OpenAIProvider` (default: one from the environment).
    Refuses to replace an existing ``spec.yaml`` or data file unless ``overwrite``.
    """
    import yaml

    from tuneport.spec.jobspec import JobSpec, load_spec

    out = Path(output_dir).expanduser()
    own = provider is None
    if own:
        from tuneport.providers.openai import OpenAIProvider

        provider = OpenAIProvider(store=False)
    try:
        job = provider.get(job_id)
        wanted = {k: getattr(job, k) for k in _FILES if getattr(job, k)}
        targets = {k: out / _FILES[k] for k in wanted}
        spec_path = out / SPEC_NAME
        if not overwrite:
            existing = [str(p) for p in (spec_path, *targets.values()) if p.exists()]
            if existing:
                raise SpecError(
                    f"{'these files already exist' if len(existing) > 1 else 'this file already exists'}: "
                    f"{', '.join(existing)}",
                    hint="Pick another --output folder, or pass --force to replace them.",
                )
        out.mkdir(parents=True, exist_ok=True)
        notes: list[str] = []
        if job.status != "succeeded":
            notes.append(f"the hosted job is {job.status}: its data and settings are imported all the same")
        for key, file_id in wanted.items():
            try:
                content = provider.http.request("GET", f"files/{file_id}/content", parse=lambda r: r.content)
            except ProviderError as exc:
                raise ProviderError(
                    f"cannot download the {key.replace('_', ' ')} {file_id} of job {job_id}: {exc.message}",
                    hint="OpenAI deletes files on request only; check it still exists with GET /v1/files.",
                    status_code=exc.status_code,
                    code=exc.code,
                ) from exc
            tmp = targets[key].with_name(f".{targets[key].name}.partial")
            tmp.write_bytes(content)
            os.replace(tmp, targets[key])
        spec_dict, more = spec_from_openai_job(
            job, base_model=base_model, files={k: _FILES[k] for k in wanted}
        )
        notes.extend(more)
        JobSpec.from_dict(spec_dict, base_dir=out, source=str(spec_path), check_files=True)
        header = (
            f"# Imported from OpenAI fine-tuning job {job.id} (base model {job.model}).\n"
            f"# Train it here: tuneport train {spec_path} --backend local\n"
        )
        body = yaml.safe_dump(spec_dict, sort_keys=False, allow_unicode=True)
        spec_path.write_text(header + body, "utf-8")
        load_spec(spec_path)  # what `tuneport train` will read: fail here, not there
        return ImportResult(
            spec_path=spec_path,
            files=targets,
            job=job.to_api(),
            notes=notes,
        )
    finally:
        if own:
            provider.close()
