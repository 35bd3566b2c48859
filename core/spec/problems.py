"""How a spec problem is named and reported: where (file, line, dotted path), what, and the one SpecError.

Why one place: every part of spec loading (parsing, shorthands, field ranges, cross-field checks) reports in the
same ``file:line: path: message`` shape, and the CLI prints the same findings under ``--json``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneport.errors import SpecError

__all__ = ["Loc", "SpecProblem", "Lines", "dotted", "show", "closest", "spec_error"]

Loc = tuple[str | int, ...]


def dotted(loc: Loc) -> str:
    """``("method", "dpo", "hyperparameters")`` -> ``method.dpo.hyperparameters``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def show(value: Any) -> str:
    """A value the way the user wrote it in YAML/JSON terms (true, null, "text", 3)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def closest(key: str, options: list[str], cutoff: float = 0.85) -> str | None:
    """The option a mistyped ``key`` most likely meant, if any is close enough."""
    close = difflib.get_close_matches(key, options, n=1, cutoff=cutoff)
    return close[0] if close else None


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec: where (file, line, dotted path) and what."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where = f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if where else f"{self.path}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class Lines:
    """Maps a loc (tuple of keys / indexes) to a 1-based line in the source text."""

    def __init__(self, lookup: Callable[[Loc, bool], int | None]) -> None:
        self._lookup = lookup

    def line(self, loc: Loc, *, key: bool = False) -> int | None:
        return self._lookup(loc, key)


def spec_error(problems: list[SpecProblem], source: str | None, *, what: str = "job spec") -> SpecError:
    """The SpecError listing every problem; its ``findings`` are what ``--json`` prints. ``what`` names the kind
    of file (a job spec, an eval spec)."""
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    head = f"invalid {what} {source} ({count}):" if source else f"invalid {what} ({count}):"
    error = SpecError(head + "\n" + "\n".join(f"  {p}" for p in problems))
    error.findings = problems  # type: ignore[attr-defined]  # the CLI prints them under --json
    error.problems = problems  # type: ignore[attr-defined]
    return error
