"""Graders: turn one model output (and the item's reference answer) into a score in [0, 1].

Every grader is built from a small config, ``{"name": "regex", "pattern": "..."}`` (parameters may also be nested
under ``"params"``), by :func:`make_grader`. A config that cannot work (unknown grader, unknown or ill-typed
parameter, an invalid regular expression or JSON schema) raises :class:`~tuneport.errors.EvaluationError` before
any item is graded, so a typo never burns an evaluation run.

Per item, :meth:`Grader.grade` returns a :class:`GradeResult`. Two kinds of "zero" are kept apart on purpose:

- **The model failed** (its output is not JSON, lacks a field, does not match): ``score=0.0``, ``passed=False``,
  ``error=None`` and ``details["reason"]`` says why. These count in every aggregate: a base model that ignores the
  output format *is* worse, and dropping its failures would flatter it.
- **The item cannot be graded** (the reference is not JSON for a JSON grader, a label path is missing from the
  reference, the judge's answer is unparseable): ``error`` says why, ``score=0.0``, ``passed=None``. Aggregates
  count these separately and leave them out of means and accuracies (and paired comparisons drop the item on both
  sides), because any number there would be made up.

The pairwise LLM judge compares two outputs rather than grading one; see :class:`PairwiseJudgeGrader`.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from tuneport.errors import EvaluationError
from tuneport.evaluation.stats import mcnemar_exact, wilson_interval

__all__ = [
    "GradeResult",
    "Grader",
    "GRADERS",
    "register_grader",
    "make_grader",
    "grader_names",
    "normalize_text",
    "tokenize",
    "ExactGrader",
    "NormalizedGrader",
    "ContainsGrader",
    "RegexGrader",
    "JsonValidGrader",
    "JsonSchemaGrader",
    "JsonMatchGrader",
    "LabelGrader",
    "RougeLGrader",
    "BleuGrader",
    "PairwiseJudgeGrader",
    "PairwiseResult",
    "JudgeFn",
    "GradeSummary",
    "LabelMetrics",
    "summarize_grades",
    "label_metrics",
    "PairwiseSummary",
    "summarize_pairwise",
    "paired_grades",
    "rouge_l",
    "sentence_bleu",
    "NO_LABEL",
    "OTHER_LABEL",
]

Reference = str | dict | list | None
Message = dict[str, str]
JudgeFn = Callable[[list[Message]], "str | Awaitable[str]"]

# Confusion-matrix columns for predictions that carry no usable label.
NO_LABEL = "<none>"  # the output had no label at all (not JSON, path missing, empty)
OTHER_LABEL = "<other>"  # the output's label is outside the configured label set


@dataclass(frozen=True)
class GradeResult:
    """One item's grade.

    ``score`` is in [0, 1]. ``passed`` is ``None`` when the grader has no notion of passing (ROUGE / BLEU without
    a threshold) or the item could not be graded. ``label`` / ``reference_label`` are set by label graders for
    per-label metrics. ``error`` is set only when the item could not be graded (see the module docstring);
    ``details`` explains the score (per-field matches, schema errors, the reason for a zero ...).
    """

    score: float
    passed: bool | None
    label: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reference_label: str | None = None

    @property
    def ok(self) -> bool:
        """True when the item was graded (no error)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "passed": self.passed,
            "label": self.label,
            "reference_label": self.reference_label,
            "error": self.error,
            "details": self.details,
        }


def _fail(reason: str, **details: Any) -> GradeResult:
    """The model's output failed the check (counts as a zero in every aggregate)."""
    return GradeResult(score=0.0, passed=False, details={"reason": reason, **details})


def _item_error(message: str, **details: Any) -> GradeResult:
    """The item cannot be graded by this grader (left out of aggregates, counted as an error)."""
    return GradeResult(score=0.0, passed=None, error=message, details=details)


def _result(ok: bool, *, score: float | None = None, **details: Any) -> GradeResult:
    if ok:
        return GradeResult(score=1.0 if score is None else score, passed=True, details=details)
    return GradeResult(score=0.0 if score is None else score, passed=False, details=details)


# --------------------------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------------------------

_ARTICLES = frozenset({"a", "an", "the"})


def normalize_text(
    text: str, *, lowercase: bool = True, remove_punctuation: bool = True, remove_articles: bool = False
) -> str:
    """NFKC-normalize, casefold, drop punctuation and collapse whitespace (the SQuAD answer normalization, made
    Unicode-aware).

    NFKC folds compatibility forms (full-width letters, ligatures, non-breaking spaces) into their plain forms;
    ``casefold`` is the Unicode-correct lowercase (``"Straße"`` matches ``"STRASSE"``). Punctuation is any character
    in a Unicode ``P*`` category and is deleted, not replaced by a space (so ``"U.S."`` matches ``"US"``).
    ``remove_articles`` drops English ``a`` / ``an`` / ``the``.
    """
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.casefold()
    if remove_punctuation:
        text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    words = text.split()
    if remove_articles:
        words = [w for w in words if w.casefold() not in _ARTICLES]
    return " ".join(words)


_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_RE = re.compile(r"\w+")


def tokenize(text: str, *, lowercase: bool = True, punctuation: bool = False) -> list[str]:
    """Split text into word tokens (Unicode ``\\w+`` runs) after NFKC; with ``punctuation`` each punctuation or
    symbol character becomes a token of its own (as BLEU tokenizers do)."""
    text = unicodedata.normalize("NFKC", text)
    if lowercase:
        text = text.casefold()
    return (_TOKEN_RE if punctuation else _WORD_RE).findall(text)


_FENCE_RE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n(.*)\n[ \t]*```$", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(text: str, *, allow_code_fence: bool) -> tuple[Any, str | None, bool]:
    """Parse ``text`` as strict JSON (no NaN / Infinity). Returns (value, error or None, fence_stripped)."""
    stripped = text.strip()
    fenced = False
    if allow_code_fence:
        m = _FENCE_RE.match(stripped)
        if m:
            stripped = m.group(1).strip()
            fenced = True
    if not stripped:
        return None, "output is empty, not JSON", fenced
    try:
        return json.loads(stripped, parse_constant=_reject_constant), None, fenced
    except (ValueError, RecursionError) as exc:
        hint = ""
        if not allow_code_fence and stripped.startswith("```"):
            hint = " (it is wrapped in a ``` code fence; set allow_code_fence: true to accept that)"
        return None, f"output is not valid JSON: {exc}{hint}", fenced


def _reference_json(reference: Reference) -> tuple[Any, str | None]:
    if isinstance(reference, (dict, list)):
        return reference, None
    if isinstance(reference, str):
        value, err, _ = _parse_json(reference, allow_code_fence=True)
        if err is not None:
            detail = err.split(": ", 1)[1] if ": " in err else "it is empty"
            return None, f"reference is not valid JSON: {detail}"
        return value, None
    return None, f"reference must be a JSON string or object, got {type(reference).__name__}"


def _reference_text(reference: Reference, grader: str) -> tuple[str | None, str | None]:
    if isinstance(reference, str):
        return reference, None
    if reference is None:
        return None, f"{grader} needs a reference answer and this item has none"
    return None, (
        f"{grader} compares text but the reference is a JSON {type(reference).__name__}; "
        "use json_match or label for structured references"
    )


Path = tuple[str | int, ...]


