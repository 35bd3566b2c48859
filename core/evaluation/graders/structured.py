"""Structured-output graders: is the output JSON, does it match a JSON schema, do its fields match the
reference's."""

from __future__ import annotations

from typing import Any, ClassVar

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.base import Grader, register_grader
from tuneport.evaluation.graders.json_values import (
    _MISSING,
    Path,
    _get_path,
    _json_equal,
    _json_type,
    _parse_json,
    _parse_path,
    _path_text,
    _reference_json,
)
from tuneport.evaluation.graders.params import _want_bool, _want_choice
from tuneport.evaluation.graders.results import GradeResult, Reference, _fail, _item_error, _result, _short


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
