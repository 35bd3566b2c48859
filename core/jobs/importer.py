"""Move a hosted fine-tuning job to this machine: its data, method and hyperparameters as a local spec.

Hosted fine-tuned models retire with their base models (OpenAI's with its wind-down, Azure's on Microsoft's
schedule). What a user trained there is a training file, a validation file, a method with hyperparameters, a seed:
everything needed to train the same thing on an open model. :func:`import_job` asks the job's backend for the
job, for the spec fields it was created with (:meth:`~tuneport.providers.base.Provider.job_spec_fields`) and for
its files (:meth:`~tuneport.providers.base.Provider.file_content`), and writes ``spec.yaml`` next to the files,
ready for ``tuneport train DIR/spec.yaml --backend local``. Nothing here knows a backend: each backend's import
is its own provider's.

The hosted base model (``gpt-4o-mini-...``) may not run locally, so the spec names a local base model
(``base_model``, default ``tiny-chat``) and keeps where it came from in ``metadata`` (``imported_from``,
``{backend}_job_id``, ``{backend}_model``, ``{backend}_fine_tuned_model``), so reports can pair the two later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneport.cost.retirements import warn_if_retiring
from tuneport.errors import NotSupportedError, ProviderError, SpecError

__all__ = ["ImportResult", "import_job", "import_openai_job", "spec_from_job"]

SPEC_NAME = "spec.yaml"
_FILES = {"training_file": "training.jsonl", "validation_file": "validation.jsonl"}
#: metadata keys tuneport adds on the hosted side; they mean nothing for the local job
_DROP_METADATA = ("tuneport_client_key",)
#: a spec's metadata holds at most this many keys, each value at most 512 characters
_METADATA_KEYS, _METADATA_VALUE = 16, 512


@dataclass
class ImportResult:
    """What was written, and what could not be carried over."""

    spec_path: Path
    files: dict[str, Path]
    job: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    backend: str = "openai"

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": str(self.spec_path),
            "files": {k: str(v) for k, v in self.files.items()},
            "backend": self.backend,
            f"{self.backend}_job_id": self.job.get("id"),
            f"{self.backend}_model": self.job.get("model"),
            f"{self.backend}_fine_tuned_model": self.job.get("fine_tuned_model"),
            "status": self.job.get("status"),
            "notes": list(self.notes),
            "next": f"tuneport train {self.spec_path} --backend local",
        }


def spec_from_job(
    job: Any, fields: dict[str, Any], *, backend: str, base_model: str, files: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The local spec (as a dict) for a hosted ``job`` whose backend read ``fields`` from it
    (:meth:`~tuneport.providers.base.Provider.job_spec_fields`), and notes on what was changed or left out."""
    notes: list[str] = []
    method = fields["method"]
    kind = method.get("type") or "supervised"
    if kind not in ("supervised", "dpo"):
        raise SpecError(
            f"job {job.id} uses the {kind!r} method; tuneport trains supervised and dpo jobs locally",
            hint="Import a supervised or DPO job.",
        )
    hyper = dict((method.get(kind) or {}).get("hyperparameters") or {})
    metadata = {k: v for k, v in (fields.get("metadata") or {}).items() if k not in _DROP_METADATA}
    provenance = {"imported_from": backend, f"{backend}_job_id": job.id, f"{backend}_model": job.model}
    if job.fine_tuned_model:
        provenance[f"{backend}_fine_tuned_model"] = job.fine_tuned_model
    for key in provenance:
        metadata.pop(key, None)
    room = _METADATA_KEYS - len(provenance)
    if len(metadata) > room:
        dropped = sorted(metadata)[room:]
        notes.append(f"metadata keys left out (a spec holds {_METADATA_KEYS}): {', '.join(dropped)}")
        metadata = {k: metadata[k] for k in sorted(metadata)[:room]}
    metadata.update({k: str(v)[:_METADATA_VALUE] for k, v in provenance.items()})
    spec: dict[str, Any] = {
        "model": base_model,
        "training_file": files["training_file"],
        "method": {"type": kind, kind: {"hyperparameters": hyper}},
        "backend": "local",
        "metadata": metadata,
    }
    if "validation_file" in files:
        spec["validation_file"] = files["validation_file"]
    if fields.get("suffix"):
        spec["suffix"] = fields["suffix"]
    if fields.get("seed") is not None:
        spec["seed"] = fields["seed"]
    local = dict(fields.get("local") or {})
    if local:
        spec["local"] = local
        notes.append(f"kept what the {backend} job ran with: " + ", ".join(f"local.{k}" for k in local))
    if fields.get("integrations"):
        notes.append(
            "integrations (e.g. Weights & Biases) were not carried over; add them back if you want them"
        )
    if "learning_rate_multiplier" in hyper and "learning_rate" not in local:
        notes.append(
            "learning_rate_multiplier is kept as is: locally it scales tuneport's base learning rate "
            "(see docs/spec.md, and `tuneport spec check SPEC` for what it maps to); set local.learning_rate for an absolute rate"
        )
    return spec, notes