def _parse_path(name: str, value: Any) -> Path:
    """A JSON field path: ``"a.b.0"`` (dots separate keys, integers index lists) or a list of keys."""
    if isinstance(value, str) and value.strip():
        parts: list[str | int] = []
        for part in value.split("."):
            if not part:
                raise EvaluationError(f"{name}: path {value!r} has an empty segment")
            parts.append(int(part) if part.isdigit() else part)
        return tuple(parts)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, (str, int)) and not isinstance(p, bool) for p in value)
    ):
        return tuple(value)
    raise EvaluationError(
        f"{name}: a field path must be a non-empty string like 'category' or 'meta.tags.0', or a list of keys; "
        f"got {value!r}"
    )


def _path_text(path: Path) -> str:
    return ".".join(str(p) for p in path)


_MISSING = object()


def _get_path(value: Any, path: Path) -> Any:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str) and part in value:
            value = value[part]
        elif isinstance(value, dict) and isinstance(part, int) and str(part) in value:
            value = value[str(part)]
        elif isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
            value = value[part]
        else:
            return _MISSING
    return value


def _json_equal(a: Any, b: Any, *, normalize_strings: bool) -> bool:
    """Structural JSON equality: 1 == 1.0, but true != 1 (JSON booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return normalize_text(a) == normalize_text(b) if normalize_strings else a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            _json_equal(x, y, normalize_strings=normalize_strings) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            _json_equal(a[k], b[k], normalize_strings=normalize_strings) for k in a
        )
    return a is None and b is None


def _short(value: Any, limit: int = 200) -> Any:
    """Keep details small: long strings are cut, so a report of 10,000 items stays readable."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "..."
    return value


# --------------------------------------------------------------------------------------------------------------
# Parameter checking (every message names the grader and the parameter)
# --------------------------------------------------------------------------------------------------------------


def _want_bool(grader: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"grader {grader!r}: parameter {name!r} must be true or false, got {value!r}")
    return value


def _want_choice(grader: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise EvaluationError(
            f"grader {grader!r}: parameter {name!r} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )
    return value


def _want_number(grader: str, name: str, value: Any, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise EvaluationError(
            f"grader {grader!r}: parameter {name!r} must be a number in [{low}, {high}], got {value!r}"
        )
    return float(value)


def _want_threshold(grader: str, value: Any) -> float | None:
    return None if value is None else _want_number(grader, "threshold", value, low=0.0, high=1.0)


def _want_str_list(grader: str, name: str, value: Any, *, allow_none: bool = True) -> list[str] | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise EvaluationError(
            f"grader {grader!r}: parameter {name!r} must be a non-empty list of non-empty strings, got {value!r}"
        )
    return list(value)


# --------------------------------------------------------------------------------------------------------------
# Base class and registry
# --------------------------------------------------------------------------------------------------------------


class Grader:
    """Base class: subclasses set ``name``, take their parameters as keyword-only ``__init__`` arguments (validated
    there, raising EvaluationError), and implement ``_grade`` (:meth:`grade` checks the prediction is text first).

    ``id`` distinguishes two graders of the same kind in one evaluation (``{"name": "json_match", "id":
    "priority", "fields": ["priority"]}``); it defaults to the name.
    """

    name: ClassVar[str] = ""
    #: "single" graders score one output; "pairwise" graders compare two outputs.
    kind: ClassVar[Literal["single", "pairwise"]] = "single"
    #: Whether :meth:`grade` uses the item's reference answer.
    needs_reference: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:  # pragma: no cover - subclasses define their own parameters
        raise NotImplementedError

    id: str = ""
    params: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The normalized config (name, id, every parameter with defaults filled in), for provenance."""
        return {"name": self.name, "id": self.id or self.name, **self.params}

    def grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        """Grade one output. ``reference`` is the item's reference answer (text, or parsed JSON); ``item`` the
        dataset record (used by graders that need the question)."""
        if not isinstance(prediction, str):
            raise EvaluationError(
                f"grader {self.id or self.name!r}: the prediction must be text, got {type(prediction).__name__}",
                hint="A request that failed has no output: record it as a failed request instead of grading it.",
            )
        return self._grade(prediction, reference, item)

    def _grade(self, prediction: str, reference: Reference, item: dict | None) -> GradeResult:
        raise NotImplementedError

    def summarize(self, results: Sequence[GradeResult], *, confidence: float = 0.95) -> GradeSummary:
        """Aggregate this grader's results (label graders add per-label metrics)."""
        return summarize_grades(results, confidence=confidence)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


GRADERS: dict[str, type[Grader]] = {}


def register_grader(cls: type[Grader]) -> type[Grader]:
    """Class decorator: make a grader available to :func:`make_grader` under ``cls.name``."""
    if not cls.name:
        raise EvaluationError(f"{cls.__name__} has no name; set the class attribute `name`")
    GRADERS[cls.name] = cls
    return cls


def grader_names() -> list[str]:
    return sorted(GRADERS)


def make_grader(config: str | dict[str, Any], *, judge: JudgeFn | None = None) -> Grader:
    """Build a grader from ``"exact"``, ``{"name": "regex", "pattern": "..."}`` or
    ``{"name": "regex", "params": {"pattern": "..."}}``.

    ``judge`` is the ``judge(messages) -> str`` callable (sync or async) that the pairwise judge grader uses; the
    runner provides it. Raises EvaluationError naming what is wrong and what is allowed.
    """
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, dict):
        raise EvaluationError(f"a grader config must be a name or a mapping with a 'name', got {config!r}")
    config = dict(config)
    name = config.pop("name", None)
    if not isinstance(name, str) or not name:
        raise EvaluationError(
            f"grader config {config!r} has no 'name'",
            hint=f"Name one of: {', '.join(grader_names())}.",
        )
    cls = GRADERS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, GRADERS, n=1)
        raise EvaluationError(
            f"unknown grader {name!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            hint=f"Known graders: {', '.join(grader_names())}.",
        )
    grader_id = config.pop("id", None)
    if grader_id is not None and (not isinstance(grader_id, str) or not grader_id):
        raise EvaluationError(f"grader {name!r}: 'id' must be a non-empty string, got {grader_id!r}")
    params = config.pop("params", None)
    if params is not None:
        if not isinstance(params, dict):
            raise EvaluationError(f"grader {name!r}: 'params' must be a mapping, got {params!r}")
        if config:
            raise EvaluationError(
                f"grader {name!r}: give parameters either under 'params' or next to 'name', not both "
                f"(found {', '.join(sorted(config))} next to 'params')"
            )
        config = dict(params)
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "judge")]
    for key in config:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            raise EvaluationError(
                f"grader {name!r}: unknown parameter {key!r}"
                + (f"; did you mean {close[0]!r}?" if close else ""),
                hint=f"{name} takes: {', '.join(allowed) or 'no parameters'}.",
            )
    grader = cls(judge=judge, **config) if cls.kind == "pairwise" else cls(**config)
    grader.id = grader_id or name
    return grader


# --------------------------------------------------------------------------------------------------------------
# Text graders
# --------------------------------------------------------------------------------------------------------------


@register_grader
class ExactGrader(Grader):
    """The output equals the reference exactly (surrounding whitespace ignored unless ``strip: false``)."""

    name = "exact"

    def __init__(self, *, strip: bool = True) -> None:
        self.strip = _want_bool(self.name, "strip", strip)
        self.params = {"strip": self.strip}

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        pred = prediction.strip() if self.strip else prediction
        ref = ref.strip() if self.strip else ref
        if pred == ref:
            return _result(True)
        return _fail("output differs from the reference", expected=_short(ref), got=_short(pred))


