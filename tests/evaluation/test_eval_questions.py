"""Prompted baselines, training vs held-out and non-inferiority, end to end on the scripted fake eval server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _eval_support import NO_RETRY, N, _question, _reference  # noqa: E402

from tuneport.errors import EvaluationError, SpecError  # noqa: E402
from tuneport.evaluation.runner import load_run, run_eval  # noqa: E402
from tuneport.evaluation.spec import EndpointConfig  # noqa: E402

TRAIN_N = 40


def _train_file(tmp_path: Path, server, *, repeat_eval_item: bool = True) -> Path:
    """40 training tickets (100..139), plus a copy of eval item 0 that must never be used."""
    path = tmp_path / "train.jsonl"
    lines = list(range(100, 100 + TRAIN_N)) + ([0] if repeat_eval_item else [])
    with path.open("w") as fh:
        for i in lines:
            messages = [{"role": "system", "content": "You classify support tickets."},
                        {"role": "user", "content": _question(i)},
                        {"role": "assistant", "content": _reference(i)}]  # fmt: skip
            fh.write(json.dumps({"messages": messages}) + "\n")
    # "memo" knows the training tickets by heart and nothing else; ft and base answer training tickets right
    server.answers["memo"] = {_question(i): _reference(i) for i in range(100, 100 + TRAIN_N)}
    for model in ("ft", "base"):
        server.answers[model].update({_question(i): _reference(i) for i in range(100, 100 + TRAIN_N)})
    return path


def test_a_prompted_base_gets_seeded_shots_from_training_never_eval_items(server, data, store, tmp_path):
    train = _train_file(tmp_path, server)
    prompted = EndpointConfig(endpoint=server.url("base"), name="base (prompted: system + 3-shot)",
                              system="Answer with JSON only.", shots=3)  # fmt: skip
    run = run_eval(data, endpoints=[prompted, server.url("ft")], train=train, store=store, retry=NO_RETRY)
    assert [e["name"] for e in run["endpoints"]] == ["base (prompted: system + 3-shot)", server.url("ft")]
    rec = run["prompting"]
    assert rec["seed"] == 0 and rec["repeated_eval_items"] == 1  # the copy of eval item 0 is left out, and said
    lines = rec["endpoints"]["base (prompted: system + 3-shot)"]["lines"]
    assert len(lines) == 3 and TRAIN_N + 1 not in lines  # line 41 is the eval item's copy
    sent = [b for b in server.bodies if b["model"] == "base"]
    assert len(sent) == N
    msgs = sent[0]["messages"]
    assert msgs[0] == {"role": "system", "content": "Answer with JSON only."}
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * 3 + ["user"]
    eval_questions = {_question(i) for i in range(N)}
    shots = [m["content"] for m in msgs[1:-1] if m["role"] == "user"]
    assert not eval_questions & set(shots)
    # the same seed draws the same shots; another seed others
    again = run_eval(data, endpoints=[prompted, server.url("ft")], train=train, store=store, retry=NO_RETRY)
    assert again["prompting"]["endpoints"] == rec["endpoints"]
    assert again["session"]["asked"] == {}  # the same prompts: every answer comes from the cache
    other = run_eval(data, endpoints=[prompted, server.url("ft")], train=train, store=store, retry=NO_RETRY,
                     sample_seed=7)  # fmt: skip
    assert other["prompting"]["endpoints"]["base (prompted: system + 3-shot)"]["lines"] != lines


def test_more_shots_than_training_examples_is_a_clear_error(server, data, store, tmp_path):
    train = _train_file(tmp_path, server)
    cfg = EndpointConfig(endpoint=server.url("base"), shots=TRAIN_N + 1)
    with pytest.raises(SpecError, match=r"has 40 usable training examples \(1 more repeat eval items.*41 few-shot"):
        run_eval(data, endpoints=[cfg], train=train, store=store, retry=NO_RETRY)
    with pytest.raises(SpecError, match="draws from the training file, but none was given"):
        run_eval(data, endpoints=[EndpointConfig(endpoint=server.url("base"), shots=2)], store=store)


def test_train_sample_shows_the_gap_and_flags_memorisation(server, data, store, tmp_path):
    train = _train_file(tmp_path, server)
    run = run_eval(data, endpoints=[server.url("memo"), server.url("ft")], train=train, train_sample=20,
                   store=store, retry=NO_RETRY)  # fmt: skip
    assert run["status"] == "complete"
    assert run["prompting"]["train_sample"]["n"] == 20
    rows = {(r["endpoint"], r["grader"]): r for r in run["overfitting"]}
    memo = rows[(server.url("memo"), "json_match")]
    assert memo["train"] == 1.0 and memo["heldout"] == 0.0 and memo["n_train"] == 20 and memo["n_heldout"] == N
    assert memo["gap"] == 1.0 and memo["gap_ci"][0] > 0.7 and memo["flag"] is True
    ft = rows[(server.url("ft"), "json_match")]
    assert ft["gap"] == 0.0 and ft["flag"] is False and ft["gap_ci"][0] < 0 < ft["gap_ci"][1]
    # stored and rebuilt from the store alike
    again = load_run(run["id"], store=store)
    assert again["overfitting"] == run["overfitting"]


def test_noninferiority_gate_passes_and_fails_on_scripted_endpoints(server, data, store):
    server.answers["ft2"] = dict(server.answers["ft"])  # a copy of ft: not worse
    run = run_eval(data, endpoints=[server.url("ft"), server.url("ft2"), server.url("base")], baseline=server.url("ft"),
                   margin=0.05, store=store, retry=NO_RETRY)  # fmt: skip
    rows = {(r["candidate"], r["grader"]): r for r in run["noninferiority"]}
    same = rows[(server.url("ft2"), "json_match")]
    assert same["non_inferior"] is True and same["kind"] == "pass" and same["n_discordant"] == 0 and same["n"] == N
    worse = rows[(server.url("base"), "json_match")]  # base fails 30 of the 60 items ft passes
    assert worse["non_inferior"] is False and worse["diff"] == pytest.approx(-0.5) and worse["b"] == 30


def test_a_baseline_without_some_answers_is_counted_and_excluded(server, data, store):
    server.answers["ft2"] = dict(server.answers["ft"])
    server.fail_after, server.fail_models = 50, {"ft"}
    run = run_eval(data, endpoints=[server.url("ft"), server.url("ft2")], baseline=server.url("ft"), margin=0.1,
                   store=store, retry=NO_RETRY)  # fmt: skip
    row = next(r for r in run["noninferiority"] if r["grader"] == "json_match")
    assert row["excluded"]["baseline_no_answer"] == 10 and row["n"] == 50
    assert any("baseline" in w and "10 of 60" in w for w in run["warnings"])


def test_bad_baseline_and_margin_are_refused(server, data, store):
    eps = [server.url("ft"), server.url("base")]
    with pytest.raises(EvaluationError, match="strictly between 0 and 1"):
        run_eval(data, endpoints=eps, baseline=server.url("ft"), margin=1.5, store=store)
    with pytest.raises(EvaluationError, match="is not one of the evaluated endpoints"):
        run_eval(data, endpoints=eps, baseline="nope", margin=0.05, store=store)
    with pytest.raises(EvaluationError, match="needs both --baseline ENDPOINT and --margin"):
        run_eval(data, endpoints=eps, margin=0.05, store=store)


def test_comparisons_carry_the_paired_interval_of_the_pass_rate_difference(server, data, store):
    run = run_eval(data, endpoints=[server.url("base"), server.url("ft")], store=store, retry=NO_RETRY)
    c = next(c for c in run["comparisons"] if c["grader"] == "json_match")
    ci = c["pass"]["rate_diff_ci"]
    assert c["pass"]["rate_diff"] == pytest.approx(0.5)
    assert ci["low"] < 0.5 < ci["high"] and ci["method"].startswith("Newcombe")
