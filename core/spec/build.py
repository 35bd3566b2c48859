"""Validate a parsed spec and report every problem at once, each with its path, line and a suggestion.

Why not stop at pydantic's first error: a spec is fixed in one edit when every problem is listed. So invalid
values are pruned and the rest re-validated (so that cross-field problems among the good values are found too),
unknown keys get the nearest valid key (or the section where that key belongs), and each problem is placed on the
line the user wrote it (undoing the shorthand expansion).
"""

from __future__ import annotations

import copy
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tuneport.spec.checks import semantic_problems
from tuneport.spec.fields import METHOD_TYPES, is_openai_file_id
from tuneport.spec.problems import Lines, Loc, SpecProblem, closest, dotted, show, spec_error
from tuneport.spec.shorthands import normalize, translate

__all__ = ["build_spec", "DEFER_CHECKS"]

# Validation context key: the model's own cross-field validator leaves the checks to build_spec, which reports
# them with paths and line numbers.
DEFER_CHECKS = "_tuneport_defer_checks"

# Required values replaced by a placeholder when missing, so that the other fields can still be cross-checked.
_PLACEHOLDERS = {("model",): "<missing>", ("training_file",): "<missing>"}

SpecT = TypeVar("SpecT", bound=BaseModel)


# ---- unknown keys -------------------------------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return None
        inner = _models_in(info.annotation)
        if not inner:
            return None
        model = inner[0]
    return model


def _all_paths(model: type[BaseModel], prefix: Loc = ()) -> list[Loc]:
    out: list[Loc] = []
    for name, info in model.model_fields.items():
        out.append(prefix + (name,))
        for inner in _models_in(info.annotation):
            out.extend(_all_paths(inner, prefix + (name,)))
    return out


def unknown_key_message(root: type[BaseModel], canonical: Loc, method_type: str | None) -> str:
    """What to say about an unknown key: the nearest valid key here, the section the key belongs to, or the
    valid keys here."""
    parent, key = canonical[:-1], str(canonical[-1])
    if key == "beta" and parent[:2] == ("method", "supervised"):
        return 'unknown key "beta": beta applies only to DPO; set method.type: dpo to use it'
    model = _model_at(root, parent)
    valid = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f'unknown key "{key}"; did you mean "{close[0]}"?'

    # The right key in the wrong section (e.g. learning_rate at the top level, n_epochs under method)?
    def reachable(p: Loc) -> bool:
        return not (
            p[0] == "method" and len(p) > 1 and p[1] in METHOD_TYPES and p[1] != (method_type or "supervised")
        )

    paths = _all_paths(root)
    exact = [p for p in paths if str(p[-1]) == key and p[:-1] != parent and reachable(p)]
    near = [p for p in paths if closest(key, [str(p[-1])]) and p[:-1] != parent and reachable(p)]
    if exact or near:
        return f'unknown key "{key}" here; did you mean {dotted((exact or near)[0])}?'
    listing = ", ".join(valid) if valid else "none"
    return f'unknown key "{key}"; valid keys here: {listing}'


# ---- pydantic errors as problems ----------------------------------------------------------------------------


def _collect(
    root: type[BaseModel], exc: ValidationError, aliases: dict[Loc, Loc], data: Any
) -> list[tuple[Loc, Loc, str, bool]]:
    """(canonical loc, loc as written, message, is_key) for each pydantic error."""
    method_type = None
    if isinstance(data, dict) and isinstance(data.get("method"), dict):
        method_type = data["method"].get("type")
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        is_key = False
        if loc and loc[-1] == "[key]":
            loc, is_key = loc[:-1], True
        if kind == "extra_forbidden":
            message, is_key = unknown_key_message(root, loc, method_type), True
        elif kind == "missing":
            message = "is required"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"must be a mapping (got {show(err.get('input'))})"
        elif kind == "list_type":
            message = f"must be a list (got {show(err.get('input'))})"
        elif kind == "tuneport":
            message = err["ctx"]["msg"]
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        out.append((loc, translate(loc, aliases), message, is_key))
    return out


