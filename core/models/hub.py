"""Hugging Face Hub ids as base models: ``org/name`` or ``org/name@revision``, from the cache or downloaded.

Why this is its own module: a Hub id is the one kind of ``model`` whose files may not be on the machine yet, and
the three outcomes (cached at a commit, will download so many GB, not available offline) must be known before any
training starts and shown by ``spec check``. The cache is huggingface_hub's own (``models--org--name/snapshots/
<sha>/``, ``refs/<revision>``), found from ``HF_HUB_CACHE`` / ``HF_HOME`` at call time, so a model fetched with
``hf download`` is used as it is and one tuneport fetches is there for every other tool.

Offline (``HF_HUB_OFFLINE=1``, or no network) a cached snapshot is used; anything else fails with the model's name
and the command that fetches it. The commit sha the revision resolved to is returned for the job's provenance.

Command line (fetch a model before going offline): ``python -m tuneport.models.hub ORG/NAME[@REVISION]``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError

__all__ = [
    "HubRef",
    "HubModel",
    "HubPlan",
    "parse_hub_id",
    "hub_cache_dir",
    "hub_offline",
    "cached_snapshot",
    "plan_hub_model",
    "fetch_hub_model",
    "fetch_command",
]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_HUB_ID = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._/-]{{0,199}}))?$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
# What a transformers / vLLM load reads: config, tokenizer, template, weights. Not `original/` (Meta's duplicate
# consolidated.pth), ONNX, GGUF or TF/Flax copies, which would double or triple a download.
_ALLOW = ("*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py")
_SKIP_DIRS = ("original/", "onnx/", "gguf/", "openvino/", "coreml/")


@dataclass(frozen=True)
class HubRef:
    """A Hub model id and the revision asked for (``None``: the default branch, ``main``)."""

    repo_id: str
    revision: str | None = None

    @property
    def label(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class HubModel:
    """A Hub model on disk: the snapshot folder and the commit it holds (provenance)."""

    ref: HubRef
    path: Path
    sha: str
    downloaded: bool = False

    def provenance(self) -> dict[str, Any]:
        return {
            "source": "huggingface_hub",
            "repo_id": self.ref.repo_id,
            "revision": self.ref.revision or "main",
            "sha": self.sha,
        }


@dataclass(frozen=True)
class HubPlan:
    """What resolving a Hub id will do: ``cached`` (at ``sha``), ``download`` (``download_bytes``) or
    ``unavailable`` (offline and not cached, or the Hub could not be asked: ``reason``)."""

    ref: HubRef
    action: str
    sha: str | None = None
    path: Path | None = None
    download_bytes: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.action == "cached":
            return f"{self.ref.label}: cached at sha {self.sha} ({self.path})"
        if self.action == "download":
            size = (
                f"{self.download_bytes / 1e9:.2f} GB"
                if self.download_bytes is not None
                else "an unknown size"
            )
            return f"{self.ref.label}: will download {size} from the Hugging Face Hub at sha {self.sha}"
        return f"{self.ref.label}: not available ({self.reason}); fetch it with `{fetch_command(self.ref)}`"


def parse_hub_id(text: str) -> HubRef | None:
    """The :class:`HubRef` ``text`` spells (``org/name`` or ``org/name@revision``), None if it is not shaped so."""
    match = _HUB_ID.match(text)
    if match is None or ".." in match["repo"]:
        return None
    return HubRef(match["repo"], match["rev"])


def hub_cache_dir() -> Path:
    """huggingface_hub's model cache, read from the environment now (its own constants are fixed at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    """Whether the Hub may not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set true)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def fetch_command(ref: HubRef) -> str:
    """The command that puts ``ref`` in the cache (run where there is network)."""
    rev = f" --revision {ref.revision}" if ref.revision else ""
    return f"hf download {ref.repo_id}{rev}"


def _repo_dir(ref: HubRef, cache: Path) -> Path:
    return cache / ("models--" + ref.repo_id.replace("/", "--"))


def _complete(snapshot: Path) -> bool:
    """A snapshot with a config and every weight file (every shard an index names) present."""
    if not (snapshot / "config.json").is_file():
        return False
    for index in snapshot.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text("utf-8")).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        if not all((snapshot / shard).is_file() for shard in shards):
            return False
    return any(any(snapshot.glob(p)) for p in _WEIGHT_PATTERNS)


def cached_snapshot(ref: HubRef, cache: Path | None = None) -> tuple[Path, str] | None:
    """(snapshot folder, commit sha) of ``ref`` in the cache when it is there complete, else None. No network."""
    repo = _repo_dir(ref, cache or hub_cache_dir())
    revision = ref.revision or "main"
    if _SHA.match(revision):
        sha = revision
    else:
        ref_file = repo / "refs" / revision
        if not ref_file.is_file():
            return None
        sha = ref_file.read_text("utf-8").strip()
    snapshot = repo / "snapshots" / sha
    return (snapshot, sha) if _complete(snapshot) else None


