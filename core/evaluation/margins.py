"""The statistics behind three questions people fine-tune to answer: by how much does B beat A (an interval on
the paired difference of pass rates), is the model overfit (training vs held-out, two independent samples), and
is the candidate not worse than the baseline by more than a margin (non-inferiority).

Methods, and why:

- **Paired difference of pass rates**: Newcombe's (1998) method 11, the hybrid score interval built from the two
  Wilson intervals and the continuity-corrected correlation of the pairs (method 10's uncorrected correlation
  collapses the interval to a point when the endpoints agree on every item, which would claim certainty that
  a handful of items cannot give). It stays inside [-1, 1] and keeps its coverage at small n,
  where the Wald interval does not.
- **Training vs held-out** (different items, so independent samples): for pass rates Newcombe's hybrid score
  interval for two independent proportions (statsmodels' ``method="newcomb"``); for mean scores Welch's t
  interval (unequal variances). ``gap = train - heldout``.
- **Non-inferiority** of candidate B against baseline A with margin M (H0: B - A <= -M): for pass/fail graders the
  exact binomial test on the discordant pairs, conditional on their number (given ``nd`` discordant pairs with a
  discordance rate ``psi = nd / n``, a difference of ``-M`` means B wins each with probability
  ``pi0 = (1 - M / psi) / 2``); its inversion gives the one-sided exact bound. Conditioning treats ``psi`` as
  known, which flatters a small sample (no discordant pairs among 5 items is not evidence of anything), so the
  verdict also requires the one-sided Newcombe bound above ``-M``. For scores, the one-sided paired t-test on the
  per-item differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tuneport.errors import EvaluationError
from tuneport.evaluation.distributions import binom_lower_bound, binom_sf, t_cdf, t_ppf
from tuneport.evaluation.stats import wilson_interval

__all__ = [
    "check_margin",
    "paired_rate_diff_ci",
    "independent_rate_diff_ci",
    "welch_diff_ci",
    "NonInferiority",
    "noninferiority_pass",
    "noninferiority_scores",
]


def check_margin(margin: Any) -> float:
    """A non-inferiority margin: a number strictly between 0 and 1 (a pass-rate or score difference)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 < margin < 1.0:
        raise EvaluationError(
            f"the non-inferiority margin must be a number strictly between 0 and 1, got {margin!r}",
            hint="It is a difference of pass rates or scores: --margin 0.05 allows the candidate to be at most "
            "5 points worse than the baseline.",
        )
    return float(margin)


def _counts(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, int, int]:
    """(both pass, only A, only B, neither)."""
    if len(a) != len(b) or not a:
        raise EvaluationError(f"paired pass/fail lists must be non-empty and of one length, got {len(a)} and {len(b)}")
    both = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    return both, only_a, only_b, len(a) - both - only_a - only_b


def paired_rate_diff_ci(a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 11) for ``rate(b) - rate(a)`` on the same items."""
    e, f, g, h = _counts(a, b)
    n = e + f + g + h
    p1, p2 = (e + f) / n, (e + g) / n
    l1, u1 = wilson_interval(e + f, n, confidence)
    l2, u2 = wilson_interval(e + g, n, confidence)
    denom = (e + f) * (g + h) * (e + g) * (f + h)
    cross = e * h - f * g
    if cross > 0:
        cross = max(cross - n / 2.0, 0.0)  # the continuity correction of a positive correlation
    phi = cross / math.sqrt(denom) if denom else 0.0
    diff = p2 - p1
    down = math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    up = math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, diff - down), min(1.0, diff + up)


def independent_rate_diff_ci(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for ``k1/n1 - k2/n2`` from two independent samples."""
    if n1 < 1 or n2 < 1:
        raise EvaluationError("a difference of two proportions needs at least one item on each side")
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def welch_diff_ci(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Welch's t interval for ``mean(x) - mean(y)`` (independent samples, unequal variances)."""
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        raise EvaluationError(f"Welch's interval needs at least 2 values on each side, got {n1} and {n2}")
    m1, m2 = math.fsum(x) / n1, math.fsum(y) / n2
    v1 = math.fsum((v - m1) ** 2 for v in x) / (n1 - 1)
    v2 = math.fsum((v - m2) ** 2 for v in y) / (n2 - 1)
    se2 = v1 / n1 + v2 / n2
    d = m1 - m2
    if se2 == 0.0:
        return d, d
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    half = t_ppf(0.5 + confidence / 2.0, df) * math.sqrt(se2)
    return d - half, d + half


@dataclass(frozen=True)
class NonInferiority:
    """A one-sided test of H0 ``B - A <= -margin``: ``non_inferior`` when it is rejected at ``alpha``.

    ``lower_bound`` is the one-sided ``1 - alpha`` lower confidence bound of the difference (exact, from the
    discordant pairs, for pass/fail; t for scores); ``newcombe_lower`` the one-sided Newcombe bound (pass/fail).
    """

    kind: str  # "pass" | "score"
    n: int
    margin: float
    alpha: float
    diff: float
    lower_bound: float
    p_value: float
    non_inferior: bool
    method: str
    n_discordant: int | None = None
    b: int | None = None
    c: int | None = None
    newcombe_lower: float | None = None
    note: str | None = None

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "confidence": self.confidence}