def _prune(data: dict[str, Any], locs: list[Loc]) -> dict[str, Any]:
    """A copy of ``data`` without the values at ``locs`` (so the rest can still be checked across fields)."""
    try:
        data = json.loads(json.dumps(data, default=str))
    except (TypeError, ValueError):  # keys JSON cannot hold (a YAML date as a key): copy as they are
        data = copy.deepcopy(data)
    for loc in locs:
        if not loc:
            continue
        if loc in _PLACEHOLDERS:
            data[str(loc[0])] = _PLACEHOLDERS[loc]
            continue
        node: Any = data
        for part in loc[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(str(loc[-1]), None)
        elif isinstance(node, list) and isinstance(loc[-1], int) and loc[-1] < len(node):
            # the offending list item: drop the whole list, its default is a valid value
            parent: Any = data
            for part in loc[:-2]:
                parent = parent[part]
            if isinstance(parent, dict):
                parent.pop(str(loc[-2]), None)
    return data


# ---- the whole spec -----------------------------------------------------------------------------------------


class _Report:
    """The problems found so far, each placed on its line."""

    def __init__(self, source: str | None, lines: Lines | None, early: list[SpecProblem] | None) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[SpecProblem] = list(early or [])

    def add(self, written: Loc, message: str, *, key: bool = False) -> None:
        line = self.lines.line(written, key=key) if self.lines is not None else None
        if line is None and self.lines is not None and not written:
            line = 1
        self.problems.append(SpecProblem(dotted(written), message, self.source, line))

    def fail(self) -> Exception:
        self.problems.sort(key=lambda p: p.line if p.line is not None else 10**9)
        return spec_error(self.problems, self.source)


def _validate_pruning(
    cls: type[SpecT], canonical: Any, aliases: dict[Loc, Loc], report: _Report
) -> tuple[SpecT | None, list[Loc]]:
    """Validate; on errors report them (first round) and retry without the bad values, up to four rounds."""
    spec: SpecT | None = None
    bad_locs: list[Loc] = []
    attempt = canonical
    for round_ in range(4):
        try:
            spec = cls.model_validate(attempt, context={DEFER_CHECKS: True})
            break
        except ValidationError as exc:
            collected = _collect(cls, exc, aliases, attempt)
            if round_ == 0:
                for _, written, message, is_key in collected:
                    report.add(written, message, key=is_key)
            new = [loc for loc, *_ in collected]
            bad_locs.extend(new)
            attempt = _prune(attempt, new)
    return spec, bad_locs


def _check_files(spec: Any, report: _Report) -> None:
    for name in ("training_file", "validation_file"):
        value = getattr(spec, name)
        if value is None or is_openai_file_id(value):
            continue
        path = spec.resolve_path(value)
        if not path.exists():
            report.add((name,), f"file not found: {path}")
        elif not path.is_file():
            report.add((name,), f"is not a file: {path}")


def build_spec(
    cls: type[SpecT],
    data: Any,
    *,
    base_dir: str | Path | None,
    source: str | None,
    check_files: bool,
    lines: Lines | None,
    early: list[SpecProblem] | None = None,
) -> SpecT:
    """A validated ``cls`` (the job spec model) from parsed data, or a SpecError listing every problem.

    ``lines`` places problems on source lines; ``early`` are problems the parser already found (duplicate keys).
    """
    report = _Report(source, lines, early)
    if data is None:
        report.add((), "the spec is empty; it needs at least model and training_file")
        raise report.fail()
    if not isinstance(data, dict):
        report.add((), f"the spec must be a mapping of keys to values (got {show(data)})")
        raise report.fail()
    non_str = [k for k in data if not isinstance(k, str)]
    if non_str:
        for k in non_str:
            report.add((), f"keys must be strings (got {show(k)})")
        data = {k: v for k, v in data.items() if isinstance(k, str)}

    canonical, aliases, shorthand_problems = normalize(data)
    for loc, message in shorthand_problems:
        report.add(loc, message, key=loc[-1] in ("hyperparameters", "dpo", "supervised", "reinforcement"))

    spec, bad_locs = _validate_pruning(cls, canonical, aliases, report)
    if spec is not None:
        bad = set(bad_locs)

        def touches(loc: Loc) -> bool:
            return any(loc[: len(b)] == b or b[: len(loc)] == loc for b in bad)

        checked: Any = spec  # the job spec model: its sections are known
        for semantic in semantic_problems(
            checked.local, method=checked.method, validation_file=checked.validation_file
        ):
            if touches(semantic.loc) or any(touches(r) for r in semantic.related):
                continue  # its inputs were invalid (replaced by defaults): not a real finding
            report.add(translate(semantic.loc, aliases), semantic.message)
        checked._base_dir = Path(base_dir).resolve() if base_dir is not None else None
        checked._source = source
        if check_files and not bad_locs:
            _check_files(spec, report)
    if report.problems:
        raise report.fail()
    assert spec is not None
    return spec
