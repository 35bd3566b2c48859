"""The grader base class, the registry of grader names, and :func:`make_grader`, which builds a grader from
its config and refuses a config that cannot work before any item is graded."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.results import GradeResult, JudgeFn, Reference
from tuneport.evaluation.graders.summary import GradeSummary, summarize_grades


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
