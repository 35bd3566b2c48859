"""The non-inferiority, paired-difference and training-vs-held-out statistics: hand-computed cases, and the same
tests in scipy / statsmodels."""

import math
import random

import pytest
from scipy import stats as sst
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from tuneport.errors import EvaluationError
from tuneport.evaluation.distributions import betainc, binom_lower_bound, binom_sf, t_cdf, t_ppf
from tuneport.evaluation.margins import (
    check_margin,
    independent_rate_diff_ci,
    noninferiority_pass,
    noninferiority_scores,
    paired_rate_diff_ci,
    welch_diff_ci,
)


def _pairs(both, only_a, only_b, neither):
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


# -- distributions -------------------------------------------------------------------------------------------------


def test_t_distribution_by_hand_and_against_scipy():
    # df = 1 is the Cauchy distribution: P(T <= 1) = 1/2 + atan(1)/pi = 0.75 exactly
    assert t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-13)
    # df = 2 has a closed form: P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert t_cdf(1.5, 2) == pytest.approx(0.5 + 1.5 / (2 * math.sqrt(2 + 1.5**2)), abs=1e-13)
    for df in (1, 2.5, 7, 29, 300):
        for t in (-4.0, -1.3, 0.0, 0.7, 2.2):
            assert t_cdf(t, df) == pytest.approx(sst.t.cdf(t, df), abs=1e-12)
        for p in (0.001, 0.05, 0.5, 0.975):
            assert t_ppf(p, df) == pytest.approx(sst.t.ppf(p, df), rel=1e-9, abs=1e-9)


def test_binomial_tail_and_exact_bound_against_scipy():
    assert binom_sf(3, 3, 0.5) == pytest.approx(0.125)  # all three heads
    assert betainc(1, 1, 0.3) == pytest.approx(0.3)
    for k, n, p in ((0, 5, 0.3), (4, 10, 0.25), (17, 20, 0.6), (120, 400, 0.33)):
        assert binom_sf(k, n, p) == pytest.approx(sst.binom.sf(k - 1, n, p), rel=1e-10, abs=1e-15)
    for k, n in ((1, 10), (7, 12), (40, 50)):
        want = sst.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")  # two-sided 95%
        assert binom_lower_bound(k, n, 0.025) == pytest.approx(want.low, abs=1e-9)
    assert binom_lower_bound(0, 9, 0.05) == 0.0


# -- the paired difference of pass rates ----------------------------------------------------------------------------


