"""Paired statistics: exact values a report relies on (Wilson, McNemar, bootstrap, MDE, percentiles).

(Named test_eval_stats.py because tests/data/test_stats.py already exists and the test folders have no
__init__.py, so two test_stats.py files would collide.)
"""

from __future__ import annotations

import math
import random

import pytest

from tuneport.errors import EvaluationError
from tuneport.evaluation.stats import (
    SMALL_SAMPLE,
    compare_paired,
    latency_summary,
    mcnemar_exact,
    mcnemar_sample_size,
    mde_paired_means,
    mde_paired_proportions,
    norm_ppf,
    paired_bootstrap_ci,
    percentile,
    wilson_interval,
)

Z975 = 1.959963984540054
Z80 = 0.8416212335729143


# -- normal quantiles and percentiles --------------------------------------------------------------------------


def test_norm_ppf_known_quantiles():
    assert norm_ppf(0.975) == pytest.approx(Z975, abs=1e-12)
    assert norm_ppf(0.8) == pytest.approx(Z80, abs=1e-12)
    assert norm_ppf(0.5) == 0.0
    assert norm_ppf(0.025) == pytest.approx(-Z975, abs=1e-12)
    assert norm_ppf(0.995) == pytest.approx(2.5758293035489, abs=1e-10)


@pytest.mark.parametrize("p", [0, 1, -0.1, 1.5, float("nan")])
def test_norm_ppf_rejects_non_probabilities(p):
    with pytest.raises(EvaluationError):
        norm_ppf(p)


def test_percentile_is_linear_between_ranks():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    assert percentile([7.0], 95) == 7.0
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3
    with pytest.raises(EvaluationError):
        percentile([], 50)
    with pytest.raises(EvaluationError):
        percentile([1.0], 101)


# -- Wilson ----------------------------------------------------------------------------------------------------


def test_wilson_known_value_8_of_10():
    low, high = wilson_interval(8, 10, 0.95)
    assert low == pytest.approx(0.4902, abs=5e-5)
    assert high == pytest.approx(0.9433, abs=5e-5)


def test_wilson_matches_closed_form_at_the_edges():
    # 0 successes: lower bound 0, upper bound z^2 / (n + z^2).
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(Z975**2 / (10 + Z975**2), rel=1e-12)
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(10 / (10 + Z975**2), rel=1e-12)


def test_wilson_other_levels_and_symmetry():
    low90, high90 = wilson_interval(45, 100, 0.90)
    low99, high99 = wilson_interval(45, 100, 0.99)
    assert low99 < low90 < 0.45 < high90 < high99
    # Symmetric: k successes mirrors n - k.
    lo, hi = wilson_interval(3, 20)
    lo2, hi2 = wilson_interval(17, 20)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)


def test_wilson_empty_and_invalid():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for args in [(11, 10), (-1, 10), (1.5, 10), (True, 10)]:
        with pytest.raises(EvaluationError):
            wilson_interval(*args)
    with pytest.raises(EvaluationError, match="confidence"):
        wilson_interval(5, 10, 95)


# -- McNemar ---------------------------------------------------------------------------------------------------


def test_mcnemar_exact_hand_computed_binomials():
    # b=10, c=2: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * 79 / 4096
    r = mcnemar_exact(10, 2)
    assert r.p_value == pytest.approx(2 * 79 / 4096, abs=1e-15)
    assert round(r.p_value, 4) == 0.0386
    assert r.winner == "a" and r.significant and r.n_discordant == 12
    # b=0, c=5: 2 / 32; b=0, c=6: 2 / 64
    assert mcnemar_exact(0, 5).p_value == pytest.approx(0.0625)
    assert not mcnemar_exact(0, 5).significant
    six = mcnemar_exact(0, 6)
    assert six.p_value == pytest.approx(0.03125) and six.winner == "b" and six.significant


def test_mcnemar_ties_and_no_discordance_give_p_one():
    assert mcnemar_exact(0, 0).p_value == 1.0
    r = mcnemar_exact(7, 7)
    assert r.p_value == 1.0 and r.winner is None and not r.significant


def test_mcnemar_large_counts_stay_finite_and_symmetric():
    r = mcnemar_exact(3000, 2900)
    assert 0.0 < r.p_value < 1.0
    assert mcnemar_exact(2900, 3000).p_value == r.p_value
    # Normal approximation for comparison: z = (3000-2900)/sqrt(5900) ~ 1.302, two-sided ~ 0.193 (continuity ~0.197).
    assert r.p_value == pytest.approx(0.197, abs=0.005)


def test_mcnemar_rejects_bad_counts():
    with pytest.raises(EvaluationError):
        mcnemar_exact(-1, 3)
    with pytest.raises(EvaluationError):
        mcnemar_exact(1.0, 3)


# -- bootstrap -------------------------------------------------------------------------------------------------


def _paired_bernoulli(n: int, p_a: float, p_b: float, seed: int) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    a, b = [], []
    for _ in range(n):
        u = rng.random()  # shared item difficulty makes the pairs correlated, as in real evaluations
        a.append(float(u < p_a))
        b.append(float(u < p_b))
    return a, b


