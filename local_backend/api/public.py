"""What a client of ``tuneport server`` may see of a job: OpenAI's objects, without this machine's folders.

The store keeps where a job's files are (its folder, log, adapter, checkpoints) for the CLI on this machine; over
HTTP those paths are nobody's business, and they tell a remote client how the server's disk is laid out. Job
objects lose their ``local`` section, checkpoints their ``path``; event ``data`` loses every path-valued entry
and messages and errors show a path only by its last part (``.../step-10``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["public_job", "public_items", "scrub_paths"]

# An absolute POSIX path standing on its own in text (not the path part of a URL: no ``:`` or ``/`` before it).
_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"()<>,;]+/)*([^\s'\"()<>,;/]+)/?")
_PATH_KEYS = ("path", "dir", "file", "folder")


def scrub_paths(text: str) -> str:
    """``text`` with each absolute path replaced by ``.../<its last part>``."""
    return _PATH.sub(lambda m: ".../" + m.group(1), text)


def _is_path(key: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    return value.startswith(("/", "~")) or key.rsplit("_", 1)[-1] in _PATH_KEYS


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_paths(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not _is_path(str(k), v)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def public_job(data: dict[str, Any]) -> dict[str, Any]:
    """A job object (``job.to_api()``) as a client sees it."""
    data = dict(data)
    data.pop("local", None)
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        data["error"] = {**error, "message": scrub_paths(error["message"])}
    return data


def public_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events or checkpoints as a client sees them: no ``path``, no path-valued ``data``, paths cut in messages."""
    out = []
    for item in items:
        item = {k: v for k, v in item.items() if k != "path"}
        if isinstance(item.get("message"), str):
            item["message"] = scrub_paths(item["message"])
        if isinstance(item.get("data"), dict):
            item["data"] = _clean(item["data"])
        out.append(item)
    return out
