"""A huggingface_hub cache laid out by hand: ``models--org--name/{blobs,snapshots/<sha>,refs/<revision>}``."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

SHA = "0123456789abcdef0123456789abcdef01234567"
SHA_V1 = "89abcdef0123456789abcdef0123456789abcdef"


def add_to_cache(
    cache: Path, repo_id: str, source: Path, *, sha: str = SHA, refs: tuple[str, ...] = ("main",)
) -> Path:
    """Put the files of ``source`` in ``cache`` as the snapshot ``sha`` of ``repo_id`` (blobs + symlinks, as
    huggingface_hub writes them); ``refs`` name it. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    blobs, snapshot = repo / "blobs", repo / "snapshots" / sha
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.iterdir()):
        if not file.is_file():
            continue
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blobs / digest)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", digest))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(sha)
    return snapshot