@register_grader
class NormalizedGrader(Grader):
    """Equality after :func:`normalize_text` (NFKC, casefold, punctuation removed, whitespace collapsed)."""

    name = "normalized"

    def __init__(
        self, *, lowercase: bool = True, remove_punctuation: bool = True, remove_articles: bool = False
    ):
        self.options = {
            "lowercase": _want_bool(self.name, "lowercase", lowercase),
            "remove_punctuation": _want_bool(self.name, "remove_punctuation", remove_punctuation),
            "remove_articles": _want_bool(self.name, "remove_articles", remove_articles),
        }
        self.params = dict(self.options)

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        norm_ref = normalize_text(ref, **self.options)
        if not norm_ref:
            return _item_error("reference is empty after normalization: every output would match it")
        norm_pred = normalize_text(prediction, **self.options)
        if norm_pred == norm_ref:
            return _result(True, normalized=_short(norm_pred))
        return _fail(
            "normalized output differs from the normalized reference",
            expected=_short(norm_ref),
            got=_short(norm_pred),
        )


@register_grader
class ContainsGrader(Grader):
    """The output contains the reference, or the configured ``needles`` (``mode: all`` or ``any``).

    With ``all``, the score is the fraction of needles found (passing needs every one); with ``any`` the score is
    1 when at least one is found. ``normalize: true`` compares normalized text, so case, punctuation and spacing do
    not matter.
    """

    name = "contains"

    def __init__(
        self, *, needles: list[str] | None = None, mode: str = "all", normalize: bool = False
    ) -> None:
        self.needles = _want_str_list(self.name, "needles", needles)
        self.mode = _want_choice(self.name, "mode", mode, ("all", "any"))
        self.normalize = _want_bool(self.name, "normalize", normalize)
        if self.normalize and self.needles is not None:
            for needle in self.needles:
                if not normalize_text(needle):
                    raise EvaluationError(
                        f"grader 'contains': needle {needle!r} is empty after normalization and would match anything"
                    )
        self.params = {"needles": self.needles, "mode": self.mode, "normalize": self.normalize}
        self.needs_reference = self.needles is None  # type: ignore[misc]

    def _prep(self, text: str) -> str:
        return normalize_text(text) if self.normalize else text

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        if self.needles is None:
            ref, err = _reference_text(reference, self.name)
            if err is not None:
                return _item_error(err)
            if not self._prep(ref).strip():
                return _item_error("reference is empty: every output contains the empty string")
            needles = [ref]
        else:
            needles = self.needles
        haystack = self._prep(prediction)
        found = [n for n in needles if self._prep(n) in haystack]
        missing = [n for n in needles if n not in found]
        details = {"found": [_short(n) for n in found], "missing": [_short(n) for n in missing]}
        if self.mode == "any":
            if found:
                return _result(True, **details)
            return _fail("none of the needles is in the output", **details)
        score = len(found) / len(needles)
        if not missing:
            return _result(True, score=score, **details)
        return GradeResult(
            score=score,
            passed=False,
            details={
                "reason": f"needles missing from the output: {len(missing)} of {len(needles)}",
                **details,
            },
        )


_REGEX_FLAGS = {
    "IGNORECASE": re.IGNORECASE,
    "MULTILINE": re.MULTILINE,
    "DOTALL": re.DOTALL,
    "VERBOSE": re.VERBOSE,
}


@register_grader
class RegexGrader(Grader):
    """The output matches ``pattern`` (``mode: search`` anywhere, or ``mode: full`` the whole stripped output).

    With ``compare_group`` (a group number or name), the captured text must also equal the reference after
    normalization: the "extract the answer, then compare" pattern (``Answer: (\\d+)``).
    """

    name = "regex"

    def __init__(
        self,
        *,
        pattern: str | None = None,
        mode: str = "search",
        flags: list[str] | None = None,
        compare_group: int | str | None = None,
    ) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise EvaluationError("grader 'regex' needs a non-empty 'pattern' (a Python regular expression)")
        self.mode = _want_choice(self.name, "mode", mode, ("search", "full"))
        flag_names = _want_str_list(self.name, "flags", flags) or []
        value = 0
        for f in flag_names:
            if f.upper() not in _REGEX_FLAGS:
                raise EvaluationError(
                    f"grader 'regex': unknown flag {f!r}; use any of {', '.join(_REGEX_FLAGS)}"
                )
            value |= _REGEX_FLAGS[f.upper()]
        try:
            self.regex = re.compile(pattern, value)
        except re.error as exc:
            raise EvaluationError(
                f"grader 'regex': pattern {pattern!r} is not a valid regular expression: {exc}",
                hint="Patterns use Python's `re` syntax; in YAML, quote the pattern and double backslashes "
                "inside double quotes.",
            ) from exc
        if compare_group is not None:
            if isinstance(compare_group, bool):
                valid = False
            elif isinstance(compare_group, int):
                valid = 0 <= compare_group <= self.regex.groups
            else:
                valid = isinstance(compare_group, str) and compare_group in self.regex.groupindex
            if not valid:
                raise EvaluationError(
                    f"grader 'regex': compare_group {compare_group!r} is not a group of {pattern!r} "
                    f"(it has {self.regex.groups} groups"
                    + (f", named {', '.join(self.regex.groupindex)}" if self.regex.groupindex else "")
                    + ")"
                )
        self.compare_group = compare_group
        self.needs_reference = compare_group is not None  # type: ignore[misc]
        self.params = {
            "pattern": pattern,
            "mode": self.mode,
            "flags": flag_names,
            "compare_group": compare_group,
        }

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        text = prediction.strip() if self.mode == "full" else prediction
        m = self.regex.fullmatch(text) if self.mode == "full" else self.regex.search(text)
        if m is None:
            return _fail(f"output does not match the pattern ({self.mode} mode)", pattern=self.regex.pattern)
        if self.compare_group is None:
            return _result(True, match=_short(m.group(0)))
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        captured = m.group(self.compare_group)
        if captured is None:
            return _fail(f"group {self.compare_group!r} did not participate in the match")
        if normalize_text(captured) == normalize_text(ref):
            return _result(True, captured=_short(captured))
        return _fail(
            "captured text differs from the reference", captured=_short(captured), expected=_short(ref)
        )


# --------------------------------------------------------------------------------------------------------------
# JSON graders
# --------------------------------------------------------------------------------------------------------------


@register_grader
class JsonValidGrader(Grader):
    """The output is valid JSON (strict: no NaN / Infinity), optionally of a given top-level ``type``."""

    name = "json_valid"
    needs_reference = False

    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {"object": (dict,), "array": (list,), "any": (object,)}

    def __init__(self, *, type: str = "any", allow_code_fence: bool = False) -> None:
        self.type = _want_choice(self.name, "type", type, tuple(self._TYPES))
        self.allow_code_fence = _want_bool(self.name, "allow_code_fence", allow_code_fence)
        self.params = {"type": self.type, "allow_code_fence": self.allow_code_fence}

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        value, err, fenced = _parse_json(prediction, allow_code_fence=self.allow_code_fence)
        if err is not None:
            return _fail(err)
        if not isinstance(value, self._TYPES[self.type]):
            return _fail(f"output is JSON of the wrong type: a {_json_type(value)}, not an {self.type}")
        return _result(True, code_fence=fenced)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        type(value), "null"
    )