def test_bootstrap_contains_true_difference_and_matches_normal_width():
    a, b = _paired_bernoulli(400, 0.60, 0.70, seed=11)
    ci = paired_bootstrap_ci(a, b, seed=1)
    assert ci.low < 0.10 < ci.high
    assert ci.mean_diff == pytest.approx(sum(b) / 400 - sum(a) / 400)
    # Width close to the normal-theory 2 * 1.96 * sd / sqrt(n).
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    assert (ci.high - ci.low) == pytest.approx(2 * Z975 * sd / math.sqrt(400), rel=0.1)
    assert ci.excludes_zero


def test_bootstrap_is_deterministic_for_a_seed():
    rng = random.Random(2)  # continuous scores (ROUGE-like), so different resamples give different bounds
    a = [rng.random() for _ in range(200)]
    b = [min(1.0, x + rng.uniform(-0.2, 0.3)) for x in a]
    first = paired_bootstrap_ci(a, b, seed=42, n_resamples=2000)
    again = paired_bootstrap_ci(a, b, seed=42, n_resamples=2000)
    other = paired_bootstrap_ci(a, b, seed=43, n_resamples=2000)
    assert (first.low, first.high) == (again.low, again.high)
    assert (first.low, first.high) != (other.low, other.high)


def test_bootstrap_narrows_with_n():
    widths = []
    for n in (100, 400, 1600):
        a, b = _paired_bernoulli(n, 0.6, 0.7, seed=5)
        ci = paired_bootstrap_ci(a, b, seed=0, n_resamples=2000)
        widths.append(ci.high - ci.low)
    assert widths[0] > widths[1] > widths[2]
    # Quadrupling n roughly halves the width.
    assert widths[0] / widths[2] == pytest.approx(4.0, rel=0.25)


def test_bootstrap_constant_difference_is_a_point():
    ci = paired_bootstrap_ci([0.2, 0.5, 0.9], [0.3, 0.6, 1.0])
    assert ci.low == ci.high == pytest.approx(0.1)


def test_bootstrap_rejects_mismatched_or_invalid_input():
    with pytest.raises(EvaluationError, match="same items"):
        paired_bootstrap_ci([1.0, 0.0], [1.0])
    with pytest.raises(EvaluationError, match=r"b\[1\]"):
        paired_bootstrap_ci([1.0, 0.0], [1.0, float("nan")])
    with pytest.raises(EvaluationError, match="at least one"):
        paired_bootstrap_ci([], [])
    with pytest.raises(EvaluationError, match="n_resamples"):
        paired_bootstrap_ci([1.0], [0.0], n_resamples=10)


# -- minimum detectable differences ----------------------------------------------------------------------------


def test_mde_means_formula():
    assert mde_paired_means(100, 0.5) == pytest.approx((Z975 + Z80) * 0.5 / 10, rel=1e-12)
    assert mde_paired_means(100, 0.5) == pytest.approx(0.140079, abs=1e-6)
    assert mde_paired_means(1, 0.5) is None
    assert mde_paired_means(400, 0.5, power=0.9) > mde_paired_means(400, 0.5)


def test_mde_proportions_hand_value_and_round_trip():
    # n = 100, discordance 0.2: sqrt(.2) * (za*10 + zb*sqrt(100 + zb^2 - za^2)) / (100 + zb^2)
    expected = math.sqrt(0.2) * (Z975 * 10 + Z80 * math.sqrt(100 + Z80**2 - Z975**2)) / (100 + Z80**2)
    mde = mde_paired_proportions(100, 0.2)
    assert mde == pytest.approx(expected, rel=1e-12)
    assert mde == pytest.approx(0.12382, abs=1e-5)
    # Plugging the MDE back into Connor's sample-size formula gives n back.
    for n, psi in [(100, 0.2), (50, 0.3), (2000, 0.05), (30, 0.5)]:
        d = mde_paired_proportions(n, psi)
        assert mcnemar_sample_size(d, psi) == pytest.approx(n, rel=1e-9)
    # Large-n limit: (za + zb) * sqrt(psi / n).
    assert mde_paired_proportions(10**6, 0.2) == pytest.approx(
        (Z975 + Z80) * math.sqrt(0.2 / 10**6), rel=1e-3
    )


def test_mde_proportions_undefined_cases():
    assert mde_paired_proportions(100, 0.0) is None
    assert mde_paired_proportions(2, 0.5) is None  # n + zb^2 - za^2 < 0
    with pytest.raises(EvaluationError):
        mde_paired_proportions(100, 1.5)
    with pytest.raises(EvaluationError):
        mcnemar_sample_size(0.3, 0.2)  # |delta| cannot exceed the discordance


# -- compare_paired --------------------------------------------------------------------------------------------


