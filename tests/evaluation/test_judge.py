"""The pairwise LLM judge inside ``tuneport eval``, against the loopback server's deterministic judge models.

The data is test_evaluation's: "ft" answers every reference, "base" is wrong on items 0..29 and right on 30..59
(identical answers: a tie decided without asking). The "judge" model prefers the answer equal to the reference, so
ft must win exactly 30 items, asked in both orders; "biased" always says [[A]] (pure position bias) and
"mute" never gives a verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _eval_support import NO_RETRY, N  # noqa: E402
from _fake_eval_server import FakeEvalServer  # noqa: E402

from tuneport.endpoints.client import EndpointError  # noqa: E402
from tuneport.errors import EvaluationError  # noqa: E402
from tuneport.evaluation.runner import load_run, run_eval  # noqa: E402
from tuneport.report.render import render_report  # noqa: E402

WRONG = 30  # items base gets wrong (0..29); ft and base agree exactly on the other 30


@pytest.fixture
def server(server: FakeEvalServer) -> FakeEvalServer:
    server.judges.update({"judge": "reference", "biased": "first", "mute": "unparseable"})
    return server


def _eval(server, data, store, judge: str = "judge", **kw):
    kw.setdefault("endpoints", [server.url("base"), server.url("ft")])
    kw.setdefault("judges", [server.url(judge)])
    return run_eval(data, store=store, retry=NO_RETRY, **kw)


def test_judge_wins_only_where_both_orders_agree(server, data, store) -> None:
    run = _eval(server, data, store)
    base, ft = server.url("base"), server.url("ft")
    assert run["status"] == "complete"
    (pair,) = run["pairwise"]
    assert (pair["a"], pair["b"], pair["grader"]) == (base, ft, "pairwise_judge")
    assert pair["judge"]["model"] == "judge" and pair["excluded"] == {"no_answer": 0, "judge_failed": 0}
    s = pair["summary"]
    assert (s["n"], s["wins_a"], s["wins_b"], s["ties"], s["errors"]) == (N, 0, WRONG, N - WRONG, 0)
    assert s["winner"] == "b" and s["p_value"] < 1e-6 and s["orders_disagree"] == 0
    # The 30 differing items were asked in both orders; identical answers never reach the judge.
    assert server.requests["judge"] == 2 * WRONG
    by_index = {it["index"]: it for it in pair["items"]}
    assert all(by_index[i]["winner"] == "b" for i in range(WRONG))
    assert [o["verdict"] for o in by_index[0]["orders"]] == ["b", "b"]
    assert "[[B]]" in by_index[0]["orders"][0]["raw"] and "[[A]]" in by_index[0]["orders"][1]["raw"]
    assert all(by_index[i]["winner"] == "tie" and by_index[i]["error"] is None for i in range(WRONG, N))
    # The judge scores no endpoint by itself: the data's graders still do, and the run says why they are there.
    assert [g["id"] for g in run["graders"]] == ["json_valid", "json_match"]
    assert "pairwise judge" in run["notes"][0]
    # The judge was sent the question, the reference and both answers, greedily.
    body = next(b for b in server.bodies if b["model"] == "judge")
    assert body["temperature"] == 0.0 and "[Reference Answer]" in body["messages"][-1]["content"]
    # load_run rebuilds the same verdicts from the store.
    again = load_run(run["id"], store=store)
    assert again["pairwise"] == run["pairwise"]


def test_position_biased_judge_gives_ties_not_wins(server, data, store) -> None:
    run = _eval(server, data, store, judge="biased")
    s = run["pairwise"][0]["summary"]
    assert (s["wins_a"], s["wins_b"], s["ties"], s["orders_disagree"]) == (0, 0, N, WRONG)
    assert s["winner"] is None and s["p_value"] == 1.0
    item = run["pairwise"][0]["items"][0]
    assert item["winner"] == "tie" and [o["verdict"] for o in item["orders"]] == ["a", "b"]


def test_unparseable_judge_output_is_a_marked_item_error(server, data, store) -> None:
    run = _eval(server, data, store, judge="mute")
    pair = run["pairwise"][0]
    s = pair["summary"]
    assert (s["errors"], s["wins_a"], s["wins_b"], s["ties"]) == (WRONG, 0, 0, N - WRONG)
    item = pair["items"][0]
    assert item["winner"] is None and item["error"].startswith("unparseable judge output")
    assert "no verdict" in item["error"]
    assert any("no parseable verdict" in w and f"{WRONG} of {N}" in w for w in run["warnings"])


def test_judge_answers_are_cached_across_runs(server, data, store) -> None:
    first = _eval(server, data, store)
    asked = dict(server.requests)
    second = _eval(server, data, store)
    assert second["id"] != first["id"]  # a finished run is not reused
    assert dict(server.requests) == asked  # ... but nothing is asked again, judge included
    assert second["session"]["judge"] == {"pairwise_judge": {"asked": 0, "cached": 2 * WRONG}}
    assert second["pairwise"][0]["summary"] == first["pairwise"][0]["summary"]
    # --no-cache asks the judge again.
    _eval(server, data, store, use_cache=False)
    assert server.requests["judge"] == asked["judge"] + 2 * WRONG


def test_judge_dying_mid_run_keeps_partial_results_and_resumes(server, data, store) -> None:
    server.fail_after = 2 * N + 10  # both endpoints answer, then the judge answers 10 requests and dies
    server.fail_models = {"judge"}
    run = _eval(server, data, store)
    assert run["status"] == "incomplete"
    pair = run["pairwise"][0]
    assert 0 < pair["excluded"]["judge_failed"] < WRONG
    assert pair["summary"]["wins_b"] == WRONG - pair["excluded"]["judge_failed"]
    failed = [it for it in pair["items"] if it["excluded"]]
    assert all(it["winner"] is None and ("judge request failed" in it["error"] or "not asked" in it["error"])
               for it in failed)  # fmt: skip
    assert any("gave no verdict" in w and "--resume" in w for w in run["warnings"])
    before = server.requests["judge"]

    server.fail_after = None
    resumed = _eval(server, data, store)
    assert resumed["id"] == run["id"] and resumed["status"] == "complete"
    assert server.requests["judge"] - before == 2 * WRONG - 10  # only the verdicts still missing
    assert resumed["pairwise"][0]["summary"]["wins_b"] == WRONG


def test_items_without_an_answer_are_excluded_and_counted(server, data, store) -> None:
    server.fail_after = N + 5  # base answers everything, ft 5 items, then ft dies
    server.fail_models = {"ft"}
    run = _eval(server, data, store)
    pair = run["pairwise"][0]
    assert pair["excluded"]["no_answer"] == N - 5
    assert pair["summary"]["n"] == 5
    excluded = [it for it in pair["items"] if it["excluded"]]
    assert len(excluded) == N - 5 and all("no answer from" in it["error"] for it in excluded)


def test_judge_config_errors(server, data, store) -> None:
    with pytest.raises(EvaluationError, match="names no judge endpoint") as info:
        _eval(server, data, store, judges=(), graders=["pairwise_judge"])
    assert "--judge" in info.value.hint
    with pytest.raises(EndpointError, match="recording"):
        _eval(server, data, store, judge="x", judges=["recorded:old"])
    with pytest.raises(EvaluationError, match="asks no judge"):
        _eval(server, data, store, judges=(), graders=[{"name": "exact", "judge": server.url("judge")}])
    with pytest.raises(EvaluationError, match="judge_params"):
        _eval(server, data, store, judges=(),
              graders=[{"name": "pairwise_judge", "judge": server.url("judge"), "judge_params": {"temprature": 1}}])  # fmt: skip
    assert server.requests == {}  # every mistake is caught before the first request


def test_spec_names_the_judge(server, data, store, tmp_path) -> None:
    spec = tmp_path / "eval.yaml"
    spec.write_text(
        f"dataset: {data.name}\n"
        f"endpoints: ['{server.url('base')}', '{server.url('ft')}']\n"
        "graders:\n"
        "  - json_match\n"
        f"  - {{name: pairwise_judge, id: judged, judge: '{server.url('judge')}', judge_params: {{max_tokens: 64}}}}\n"
    )
    run = run_eval(spec, store=store, retry=NO_RETRY)
    assert [g["id"] for g in run["graders"]] == ["json_match"] and not run["notes"]
    assert run["pairwise"][0]["grader"] == "judged" and run["pairwise"][0]["summary"]["wins_b"] == WRONG
    assert next(b for b in server.bodies if b["model"] == "judge")["max_tokens"] == 64
    resumed = run_eval(None, resume=run["id"], store=store, retry=NO_RETRY)
    assert resumed["pairwise"][0]["summary"] == run["pairwise"][0]["summary"]


def test_report_has_a_pairwise_section(server, data, store, tmp_path) -> None:
    run = _eval(server, data, store)
    hostile = run["pairwise"][0]["items"][1]
    hostile.update(winner=None, error="unparseable judge output: <script>alert(1)</script>")
    written = render_report(run, tmp_path / "report", formats=("md", "html"))
    md = written["md"].read_text()
    assert "## Pairwise judge" in md
    assert f"wins {WRONG}" in md and "sign test" in md
    assert "| 0 | " in md and "better (both orders agree)" in md  # the per-item verdicts
    assert "<script>" not in md and "&lt;script&gt;" in md
    html = written["html"].read_text()
    assert 'id="pairwise"' in html and "Pairwise judge" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "judge:" in html  # per-item verdicts in the items


def test_cli_judge_option(server, data) -> None:
    from tuneport.cli.eval import eval_

    runner = CliRunner()
    args = [str(data), "-e", server.url("base"), "-e", server.url("ft"), "--judge", server.url("judge")]
    result = runner.invoke(eval_, [*args, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["pairwise"][0]["summary"]["wins_b"] == WRONG
    result = runner.invoke(eval_, args)
    assert result.exit_code == 0, result.output
    assert "pairwise judge" in result.stdout and f"{WRONG} wins" in result.stdout