@register_grader
class JsonSchemaGrader(Grader):
    """The output is JSON valid against ``schema`` (any JSON Schema draft ``jsonschema`` knows; the ``$schema``
    key picks it, Draft 2020-12 otherwise). Needs the ``jsonschema`` package (in tuneport's ``dev`` extra)."""

    name = "json_schema"
    needs_reference = False

    def __init__(self, *, schema: dict | None = None, allow_code_fence: bool = False) -> None:
        if not isinstance(schema, dict):
            raise EvaluationError(
                "grader 'json_schema' needs a 'schema' mapping (a JSON Schema object), got "
                + ("nothing" if schema is None else repr(schema))
            )
        try:
            import jsonschema
            from jsonschema.validators import validator_for
        except ImportError as exc:
            raise EvaluationError(
                "grader 'json_schema' needs the jsonschema package, which is not installed",
                hint="pip install jsonschema (or `pip install 'tuneport[dev]'`).",
            ) from exc
        cls = validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise EvaluationError(
                f"grader 'json_schema': the schema is invalid at {where}: {exc.message}"
            ) from exc
        self.validator = cls(schema)
        self.allow_code_fence = _want_bool(self.name, "allow_code_fence", allow_code_fence)
        self.params = {"schema": schema, "allow_code_fence": self.allow_code_fence}

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        value, err, _ = _parse_json(prediction, allow_code_fence=self.allow_code_fence)
        if err is not None:
            return _fail(err)
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
        if not errors:
            return _result(True)
        shown = [
            {"path": "/".join(str(p) for p in e.absolute_path) or "(root)", "message": _short(e.message)}
            for e in errors[:5]
        ]
        return _fail(
            f"output violates the schema ({len(errors)} error{'s' if len(errors) > 1 else ''})", errors=shown
        )


@register_grader
class JsonMatchGrader(Grader):
    """Field-level match of the output's JSON against the reference's: score = fraction of fields equal.

    ``fields`` lists the field paths to compare (``"category"``, ``"meta.tags.0"``); without it every top-level
    key of the reference is compared. Numbers compare by value (1 == 1.0), booleans are not numbers, nested
    values compare structurally; ``normalize_strings`` compares strings with :func:`normalize_text`.
    ``details["fields"]`` says, per field, whether it matched and why not.
    """

    name = "json_match"

    def __init__(
        self,
        *,
        fields: list[str] | None = None,
        normalize_strings: bool = False,
        allow_code_fence: bool = False,
    ) -> None:
        if fields is not None and (not isinstance(fields, list) or not fields):
            raise EvaluationError(
                f"grader 'json_match': 'fields' must be a non-empty list of paths, got {fields!r}"
            )
        self.fields = (
            None if fields is None else [_parse_path("grader 'json_match' fields", f) for f in fields]
        )
        self.normalize_strings = _want_bool(self.name, "normalize_strings", normalize_strings)
        self.allow_code_fence = _want_bool(self.name, "allow_code_fence", allow_code_fence)
        self.params = {
            "fields": fields,
            "normalize_strings": self.normalize_strings,
            "allow_code_fence": self.allow_code_fence,
        }

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        ref, err = _reference_json(reference)
        if err is not None:
            return _item_error(err)
        if self.fields is None:
            if not isinstance(ref, dict) or not ref:
                return _item_error(
                    "json_match without 'fields' compares the reference's top-level keys, but the reference is "
                    + ("an empty object" if isinstance(ref, dict) else f"a JSON {_json_type(ref)}")
                )
            fields: list[Path] = [(k,) for k in ref]
        else:
            fields = self.fields
            absent = [_path_text(p) for p in fields if _get_path(ref, p) is _MISSING]
            if absent:
                return _item_error(f"reference has no field {', '.join(map(repr, absent))}")
        value, perr, _ = _parse_json(prediction, allow_code_fence=self.allow_code_fence)
        if perr is not None:
            return GradeResult(
                score=0.0,
                passed=False,
                details={
                    "reason": perr,
                    "fields": {_path_text(p): {"match": False, "reason": "no JSON"} for p in fields},
                },
            )
        per_field: dict[str, dict[str, Any]] = {}
        matched = 0
        for path in fields:
            expected = _get_path(ref, path)
            got = _get_path(value, path)
            if got is _MISSING:
                per_field[_path_text(path)] = {
                    "match": False,
                    "reason": "missing in output",
                    "expected": expected,
                }
                continue
            ok = _json_equal(got, expected, normalize_strings=self.normalize_strings)
            matched += ok
            entry: dict[str, Any] = {"match": ok}
            if not ok:
                entry.update(expected=_short(expected), got=_short(got))
            per_field[_path_text(path)] = entry
        score = matched / len(fields)
        if matched == len(fields):
            return GradeResult(score=1.0, passed=True, details={"fields": per_field})
        return GradeResult(
            score=score,
            passed=False,
            details={
                "reason": f"fields differ: {len(fields) - matched} of {len(fields)}",
                "fields": per_field,
            },
        )


# --------------------------------------------------------------------------------------------------------------
# Labels (classification)
# --------------------------------------------------------------------------------------------------------------


@register_grader
class LabelGrader(Grader):
    """Classification: extract a label from the output and the reference, score 1 when they agree.

    With ``path`` (e.g. ``"category"``) the label is that JSON field; without it, the whole normalized text.
    Labels compare case-insensitively unless ``case_sensitive: true``. With ``labels`` (the allowed set), an output
    label outside it is recorded as ``<other>`` and a reference label outside it is an item error (the dataset
    disagrees with the config). An output with no label (not JSON, field missing) is recorded as ``<none>``.
    :meth:`summarize` adds per-label precision / recall / F1, macro and micro averages and a confusion matrix.
    """

    name = "label"

    def __init__(
        self,
        *,
        path: str | list[str] | None = None,
        labels: list[str] | None = None,
        case_sensitive: bool = False,
        allow_code_fence: bool = False,
    ) -> None:
        self.path = None if path is None else _parse_path("grader 'label' path", path)
        self.case_sensitive = _want_bool(self.name, "case_sensitive", case_sensitive)
        self.allow_code_fence = _want_bool(self.name, "allow_code_fence", allow_code_fence)
        raw_labels = _want_str_list(self.name, "labels", labels)
        self.labels: list[str] | None = None
        if raw_labels is not None:
            normalized = [self._norm(label) for label in raw_labels]
            dupes = sorted({x for x in normalized if normalized.count(x) > 1})
            if dupes:
                raise EvaluationError(
                    f"grader 'label': labels {dupes} are listed twice (after normalization)"
                )
            self.labels = normalized
        self.params = {
            "path": path,
            "labels": raw_labels,
            "case_sensitive": self.case_sensitive,
            "allow_code_fence": self.allow_code_fence,
        }

    def _norm(self, text: str) -> str:
        text = " ".join(unicodedata.normalize("NFKC", text).split())
        return text if self.case_sensitive else text.casefold()

    def _extract(self, value: Any) -> tuple[str | None, str | None]:
        """(label, why there is none)."""
        if self.path is not None:
            got = _get_path(value, self.path)
            if got is _MISSING:
                return None, f"field {_path_text(self.path)!r} is missing"
            value = got
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            return None, f"field {_path_text(self.path or ())!r} is a JSON {_json_type(value)}, not a label"
        label = self._norm(str(value))
        if not label:
            return None, "label is empty"
        return label, None

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        if self.path is not None:
            ref_value, err = _reference_json(reference)
            if err is not None:
                return _item_error(err)
        else:
            ref_value, err = _reference_text(reference, self.name)
            if err is not None:
                return _item_error(err)
        ref_label, why = self._extract(ref_value)
        if ref_label is None:
            return _item_error(f"reference has no label: {why}")
        if self.labels is not None and ref_label not in self.labels:
            return _item_error(
                f"reference label {ref_label!r} is not one of the configured labels {self.labels}"
            )

        if self.path is not None:
            value, perr, _ = _parse_json(prediction, allow_code_fence=self.allow_code_fence)
            if perr is not None:
                return GradeResult(
                    0.0, False, label=NO_LABEL, reference_label=ref_label, details={"reason": perr}
                )
        else:
            value = prediction
        label, why = self._extract(value)
        if label is None:
            return GradeResult(
                0.0,
                False,
                label=NO_LABEL,
                reference_label=ref_label,
                details={"reason": f"output has no label: {why}"},
            )
        details: dict[str, Any] = {}
        if self.labels is not None and label not in self.labels:
            details = {
                "reason": f"output label is not one of the configured labels: {_short(label)!r}",
                "raw": _short(label),
            }
            label = OTHER_LABEL
        ok = label == ref_label
        if not ok and "reason" not in details:
            details["reason"] = (
                f"label differs from the reference: predicted {_short(label)!r}, expected {ref_label!r}"
            )
        return GradeResult(1.0 if ok else 0.0, ok, label=label, reference_label=ref_label, details=details)

    def summarize(self, results: Sequence[GradeResult], *, confidence: float = 0.95) -> GradeSummary:
        return summarize_grades(results, confidence=confidence, labels=self.labels)


