"""The shared verdict sentences (CLI summary and report opening)."""

from tuneport.evaluation.verdict import comparison_sentence, fmt_p_short, noninferiority_sentence, points


def _pass_comparison(winner, diff=0.47, low=0.37, high=0.57, p=1.2e-14, excluded=None):
    return {"a": "tiny-chat", "b": "support-ft", "grader": "json_match", "n": 120,
            "excluded": excluded or {"request_errors": 0, "ungradable": 0},
            "scores": {"mean_diff": diff, "bootstrap": {"low": low, "high": high}, "winner": winner},
            "pass": {"rate_diff": diff, "rate_diff_ci": {"low": low, "high": high},
                     "mcnemar": {"p_value": p}, "winner": winner}}


def test_a_significant_pass_rate_win_reads_like_the_issue_example():
    assert comparison_sentence(_pass_comparison("b")) == (
        "support-ft beats tiny-chat on json_match: +47 points [37, 57], p = 1.2e-14 (n = 120)"
    )


def test_no_winner_is_never_called_a_win_and_exclusions_are_counted():
    s = comparison_sentence(_pass_comparison(None, 0.03, -0.05, 0.11, 0.41, {"request_errors": 2, "ungradable": 1}))
    assert s == ("support-ft cannot be told apart from tiny-chat on json_match: +3 points [-5, 11], p = 0.41 "
                 "(n = 120; 3 items left out on both sides)")
    assert "loses to" in comparison_sentence(_pass_comparison("a", -0.2, -0.3, -0.1, 0.001))


def test_score_only_graders_speak_in_mean_score():
    c = {"a": "x", "b": "y", "grader": "rouge_l", "n": 10, "pass": None,
         "scores": {"mean_diff": 0.1234, "bootstrap": {"low": 0.05, "high": 0.2}, "winner": "b"}}
    assert comparison_sentence(c) == "y beats x on rouge_l: mean score +0.123 [+0.050, +0.200] (n = 10)"


def test_number_words():
    assert fmt_p_short(0.04) == "0.04" and fmt_p_short(None) == "n/a" and fmt_p_short(1e-14) == "1e-14"
    assert points(0.051) == "+5.1" and points(-0.2) == "-20" and points(0.0) == "0"


def test_noninferiority_sentence_says_it_in_words():
    t = {"candidate": "local", "baseline": "hosted", "grader": "exact", "kind": "pass", "margin": 0.05,
         "diff": -0.01, "lower_bound": -0.04, "confidence": 0.95, "n_discordant": 12, "p_value": 0.003,
         "n": 200, "non_inferior": True, "excluded": {"request_errors": 3}}
    s = noninferiority_sentence(t)
    assert s.startswith("local is not worse than hosted by more than 5 points on exact (")
    assert "3 items without answers from both left out" in s
    assert "may be worse" in noninferiority_sentence({**t, "non_inferior": False})
