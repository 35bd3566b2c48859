"""The friendly ways to write ``method``, normalized to OpenAI's canonical shape.

``method: dpo``, ``method: {type: dpo, hyperparameters: {...}}`` and OpenAI's deprecated top-level
``hyperparameters`` all become ``method: {type: ..., <type>: {hyperparameters: {...}}}``, so the rest of the code
sees one form. Each rewrite records an alias (canonical loc -> loc as written) so errors and line numbers point at
what the user typed.
"""

from __future__ import annotations

import difflib
from typing import Any

from tuneport.spec.fields import METHOD_TYPES
from tuneport.spec.problems import Loc, show

__all__ = ["normalize", "normalize_method", "translate"]

RFT_UNSUPPORTED = (
    "reinforcement fine-tuning is not supported by tuneport (it cannot run locally); use supervised or dpo"
)

Aliases = dict[Loc, Loc]
Problems = list[tuple[Loc, str]]


def _method_type_message(value: Any) -> str:
    message = f"must be one of {', '.join(METHOD_TYPES)} (got {show(value)})"
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), METHOD_TYPES, n=1, cutoff=0.5)
        if close:
            message += f'; did you mean "{close[0]}"?'
    return message


def _method_from_string(raw: str, aliases: Aliases, problems: Problems) -> dict[str, Any]:
    if raw in METHOD_TYPES:
        aliases[("method", "type")] = ("method",)
        aliases[("method", raw)] = ("method",)
        return {"type": raw, raw: {}}
    problems.append((("method",), RFT_UNSUPPORTED if raw == "reinforcement" else _method_type_message(raw)))
    return {"type": "supervised", "supervised": {}}


def normalize_method(raw: Any) -> tuple[Any, Aliases, Problems]:
    """Expand the method shorthands into OpenAI's shape.

    Returns the canonical value, aliases (canonical loc prefix -> the loc as written, for error messages and
    line numbers) and structural problems (which are removed from the returned value so that validation goes on).
    """
    aliases: Aliases = {}
    problems: Problems = []
    if raw is None:
        return {"type": "supervised", "supervised": {}}, aliases, problems
    if isinstance(raw, str):
        return _method_from_string(raw, aliases, problems), aliases, problems
    if not isinstance(raw, dict):
        return raw, aliases, problems  # pydantic reports "must be a mapping"
    method = dict(raw)
    kind = method.get("type")
    if kind is None:
        given = [k for k in (*METHOD_TYPES, "reinforcement") if k in method]
        kind = given[0] if len(given) == 1 else "supervised"
        method["type"] = kind
        aliases[("method", "type")] = ("method",)
    if kind == "reinforcement":
        problems.append((("method", "type"), RFT_UNSUPPORTED))
        method.pop("reinforcement", None)
        method.pop("hyperparameters", None)
        method["type"] = "supervised"
        return method, aliases, problems
    if not isinstance(kind, str) or kind not in METHOD_TYPES:
        method.pop("hyperparameters", None)  # its home is unknown; the bad type is the error to report
        return method, aliases, problems
    if "hyperparameters" in method:
        hyper = method.pop("hyperparameters")
        section = method.get(kind)
        if isinstance(section, dict) and "hyperparameters" in section:
            problems.append(
                (
                    ("method", "hyperparameters"),
                    f"given twice: write either method.hyperparameters or method.{kind}.hyperparameters",
                )
            )
        else:
            method[kind] = {**(section if isinstance(section, dict) else {}), "hyperparameters": hyper}
            aliases[("method", kind, "hyperparameters")] = ("method", "hyperparameters")
    for other in (*METHOD_TYPES, "reinforcement"):
        if other != kind and other in method:
            problems.append(
                (
                    ("method", other),
                    f'is set but method.type is "{kind}"; remove it or set method.type: {other}',
                )
            )
            method.pop(other)
    if method.get(kind) is None:
        method[kind] = {}
    return method, aliases, problems


def normalize(data: Any) -> tuple[Any, Aliases, Problems]:
    """Canonicalize a whole spec: OpenAI's deprecated top-level ``hyperparameters`` and the method shorthands."""
    aliases: Aliases = {}
    problems: Problems = []
    if not isinstance(data, dict):
        return data, aliases, problems
    out = dict(data)
    if "hyperparameters" in out:
        hyper = out.pop("hyperparameters")
        if "method" in out and out["method"] is not None:
            problems.append(
                (
                    ("hyperparameters",),
                    "OpenAI's deprecated top-level hyperparameters cannot be combined with method; "
                    "move them to method.<type>.hyperparameters",
                )
            )
        else:
            out["method"] = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
            aliases[("method", "supervised", "hyperparameters")] = ("hyperparameters",)
    if "method" in out:
        method, method_aliases, method_problems = normalize_method(out["method"])
        out["method"] = method
        # aliases from the top-level form take precedence (they describe an outer rewrite)
        aliases = {**method_aliases, **aliases}
        problems.extend(method_problems)
    return out, aliases, problems


def translate(loc: Loc, aliases: Aliases) -> Loc:
    """A canonical loc as the user wrote it (undoing the shorthand expansion)."""
    for end in range(len(loc), 0, -1):
        source = aliases.get(loc[:end])
        if source is not None:
            return source + loc[end:]
    return loc