# --------------------------------------------------------------------------------------------------------------
# Overlap metrics: ROUGE-L and BLEU
# --------------------------------------------------------------------------------------------------------------


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(min) memory)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(
    prediction_tokens: Sequence[str], reference_tokens: Sequence[str], *, beta: float = 1.0
) -> dict[str, float]:
    """ROUGE-L (Lin, 2004): LCS-based precision, recall and F-measure ``(1+b^2) P R / (R + b^2 P)``.

    ``beta = 1`` gives F1, what the ``rouge-score`` package reports as ``rougeL`` fmeasure.
    """
    if not prediction_tokens or not reference_tokens:
        return {"precision": 0.0, "recall": 0.0, "f": 0.0, "lcs": 0}
    lcs = _lcs_length(prediction_tokens, reference_tokens)
    if lcs == 0:
        return {"precision": 0.0, "recall": 0.0, "f": 0.0, "lcs": 0}
    p = lcs / len(prediction_tokens)
    r = lcs / len(reference_tokens)
    b2 = beta * beta
    return {"precision": p, "recall": r, "f": (1 + b2) * p * r / (r + b2 * p), "lcs": lcs}


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


BLEU_SMOOTHING = ("exp", "floor", "add-k", "none")


def sentence_bleu(
    prediction_tokens: Sequence[str],
    reference_tokens: Sequence[str],
    *,
    max_order: int = 4,
    smoothing: str = "exp",
    smooth_value: float | None = None,
) -> dict[str, Any]:
    """Sentence BLEU (Papineni et al., 2002) with clipped n-gram precisions up to ``max_order``, uniform weights,
    the brevity penalty ``exp(1 - r/c)`` when the output is shorter than the reference, and smoothing so that
    one missing 4-gram does not zero the score. Orders longer than the output are left out (sacrebleu's
    "effective order" for sentence BLEU).

    Smoothing (Chen & Cherry, 2014), same definitions as sacrebleu:

    - ``exp`` (default; sacrebleu's sentence-BLEU default, Chen & Cherry method 3): the k-th order with zero
      matches gets precision ``1 / (2**k * total)``.
    - ``floor`` (method 1): zero match counts are replaced by ``smooth_value`` (default 0.1).
    - ``add-k`` (method 2, "BLEU+1" with k=1): orders >= 2 add ``smooth_value`` (default 1) to matches and total
      (so an order longer than the output counts with precision 1, as in sacrebleu).
    - ``none``: the plain corpus formula; any order with no match makes BLEU 0.

    Returns ``score`` in [0, 1] with the precisions, brevity penalty and lengths.
    """
    c, r = len(prediction_tokens), len(reference_tokens)
    matches, totals = [], []
    for n in range(1, max_order + 1):
        pred_ngrams = _ngram_counts(prediction_tokens, n)
        ref_ngrams = _ngram_counts(reference_tokens, n)
        matches.append(sum(min(count, ref_ngrams[g]) for g, count in pred_ngrams.items()))
        totals.append(max(0, c - n + 1))
    bp = 1.0 if c > r else (math.exp(1.0 - r / c) if c > 0 else 0.0)
    result: dict[str, Any] = {
        "precisions": [],
        "brevity_penalty": bp,
        "prediction_length": c,
        "reference_length": r,
    }
    if c == 0 or r == 0 or matches[0] == 0:  # no token in common: 0 whatever the smoothing (as sacrebleu)
        return {**result, "score": 0.0}
    precisions: list[float] = []
    exp_k = 1
    for n, (m, t) in enumerate(zip(matches, totals, strict=True), start=1):
        if smoothing == "add-k" and n >= 2:
            k = 1.0 if smooth_value is None else smooth_value
            m, t = m + k, t + k
        if t == 0:  # output shorter than n: this and longer orders are not counted (effective order)
            break
        if m > 0:
            precisions.append(m / t)
        elif smoothing == "exp":
            exp_k *= 2
            precisions.append(1.0 / (exp_k * t))
        elif smoothing == "floor":
            precisions.append((0.1 if smooth_value is None else smooth_value) / t)
        else:
            precisions.append(0.0)
    result["precisions"] = precisions
    if min(precisions) <= 0.0:
        return {**result, "score": 0.0}
    log_mean = math.fsum(math.log(p) for p in precisions) / len(precisions)
    return {**result, "score": bp * math.exp(log_mean)}


@register_grader
class RougeLGrader(Grader):
    """ROUGE-L F-measure between output and reference tokens (lowercased ``\\w+`` words after NFKC).

    ``passed`` is ``score >= threshold`` when a ``threshold`` is configured, else ``None``.
    """

    name = "rouge_l"

    def __init__(self, *, beta: float = 1.0, lowercase: bool = True, threshold: float | None = None) -> None:
        self.beta = _want_number(self.name, "beta", beta, low=1e-6, high=1e6)
        self.lowercase = _want_bool(self.name, "lowercase", lowercase)
        self.threshold = _want_threshold(self.name, threshold)
        self.params = {"beta": self.beta, "lowercase": self.lowercase, "threshold": self.threshold}

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        ref_tokens = tokenize(ref, lowercase=self.lowercase)
        if not ref_tokens:
            return _item_error("reference has no word tokens; ROUGE-L is undefined")
        m = rouge_l(tokenize(prediction, lowercase=self.lowercase), ref_tokens, beta=self.beta)
        return _thresholded(m["f"], self.threshold, {k: m[k] for k in ("precision", "recall", "lcs")})


