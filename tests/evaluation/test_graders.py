"""Graders: each passes what it should, fails what it should, and never turns a grading problem into a score."""

from __future__ import annotations

import asyncio
import json

import pytest

from tuneport.errors import EvaluationError
from tuneport.evaluation.graders import (
    NO_LABEL,
    OTHER_LABEL,
    GradeResult,
    PairwiseResult,
    conversation_text,
    grader_names,
    label_metrics,
    make_grader,
    normalize_text,
    paired_grades,
    rouge_l,
    sentence_bleu,
    summarize_grades,
    summarize_pairwise,
    tokenize,
)
from tuneport.evaluation.stats import compare_paired

TRIAGE_REF = '{"category": "billing", "priority": "high"}'


# -- config and registry ---------------------------------------------------------------------------------------


def test_registry_lists_every_grader():
    assert set(grader_names()) >= {
        "exact",
        "normalized",
        "contains",
        "regex",
        "json_valid",
        "json_schema",
        "json_match",
        "label",
        "rouge_l",
        "bleu",
        "pairwise_judge",
    }


def test_config_forms_are_equivalent():
    flat = make_grader({"name": "regex", "pattern": r"\d+", "mode": "full"})
    nested = make_grader({"name": "regex", "params": {"pattern": r"\d+", "mode": "full"}})
    assert flat.config == nested.config
    assert flat.config["id"] == "regex"
    assert make_grader("exact").config == {"name": "exact", "id": "exact", "strip": True}
    assert make_grader({"name": "json_match", "id": "priority", "fields": ["priority"]}).id == "priority"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "exactt"}, "did you mean 'exact'"),
        ({"pattern": "x"}, "no 'name'"),
        (42, "a name or a mapping"),
        ({"name": "regex"}, "needs a non-empty 'pattern'"),
        ({"name": "regex", "pattern": "(unclosed"}, "not a valid regular expression"),
        ({"name": "regex", "pattern": "x", "mode": "fullmatch"}, "'search', 'full'"),
        ({"name": "regex", "pattern": "x", "flags": ["IGNORE"]}, "unknown flag"),
        ({"name": "regex", "pattern": "(a)", "compare_group": 2}, "not a group"),
        ({"name": "exact", "strip": "yes"}, "true or false"),
        ({"name": "exact", "stirp": True}, "did you mean 'strip'"),
        ({"name": "exact", "params": {"strip": True}, "strip": False}, "not both"),
        ({"name": "contains", "needles": []}, "non-empty list"),
        ({"name": "contains", "needles": ["..."], "normalize": True}, "empty after normalization"),
        ({"name": "json_schema"}, "needs a 'schema'"),
        ({"name": "json_schema", "schema": {"type": "objekt"}}, "schema is invalid"),
        ({"name": "json_match", "fields": []}, "non-empty list of paths"),
        ({"name": "json_match", "fields": ["a..b"]}, "empty segment"),
        ({"name": "label", "labels": ["Billing", "billing"]}, "listed twice"),
        ({"name": "rouge_l", "threshold": 2}, "threshold"),
        ({"name": "bleu", "smoothing": "laplace"}, "smoothing"),
        ({"name": "bleu", "smooth_value": 0.5}, "smooth_value applies"),
        ({"name": "bleu", "max_order": 0}, "max_order"),
        ({"name": "pairwise_judge", "template": "Compare {answer_a} with the other"}, "{answer_b}"),
        ({"name": "pairwise_judge", "judge": "x"}, "unknown parameter 'judge'"),
    ],
)
def test_impossible_configs_raise_evaluation_error(config, message):
    with pytest.raises(EvaluationError) as info:
        make_grader(config)
    assert message in str(info.value)