def _wanted(filenames: list[str]) -> list[str]:
    """The files of a repo a training load needs: safetensors weights when there are any, else .bin ones."""
    has_safetensors = any(f.endswith(".safetensors") for f in filenames)
    out = []
    for name in filenames:
        if name.startswith(_SKIP_DIRS) or not any(fnmatch.fnmatch(name, p) for p in (*_ALLOW, "*.bin")):
            continue
        if name.endswith(".bin") and (has_safetensors or "training_args" in name):
            continue
        out.append(name)
    return out


def _remote_info(ref: HubRef) -> tuple[str, int, list[str]]:
    """(commit sha, bytes to fetch, files to fetch) from the Hub's API; raises what huggingface_hub raises."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
    siblings = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    files = _wanted(list(siblings))
    return str(info.sha), sum(siblings[f] for f in files), files


def _not_available(ref: HubRef, why: str, built_in: str) -> SpecError:
    return SpecError(
        f"model {ref.label!r} is not a local folder and not a built-in model{built_in}, and the Hugging Face Hub "
        f"model of that id is not in the cache {hub_cache_dir()}: {why} (hub downloads are not available offline)",
        hint=f"Fetch it where there is network with `{fetch_command(ref)}` (or `python -m tuneport.models.hub "
        f"{ref.label}`), then run again; or download it yourself (`hf download ORG/NAME --local-dir DIR`) and "
        "set `model` to that folder.",
    )


def plan_hub_model(ref: HubRef) -> HubPlan:
    """What :func:`fetch_hub_model` would do for ``ref``, without downloading anything (for ``spec check``)."""
    found = cached_snapshot(ref)
    if found is not None:
        return HubPlan(ref, "cached", sha=found[1], path=found[0])
    if hub_offline():
        return HubPlan(ref, "unavailable", reason="HF_HUB_OFFLINE is set and it is not in the cache")
    try:
        sha, size, _ = _remote_info(ref)
    except Exception as exc:  # no network, unknown repo, gated repo: all mean "not available"
        return HubPlan(ref, "unavailable", reason=_short_reason(exc))
    return HubPlan(ref, "download", sha=sha, download_bytes=size)


def _short_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if name in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
        return f"the Hub refused it ({name}: {str(exc).splitlines()[0][:200]})"
    return f"the Hub could not be reached ({name})"


def fetch_hub_model(ref: HubRef, *, progress: bool = True, built_in: tuple[str, ...] = ()) -> HubModel:
    """``ref`` from the cache, or downloaded into it (progress bars on stderr); raises :class:`SpecError`
    naming the model and the fetch command when it is neither cached nor downloadable (offline included).

    ``built_in``: the built-in model names, listed in that error (the id might be a misspelt one).
    """
    names = f" (built-in: {', '.join(built_in)})" if built_in else ""
    found = cached_snapshot(ref)
    if found is not None:
        return HubModel(ref, found[0], found[1])
    if hub_offline():
        raise _not_available(ref, "HF_HUB_OFFLINE is set and it is not cached", names)
    try:
        sha, size, files = _remote_info(ref)
    except Exception as exc:
        raise _not_available(ref, _short_reason(exc), names) from None
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    print(f"Downloading {ref.label} ({size / 1e9:.2f} GB, {len(files)} files) at sha {sha}", file=sys.stderr)
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        path = snapshot_download(
            ref.repo_id, revision=sha, cache_dir=str(hub_cache_dir()), allow_patterns=files
        )
    except Exception as exc:
        raise _not_available(ref, f"the download failed ({type(exc).__name__}: {exc})", names) from None
    if ref.revision and not _SHA.match(ref.revision):  # snapshot_download by sha does not write refs/<name>
        refs = _repo_dir(ref, hub_cache_dir()) / "refs" / ref.revision
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(sha, "utf-8")
    elif ref.revision is None:
        refs = _repo_dir(ref, hub_cache_dir()) / "refs" / "main"
        refs.parent.mkdir(parents=True, exist_ok=True)
        refs.write_text(sha, "utf-8")
    return HubModel(ref, Path(path), sha, downloaded=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tuneport.models.hub",
        description="Fetch a Hugging Face Hub model into the cache, as a local training job would.",
    )
    parser.add_argument("model", metavar="ORG/NAME[@REVISION]")
    args = parser.parse_args(argv)
    ref = parse_hub_id(args.model)
    if ref is None:
        parser.error(f"{args.model!r} is not a Hub id (ORG/NAME or ORG/NAME@REVISION)")
    try:
        model = fetch_hub_model(ref)
    except SpecError as exc:
        print(f"error: {exc.message}\n{exc.hint or ''}", file=sys.stderr)
        sys.exit(exc.exit_code)
    print(f"{ref.label}: sha {model.sha} in {model.path}")


if __name__ == "__main__":
    main()