def _thresholded(score: float, threshold: float | None, details: dict[str, Any]) -> GradeResult:
    if threshold is None:
        return GradeResult(score=score, passed=None, details=details)
    if score >= threshold:
        return GradeResult(score=score, passed=True, details=details)
    return GradeResult(
        score=score,
        passed=False,
        details={"reason": f"score below threshold: {score:.4f} < {threshold}", **details},
    )


@register_grader
class BleuGrader(Grader):
    """Sentence BLEU (see :func:`sentence_bleu`; default smoothing ``exp``, as sacrebleu's ``sentence_bleu``).

    Tokens: NFKC, then words and single punctuation characters (case kept unless ``lowercase: true``). This is
    close to, but not identical with, sacrebleu's ``13a`` tokenizer, so scores match sacrebleu on ordinary text and
    can differ slightly on unusual punctuation.
    """

    name = "bleu"

    def __init__(
        self,
        *,
        max_order: int = 4,
        smoothing: str = "exp",
        smooth_value: float | None = None,
        lowercase: bool = False,
        threshold: float | None = None,
    ) -> None:
        if isinstance(max_order, bool) or not isinstance(max_order, int) or not 1 <= max_order <= 8:
            raise EvaluationError(
                f"grader 'bleu': max_order must be an integer from 1 to 8, got {max_order!r}"
            )
        self.max_order = max_order
        self.smoothing = _want_choice(self.name, "smoothing", smoothing, BLEU_SMOOTHING)
        if smooth_value is not None:
            if self.smoothing not in ("floor", "add-k"):
                raise EvaluationError(
                    f"grader 'bleu': smooth_value applies to smoothing 'floor' or 'add-k', not {self.smoothing!r}"
                )
            smooth_value = _want_number(self.name, "smooth_value", smooth_value, low=1e-9, high=1e3)
        self.smooth_value = smooth_value
        self.lowercase = _want_bool(self.name, "lowercase", lowercase)
        self.threshold = _want_threshold(self.name, threshold)
        self.params = {
            "max_order": max_order,
            "smoothing": self.smoothing,
            "smooth_value": smooth_value,
            "lowercase": self.lowercase,
            "threshold": self.threshold,
        }

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        ref_tokens = tokenize(ref, lowercase=self.lowercase, punctuation=True)
        if not ref_tokens:
            return _item_error("reference has no tokens; BLEU is undefined")
        b = sentence_bleu(
            tokenize(prediction, lowercase=self.lowercase, punctuation=True),
            ref_tokens,
            max_order=self.max_order,
            smoothing=self.smoothing,
            smooth_value=self.smooth_value,
        )
        details = {
            k: b[k] for k in ("precisions", "brevity_penalty", "prediction_length", "reference_length")
        }
        return _thresholded(b["score"], self.threshold, details)


# --------------------------------------------------------------------------------------------------------------
# Pairwise LLM judge
# --------------------------------------------------------------------------------------------------------------

DEFAULT_JUDGE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. Choose the assistant that follows the user's instructions and answers the "
    "user's question better, considering helpfulness, relevance, accuracy and level of detail. Avoid any position "
    "bias: the order in which the responses were presented must not influence your decision. Do not let the "
    "length of the responses or the names of the assistants influence your evaluation. Be as objective as "
    "possible. After a short explanation, output your final verdict by strictly following this format: "
    '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)

DEFAULT_JUDGE_TEMPLATE = (
    "[User Question]\n{question}\n{reference_block}\n"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)

_PLACEHOLDER_RE = re.compile(r"\{(question|answer_a|answer_b|reference|reference_block)\}")
_VERDICT_RE = re.compile(r"\[\[\s*(A|B|C|TIE)\s*\]\]", re.IGNORECASE)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def conversation_text(item: dict | None) -> str:
    """The question part of an item for a judge prompt: its conversation without the final assistant answer.

    Understands chat items (``messages``), DPO items (``input.messages``) and plain ``question`` / ``prompt``
    strings. A single user message is given as is; longer conversations as ``ROLE: text`` lines.
    """
    if not item:
        return ""
    for key in ("question", "prompt"):
        if isinstance(item.get(key), str):
            return item[key]
    messages = item.get("messages")
    if messages is None and isinstance(item.get("input"), dict):
        messages = item["input"].get("messages")
    if not isinstance(messages, list):
        return ""
    messages = [m for m in messages if isinstance(m, dict)]
    if messages and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return _content_text(turns[0].get("content"))
    return "\n".join(
        f"{str(m.get('role', '?')).upper()}: {_content_text(m.get('content'))}" for m in messages
    )


@dataclass(frozen=True)
class PairwiseResult:
    """The judge's decision on one item, asked in both orders.

    ``winner`` is ``"a"`` or ``"b"`` only when both orders agree; ``"tie"`` when both say tie or the orders
    disagree (position bias: ``details["orders_disagree"]``); ``None`` with ``error`` set when either answer could
    not be parsed. ``verdicts`` are the two parsed verdicts mapped back to A/B/tie (first: A shown first).
    """

    winner: Literal["a", "b", "tie"] | None
    error: str | None = None
    verdicts: tuple[str | None, str | None] = (None, None)
    raw: tuple[str | None, str | None] = (None, None)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def score_a(self) -> float | None:
        """1 for an A win, 0.5 for a tie, 0 for a B win (None on error)."""
        return {"a": 1.0, "tie": 0.5, "b": 0.0}.get(self.winner) if self.winner else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "error": self.error,
            "verdicts": list(self.verdicts),
            "raw": list(self.raw),
            "details": self.details,
        }


