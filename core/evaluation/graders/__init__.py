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

One module per grader family (``exact``: exact, normalized, contains, regex; ``structured``: JSON, JSON schema,
JSON fields; ``labels``; ``overlap``: ROUGE-L, BLEU; ``judge``: the pairwise judge), on ``base`` (the class, the
registry, :func:`make_grader`), ``results`` and ``summary``. Importing this package registers every family.
"""

from __future__ import annotations

from tuneport.evaluation.graders.base import GRADERS, Grader, grader_names, make_grader, register_grader
from tuneport.evaluation.graders.exact import ContainsGrader, ExactGrader, NormalizedGrader, RegexGrader
from tuneport.evaluation.graders.judge import (
    DEFAULT_JUDGE_SYSTEM,
    DEFAULT_JUDGE_TEMPLATE,
    PairwiseJudgeGrader,
    PairwiseResult,
    PairwiseSummary,
    conversation_text,
    summarize_pairwise,
)
from tuneport.evaluation.graders.labels import LabelGrader
from tuneport.evaluation.graders.overlap import (
    BLEU_SMOOTHING,
    BleuGrader,
    RougeLGrader,
    rouge_l,
    sentence_bleu,
)
from tuneport.evaluation.graders.results import NO_LABEL, OTHER_LABEL, GradeResult, JudgeFn
from tuneport.evaluation.graders.structured import JsonMatchGrader, JsonSchemaGrader, JsonValidGrader
from tuneport.evaluation.graders.summary import (
    GradeSummary,
    LabelMetrics,
    label_metrics,
    paired_grades,
    summarize_grades,
)
from tuneport.evaluation.graders.text import normalize_text, tokenize

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
    "conversation_text",
    "DEFAULT_JUDGE_SYSTEM",
    "DEFAULT_JUDGE_TEMPLATE",
    "BLEU_SMOOTHING",
]