def test_json_schema_without_jsonschema_says_so(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_jsonschema(name, *args, **kwargs):
        if name.startswith("jsonschema"):
            raise ImportError("No module named 'jsonschema'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jsonschema)
    with pytest.raises(EvaluationError, match="needs the jsonschema package") as info:
        make_grader({"name": "json_schema", "schema": {"type": "object"}})
    assert "pip install jsonschema" in info.value.hint


# -- text graders ----------------------------------------------------------------------------------------------


def test_exact():
    g = make_grader("exact")
    assert g.grade("Paris\n", "Paris").passed is True
    miss = g.grade("paris", "Paris")
    assert miss.passed is False and miss.score == 0.0 and miss.error is None
    assert miss.details["expected"] == "Paris"
    assert make_grader({"name": "exact", "strip": False}).grade("Paris\n", "Paris").passed is False
    assert g.grade("", "").passed is True
    err = g.grade("x", {"a": 1})
    assert err.error and "json_match" in err.error and err.passed is None
    assert g.grade("x", None).error == "exact needs a reference answer and this item has none"


def test_normalize_text_unicode():
    assert normalize_text("  Ｈｅｌｌｏ,\u00a0WORLD!! ") == "hello world"  # full-width + NBSP via NFKC
    assert normalize_text("Straße") == normalize_text("STRASSE")
    assert normalize_text("U.S.A.") == "usa"
    assert normalize_text("The cat", remove_articles=True) == "cat"
    assert normalize_text("«Bonjour» — l’été…") == "bonjour lété"
    assert normalize_text("Ünïcödé") == "ünïcödé"


def test_normalized_grader():
    g = make_grader("normalized")
    assert g.grade("  the ANSWER: 42. ", "The answer 42").passed is True
    assert g.grade("ﬁnal", "final").passed is True  # ligature folded by NFKC
    assert g.grade("43", "42").passed is False
    assert g.grade("anything", "!!!").error  # empty reference after normalization would match anything
    assert make_grader({"name": "normalized", "lowercase": False}).grade("abc", "ABC").passed is False


def test_contains_reference_and_needles():
    g = make_grader("contains")
    assert g.grade("The capital is Paris.", "Paris").passed is True
    assert g.grade("The capital is paris.", "Paris").passed is False
    assert make_grader({"name": "contains", "normalize": True}).grade("PARIS!", "paris").passed is True
    assert g.grade("anything", "").error  # every text contains ""

    needles = make_grader({"name": "contains", "needles": ["refund", "invoice", "apolog"]})
    r = needles.grade("We will refund the invoice.")
    assert r.passed is False and r.score == pytest.approx(2 / 3)
    assert r.details["missing"] == ["apolog"]
    anyg = make_grader({"name": "contains", "needles": ["refund", "credit"], "mode": "any"})
    assert anyg.grade("a credit note").passed is True
    assert anyg.grade("nothing").score == 0.0
    assert needles.needs_reference is False and g.needs_reference is True


def test_regex_modes_flags_and_groups():
    search = make_grader({"name": "regex", "pattern": r"\bP\d\b"})
    assert search.grade("priority P1 please").passed is True
    full = make_grader({"name": "regex", "pattern": r"P\d", "mode": "full"})
    assert full.grade("  P1\n").passed is True  # full mode matches the stripped output
    assert full.grade("P1 please").passed is False
    icase = make_grader({"name": "regex", "pattern": "yes", "flags": ["ignorecase"]})
    assert icase.grade("YES").passed is True
    grp = make_grader({"name": "regex", "pattern": r"Answer:\s*(?P<ans>\S+)", "compare_group": "ans"})
    assert grp.grade("Reasoning... Answer: 42", "42").passed is True
    wrong = grp.grade("Answer: 41", "42")
    assert wrong.passed is False and wrong.details["captured"] == "41"
    assert grp.grade("no answer here", "42").details["reason"].startswith("output does not match")
    assert make_grader({"name": "regex", "pattern": "é+"}).grade("café").passed is True


# -- JSON graders ----------------------------------------------------------------------------------------------


def test_json_valid():
    g = make_grader("json_valid")
    assert g.grade('{"a": 1}').passed is True
    assert g.grade("[1, 2]").passed is True
    bad = g.grade("Sure! {'a': 1}")
    assert bad.passed is False and "not valid JSON" in bad.details["reason"]
    assert g.grade("").details["reason"] == "output is empty, not JSON"
    assert g.grade('{"a": NaN}').passed is False  # NaN is not JSON
    obj = make_grader({"name": "json_valid", "type": "object"})
    assert obj.grade("[1]").passed is False
    fenced = '```json\n{"a": 1}\n```'
    r = g.grade(fenced)
    assert r.passed is False and "allow_code_fence" in r.details["reason"]
    ok = make_grader({"name": "json_valid", "allow_code_fence": True}).grade(fenced)
    assert ok.passed is True and ok.details["code_fence"] is True


def test_json_schema():
    schema = {
        "type": "object",
        "properties": {
            "category": {"enum": ["billing", "technical", "account", "shipping", "other"]},
            "priority": {"enum": ["low", "medium", "high", "urgent"]},
        },
        "required": ["category", "priority"],
        "additionalProperties": False,
    }
    g = make_grader({"name": "json_schema", "schema": schema})
    assert g.grade(TRIAGE_REF).passed is True
    bad = g.grade('{"category": "BILLING", "priority": "P1"}')
    assert bad.passed is False and len(bad.details["errors"]) == 2
    assert {e["path"] for e in bad.details["errors"]} == {"category", "priority"}
    free = g.grade("I'm sorry to hear that! Our team will get back to you.")
    assert free.passed is False and free.score == 0.0 and "not valid JSON" in free.details["reason"]
    assert g.needs_reference is False


def test_json_match_per_field():
    g = make_grader("json_match")
    assert g.grade('{"priority": "high", "category": "billing"}', TRIAGE_REF).passed is True
    half = g.grade('{"category": "billing", "priority": "low"}', TRIAGE_REF)
    assert half.score == 0.5 and half.passed is False
    assert half.details["fields"]["priority"] == {"match": False, "expected": "high", "got": "low"}
    assert half.details["fields"]["category"] == {"match": True}
    missing = g.grade('{"category": "billing"}', json.loads(TRIAGE_REF))  # reference as a dict works too
    assert missing.details["fields"]["priority"]["reason"] == "missing in output"
    nojson = g.grade("billing, high", TRIAGE_REF)
    assert nojson.score == 0.0 and nojson.passed is False and nojson.error is None


def test_json_match_values_and_paths():
    g = make_grader({"name": "json_match", "fields": ["n", "flag", "meta.tags.0"]})
    ref = {"n": 1, "flag": True, "meta": {"tags": ["x", "y"]}}
    assert g.grade('{"n": 1.0, "flag": true, "meta": {"tags": ["x"]}}', ref).passed is True
    r = g.grade('{"n": 1, "flag": 1, "meta": {"tags": ["x"]}}', ref)  # 1 is not true
    assert r.details["fields"]["flag"]["match"] is False and r.score == pytest.approx(2 / 3)
    norm = make_grader({"name": "json_match", "normalize_strings": True})
    assert norm.grade('{"city": "são paulo"}', {"city": "São Paulo!"}).passed is True


def test_json_match_reference_problems_are_item_errors():
    g = make_grader({"name": "json_match", "fields": ["category"]})
    err = g.grade('{"category": "billing"}', "billing")
    assert err.error and "reference is not valid JSON" in err.error and err.passed is None
    absent = g.grade('{"category": "billing"}', {"priority": "high"})
    assert absent.error == "reference has no field 'category'"
    assert make_grader("json_match").grade("{}", "[1, 2]").error.startswith("json_match without 'fields'")


# -- labels ----------------------------------------------------------------------------------------------------


def test_label_from_json_path():
    g = make_grader({"name": "label", "path": "category", "labels": ["billing", "technical", "other"]})
    r = g.grade('{"category": "Billing", "priority": "high"}', TRIAGE_REF)
    assert r.passed is True and r.label == "billing" and r.reference_label == "billing"
    other = g.grade('{"category": "refunds"}', TRIAGE_REF)
    assert other.label == OTHER_LABEL and other.details["raw"] == "refunds" and other.passed is False
    nolabel = g.grade("billing", TRIAGE_REF)  # free text where JSON is expected
    assert nolabel.label == NO_LABEL and nolabel.error is None and nolabel.score == 0.0
    nofield = g.grade('{"priority": "high"}', TRIAGE_REF)
    assert nofield.label == NO_LABEL and "missing" in nofield.details["reason"]


def test_label_reference_problems_are_item_errors():
    g = make_grader({"name": "label", "path": "category", "labels": ["billing", "other"]})
    missing = g.grade('{"category": "billing"}', '{"priority": "high"}')
    assert missing.error and "reference has no label" in missing.error and missing.passed is None
    outside = g.grade('{"category": "billing"}', '{"category": "shipping"}')
    assert outside.error and "not one of the configured labels" in outside.error


def test_label_from_text():
    g = make_grader("label")
    assert g.grade("  Positive\n", "positive").passed is True
    assert g.grade("NÉGATIF", "négatif").label == "négatif"
    assert g.grade("", "positive").label == NO_LABEL
    cs = make_grader({"name": "label", "case_sensitive": True})
    assert cs.grade("Positive", "positive").passed is False


def test_label_metrics_on_a_crafted_set():
    g = make_grader({"name": "label", "path": "c", "labels": ["cat", "dog", "bird"]})
    # gold/pred pairs: cat->cat x3, cat->dog x1, dog->dog x2, dog->cat x1, bird->bird x1, bird-><none> x1,
    # plus one ungradeable item (reference without the field) that must be ignored.
    data = [("cat", "cat")] * 3 + [
        ("cat", "dog"),
        ("dog", "dog"),
        ("dog", "dog"),
        ("dog", "cat"),
        ("bird", "bird"),
    ]
    results = [g.grade(json.dumps({"c": p}), json.dumps({"c": t})) for t, p in data]
    results.append(g.grade("not json", '{"c": "bird"}'))
    results.append(g.grade('{"c": "cat"}', '{"x": 1}'))
    m = g.summarize(results).labels
    assert m.confusion["cat"] == {"cat": 3, "dog": 1, "bird": 0, NO_LABEL: 0}
    assert m.confusion["dog"] == {"cat": 1, "dog": 2, "bird": 0, NO_LABEL: 0}
    assert m.confusion["bird"] == {"cat": 0, "dog": 0, "bird": 1, NO_LABEL: 1}
    assert m.columns == ["cat", "dog", "bird", NO_LABEL]
    # cat: tp 3, fp 1, fn 1 -> p = r = f1 = 0.75
    assert m.per_label["cat"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4})
    # dog: tp 2, fp 1, fn 1 -> 2/3 each
    assert m.per_label["dog"]["f1"] == pytest.approx(2 / 3)
    # bird: tp 1, fp 0, fn 1 -> p 1, r 0.5, f1 2/3
    assert m.per_label["bird"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m.macro["f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    # micro: tp 6, fp 2, fn 3 -> p 0.75, r 2/3
    assert m.micro["precision"] == pytest.approx(6 / 8) and m.micro["recall"] == pytest.approx(6 / 9)
    summary = g.summarize(results)
    assert summary.n == 10 and summary.n_errors == 1 and summary.n_graded == 9
    assert summary.accuracy == pytest.approx(6 / 9)
    assert summary.error_reasons == {"reference has no label": 1}
    assert summary.failure_reasons == {"label differs from the reference": 2, "output is not valid JSON": 1}


def test_label_metrics_micro_f1_equals_accuracy_when_every_output_has_a_label():
    results = [
        GradeResult(float(t == p), t == p, label=p, reference_label=t)
        for t, p in [("a", "a"), ("a", "b"), ("b", "b"), ("c", "a"), ("c", "c")]
    ]
    m = label_metrics(results)
    assert m.labels == ["a", "b", "c"]
    assert m.micro["f1"] == pytest.approx(3 / 5)
    assert label_metrics([GradeResult(1.0, True)]) is None


# -- ROUGE-L and BLEU ------------------------------------------------------------------------------------------


def test_rouge_l_hand_values():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5: P = 5/5, R = 5/6.
    r = rouge_l(tokenize("the cat on the mat"), tokenize("the cat sat on the mat"))
    assert r["lcs"] == 5 and r["precision"] == 1.0 and r["recall"] == pytest.approx(5 / 6)
    assert r["f"] == pytest.approx(2 * (5 / 6) / (1 + 5 / 6))
    g = make_grader("rouge_l")
    res = g.grade("The cat on the mat.", "the cat sat on the mat")
    assert res.score == pytest.approx(r["f"]) and res.passed is None
    assert g.grade("", "the cat").score == 0.0
    assert g.grade("x", "!!!").error  # reference with no words
    t = make_grader({"name": "rouge_l", "threshold": 0.95})
    assert t.grade("The cat on the mat.", "the cat sat on the mat").passed is False
    assert t.grade("the cat sat on the mat", "the cat sat on the mat").passed is True


def test_tokenize_unicode():
    assert tokenize("Crème brûlée, s'il vous plaît!") == ["crème", "brûlée", "s", "il", "vous", "plaît"]
    assert tokenize("東京 は 大きい") == ["東京", "は", "大きい"]
    assert tokenize("a, b!", lowercase=False, punctuation=True) == ["a", ",", "b", "!"]


def test_bleu_hand_values():
    ref = ["the", "cat", "is", "on", "the", "mat"]
    assert sentence_bleu(ref, ref)["score"] == pytest.approx(1.0)
    hyp = ["the", "cat", "the", "cat", "on", "the", "mat"]
    b = sentence_bleu(hyp, ref)
    # clipped 1-gram: the(2 of 3) cat(1 of 2) on mat -> 5/7; 2-grams: the cat, on the, the mat -> 3/6;
    # 3-grams: on the mat -> 1/5; 4-grams: none of 4 -> exp smoothing 1 / (2 * 4). No brevity penalty (7 > 6).
    assert b["precisions"] == pytest.approx([5 / 7, 3 / 6, 1 / 5, 1 / 8])
    assert b["score"] == pytest.approx((5 / 7 * 3 / 6 * 1 / 5 * 1 / 8) ** 0.25)
    assert sentence_bleu(hyp, ref, smoothing="none")["score"] == 0.0
    floor = sentence_bleu(hyp, ref, smoothing="floor")
    assert floor["precisions"][3] == pytest.approx(0.1 / 4)
    addk = sentence_bleu(hyp, ref, smoothing="add-k")
    assert addk["precisions"] == pytest.approx([5 / 7, 4 / 7, 2 / 6, 1 / 5])
    # Brevity penalty: a 3-token exact prefix of a 6-token reference.
    short = sentence_bleu(["the", "cat", "is"], ref)
    assert short["brevity_penalty"] == pytest.approx(2.718281828459045 ** (1 - 6 / 3))
    assert short["precisions"] == pytest.approx([1.0, 1.0, 1.0])  # effective order: no 4-grams in 3 tokens
    assert sentence_bleu(["dog"], ref)["score"] == 0.0  # nothing in common
    assert sentence_bleu([], ref)["score"] == 0.0


def test_bleu_grader():
    g = make_grader("bleu")
    assert g.grade("The cat is on the mat.", "The cat is on the mat.").score == pytest.approx(1.0)
    partial = g.grade("The cat sat on the mat.", "The cat is on the mat.")
    assert 0.0 < partial.score < 1.0 and partial.passed is None
    assert (
        g.grade("the cat", "The cat").score
        < make_grader({"name": "bleu", "lowercase": True}).grade("the cat", "The cat").score
    )
    assert g.grade("x", "").error


# -- pairwise judge --------------------------------------------------------------------------------------------


class FakeJudge:
    """Prefers whichever answer contains `better`; records the prompts it saw."""

    def __init__(self, mode: str = "consistent") -> None:
        self.mode = mode
        self.calls: list[list[dict]] = []

    def __call__(self, messages):
        self.calls.append(messages)
        text = messages[-1]["content"]
        a_part = text.split("[The Start of Assistant A's Answer]")[1].split(
            "[The End of Assistant A's Answer]"
        )[0]
        if self.mode == "first":  # position-biased: always prefers whatever is shown first
            return "A is more thorough. [[A]]"
        if self.mode == "garbage":
            return "Both are fine, I think A, or maybe B."
        if self.mode == "conflict":
            return "Verdict: [[A]] ... actually [[B]]"
        if self.mode == "tie":
            return "Equally good. [[C]]"
        return "Final verdict: [[A]]" if "better" in a_part else "Final verdict: [[B]]"


def test_judge_agreeing_orders_give_a_win():
    judge = FakeJudge()
    g = make_grader("pairwise_judge", judge=judge)
    item = {
        "messages": [
            {"role": "user", "content": "Describe the cat."},
            {"role": "assistant", "content": "ref"},
        ]
    }
    r = g.compare("a plain answer", "a better answer", item=item)
    assert r.winner == "b" and r.error is None and r.verdicts == ("b", "b")
    assert len(judge.calls) == 2
    first, second = (c[-1]["content"] for c in judge.calls)
    # Both orders were asked: A/B then B/A.
    assert first.index("a plain answer") < first.index("a better answer")
    assert second.index("a better answer") < second.index("a plain answer")
    assert "Describe the cat." in first and judge.calls[0][0]["role"] == "system"
    assert r.score_a == 0.0
    assert g.compare("a better answer", "meh").winner == "a"


def test_judge_disagreeing_orders_give_a_tie():
    r = make_grader("pairwise_judge", judge=FakeJudge("first")).compare("x", "y")
    assert r.winner == "tie" and r.details["orders_disagree"] is True and r.verdicts == ("a", "b")
    assert make_grader("pairwise_judge", judge=FakeJudge("tie")).compare("x", "y").winner == "tie"


@pytest.mark.parametrize("mode", ["garbage", "conflict"])
def test_judge_unparseable_output_is_an_error_not_a_tie(mode):
    r = make_grader("pairwise_judge", judge=FakeJudge(mode)).compare("x", "y")
    assert r.winner is None and r.error
    assert "A-first order" in r.error and "B-first order" in r.error
    assert r.raw[0] is not None


def test_judge_identical_outputs_skip_the_judge():
    judge = FakeJudge()
    r = make_grader("pairwise_judge", judge=judge).compare("same", "same")
    assert r.winner == "tie" and judge.calls == []


def test_judge_async_callable_sync_and_async_paths():
    calls = []

    async def ajudge(messages):
        calls.append(messages)
        await asyncio.sleep(0)
        text = messages[-1]["content"]
        a_part = text.split("[The Start of Assistant A's Answer]")[1]
        return "[[A]]" if a_part.lstrip().startswith("better") else "[[B]]"

    g = make_grader("pairwise_judge", judge=ajudge)
    assert g.compare("worse", "better").winner == "b"  # sync call with an async judge
    assert asyncio.run(g.acompare("better", "worse")).winner == "a"
    assert len(calls) == 4

    async def inside_loop():
        with pytest.raises(EvaluationError, match="acompare"):
            g.compare("worse", "better")

    asyncio.run(inside_loop())
    # A sync judge works with acompare too.
    assert asyncio.run(make_grader("pairwise_judge", judge=FakeJudge()).acompare("better", "b")).winner == "a"


def test_judge_custom_template_and_reference():
    seen = []

    def judge(messages):
        seen.append(messages)
        return "[[tie]]"

    template = 'Q: {question}\nRef: {reference}\nA: {answer_a}\nB: {answer_b}\nReply {"winner": ...} then [[A]]/[[B]]'
    g = make_grader({"name": "pairwise_judge", "template": template, "system": None}, judge=judge)
    r = g.compare("one {answer_b}", "two", item={"question": "Why?"}, reference="Because.")
    assert r.winner == "tie"
    msgs = seen[0]
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    assert msgs[0]["content"].startswith("Q: Why?\nRef: Because.\nA: one {answer_b}\nB: two\n")
    assert '{"winner": ...}' in msgs[0]["content"]  # literal braces left alone


def test_judge_grade_against_reference_and_missing_judge():
    g = make_grader("pairwise_judge", judge=FakeJudge())
    win = g.grade("a better answer", "reference answer")
    assert win.score == 1.0 and win.passed is True
    err = make_grader("pairwise_judge", judge=FakeJudge("garbage")).grade("x", "y")
    assert err.error and err.passed is None
    with pytest.raises(EvaluationError, match="no judge"):
        make_grader("pairwise_judge").compare("x", "y")


def test_summarize_pairwise_sign_test():
    results = [PairwiseResult("b")] * 10 + [PairwiseResult("a")] * 2 + [PairwiseResult("tie")] * 5
    results.append(PairwiseResult(None, error="judge output has no verdict"))
    s = summarize_pairwise(results)
    assert (s.wins_a, s.wins_b, s.ties, s.errors) == (2, 10, 5, 1)
    assert s.p_value == pytest.approx(2 * 79 / 4096) and s.winner == "b"
    assert s.win_rate_b == pytest.approx((10 + 2.5) / 17)


def test_conversation_text_shapes():
    chat = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "answer"},
        ]
    }
    assert conversation_text(chat) == "hi"
    multi = {"input": {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                    {"role": "user", "content": "c"}]}}  # fmt: skip
    assert conversation_text(multi) == "USER: a\nASSISTANT: b\nUSER: c"
    assert conversation_text(None) == ""


