"""Text graders: exact, normalized, contains and regex."""

from __future__ import annotations

import re

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.base import Grader, register_grader
from tuneport.evaluation.graders.params import _want_bool, _want_choice, _want_str_list
from tuneport.evaluation.graders.results import GradeResult, Reference, _fail, _item_error, _result, _short
from tuneport.evaluation.graders.text import _reference_text, normalize_text


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