def test_compare_paired_counts_and_direction():
    a_pass = [True] * 10 + [False] * 2 + [True] * 20 + [False] * 8
    b_pass = [False] * 10 + [True] * 2 + [True] * 20 + [False] * 8
    a = [float(x) for x in a_pass]
    b = [float(x) for x in b_pass]
    result = compare_paired(a, b, a_pass, b_pass)
    assert result.n == 40
    assert (result.mcnemar.b, result.mcnemar.c) == (10, 2)
    assert result.mcnemar.p_value == pytest.approx(2 * 79 / 4096)
    assert result.pass_winner == "a"
    assert result.mean_diff == pytest.approx((22 - 30) / 40)  # B minus A
    assert result.pass_rate_diff == pytest.approx(-0.2)
    assert result.pass_rate_a.passed == 30 and result.pass_rate_b.passed == 22
    assert result.discordance == pytest.approx(12 / 40)
    assert result.score_winner == "a"
    d = result.to_dict()
    assert d["difference"] == "b - a"
    assert d["pass"]["mcnemar"]["b"] == 10 and d["scores"]["bootstrap"]["excludes_zero"] is True


def test_compare_paired_warns_when_underpowered():
    # 20 items, one discordant pair: nothing could be detected; says so instead of implying "equal".
    a_pass = [True] * 10 + [False] * 10
    b_pass = [True] * 9 + [False] * 11
    a = [float(x) for x in a_pass]
    b = [float(x) for x in b_pass]
    result = compare_paired(a, b, a_pass, b_pass, n_resamples=1000)
    assert result.pass_winner is None and result.score_winner is None
    text = " ".join(result.warnings)
    assert f"fewer than {SMALL_SAMPLE}" in text
    assert "only 1 discordant pair: the exact test cannot reach p < 0.05" in text


def test_compare_paired_warns_observed_below_mde():
    a_pass, b_pass = [], []
    for i in range(200):  # 20 discordant pairs, split 11 / 9: a difference of 0.01 with an MDE near 0.09
        a_pass.append(i < 100 or 180 <= i < 191)
        b_pass.append(i < 100 or 191 <= i < 200)
    result = compare_paired(
        [float(x) for x in a_pass], [float(x) for x in b_pass], a_pass, b_pass, n_resamples=1000
    )
    assert result.mde_pass_rate == pytest.approx(mde_paired_proportions(200, 20 / 200))
    assert any("below the minimum detectable difference" in w and "pass-rate" in w for w in result.warnings)
    assert not any("small sample" in w for w in result.warnings)


def test_compare_paired_identical_endpoints():
    passed = [True, False] * 20
    scores = [float(x) for x in passed]
    result = compare_paired(scores, scores, passed, passed)
    assert result.mcnemar.p_value == 1.0 and result.mde_pass_rate is None
    assert result.bootstrap.low == result.bootstrap.high == 0.0
    assert any("exactly the same items" in w for w in result.warnings)


def test_compare_paired_scores_only():
    a = [0.1 * (i % 10) for i in range(50)]
    b = [min(1.0, x + 0.05) for x in a]
    result = compare_paired(a, b)
    assert result.mcnemar is None and result.to_dict()["pass"] is None
    assert result.mde_mean is not None


def test_compare_paired_rejects_bad_input():
    with pytest.raises(EvaluationError, match="both endpoints or for neither"):
        compare_paired([1.0], [0.0], [True], None)
    with pytest.raises(EvaluationError, match=r"b_passed\[0\]"):
        compare_paired([1.0], [0.0], [True], [None])
    with pytest.raises(EvaluationError, match="one value per item"):
        compare_paired([1.0, 0.0], [0.0, 1.0], [True], [False])
    with pytest.raises(EvaluationError, match="same items"):
        compare_paired([1.0, 0.0], [0.0])


# -- latency ---------------------------------------------------------------------------------------------------


def test_latency_summary():
    s = latency_summary([0.4, 0.1, 0.3, 0.2])
    assert s.p50 == pytest.approx(0.25) and s.mean == pytest.approx(0.25)
    assert s.min == 0.1 and s.max == 0.4
    big = latency_summary([float(i) for i in range(1, 101)])
    assert big.p95 == pytest.approx(95.05) and big.p99 == pytest.approx(99.01)
    assert latency_summary([]) is None
    with pytest.raises(EvaluationError):
        latency_summary([-1.0, 2.0])


def test_compare_paired_warns_when_no_allowed_difference_is_detectable():
    # n=10 with 6 discordant pairs (4 / 2): the pass-rate MDE (~0.61) exceeds the discordance rate (0.6).
    a_pass = [True] * 4 + [False] * 2 + [True] * 2 + [False] * 2
    b_pass = [False] * 4 + [True] * 2 + [True] * 2 + [False] * 2
    result = compare_paired(
        [float(x) for x in a_pass], [float(x) for x in b_pass], a_pass, b_pass, n_resamples=500
    )
    assert result.mde_pass_rate == pytest.approx(0.6079, abs=1e-4) and result.discordance == 0.6
    assert any("no pass-rate difference could reach significance" in w for w in result.warnings)