# -- aggregates and pairing ------------------------------------------------------------------------------------


def test_summarize_grades_counts_failures_and_errors_apart():
    g = make_grader({"name": "json_match", "fields": ["category"]})
    results = [
        g.grade('{"category": "billing"}', TRIAGE_REF),
        g.grade("Sure, this is billing", TRIAGE_REF),
        g.grade("also not json", TRIAGE_REF),
        g.grade('{"category": "billing"}', "not json either"),
    ]
    s = summarize_grades(results)
    assert (s.n, s.n_graded, s.n_errors, s.n_passed) == (4, 3, 1, 1)
    assert s.mean_score == pytest.approx(1 / 3) and s.accuracy == pytest.approx(1 / 3)
    assert s.failure_reasons == {"output is not valid JSON": 2}
    assert s.error_reasons == {"reference is not valid JSON": 1}
    lo, hi = s.accuracy_ci
    assert lo < 1 / 3 < hi
    assert summarize_grades([make_grader("rouge_l").grade("a b", "a c")]).accuracy is None


def test_paired_grades_drop_ungradeable_items_on_both_sides():
    g = make_grader({"name": "json_match", "fields": ["category"]})
    refs = [TRIAGE_REF, TRIAGE_REF, "broken", TRIAGE_REF]
    a = [g.grade(p, r) for p, r in zip(["x", '{"category": "billing"}', "{}", "x"], refs, strict=True)]
    b = [g.grade(p, r) for p, r in zip(['{"category": "billing"}'] * 4, refs, strict=True)]
    a_scores, b_scores, a_passed, b_passed, dropped = paired_grades(a, b)
    assert dropped == 1 and a_scores == [0.0, 1.0, 0.0] and b_scores == [1.0, 1.0, 1.0]
    assert a_passed == [False, True, False] and b_passed == [True, True, True]
    result = compare_paired(a_scores, b_scores, a_passed, b_passed, n_resamples=500)
    assert (result.mcnemar.b, result.mcnemar.c) == (0, 2)
    rouge = make_grader("rouge_l")
    _, _, pa, pb, _ = paired_grades([rouge.grade("a", "a")], [rouge.grade("b", "a")])
    assert pa is None and pb is None
    with pytest.raises(EvaluationError, match="same items"):
        paired_grades(a, b[:2])