def test_newcombe_paired_interval_by_hand():
    # with a positive correlation left after the correction: 30 both, 3 only A, 5 only B, 12 neither (n = 50)
    a, b = _pairs(30, 3, 5, 12)
    l1, u1 = proportion_confint(33, 50, method="wilson")
    l2, u2 = proportion_confint(35, 50, method="wilson")
    phi = (30 * 12 - 3 * 5 - 25) / math.sqrt(33 * 17 * 35 * 15)
    p1, p2 = 0.66, 0.70
    low = 0.04 - math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2)
    high = 0.04 + math.sqrt((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2)
    assert paired_rate_diff_ci(a, b) == pytest.approx((low, high), abs=1e-12)

    # 20 items: 10 both pass, 2 only A, 6 only B, 2 neither. p1 = 12/20, p2 = 16/20, diff = +0.2
    a, b = _pairs(10, 2, 6, 2)
    l1, u1 = proportion_confint(12, 20, method="wilson")
    l2, u2 = proportion_confint(16, 20, method="wilson")
    phi = max(10 * 2 - 2 * 6 - 20 / 2, 0) / math.sqrt(12 * 8 * 16 * 4)  # (eh - fg - n/2) / sqrt(margins) = 0
    low = 0.2 - math.sqrt((0.8 - l2) ** 2 - 2 * phi * (0.8 - l2) * (u1 - 0.6) + (u1 - 0.6) ** 2)
    high = 0.2 + math.sqrt((u2 - 0.8) ** 2 - 2 * phi * (u2 - 0.8) * (0.6 - l1) + (0.6 - l1) ** 2)
    got = paired_rate_diff_ci(a, b)
    assert got == pytest.approx((low, high), abs=1e-12)
    assert got[0] < 0.2 < got[1]
    lo, hi = paired_rate_diff_ci(*_pairs(5, 0, 0, 5))  # no discordance: an interval around 0, not a point
    assert lo < 0 < hi


def test_independent_rate_interval_is_statsmodels_newcombe():
    for k1, n1, k2, n2 in ((48, 50, 30, 50), (10, 10, 3, 12), (0, 7, 2, 9)):
        want = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
        assert independent_rate_diff_ci(k1, n1, k2, n2) == pytest.approx(want, abs=1e-10)


def test_welch_interval_is_scipys():
    rng = random.Random(3)
    x = [rng.random() for _ in range(25)]
    y = [rng.random() * 0.7 for _ in range(40)]
    want = sst.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert welch_diff_ci(x, y) == pytest.approx((want.low, want.high), abs=1e-9)
    with pytest.raises(EvaluationError, match="at least 2"):
        welch_diff_ci([1.0], [0.5, 0.2])


# -- non-inferiority ------------------------------------------------------------------------------------------------


def test_exact_noninferiority_on_discordant_pairs_by_hand():
    # 200 items, 20 discordant: 12 only B, 8 only A -> diff = +0.02; margin 0.05 -> psi = 0.1, pi0 = (1 - 0.5)/2
    a, b = _pairs(150, 8, 12, 30)
    t = noninferiority_pass(a, b, 0.05)
    p_hand = sum(math.comb(20, k) * 0.25**k * 0.75 ** (20 - k) for k in range(12, 21))
    assert t.p_value == pytest.approx(p_hand, rel=1e-10)
    assert t.p_value == pytest.approx(sst.binomtest(12, 20, 0.25, alternative="greater").pvalue, rel=1e-10)
    assert t.diff == pytest.approx(0.02) and t.n_discordant == 20 and (t.b, t.c) == (8, 12)
    low = sst.binomtest(12, 20, alternative="greater").proportion_ci(0.95, method="exact").low
    assert t.lower_bound == pytest.approx(0.1 * (2 * low - 1), abs=1e-9)
    assert t.non_inferior and t.lower_bound > -0.05


def test_a_candidate_clearly_worse_is_not_non_inferior():
    a, b = _pairs(60, 25, 5, 10)  # B loses 20 points
    t = noninferiority_pass(a, b, 0.05)
    assert not t.non_inferior and t.p_value > 0.5 and t.lower_bound < -0.05


def test_a_tiny_sample_with_no_discordance_is_not_called_non_inferior():
    t = noninferiority_pass(*_pairs(3, 0, 0, 2), 0.05)
    assert not t.non_inferior  # the exact conditional test alone would say yes; the Newcombe bound says no
    assert t.newcombe_lower < -0.05


def test_score_noninferiority_is_scipys_one_sided_t_test():
    rng = random.Random(11)
    a = [rng.random() for _ in range(40)]
    b = [min(1.0, max(0.0, x + rng.gauss(-0.01, 0.05))) for x in a]
    t = noninferiority_scores(a, b, 0.05)
    d = [y - x for x, y in zip(a, b, strict=True)]
    want = sst.ttest_1samp([v + 0.05 for v in d], 0.0, alternative="greater")
    assert t.p_value == pytest.approx(want.pvalue, rel=1e-8)
    ci = sst.ttest_1samp(d, 0.0, alternative="greater").confidence_interval(0.95)
    assert t.lower_bound == pytest.approx(ci.low, abs=1e-9)
    assert t.non_inferior == (want.pvalue < 0.05)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, True, "0.05", float("nan")])
def test_margin_outside_zero_one_is_refused(bad):
    with pytest.raises(EvaluationError, match="strictly between 0 and 1"):
        check_margin(bad)
