"""Paired statistics for comparing two endpoints on the same evaluation items.

Why paired: both endpoints answer the *same* items, so item difficulty cancels out. A paired test (McNemar for
pass/fail, a paired bootstrap for scores) detects a real difference with far fewer items than comparing two
independent accuracies, and it never claims a difference that is only the luck of which items were hard.

Conventions used everywhere in this module:

- "A" is the first endpoint (usually the baseline), "B" the second (usually the candidate).
- Differences are **B minus A**: a positive ``mean_diff`` means B scored higher.
- McNemar's ``b`` counts items A passed and B failed; ``c`` counts items B passed and A failed.
- Percentiles interpolate linearly between order statistics (Hyndman & Fan type 7, numpy's default):
  for sorted ``x[0..n-1]`` the q-quantile sits at position ``h = (n - 1) * q``, between ``x[floor(h)]`` and
  ``x[ceil(h)]``.

Everything is computed with the standard library only (``math``, ``statistics.NormalDist``, ``random``), exactly
where an exact answer exists (binomial tail sums use integer arithmetic).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any, Literal

from tuneport.errors import EvaluationError

__all__ = [
    "norm_ppf",
    "norm_cdf",
    "percentile",
    "wilson_interval",
    "McNemarResult",
    "mcnemar_exact",
    "BootstrapCI",
    "paired_bootstrap_ci",
    "mde_paired_proportions",
    "mcnemar_sample_size",
    "mde_paired_means",
    "ProportionSummary",
    "PairedComparison",
    "compare_paired",
    "LatencySummary",
    "latency_summary",
    "SMALL_SAMPLE",
]

Winner = Literal["a", "b"]

# Below this many paired items every comparison carries a "small sample" warning: the normal approximations behind
# the power calculation are rough, and a handful of items can flip the verdict.
SMALL_SAMPLE = 30

_STANDARD_NORMAL = NormalDist()


# --------------------------------------------------------------------------------------------------------------
# Normal distribution and percentiles
# --------------------------------------------------------------------------------------------------------------


def norm_ppf(p: float) -> float:
    """Inverse CDF of the standard normal (the z for a lower-tail probability ``p``), e.g. ``norm_ppf(0.975)`` ~ 1.96.

    Uses ``statistics.NormalDist.inv_cdf`` (Wichura's AS241 algorithm, accurate to about 1e-16).
    """
    if not (isinstance(p, (int, float)) and 0.0 < p < 1.0):
        raise EvaluationError(f"norm_ppf needs a probability strictly between 0 and 1, got {p!r}")
    return _STANDARD_NORMAL.inv_cdf(float(p))


def norm_cdf(x: float) -> float:
    """CDF of the standard normal."""
    return _STANDARD_NORMAL.cdf(float(x))


def _check_level(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise EvaluationError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (``q`` in [0, 100]) with linear interpolation between order statistics (type 7).

    Same answer as ``numpy.percentile(values, q)`` with its default method.
    """
    if not values:
        raise EvaluationError("percentile of an empty list is undefined")
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 100.0:
        raise EvaluationError(f"percentile q must be between 0 and 100, got {q!r}")
    ordered = sorted(float(v) for v in values)
    return _sorted_quantile(ordered, q / 100.0)


def _sorted_quantile(ordered: Sequence[float], q: float) -> float:
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = math.ceil(h)
    if lo == hi:
        return float(ordered[lo])
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


# --------------------------------------------------------------------------------------------------------------
# Proportions
# --------------------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n``.

    Why Wilson and not the textbook ``p +- z*sqrt(p(1-p)/n)``: the Wald interval collapses to zero width at 0% or
    100% and undercovers badly for small n, which is exactly where evaluation sets live. Wilson stays inside [0, 1]
    and keeps close to its nominal coverage.

    ``n == 0`` returns ``(0.0, 1.0)``: no items, no information.
    """
    confidence = _check_level("confidence", confidence)
    for name, value in (("successes", successes), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EvaluationError(f"wilson_interval: {name} must be a non-negative integer, got {value!r}")
    if successes > n:
        raise EvaluationError(f"wilson_interval: successes ({successes}) cannot exceed n ({n})")
    if n == 0:
        return (0.0, 1.0)
    z = norm_ppf(0.5 + confidence / 2.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return (low, high)


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test on the discordant pairs of two paired pass/fail columns.

    ``b``: items A passed and B failed. ``c``: items B passed and A failed. ``winner`` is the endpoint with more
    discordant wins (``None`` on a tie), whether or not the difference is significant; ``significant`` says whether
    ``p_value < alpha``.
    """

    b: int
    c: int
    p_value: float
    alpha: float
    winner: Winner | None
    significant: bool

    @property
    def n_discordant(self) -> int:
        return self.b + self.c

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_discordant": self.n_discordant}


def _binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exact: integer sum of binomial coefficients over 2**n."""
    total = sum(math.comb(n, i) for i in range(k + 1))
    # int / int is correctly rounded in Python even when both exceed the float range (n beyond ~1023).
    return total / (1 << n)


def mcnemar_exact(b: int, c: int, alpha: float = 0.05) -> McNemarResult:
    """Exact (binomial) McNemar test: ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``.

    Why exact and not the chi-square version: evaluation comparisons often have a dozen discordant pairs or
    fewer, where the chi-square approximation is poor. The exact test is valid for any count.
    """
    alpha = _check_level("alpha", alpha)
    for name, value in (("b", b), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EvaluationError(f"mcnemar_exact: {name} must be a non-negative integer, got {value!r}")
    n = b + c
    p_value = 1.0 if n == 0 else min(1.0, 2.0 * _binomial_half_cdf(min(b, c), n))
    winner: Winner | None = "a" if b > c else "b" if c > b else None
    return McNemarResult(
        b=b,
        c=c,
        p_value=p_value,
        alpha=alpha,
        winner=winner,
        significant=winner is not None and p_value < alpha,
    )


# --------------------------------------------------------------------------------------------------------------
# Scores: paired bootstrap
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval for ``mean(b) - mean(a)`` over paired items."""

    mean_diff: float
    low: float
    high: float
    confidence: float
    n: int
    n_resamples: int
    seed: int | None

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def _check_scores(name: str, values: Sequence[float]) -> list[float]:
    out: list[float] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise EvaluationError(
                f"{name}[{i}] is {v!r}: scores must be finite numbers",
                hint="Drop items that could not be graded (GradeResult.error set) from both sides before comparing.",
            )
        out.append(float(v))
    return out


def _check_pair(
    a: Sequence[float], b: Sequence[float], names: tuple[str, str]
) -> tuple[list[float], list[float]]:
    xa = _check_scores(names[0], a)
    xb = _check_scores(names[1], b)
    if len(xa) != len(xb):
        raise EvaluationError(
            f"paired comparison needs the same items on both sides: {names[0]} has {len(xa)} values, "
            f"{names[1]} has {len(xb)}",
            hint="Align both endpoints' results by item id first.",
        )
    if not xa:
        raise EvaluationError("paired comparison needs at least one item; both lists are empty")
    return xa, xb


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI for ``mean(b) - mean(a)``, resampling *items* (pairs) with replacement.

    Resampling pairs keeps each item's A and B score together, so the interval reflects only the difference
    between endpoints, not item difficulty. The per-item differences are computed once; each resample is one
    ``random.choices`` call plus a ``sum`` over that precomputed list, which keeps 10,000 resamples of 2,000 items
    at about a second in pure Python. ``seed`` makes the interval reproducible (``None``: fresh randomness).
    """
    confidence = _check_level("confidence", confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 100:
        raise EvaluationError(f"n_resamples must be an integer >= 100, got {n_resamples!r}")
    xa, xb = _check_pair(a, b, ("a", "b"))
    n = len(xa)
    diffs = [y - x for x, y in zip(xa, xb, strict=True)]
    mean_diff = math.fsum(diffs) / n
    if all(d == diffs[0] for d in diffs):
        # Every resample has the same mean: the interval is a point (and resampling would only add float noise).
        return BootstrapCI(mean_diff, mean_diff, mean_diff, confidence, n, n_resamples, seed)
    rng = random.Random(seed)
    choices = rng.choices
    means = sorted(sum(choices(diffs, k=n)) / n for _ in range(n_resamples))
    tail = (1.0 - confidence) / 2.0
    return BootstrapCI(
        mean_diff=mean_diff,
        low=_sorted_quantile(means, tail),
        high=_sorted_quantile(means, 1.0 - tail),
        confidence=confidence,
        n=n,
        n_resamples=n_resamples,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------------------------
# Power: minimum detectable differences
# --------------------------------------------------------------------------------------------------------------


def mcnemar_sample_size(
    delta: float, discordance: float, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Connor's (1987) normal-approximation sample size for McNemar's test (unrounded).

    ``n = (z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - delta**2))**2 / delta**2`` where ``psi`` is the
    discordance rate ``(b + c) / n`` and ``delta`` the difference of the two pass rates (``(c - b) / n``).
    Connor, R. J. (1987), "Sample size for testing differences in proportions for the paired-sample design",
    Biometrics 43(1):207-211.
    """
    alpha = _check_level("alpha", alpha)
    power = _check_level("power", power)
    if not 0.0 < abs(delta) <= discordance <= 1.0:
        raise EvaluationError(
            f"mcnemar_sample_size needs 0 < |delta| <= discordance <= 1, got delta={delta!r}, "
            f"discordance={discordance!r}"
        )
    za = norm_ppf(1.0 - alpha / 2.0)
    zb = norm_ppf(power)
    d2 = delta * delta
    return (za * math.sqrt(discordance) + zb * math.sqrt(discordance - d2)) ** 2 / d2


def mde_paired_proportions(
    n: int, discordance: float, *, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """Minimum detectable difference in pass rate for McNemar's test with ``n`` pairs at this discordance rate.

    Solves Connor's sample-size equation (see :func:`mcnemar_sample_size`) for ``delta`` in closed form:
    ``sqrt(n)*delta = za*sqrt(psi) + zb*sqrt(psi - delta**2)`` squares to a quadratic whose relevant root is

        delta = sqrt(psi) * (za*sqrt(n) + zb*sqrt(n + zb**2 - za**2)) / (n + zb**2)

    with ``za = z_{1-alpha/2}``, ``zb = z_{power}``. For large n this is about ``(za + zb) * sqrt(psi / n)``.
    Returns ``None`` when it is undefined: no discordant pairs (``psi == 0``: the endpoints agree on every item,
    so the data say nothing about how large a difference could be seen) or ``n`` too small for the equation to
    have a root. A result above ``psi`` means no difference this discordance allows could be detected.
    """
    alpha = _check_level("alpha", alpha)
    power = _check_level("power", power)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EvaluationError(f"mde_paired_proportions: n must be a positive integer, got {n!r}")
    if not 0.0 <= discordance <= 1.0:
        raise EvaluationError(f"mde_paired_proportions: discordance must be in [0, 1], got {discordance!r}")
    if discordance == 0.0:
        return None
    za = norm_ppf(1.0 - alpha / 2.0)
    zb = norm_ppf(power)
    inner = n + zb * zb - za * za
    if inner < 0:
        return None
    return math.sqrt(discordance) * (za * math.sqrt(n) + zb * math.sqrt(inner)) / (n + zb * zb)


def mde_paired_means(n: int, sd_diff: float, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Minimum detectable difference of mean scores: ``(z_{1-alpha/2} + z_{power}) * sd_diff / sqrt(n)``.

    ``sd_diff`` is the sample standard deviation of the per-item differences. This is the normal approximation
    to the paired t-test's power; it slightly understates the MDE for very small n (another reason for the
    small-sample warning). Returns ``None`` for ``n < 2`` (no standard deviation to speak of).
    """
    alpha = _check_level("alpha", alpha)
    power = _check_level("power", power)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise EvaluationError(f"mde_paired_means: n must be a positive integer, got {n!r}")
    if not (math.isfinite(sd_diff) and sd_diff >= 0.0):
        raise EvaluationError(
            f"mde_paired_means: sd_diff must be a finite non-negative number, got {sd_diff!r}"
        )
    if n < 2:
        return None
    return (norm_ppf(1.0 - alpha / 2.0) + norm_ppf(power)) * sd_diff / math.sqrt(n)


# --------------------------------------------------------------------------------------------------------------
# One call for a whole comparison
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProportionSummary:
    """A pass rate with its Wilson interval."""

    passed: int
    n: int
    rate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _proportion(passed: int, n: int, confidence: float) -> ProportionSummary:
    low, high = wilson_interval(passed, n, confidence)
    return ProportionSummary(passed=passed, n=n, rate=passed / n if n else 0.0, low=low, high=high)


@dataclass(frozen=True)
class PairedComparison:
    """Everything a report needs to say whether B differs from A on the same items, and how sure it is.

    Scores: means, ``mean_diff`` (B - A), its paired bootstrap interval, and the minimum detectable difference.
    Pass/fail (when given): both pass rates with Wilson intervals, the exact McNemar test, and the minimum
    detectable difference in pass rate. ``score_winner`` / ``pass_winner`` name an endpoint only when the evidence
    is significant (bootstrap interval excludes 0 / McNemar p < alpha); ``warnings`` says when the sample is too
    small for a non-significant result to mean "no difference".
    """

    n: int
    confidence: float
    alpha: float
    power: float
    mean_a: float
    mean_b: float
    mean_diff: float
    sd_diff: float
    bootstrap: BootstrapCI
    mde_mean: float | None
    score_winner: Winner | None
    pass_rate_a: ProportionSummary | None = None
    pass_rate_b: ProportionSummary | None = None
    pass_rate_diff: float | None = None
    mcnemar: McNemarResult | None = None
    discordance: float | None = None
    mde_pass_rate: float | None = None
    pass_winner: Winner | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (nested results as dicts), stable keys for ``--json`` output and the store."""
        return {
            "n": self.n,
            "confidence": self.confidence,
            "alpha": self.alpha,
            "power": self.power,
            "difference": "b - a",
            "scores": {
                "mean_a": self.mean_a,
                "mean_b": self.mean_b,
                "mean_diff": self.mean_diff,
                "sd_diff": self.sd_diff,
                "bootstrap": self.bootstrap.to_dict(),
                "mde": self.mde_mean,
                "winner": self.score_winner,
            },
            "pass": None
            if self.mcnemar is None
            else {
                "rate_a": self.pass_rate_a.to_dict() if self.pass_rate_a else None,
                "rate_b": self.pass_rate_b.to_dict() if self.pass_rate_b else None,
                "rate_diff": self.pass_rate_diff,
                "mcnemar": self.mcnemar.to_dict(),
                "discordance": self.discordance,
                "mde": self.mde_pass_rate,
                "winner": self.pass_winner,
            },
            "warnings": list(self.warnings),
        }


def _check_passed(name: str, values: Sequence[bool]) -> list[bool]:
    out: list[bool] = []
    for i, v in enumerate(values):
        if not isinstance(v, bool):
            raise EvaluationError(
                f"{name}[{i}] is {v!r}: pass/fail values must be True or False",
                hint="Graders without a pass threshold (ROUGE, BLEU) give passed=None: compare their scores only, "
                "or configure a threshold.",
            )
        out.append(v)
    return out


def compare_paired(
    a_scores: Sequence[float],
    b_scores: Sequence[float],
    a_passed: Sequence[bool] | None = None,
    b_passed: Sequence[bool] | None = None,
    *,
    confidence: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.8,
    n_resamples: int = 10_000,
    seed: int | None = 0,
) -> PairedComparison:
    """Compare endpoint B with endpoint A on the same items (index i of every list is the same item).

    Scores always get a paired bootstrap interval and a mean MDE; pass/fail columns, when both are given, get
    Wilson intervals, the exact McNemar test and a pass-rate MDE. Warnings are added when ``n`` is below
    :data:`SMALL_SAMPLE`, or when a non-significant observed difference is smaller than what this ``n`` could
    detect (then "no significant difference" must not be read as "no difference").
    """
    confidence = _check_level("confidence", confidence)
    alpha = _check_level("alpha", alpha)
    power = _check_level("power", power)
    xa, xb = _check_pair(a_scores, b_scores, ("a_scores", "b_scores"))
    n = len(xa)
    diffs = [y - x for x, y in zip(xa, xb, strict=True)]
    mean_a = math.fsum(xa) / n
    mean_b = math.fsum(xb) / n
    mean_diff = math.fsum(diffs) / n
    sd_diff = math.sqrt(math.fsum((d - mean_diff) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    boot = paired_bootstrap_ci(xa, xb, confidence=confidence, n_resamples=n_resamples, seed=seed)
    mde_mean = mde_paired_means(n, sd_diff, alpha=alpha, power=power)
    score_winner: Winner | None = None
    if boot.excludes_zero:
        score_winner = "b" if boot.mean_diff > 0 else "a"

    warnings: list[str] = []
    if n < SMALL_SAMPLE:
        warnings.append(
            f"small sample: only {n} paired items (fewer than {SMALL_SAMPLE}); intervals are wide and a few items "
            "can change the verdict"
        )
    if score_winner is None and mde_mean is not None and mde_mean > 0 and abs(mean_diff) < mde_mean:
        warnings.append(
            f"the observed score difference ({mean_diff:+.4f}) is below the minimum detectable difference "
            f"({mde_mean:.4f}) for n={n} at alpha={alpha:g}, power={power:g}: a non-significant result here is not "
            "evidence that the endpoints are equal"
        )

    if (a_passed is None) != (b_passed is None):
        raise EvaluationError("compare_paired: give pass/fail values for both endpoints or for neither")
    if a_passed is None or b_passed is None:
        return PairedComparison(
            n=n, confidence=confidence, alpha=alpha, power=power, mean_a=mean_a, mean_b=mean_b,
            mean_diff=mean_diff, sd_diff=sd_diff, bootstrap=boot, mde_mean=mde_mean, score_winner=score_winner,
            warnings=warnings,
        )  # fmt: skip

    pa = _check_passed("a_passed", a_passed)
    pb = _check_passed("b_passed", b_passed)
    if len(pa) != n or len(pb) != n:
        raise EvaluationError(
            f"compare_paired: pass/fail lists must have one value per item ({n}); got {len(pa)} and {len(pb)}"
        )
    b_count = sum(1 for x, y in zip(pa, pb, strict=True) if x and not y)
    c_count = sum(1 for x, y in zip(pa, pb, strict=True) if y and not x)
    mc = mcnemar_exact(b_count, c_count, alpha=alpha)
    rate_a = _proportion(sum(pa), n, confidence)
    rate_b = _proportion(sum(pb), n, confidence)
    rate_diff = rate_b.rate - rate_a.rate
    discordance = (b_count + c_count) / n
    mde_rate = mde_paired_proportions(n, discordance, alpha=alpha, power=power)
    pass_winner = mc.winner if mc.significant else None
    if not mc.significant:
        if discordance == 0.0:
            warnings.append(
                "the endpoints pass and fail exactly the same items: no discordant pairs, so McNemar's test has "
                "nothing to compare and the pass-rate MDE is undefined"
            )
        elif 2.0 * 0.5 ** (b_count + c_count) >= alpha:
            warnings.append(
                f"only {b_count + c_count} discordant pair{'s' if b_count + c_count > 1 else ''}: the exact test "
                f"cannot reach p < {alpha:g} even if every one went the same way; evaluate on more items"
            )
        elif mde_rate is None or mde_rate > discordance:
            warnings.append(
                f"with n={n} and {b_count + c_count} discordant pairs, no pass-rate difference could reach "
                f"significance at alpha={alpha:g} with power {power:g}: evaluate on more items"
            )
        elif abs(rate_diff) < mde_rate:
            warnings.append(
                f"the observed pass-rate difference ({rate_diff:+.4f}) is below the minimum detectable difference "
                f"({mde_rate:.4f}) for n={n} at this discordance rate ({discordance:.3f}): a non-significant result "
                "here is not evidence that the endpoints are equal"
            )
    return PairedComparison(
        n=n, confidence=confidence, alpha=alpha, power=power, mean_a=mean_a, mean_b=mean_b, mean_diff=mean_diff,
        sd_diff=sd_diff, bootstrap=boot, mde_mean=mde_mean, score_winner=score_winner, pass_rate_a=rate_a,
        pass_rate_b=rate_b, pass_rate_diff=rate_diff, mcnemar=mc, discordance=discordance, mde_pass_rate=mde_rate,
        pass_winner=pass_winner, warnings=warnings,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySummary:
    """Latency distribution in the unit it was given (seconds or milliseconds: the caller says which).

    Percentiles use linear interpolation between order statistics (type 7, numpy's default), so p50 of an even
    count is the midpoint of the two middle values.
    """

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_summary(values: Sequence[float]) -> LatencySummary | None:
    """mean / p50 / p95 / p99 / min / max of latencies; ``None`` when there are none (e.g. every request failed)."""
    xs = sorted(_check_scores("latency", values))
    if not xs:
        return None
    if xs[0] < 0:
        raise EvaluationError(f"latency values must be >= 0, got {xs[0]!r}")
    return LatencySummary(
        n=len(xs),
        mean=math.fsum(xs) / len(xs),
        p50=_sorted_quantile(xs, 0.50),
        p95=_sorted_quantile(xs, 0.95),
        p99=_sorted_quantile(xs, 0.99),
        min=xs[0],
        max=xs[-1],
    )