def noninferiority_pass(
    a: Sequence[bool], b: Sequence[bool], margin: float, *, alpha: float = 0.05
) -> NonInferiority:
    """Is B's pass rate not worse than A's by more than ``margin``? (See the module docstring for the method.)"""
    margin = check_margin(margin)
    _, only_a, only_b, _ = _counts(a, b)
    n = len(a)
    nd = only_a + only_b
    diff = (only_b - only_a) / n
    if nd == 0:
        exact_lower, p = 0.0, 0.0
    else:
        psi = nd / n
        pi0 = (1.0 - margin / psi) / 2.0
        # pi0 <= 0: even every discordant pair going A's way leaves B within the margin at this discordance
        p = 0.0 if pi0 <= 0.0 else binom_sf(only_b, nd, pi0)
        exact_lower = psi * (2.0 * binom_lower_bound(only_b, nd, alpha) - 1.0)
    newcombe_lower, _ = paired_rate_diff_ci(a, b, 1.0 - 2.0 * alpha)
    exact_ok = p < alpha
    newcombe_ok = newcombe_lower > -margin
    note = None
    if exact_ok and not newcombe_ok:
        note = (f"the exact test on the {nd} discordant pairs passes, but with n = {n} the discordance rate itself "
                f"is uncertain: the Newcombe bound ({newcombe_lower:+.3f}) does not clear -{margin:g}; evaluate "
                "on more items")  # fmt: skip
    return NonInferiority(
        kind="pass", n=n, margin=margin, alpha=alpha, diff=diff, lower_bound=exact_lower, p_value=p,
        non_inferior=exact_ok and newcombe_ok, method="exact binomial test on the discordant pairs + Newcombe bound",
        n_discordant=nd, b=only_a, c=only_b, newcombe_lower=newcombe_lower, note=note,
    )  # fmt: skip


def noninferiority_scores(
    a: Sequence[float], b: Sequence[float], margin: float, *, alpha: float = 0.05
) -> NonInferiority:
    """Is B's mean score not worse than A's by more than ``margin``? One-sided paired t-test on ``b - a``."""
    margin = check_margin(margin)
    if len(a) != len(b):
        raise EvaluationError(f"paired scores must be of one length, got {len(a)} and {len(b)}")
    n = len(a)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    if n < 2:
        mean = diffs[0] if diffs else 0.0
        return NonInferiority("score", n, margin, alpha, mean, -math.inf, 1.0, False, "paired t-test",
                              note=f"{n} paired item(s): a t-test needs at least 2")  # fmt: skip
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0.0:
        ok = mean > -margin
        return NonInferiority("score", n, margin, alpha, mean, mean, 0.0 if ok else 1.0, ok, "paired t-test",
                              note="every item has the same difference")  # fmt: skip
    se = sd / math.sqrt(n)
    lower = mean - t_ppf(1.0 - alpha, n - 1) * se
    p = t_cdf(-(mean + margin) / se, n - 1)  # the upper tail, without cancellation
    return NonInferiority("score", n, margin, alpha, mean, lower, p, p < alpha, "paired t-test")