def test_triage_fixture_end_to_end_without_http():
    """The shipped DPO validation pairs as two 'endpoints': rejected outputs (A) vs preferred outputs (B)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "fixtures" / "data" / "support_dpo_val.jsonl"
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    refs = [r["preferred_output"][0]["content"] for r in records]
    a_out = [r["non_preferred_output"][0]["content"] for r in records]
    graders = [
        make_grader({"name": "json_match", "fields": ["category", "priority"]}),
        make_grader(
            {
                "name": "label",
                "path": "category",
                "labels": ["billing", "technical", "account", "shipping", "other"],
            }
        ),
    ]
    for g in graders:
        a = [g.grade(p, ref, item) for p, ref, item in zip(a_out, refs, records, strict=True)]
        b = [g.grade(ref, ref, item) for ref, item in zip(refs, records, strict=True)]
        assert all(r.passed for r in b)
        summary = g.summarize(a)
        assert summary.n_errors == 0 and summary.accuracy < 1.0
        assert (
            "output is not valid JSON" in summary.failure_reasons
        )  # chatty or single-quoted rejected outputs
        result = compare_paired(*paired_grades(a, b)[:4], n_resamples=1000)
        assert result.pass_winner == "b" and result.mcnemar.b == 0 and result.mcnemar.c > 0


def test_non_text_prediction_is_a_caller_error():
    with pytest.raises(EvaluationError, match="must be text, got NoneType"):
        make_grader("exact").grade(None, "x")