@register_grader
class PairwiseJudgeGrader(Grader):
    """LLM-as-judge, pairwise: which of two outputs answers the item better?

    Each item is judged twice, with the outputs in both orders (A/B, then B/A), and a win counts only when both
    orders agree, which cancels the judge's position bias (Zheng et al., 2023, "Judging LLM-as-a-Judge").
    Disagreement is a tie. An answer with no verdict, or with conflicting verdicts, is a per-item error, never a
    silent tie. Identical outputs are a tie without asking the judge.

    ``template`` (the user message) may use ``{question}``, ``{reference}``, ``{reference_block}`` (an empty
    string, or the reference under a ``[Reference Answer]`` heading) and must use ``{answer_a}`` and
    ``{answer_b}``; other braces are left alone, so JSON examples need no escaping. The judge must end with
    ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). ``system`` replaces the system prompt (``null`` for none).

    The judge is a ``judge(messages) -> str`` callable, sync or async, given to :func:`make_grader` (or per call).
    Exceptions from it propagate: the runner decides whether a failed call is retried or recorded.
    """

    name = "pairwise_judge"
    kind = "pairwise"
    needs_reference = False

    def __init__(
        self,
        *,
        judge: JudgeFn | None = None,
        template: str | None = None,
        system: str | None = DEFAULT_JUDGE_SYSTEM,
    ) -> None:
        template = DEFAULT_JUDGE_TEMPLATE if template is None else template
        if not isinstance(template, str):
            raise EvaluationError(f"grader 'pairwise_judge': template must be a string, got {template!r}")
        used = set(_PLACEHOLDER_RE.findall(template))
        missing = {"answer_a", "answer_b"} - used
        if missing:
            raise EvaluationError(
                f"grader 'pairwise_judge': the template must contain {', '.join('{' + m + '}' for m in sorted(missing))}",
                hint="Placeholders: {question}, {reference}, {reference_block}, {answer_a}, {answer_b}.",
            )
        if system is not None and not isinstance(system, str):
            raise EvaluationError(f"grader 'pairwise_judge': system must be a string or null, got {system!r}")
        if judge is not None and not callable(judge):
            raise EvaluationError(f"grader 'pairwise_judge': judge must be callable, got {judge!r}")
        self.template = template
        self.system = system
        self.judge = judge
        self.params = {"template": template, "system": system}

    # -- prompts ---------------------------------------------------------------------------------------------

    def build_messages(
        self, first: str, second: str, *, item: dict | None = None, reference: Reference = None
    ) -> list[Message]:
        """The judge prompt with ``first`` shown as assistant A and ``second`` as assistant B."""
        ref_text = (
            "" if reference is None else reference if isinstance(reference, str) else json.dumps(reference)
        )
        values = {
            "question": conversation_text(item),
            "reference": ref_text,
            "reference_block": f"\n[Reference Answer]\n{ref_text}\n[End of Reference Answer]\n"
            if ref_text
            else "",
            "answer_a": first,
            "answer_b": second,
        }
        content = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], self.template)
        messages: list[Message] = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": content})
        return messages

    @staticmethod
    def parse_verdict(text: str) -> tuple[str | None, str | None]:
        """("A" | "B" | "tie", None) or (None, why it is unparseable)."""
        if not isinstance(text, str):
            return None, f"judge returned {type(text).__name__}, not text"
        found = {m.upper() for m in _VERDICT_RE.findall(text)}
        found = {"tie" if v in ("C", "TIE") else v for v in found}
        if not found:
            return None, "judge output has no verdict ([[A]], [[B]] or [[C]])"
        if len(found) > 1:
            return None, f"judge output has conflicting verdicts ({', '.join(sorted(found))})"
        return found.pop(), None

    # -- deciding ----------------------------------------------------------------------------------------------

    def _decide(self, raw_ab: str, raw_ba: str) -> PairwiseResult:
        v1, e1 = self.parse_verdict(raw_ab)
        v2, e2 = self.parse_verdict(raw_ba)
        raw = (_short(raw_ab, 2000), _short(raw_ba, 2000))
        # Second order showed B as "A": map its verdict back.
        v2 = {"A": "b", "B": "a", "tie": "tie"}.get(v2) if v2 else None
        v1 = {"A": "a", "B": "b", "tie": "tie"}.get(v1) if v1 else None
        if e1 or e2:
            parts = [f"A-first order: {e1}" if e1 else "", f"B-first order: {e2}" if e2 else ""]
            return PairwiseResult(None, error="; ".join(p for p in parts if p), verdicts=(v1, v2), raw=raw)
        if v1 == v2:
            return PairwiseResult(v1, verdicts=(v1, v2), raw=raw)  # type: ignore[arg-type]
        return PairwiseResult("tie", verdicts=(v1, v2), raw=raw, details={"orders_disagree": True})

    def _pick_judge(self, judge: JudgeFn | None) -> JudgeFn:
        judge = judge or self.judge
        if judge is None:
            raise EvaluationError(
                "grader 'pairwise_judge' has no judge to ask",
                hint="Pass judge=callable to make_grader(...) or to compare(...); the runner provides one.",
            )
        return judge

    def compare(
        self,
        output_a: str,
        output_b: str,
        *,
        item: dict | None = None,
        reference: Reference = None,
        judge: JudgeFn | None = None,
    ) -> PairwiseResult:
        """Judge one item synchronously (an async judge is run with ``asyncio.run`` when no loop is running)."""
        judge = self._pick_judge(judge)
        if output_a == output_b:
            return PairwiseResult("tie", verdicts=("tie", "tie"), details={"shortcut": "identical outputs"})
        first = judge(self.build_messages(output_a, output_b, item=item, reference=reference))
        if inspect.isawaitable(first):
            import asyncio

            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._finish_async(first, judge, output_a, output_b, item, reference))
            if inspect.iscoroutine(first):
                first.close()
            raise EvaluationError(
                "the judge is async and an event loop is running: use `await grader.acompare(...)` instead"
            )
        second = judge(self.build_messages(output_b, output_a, item=item, reference=reference))
        return self._decide(first, second)  # type: ignore[arg-type]

    async def _finish_async(
        self, first: Awaitable[str], judge: JudgeFn, a: str, b: str, item: dict | None, reference: Reference
    ) -> PairwiseResult:
        second = judge(self.build_messages(b, a, item=item, reference=reference))
        raw_ab = await first
        raw_ba = await second if inspect.isawaitable(second) else second
        return self._decide(raw_ab, raw_ba)

    async def acompare(
        self,
        output_a: str,
        output_b: str,
        *,
        item: dict | None = None,
        reference: Reference = None,
        judge: JudgeFn | None = None,
    ) -> PairwiseResult:
        """Judge one item, asking both orders concurrently when the judge is async."""
        judge = self._pick_judge(judge)
        if output_a == output_b:
            return PairwiseResult("tie", verdicts=("tie", "tie"), details={"shortcut": "identical outputs"})
        calls = [
            judge(self.build_messages(output_a, output_b, item=item, reference=reference)),
            judge(self.build_messages(output_b, output_a, item=item, reference=reference)),
        ]
        pending = [c for c in calls if inspect.isawaitable(c)]
        if pending:
            import asyncio

            done = iter(await asyncio.gather(*pending))
        else:
            done = iter(())
        raw = [next(done) if inspect.isawaitable(c) else c for c in calls]
        return self._decide(raw[0], raw[1])

    def _grade(self, prediction: str, reference: Reference = None, item: dict | None = None) -> GradeResult:
        """Judge ``prediction`` (as A) against the reference answer (as B): 1 for a win, 0.5 tie, 0 loss."""
        ref, err = _reference_text(reference, self.name)
        if err is not None:
            return _item_error(err)
        result = self.compare(prediction, ref, item=item)
        if result.error is not None:
            return _item_error(result.error, raw=list(result.raw))
        details = {"winner": result.winner, "verdicts": list(result.verdicts), **result.details}
        return GradeResult(score=result.score_a or 0.0, passed=result.winner == "a", details=details)


