"""Partial credit for overlapping text: ROUGE-L and sentence BLEU, and their graders."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders.base import Grader, register_grader
from tuneport.evaluation.graders.params import _want_bool, _want_choice, _want_number, _want_threshold
from tuneport.evaluation.graders.results import GradeResult, Reference, _item_error
from tuneport.evaluation.graders.text import _reference_text, tokenize


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