def import_job(
    backend: str,
    job_id: str,
    output_dir: str | os.PathLike[str],
    *,
    base_model: str = "tiny-chat",
    provider: Any = None,
    overwrite: bool = False,
    local_files: dict[str, str | os.PathLike[str]] | None = None,
) -> ImportResult:
    """Download a hosted job's files and write a local spec for it into ``output_dir``.

    ``provider``: the backend's Provider (default: ``backend``'s, from the environment, recording nothing).
    ``local_files`` (``{"training_file": PATH, ...}``): copies of the job's files to use instead of downloading
    them (a backend that does not hand its training files out, Azure), each checked against the size the
    backend holds. Refuses to replace an existing ``spec.yaml`` or data file unless ``overwrite``; nothing is
    written when the job or its files cannot be read.
    """
    import yaml

    from tuneport.providers.registry import get_provider
    from tuneport.spec.jobspec import JobSpec, load_spec

    out = Path(output_dir).expanduser()
    own = provider is None
    if own:
        provider = get_provider(backend, store=False)
    try:
        job = provider.get(job_id)
        warn_if_retiring(job.model, type(provider))
        fields = provider.job_spec_fields(job)
        wanted = {k: getattr(job, k) for k in _FILES if getattr(job, k)}
        if "training_file" not in wanted:
            raise ProviderError(f"job {job_id} on {provider.label or backend} names no training file to import")
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
        contents: dict[str, bytes] = {}
        for key, file_id in wanted.items():  # every file read before anything is written
            if key in (local_files or {}):
                contents[key] = _local_copy(provider, key, file_id, Path((local_files or {})[key]))
                continue
            try:
                contents[key] = provider.file_content(file_id)
            except NotSupportedError:  # the backend keeps its files: its error says what to give instead
                raise
            except ProviderError as exc:
                raise ProviderError(
                    f"cannot download the {key.replace('_', ' ')} {file_id} of job {job_id} from "
                    f"{provider.label or backend}: {exc.message}",
                    hint=f"Files stay until deleted; check it still exists (`tuneport import {backend}` needs it).",
                    status_code=exc.status_code,
                    code=exc.code,
                ) from exc
        notes: list[str] = []
        if job.status != "succeeded":
            notes.append(f"the hosted job is {job.status}: its data and settings are imported all the same")
        spec_dict, more = spec_from_job(
            job, fields, backend=provider.name or backend, base_model=base_model,
            files={k: _FILES[k] for k in wanted},
        )  # fmt: skip
        notes.extend(more)
        out.mkdir(parents=True, exist_ok=True)
        for key, content in contents.items():
            tmp = targets[key].with_name(f".{targets[key].name}.partial")
            tmp.write_bytes(content)
            os.replace(tmp, targets[key])
        JobSpec.from_dict(spec_dict, base_dir=out, source=str(spec_path), check_files=True)
        header = (
            f"# Imported from {provider.label or backend} fine-tuning job {job.id} (base model {job.model}).\n"
            f"# Train it here: tuneport train {spec_path} --backend local\n"
        )
        body = yaml.safe_dump(spec_dict, sort_keys=False, allow_unicode=True)
        spec_path.write_text(header + body, "utf-8")
        load_spec(spec_path)  # what `tuneport train` will read: fail here, not there
        return ImportResult(spec_path=spec_path, files=targets, job=job.to_api(), notes=notes,
                            backend=provider.name or backend)  # fmt: skip
    finally:
        if own:
            provider.close()


def _local_copy(provider: Any, key: str, file_id: str, path: Path) -> bytes:
    """The bytes of ``path``, given as the copy of the job's ``key`` (``file_id``), if its size is the one the
    backend holds; a clear error otherwise (a different file would train a different model)."""
    flag = f"--{key.replace('_file', '')}-file"
    try:
        content = path.expanduser().read_bytes()
    except OSError as exc:
        raise SpecError(f"{flag} {path}: cannot be read ({exc.strerror})") from None
    remote = provider.get_file(file_id)
    if remote.bytes is not None and remote.bytes != len(content):
        raise SpecError(
            f"{flag} {path}: {len(content)} bytes, but the job's {key.replace('_', ' ')} {file_id} has "
            f"{remote.bytes}: it is not the file the job was trained on",
            hint="Give the file that was uploaded for the job (the spec's training_file when it was started).",
        )
    return content


def import_openai_job(
    job_id: str,
    output_dir: str | os.PathLike[str],
    *,
    base_model: str = "tiny-chat",
    provider: Any = None,
    overwrite: bool = False,
) -> ImportResult:
    """:func:`import_job` for an OpenAI job (the name kept for callers of tuneport's public API)."""
    return import_job("openai", job_id, output_dir, base_model=base_model, provider=provider, overwrite=overwrite)