# --------------------------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelMetrics:
    """Per-label precision / recall / F1 with macro and micro averages, and the confusion matrix.

    ``confusion[gold][predicted]`` counts items; predicted columns include ``<none>`` (no label in the output)
    and ``<other>`` (a label outside the configured set) when they occur. Those count against recall of the gold
    label but against no label's precision. Undefined ratios (0 / 0) are 0, as scikit-learn's default.
    Macro averages are unweighted means over ``labels``; micro averages pool the counts, so with every output
    carrying a valid label micro F1 equals accuracy.
    """

    labels: list[str]
    per_label: dict[str, dict[str, float]]
    macro: dict[str, float]
    micro: dict[str, float]
    confusion: dict[str, dict[str, int]]
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "per_label": self.per_label,
            "macro": self.macro,
            "micro": self.micro,
            "confusion": self.confusion,
            "columns": self.columns,
        }


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def label_metrics(results: Sequence[GradeResult], labels: Sequence[str] | None = None) -> LabelMetrics | None:
    """Per-label metrics over graded label results (errors skipped); ``None`` when no result carries labels.

    ``labels`` fixes the label set and its order (the grader's configured labels); otherwise it is every gold
    label and every predicted label that is a real label, sorted.
    """
    pairs = [
        (r.reference_label, r.label) for r in results if r.error is None and r.reference_label is not None
    ]
    if not pairs:
        return None
    special = (NO_LABEL, OTHER_LABEL)
    if labels is None:
        label_set = sorted(
            {g for g, _ in pairs} | {p for _, p in pairs if p is not None and p not in special}
        )
    else:
        label_set = list(labels)
    columns = list(label_set) + [s for s in special if any(p == s for _, p in pairs)]
    confusion = {g: dict.fromkeys(columns, 0) for g in label_set}
    for gold, pred in pairs:
        pred = pred if pred is not None else NO_LABEL
        if pred not in columns:  # a label outside an explicitly given set
            pred = OTHER_LABEL
            if OTHER_LABEL not in columns:
                columns.append(OTHER_LABEL)
                for row in confusion.values():
                    row.setdefault(OTHER_LABEL, 0)
        confusion.setdefault(gold, dict.fromkeys(columns, 0))
        confusion[gold][pred] = confusion[gold].get(pred, 0) + 1
    per_label: dict[str, dict[str, float]] = {}
    tp_sum = fp_sum = fn_sum = 0
    for label in label_set:
        tp = confusion.get(label, {}).get(label, 0)
        fp = sum(row.get(label, 0) for gold, row in confusion.items() if gold != label)
        fn = sum(confusion.get(label, {}).values()) - tp
        per_label[label] = {**_prf(tp, fp, fn), "support": tp + fn}
        tp_sum, fp_sum, fn_sum = tp_sum + tp, fp_sum + fp, fn_sum + fn
    k = len(label_set)
    macro = {m: math.fsum(per_label[lbl][m] for lbl in label_set) / k for m in ("precision", "recall", "f1")}
    return LabelMetrics(
        labels=list(label_set),
        per_label=per_label,
        macro=macro,
        micro=_prf(tp_sum, fp_sum, fn_sum),
        confusion=confusion,
        columns=columns,
    )


@dataclass(frozen=True)
class GradeSummary:
    """Aggregate of one grader over one endpoint's outputs.

    ``n`` items, of which ``n_errors`` could not be graded (left out of everything else; ``error_reasons`` counts
    why). ``mean_score`` is over graded items; ``accuracy`` (with its Wilson interval) is over items with a
    pass/fail verdict and is ``None`` when the grader gives none. ``failure_reasons`` counts why outputs failed,
    so "48 of 50 failed: output is not valid JSON" is visible at a glance.
    """

    n: int
    n_graded: int
    n_errors: int
    mean_score: float | None
    n_judged: int
    n_passed: int
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    error_reasons: dict[str, int]
    failure_reasons: dict[str, int]
    labels: LabelMetrics | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "n_graded": self.n_graded,
            "n_errors": self.n_errors,
            "mean_score": self.mean_score,
            "n_judged": self.n_judged,
            "n_passed": self.n_passed,
            "accuracy": self.accuracy,
            "accuracy_ci": list(self.accuracy_ci) if self.accuracy_ci else None,
            "error_reasons": self.error_reasons,
            "failure_reasons": self.failure_reasons,
            "labels": self.labels.to_dict() if self.labels else None,
        }


def _reason_key(text: str) -> str:
    """Group reasons that differ only in details (positions, values) under their first clause."""
    return re.split(r"[:(]", text, maxsplit=1)[0].strip()


def summarize_grades(
    results: Sequence[GradeResult], *, confidence: float = 0.95, labels: Sequence[str] | None = None
) -> GradeSummary:
    """Mean score, accuracy with a Wilson interval, error and failure reasons, and label metrics when present."""
    graded = [r for r in results if r.error is None]
    judged = [r for r in graded if r.passed is not None]
    n_passed = sum(1 for r in judged if r.passed)
    errors = Counter(_reason_key(r.error) for r in results if r.error is not None)
    failures = Counter(_reason_key(str(r.details.get("reason", "failed"))) for r in judged if not r.passed)
    return GradeSummary(
        n=len(results),
        n_graded=len(graded),
        n_errors=len(results) - len(graded),
        mean_score=math.fsum(r.score for r in graded) / len(graded) if graded else None,
        n_judged=len(judged),
        n_passed=n_passed,
        accuracy=n_passed / len(judged) if judged else None,
        accuracy_ci=wilson_interval(n_passed, len(judged), confidence) if judged else None,
        error_reasons=dict(errors.most_common()),
        failure_reasons=dict(failures.most_common()),
        labels=label_metrics(results, labels),
    )


@dataclass(frozen=True)
class PairwiseSummary:
    """Win / tie / loss counts of B against A from the pairwise judge, with an exact sign test on the wins.

    The sign test is McNemar's exact test with ``b`` = A's wins and ``c`` = B's wins (ties carry no information
    about direction and are left out, as in McNemar's test the concordant pairs are).
    """

    n: int
    wins_a: int
    wins_b: int
    ties: int
    errors: int
    orders_disagree: int
    win_rate_b: float | None
    p_value: float
    winner: Literal["a", "b"] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_pairwise(results: Sequence[PairwiseResult], *, alpha: float = 0.05) -> PairwiseSummary:
    """Aggregate pairwise verdicts; ``winner`` is set only when the sign test is significant at ``alpha``."""
    wins_a = sum(1 for r in results if r.winner == "a")
    wins_b = sum(1 for r in results if r.winner == "b")
    ties = sum(1 for r in results if r.winner == "tie")
    test = mcnemar_exact(wins_a, wins_b, alpha=alpha)
    decided = wins_a + wins_b + ties
    return PairwiseSummary(
        n=len(results),
        wins_a=wins_a,
        wins_b=wins_b,
        ties=ties,
        errors=sum(1 for r in results if r.error is not None),
        orders_disagree=sum(1 for r in results if r.details.get("orders_disagree")),
        win_rate_b=(wins_b + 0.5 * ties) / decided if decided else None,
        p_value=test.p_value,
        winner=test.winner if test.significant else None,
    )


def paired_grades(
    a: Sequence[GradeResult], b: Sequence[GradeResult]
) -> tuple[list[float], list[float], list[bool] | None, list[bool] | None, int]:
    """Line up two endpoints' results on the same items for :func:`tuneport.evaluation.stats.compare_paired`.

    Items where either side could not be graded are dropped from both sides (their count is returned last).
    Pass/fail lists are returned only when every kept item has a verdict on both sides.
    Returns ``(a_scores, b_scores, a_passed, b_passed, n_dropped)``.
    """
    if len(a) != len(b):
        raise EvaluationError(
            f"paired grades need the same items on both sides: {len(a)} results for A, {len(b)} for B",
            hint="Grade both endpoints on the same dataset and keep the item order.",
        )
    kept = [(x, y) for x, y in zip(a, b, strict=True) if x.error is None and y.error is None]
    a_scores = [x.score for x, _ in kept]
    b_scores = [y.score for _, y in kept]
    if kept and all(x.passed is not None and y.passed is not None for x, y in kept):
        a_passed: list[bool] | None = [bool(x.passed) for x, _ in kept]
        b_passed: list[bool] | None = [bool(y.passed) for _, y in kept]
    else:
        a_passed = b_passed = None
    return a_scores, b_scores, a_passed, b_passed, len(a) - len(kept)
