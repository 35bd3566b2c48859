"""The evaluation runner end to end, against a real loopback OpenAI-compatible server with deterministic models.

Model "ft" answers every item's reference; model "base" gets the category wrong on 24 of 60 items and answers
with prose (not JSON) on 6 more. Everything a user relies on is checked against that ground truth: scores, the
paired statistics, the response cache, resuming after an endpoint dies, record/replay, costs and the errors.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _eval_support import CATEGORIES, NO_RETRY, N, _question, _reference, teach, write_dataset  # noqa: E402,F401

from tuneport.endpoints.client import EndpointError  # noqa: E402
from tuneport.errors import DataError, EvaluationError, SpecError  # noqa: E402
from tuneport.evaluation.runner import load_run, record_endpoint, run_eval  # noqa: E402


def _eval(server, data, store, **kw):
    kw.setdefault("endpoints", [server.url("base"), server.url("ft")])
    return run_eval(data, store=store, retry=NO_RETRY, **kw)


# ----------------------------------------------------------------------------------------------------- scores


def test_scores_and_paired_statistics(server, data, store) -> None:
    run = _eval(server, data, store)
    base, ft = server.url("base"), server.url("ft")
    assert run["status"] == "complete"
    assert run["dataset"]["n_items"] == N and len(run["dataset"]["sha256"]) == 64
    assert [e["name"] for e in run["endpoints"]] == [base, ft]
    assert all(e["kind"] == "live" and e["model"] in ("base", "ft") for e in run["endpoints"])
    # Default graders were chosen from the JSON references, and the run says so.
    assert [g["id"] for g in run["graders"]] == ["json_valid", "json_match"]
    assert "json_valid + json_match" in run["notes"][0]
    assert run["params"] == {"temperature": 0.0}

    s_ft, s_base = run["summary"][ft], run["summary"][base]
    assert s_ft["graders"]["json_match"]["accuracy"] == 1.0
    assert s_base["graders"]["json_match"]["n_passed"] == 30
    assert s_base["graders"]["json_valid"]["n_passed"] == 54
    lo, hi = s_base["graders"]["json_match"]["accuracy_ci"]
    assert lo < 0.5 < hi
    assert (
        s_ft["errors"] == 0 and s_ft["latency"]["n"] == N and s_ft["latency"]["p95"] >= s_ft["latency"]["p50"]
    )
    assert s_ft["tokens"] == {
        "prompt": 10 * N,
        "completion": 5 * N,
        "per_item": {"prompt": 10.0, "completion": 5.0},
    }
    assert s_ft["cost"]["per_1000"] is None and "give --hourly" in s_ft["cost"]["inputs"]["note"]

    by = {c["grader"]: c for c in run["comparisons"]}
    match = by["json_match"]
    assert (match["a"], match["b"], match["n"]) == (base, ft, N)
    assert match["pass"]["mcnemar"]["b"] == 0 and match["pass"]["mcnemar"]["c"] == 30
    assert match["pass"]["mcnemar"]["p_value"] < 1e-6 and match["pass"]["winner"] == "b"
    assert match["scores"]["winner"] == "b" and match["scores"]["bootstrap"]["low"] > 0
    assert match["excluded"] == {"request_errors": 0, "ungradable": 0}
    assert by["json_valid"]["pass"]["mcnemar"]["c"] == 6

    item = run["items"][0]
    assert item["prompt"][-1] == {"role": "user", "content": _question(0)}
    assert item["reference"] == _reference(0)
    r = item["results"][base]
    assert r["output"] and r["error"] is None and r["cached"] is False and r["latency_ms"] > 0
    assert r["grades"]["json_match"]["passed"] is False
    assert r["grades"]["json_match"]["details"]["fields"]["category"]["match"] is False
    # The run dict is JSON as it is, and load_run rebuilds the same thing from the store.
    json.dumps(run)
    again = load_run(run["id"], store=store)
    assert {k: v for k, v in run.items() if k != "session"} == again


def test_cache_hit_on_rerun_and_no_cache(server, data, store) -> None:
    first = _eval(server, data, store)
    assert sum(server.requests.values()) == 2 * N
    second = _eval(server, data, store)
    assert sum(server.requests.values()) == 2 * N  # nothing asked again
    assert second["id"] != first["id"] and second["status"] == "complete"
    assert all(r["cached"] for item in second["items"] for r in item["results"].values())
    assert second["summary"][server.url("ft")]["graders"] == first["summary"][server.url("ft")]["graders"]
    assert second["session"]["asked"] == {} and set(second["session"]["cached"].values()) == {N}
    third = _eval(server, data, store, use_cache=False)
    assert sum(server.requests.values()) == 4 * N
    assert not any(r["cached"] for item in third["items"] for r in item["results"].values())


def test_changed_sampling_params_are_not_served_from_cache(server, data, store) -> None:
    _eval(server, data, store, endpoints=[server.url("ft")])
    _eval(server, data, store, endpoints=[server.url("ft")], params={"max_tokens": 64})
    assert server.requests["ft"] == 2 * N
    assert server.bodies[-1]["max_tokens"] == 64 and server.bodies[-1]["temperature"] == 0


def test_endpoint_dies_mid_run_then_resume_asks_only_missing_items(server, data, store) -> None:
    ft = server.url("ft")
    server.fail_after, server.fail_models = N + 20, {"ft"}  # base's 60 succeed, ft's first 20, then 500s
    partial = _eval(server, data, store)
    assert partial["status"] == "incomplete"
    s = partial["summary"][ft]
    assert s["errors"] == 40 and s["n_answered"] == 20
    assert s["graders"]["json_match"]["n"] == 20  # errored items are not scored as zeros
    failed = [item["results"][ft] for item in partial["items"][20:]]
    assert all(r["output"] is None and r["error"] for r in failed)
    assert "HTTP 500" in failed[0]["error"] or "server had an error" in failed[0]["error"].lower()
    assert any("not asked" in r["error"] for r in failed)  # given up on after a run of failures
    assert server.requests["ft"] < N  # it stopped hammering a dead endpoint
    match = next(c for c in partial["comparisons"] if c["grader"] == "json_match")
    assert match["n"] == 20 and match["excluded"]["request_errors"] == 40  # excluded from both sides
    assert any("--resume " + partial["id"] in w for w in partial["warnings"])

    server.fail_after = None
    asked_before = dict(server.requests)
    resumed = _eval(server, data, store)  # the same evaluation again continues the unfinished run
    assert resumed["id"] == partial["id"] and resumed["status"] == "complete"
    assert server.requests["base"] == asked_before["base"]
    assert server.requests["ft"] - asked_before["ft"] == 40
    assert resumed["summary"][ft]["graders"]["json_match"]["accuracy"] == 1.0
    assert store.get_eval_run(partial["id"])["status"] == "complete"


def test_crash_mid_run_keeps_answers_and_rerun_asks_only_the_rest(server, data, store) -> None:
    class Crash(Exception):
        pass

    def crash_after_25(label: str, done: int, total: int) -> None:
        if done == 25:
            raise Crash  # the process dies here (Ctrl-C, OOM kill ...): nothing after this point runs

    with pytest.raises(Crash):
        _eval(server, data, store, endpoints=[server.url("ft")], concurrency=1, progress=crash_after_25)
    (run,) = store.list_eval_runs()
    assert run["status"] == "running"
    assert len(store.list_responses(run["id"])) == 25  # written as they arrived
    before = server.requests["ft"]
    done = _eval(server, data, store, endpoints=[server.url("ft")])
    assert done["id"] == run["id"] and done["status"] == "complete"
    assert server.requests["ft"] - before == N - 25


def test_resume_by_run_id(server, data, store) -> None:
    server.fail_after, server.fail_models = 10, {"ft"}
    partial = _eval(server, data, store, endpoints=[server.url("ft")], name="nightly")
    assert partial["status"] == "incomplete"
    server.fail_after = None
    before = server.requests["ft"]
    done = run_eval(resume=partial["id"], store=store, retry=NO_RETRY)
    assert done["id"] == partial["id"] and done["status"] == "complete" and done["name"] == "nightly"
    assert server.requests["ft"] - before == N - 10
    with pytest.raises(EvaluationError, match="No evaluation run 'evalrun-nope'"):
        run_eval(resume="evalrun-nope", store=store)


# --------------------------------------------------------------------------------------------- record / replay


def test_record_and_replay_equivalence(server, data, store, tmp_path) -> None:
    ft = server.url("ft")
    rec = record_endpoint(ft, data, name="old-ft", store=store, retry=NO_RETRY)
    assert rec["status"] == "complete" and rec["recorded"] == N and rec["use_as"] == "recorded:old-ft"
    live = _eval(server, data, store, endpoints=[server.url("base"), ft], use_cache=False)
    asked = server.requests["ft"]
    replay = _eval(server, data, store, endpoints=[server.url("base"), "recorded:old-ft"])
    assert server.requests["ft"] == asked  # the recording answered, not the server
    ep = next(e for e in replay["endpoints"] if e["name"] == "recorded:old-ft")
    assert ep["kind"] == "recorded" and ep["model"] == "ft"
    assert [i["results"]["recorded:old-ft"]["output"] for i in replay["items"]] == [
        i["results"][ft]["output"] for i in live["items"]
    ]
    assert replay["summary"]["recorded:old-ft"]["graders"] == live["summary"][ft]["graders"]
    c_live = next(c for c in live["comparisons"] if c["grader"] == "json_match")
    c_rep = next(c for c in replay["comparisons"] if c["grader"] == "json_match")
    assert c_live["pass"] == c_rep["pass"]

    # Items the recording never saw are per-item errors, and the run says it is incomplete.
    bigger = write_dataset(tmp_path / "bigger.jsonl", N + 3)
    teach(server, N + 3)
    run = _eval(server, bigger, store, endpoints=["recorded:old-ft"])
    assert run["status"] == "incomplete" and run["summary"]["recorded:old-ft"]["errors"] == 3
    assert (
        "no answer for this item (dataset line 61)" in run["items"][60]["results"]["recorded:old-ft"]["error"]
    )
    with pytest.raises(EndpointError, match="No recording named 'nope'"):
        _eval(server, data, store, endpoints=["recorded:nope"])


# ------------------------------------------------------------------------------------------------ bad inputs


def test_unknown_endpoint_name_is_a_clear_error(server, data, store) -> None:
    with pytest.raises(EndpointError, match="No endpoint named 'my-typo'") as info:
        _eval(server, data, store, endpoints=["my-typo"])
    assert "tuneport endpoints list" in info.value.hint
    assert store.list_eval_runs() == [] and sum(server.requests.values()) == 0


def test_missing_api_key_stops_before_asking_and_keeps_earlier_answers(
    server, data, store, monkeypatch
) -> None:
    from tuneport.endpoints.registry import add_endpoint
    from tuneport.errors import AuthenticationError

    monkeypatch.delenv("FAKE_OPENAI_KEY", raising=False)
    add_endpoint(
        store, "hosted", base_url=server.base_url, model="ft", kind="openai", api_key_env="FAKE_OPENAI_KEY"
    )
    with pytest.raises(AuthenticationError, match="FAKE_OPENAI_KEY"):
        _eval(server, data, store, endpoints=[server.url("base"), "hosted"])
    assert server.requests["base"] == N and server.requests["ft"] == 0
    monkeypatch.setenv("FAKE_OPENAI_KEY", "x")
    run = _eval(server, data, store, endpoints=[server.url("base"), "hosted"])
    assert run["status"] == "complete" and server.requests["base"] == N and server.requests["ft"] == N


def test_empty_dataset_and_broken_lines_are_clear_errors(server, store, tmp_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no items to evaluate"):
        _eval(server, empty, store)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n{oops\n")
    with pytest.raises(DataError) as info:
        _eval(server, bad, store)
    assert "bad.jsonl:1: the last message must be the assistant's" in info.value.message
    assert "bad.jsonl:2:" in info.value.message
    with pytest.raises(EvaluationError, match="no endpoints"):
        run_eval(bad, store=store)


def test_grader_that_does_not_fit_is_marked_per_item(server, store, tmp_path) -> None:
    data = write_dataset(tmp_path / "text.jsonl", text=True)
    server.reset()
    teach(server, text=True)
    schema = {"name": "json_schema", "schema": {"type": "object"}}
    run = _eval(server, data, store, graders=[schema, "json_match", "normalized"])
    ft = server.url("ft")
    s = run["summary"][ft]["graders"]
    # json_schema on prose: every output fails, each with its reason.
    assert s["json_schema"]["n_passed"] == 0 and s["json_schema"]["n_errors"] == 0
    g = run["items"][0]["results"][ft]["grades"]["json_schema"]
    assert g["passed"] is False and "not valid JSON" in g["details"]["reason"]
    # json_match with prose references: no item can be graded; marked, excluded, and warned about.
    assert s["json_match"]["n_errors"] == N and s["json_match"]["mean_score"] is None
    assert run["items"][0]["results"][ft]["grades"]["json_match"]["error"].startswith(
        "reference is not valid JSON"
    )
    assert any("'json_match' could not grade 60 of 60" in w for w in run["warnings"])
    assert not any(c["grader"] == "json_match" for c in run["comparisons"])
    norm = next(c for c in run["comparisons"] if c["grader"] == "normalized")
    assert norm["pass"]["mcnemar"]["c"] == 0  # base's lowercase answers still match when normalized
    with pytest.raises(EvaluationError, match="unknown grader 'exactt'; did you mean 'exact'"):
        _eval(server, data, store, graders=["exactt"])
    with pytest.raises(EvaluationError, match="LLM judge"):
        _eval(server, data, store, graders=["pairwise_judge"])


def test_default_graders_for_text_references(server, store, tmp_path) -> None:
    data = write_dataset(tmp_path / "text.jsonl", text=True)
    server.reset()
    teach(server, text=True)
    run = _eval(server, data, store)
    assert [g["id"] for g in run["graders"]] == ["exact", "normalized", "rouge_l"]
    assert "free text" in run["notes"][0]


def test_leakage_warning(server, data, store, tmp_path) -> None:
    train = tmp_path / "train.jsonl"
    lines = data.read_text().splitlines()
    train.write_text("\n".join(lines[:5]) + "\n")
    run = _eval(server, data, store, train=train)
    assert run["leakage"]["leaked"] == 5 and run["leakage"]["exact"] == 5
    assert any(w.startswith("leakage: 5 of 60 eval items repeat training items") for w in run["warnings"])
    clean = _eval(server, data, store)
    assert clean["leakage"] is None


# ------------------------------------------------------------------------------------------- specs and costs


def test_spec_file_with_per_endpoint_system_prompt_and_costs(
    server, data, store, tmp_path, monkeypatch
) -> None:
    from tuneport.endpoints.registry import add_endpoint

    monkeypatch.setenv("FAKE_OPENAI_KEY", "x")
    hosted_model = "ft:gpt-4.1-mini-2025-04-14:acme::abc"
    server.answers[hosted_model] = server.answers["ft"]
    add_endpoint(store, "hosted-ft", base_url=server.base_url, model=hosted_model, kind="openai",
                 api_key_env="FAKE_OPENAI_KEY")  # fmt: skip
    spec = tmp_path / "eval.yaml"
    spec.write_text(
        f"dataset: {data.name}\n"
        "endpoints:\n"
        "  - hosted-ft\n"
        f"  - name: local\n    endpoint: {server.url('ft')}\n    system: Answer with JSON only.\n"
        "    hourly_usd: '3.60'\n"
        "params: {max_tokens: 32}\n"
        "graders: [json_match]\n"
    )
    run = run_eval(spec, store=store, retry=NO_RETRY)
    assert run["status"] == "complete" and [e["name"] for e in run["endpoints"]] == ["hosted-ft", "local"]
    local_bodies = [b for b in server.bodies if b["model"] == "ft"]
    assert local_bodies[0]["messages"][0] == {"role": "system", "content": "Answer with JSON only."}
    assert sum(m["role"] == "system" for m in local_bodies[0]["messages"]) == 1
    assert local_bodies[0]["max_tokens"] == 32
    hosted = run["summary"]["hosted-ft"]["cost"]
    # 10 prompt + 5 completion tokens per item at $0.80 / $3.20 per 1M tokens.
    per_item = (Decimal(10) * Decimal("0.80") + Decimal(5) * Decimal("3.20")) / Decimal(1_000_000)
    assert Decimal(hosted["per_item"]) == per_item and Decimal(hosted["per_1000"]) == per_item * 1000
    assert hosted["inputs"]["model"] == "gpt-4.1-mini-2025-04-14" and hosted["inputs"]["as_of"]
    local = run["summary"]["local"]["cost"]
    timing = store.get_eval_run(run["id"])["metadata"]["timing"]["local"]
    expected = Decimal("3.60") * Decimal(str(round(timing["wall_s"], 6))) / 3600 / N * 1000
    assert abs(Decimal(local["per_1000"]) - expected) < Decimal("0.0000001")
    assert local["inputs"]["method"] == "hourly price x measured wall time"


def test_spec_unknown_keys_are_reported_with_suggestion_and_line(tmp_path, store) -> None:
    spec = tmp_path / "eval.yaml"
    spec.write_text(
        "dataset: heldout.jsonl\n"
        "endpoints:\n"
        "  - name: ft\n"
        "    endpoint: my-ft\n"
        "    sytem: Be brief.\n"
        "params:\n"
        "  temprature: 0.2\n"
        "gradrs: [exact]\n"
    )
    with pytest.raises(SpecError) as info:
        run_eval(spec, store=store)
    message = info.value.message
    assert 'endpoints.0.sytem: unknown key "sytem"; did you mean "system"? (line 5)' in message
    assert 'params.temprature: unknown key "temprature"; did you mean "temperature"? (line 7)' in message
    assert 'gradrs: unknown key "gradrs"; did you mean "graders"? (line 8)' in message
    assert "3 problems" in message
