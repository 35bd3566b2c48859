"""A job's outputs belong to that job alone: a ``local.output_dir`` serves one job, never two.

A job trains in ``local.output_dir`` when its spec names one (else in its own folder, ``$TUNEPORT_HOME/jobs/<id>/``):
checkpoints, adapter, merged model, ``result.json``; resume, ``tuneport serve`` and the job's endpoint read them
from there. So that a second job can never replace what a first one serves, ``tuneport train`` claims the folder
when the job is created, by writing ``.tuneport-job.json`` (the job id) into it, and refuses, before anything
starts:

- a folder claimed by another job, unless that job failed or was cancelled before writing anything there (the
  usual rerun after a validation error), in which case the claim passes to the new job;
- a folder holding files tuneport did not put there.

Kept free of heavy imports: the provider calls :func:`claim_output_dir` on every ``tuneport train``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tuneport.errors import ProviderError

__all__ = ["CLAIM_FILE", "claim_output_dir", "read_claim"]

CLAIM_FILE = ".tuneport-job.json"
_RELEASED = ("failed", "cancelled")


def read_claim(folder: Path) -> dict[str, Any] | None:
    """The claim in ``folder`` (``{"job_id", "claimed_at"}``), or None when there is none readable."""
    try:
        data = json.loads((folder / CLAIM_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("job_id"), str) else None


def _write_claim(folder: Path, claim: dict[str, Any], *, exclusive: bool) -> bool:
    """Write the claim; with ``exclusive``, only if there is none yet (False then)."""
    text = json.dumps(claim, indent=2)
    if exclusive:
        try:
            fd = os.open(folder / CLAIM_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return True
    tmp = folder / f".{CLAIM_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, "utf-8")
    os.replace(tmp, folder / CLAIM_FILE)
    return True


def claim_output_dir(folder: Path, job_id: str, store: Any) -> None:
    """Reserve ``folder`` for ``job_id``'s outputs, or raise :class:`ProviderError` saying whose it is."""
    if folder.exists() and not folder.is_dir():
        raise ProviderError(
            f"local.output_dir {folder} is a file, not a folder",
            hint="Name a new or empty folder for the job's outputs, or leave output_dir out.",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProviderError(f"local.output_dir {folder}: cannot create it: {exc.strerror or exc}") from exc
    claim = {"job_id": job_id, "claimed_at": int(time.time())}
    for _ in range(3):
        existing = read_claim(folder)
        if existing is None:
            others = sorted(p.name for p in folder.iterdir() if p.name != CLAIM_FILE)
            if others:
                raise ProviderError(
                    f"local.output_dir {folder} already holds files tuneport did not write there "
                    f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); a job's outputs are "
                    "never written over other files",
                    hint="Name a new or empty folder, or leave output_dir out (the job's own folder is used).",
                )
            if _write_claim(folder, claim, exclusive=True):
                return
            continue  # another job claimed it this instant: look at whose it is
        owner = existing["job_id"]
        row = store.get_job(owner) if owner != job_id else None
        status = row["status"] if row is not None else None
        written = [p.name for p in folder.iterdir() if p.name != CLAIM_FILE]
        if status in _RELEASED and not written:
            _write_claim(folder, claim, exclusive=False)
            return
        state = f"is {status}" if status else "is not in this tuneport home's store"
        raise ProviderError(
            f"local.output_dir {folder} belongs to job {owner}, which {state}; a job's outputs belong to "
            "that job alone, so a second job cannot write there",
            hint="Give this job another output_dir (or leave it out: each job then gets its own folder), or "
            "delete that folder if you no longer need that job's outputs.",
        )
    raise ProviderError(f"local.output_dir {folder}: another job keeps claiming it; try again")
