"""Evaluation reports: the three files, their content, self-containment, escaping, and the CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from _report_fixture import HOSTILE, build_costs, build_events, build_run
from click.testing import CliRunner

from tuneport.errors import EvaluationError
from tuneport.report.diff import word_diff
from tuneport.report.format import fmt_pct
from tuneport.report.json_file import load_report_json
from tuneport.report.markdown import md_cell
from tuneport.report.model import loss_curve
from tuneport.report.render import render_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run() -> dict:
    return build_run()


@pytest.fixture(scope="module")
def written(run: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report")
    return render_report(run, out, job_events=build_events(), costs=build_costs())


def _text(written: dict[str, Path], key: str) -> str:
    return written[key].read_text(encoding="utf-8")


def test_all_three_files_and_the_plots_are_written(written: dict[str, Path]) -> None:
    assert {p.name for p in written.values()} == {
        "report.md", "report.html", "report.json", "latency.png", "cost.png", "loss-ftjob-local-abc123.png",
    }  # fmt: skip
    for key, path in written.items():
        assert path.is_file() and path.stat().st_size > 0, key
        if key.startswith("plot:"):
            assert path.read_bytes().startswith(PNG_MAGIC)
            assert path.parent == written["md"].parent  # next to the Markdown that links it
            assert f"]({path.name})" in _text(written, "md")


def test_html_is_self_contained(written: dict[str, Path]) -> None:
    html = _text(written, "html")
    # Nothing is fetched: no external script, stylesheet, image, font or frame. The only outside addresses are
    # the links of price sources (<a href>: followed when clicked, never loaded).
    assert not re.search(r"""src\s*=\s*["']?(?:https?:)?//""", html, re.I)
    outside = re.findall(r"""<(\w+)[^>]*\shref\s*=\s*["']?(?:https?:)?//""", html, re.I)
    assert set(outside) <= {"a"}, outside
    assert "<link" not in html.lower() and "@import" not in html and "url(" not in html
    srcs = re.findall(r"""<img[^>]*\ssrc="([^"]*)\"""", html)
    assert len(srcs) == 3 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for src in srcs:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    # The CSP forbids the network and allows exactly the inline filter script (by hash).
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1)
    assert "default-src &#x27;none&#x27;" in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"sha256-{digest}" in csp


def test_hostile_model_output_is_escaped(written: dict[str, Path]) -> None:
    html = _text(written, "html")
    assert HOSTILE not in html
    assert "<script>alert" not in html and "<img src=x" not in html
    assert html.count("<script") == 1
    assert "&lt;script&gt;" in html and "onerror=alert(1)&gt;" in html
    # Prompt text with markup is shown as text too.
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html and "<b>bold" not in html
    md = _text(written, "md")
    # In Markdown the output sits in a fence longer than its own run of four backticks, so it cannot break out.
    assert "`````text\n" + HOSTILE + "\n`````" in md
    assert md_cell("a|b <i>`x`</i>\nnext") == "a\\|b &lt;i&gt;\\`x\\`&lt;/i&gt; next"
    assert md_cell("a\\|b") == "a\\\\\\|b"  # a backslash cannot un-escape the pipe that follows it


def test_disagreement_filter_marks_exactly_the_items_whose_verdicts_differ(
    run: dict, written: dict[str, Path]
) -> None:
    html = _text(written, "html")
    assert '<input type="checkbox" id="only-disagree">' in html
    assert 'id="shown-count"' in html and 'getElementById("only-disagree")' in html
    expected = set()
    for item in run["items"]:
        base, tuned = item["results"]["base"], item["results"]["tuned"]
        verdicts = {
            g: (base["grades"][g]["passed"], tuned["grades"][g]["passed"]) for g in ("category", "rouge")
        }
        if any(a != b for a, b in verdicts.values()) or bool(base["error"]) != bool(tuned["error"]):
            expected.add(item["index"])
    marked = {int(i) for i in re.findall(r'id="item-(\d+)" data-disagree="1"', html)}
    assert marked == expected and 0 < len(marked) < len(run["items"])
    assert len(re.findall(r'class="item" id="item-\d+" data-disagree="[01]"', html)) == len(run["items"])
    assert f"disagree ({len(expected)})" in html


def test_word_diff_highlights_output_against_reference() -> None:
    ref, out = "The cat sat on the mat.", "The cat lay on the red mat!"
    ops = word_diff(ref, out)
    assert "".join(t for op, t in ops if op != "delete") == out
    assert "".join(t for op, t in ops if op != "insert") == ref
    assert ("delete", "sat") in ops and ("insert", "lay") in ops and ("insert", "!") in ops
    assert word_diff("x " * 5000, "y") is None  # too long: shown plainly, not diffed


def test_json_round_trips_and_re_renders_identically(
    run: dict, written: dict[str, Path], tmp_path: Path
) -> None:
    data = json.loads(_text(written, "json"))
    assert data["format"] == "tuneport.report/1"
    assert data["run"] == json.loads(json.dumps(run))
    assert data["costs"][0]["amount"] == "1.234500"
    assert data["report"]["loss_curves"]["ftjob-local-abc123"]["train_loss"][0][0] == 1
    again = render_report(out_dir=tmp_path, **load_report_json(written["json"]))
    for key in ("md", "html", "json"):
        assert again[key].read_bytes() == written[key].read_bytes(), key


def test_markdown_has_the_score_table_and_the_paired_tests(run: dict, written: dict[str, Path]) -> None:
    md = _text(written, "md")
    assert "| endpoint | grader | items | ungraded | mean score | accuracy | Wilson interval |" in md
    for ep in ("base", "tuned"):
        s = run["summary"][ep]["graders"]["category"]
        low, high = s["accuracy_ci"]
        row = (f"| {ep} | category | {s['n']} | {s['n_errors']} | {s['mean_score']:.3f} | "
               f"{fmt_pct(s['accuracy'])} ({s['n_passed']}/{s['n_judged']}) | [{fmt_pct(low)}, {fmt_pct(high)}] |")  # fmt: skip
        assert row in md
    comp = next(c for c in run["comparisons"] if c["grader"] == "category")
    mc = comp["pass"]["mcnemar"]
    assert mc["significant"] and comp["pass"]["winner"] == "b"
    assert (f"McNemar (exact): b = {mc['b']} (base passed, tuned failed), c = {mc['c']} (tuned passed, base failed), "
            "p &lt; 0.001: tuned passes significantly more items") in md  # fmt: skip
    boot = comp["scores"]["bootstrap"]
    assert f"95% paired bootstrap CI [{boot['low']:+.3f}, {boot['high']:+.3f}]: tuned scores higher" in md
    assert "## Label metrics" in md and "| reference \\\\ predicted | billing | bug | feature |" in md
    assert "## Costs" in md and "billed\\_tokens\\_per\\_epoch: 123450" in md
    assert "source: https://openai.com/api/pricing" in md


def test_no_winner_without_significance_and_small_sample_warnings(tmp_path: Path) -> None:
    written = render_report(build_run(12, same=True), tmp_path, formats=("md", "html"))
    md, html = _text(written, "md"), _text(written, "html")
    assert "no significant difference at alpha = 0.05" in md
    assert "passes significantly more" not in md and "scores higher" not in md
    assert "small sample: only" in md and "small sample: only" in html
    assert "no discordant pairs" in md
    assert "None: every grader gave every endpoint the same verdict" in md
    assert not re.search(r'id="item-\d+" data-disagree="1"', html)
    assert len(re.findall(r'id="item-\d+" data-disagree="0"', html)) == 12


def test_loss_curve_plot_only_when_the_job_reported_losses(run: dict, tmp_path: Path) -> None:
    with_events = render_report(run, tmp_path / "a", job_events=build_events(), formats=("md", "html"))
    assert "plot:loss:ftjob-local-abc123" in with_events
    assert "final train loss:" in _text(with_events, "md")
    assert _text(with_events, "html").count("<img ") == 3  # latency, cost, loss
    assert 'alt="train and valid loss of job' in _text(with_events, "html")
    without = render_report(run, tmp_path / "b", formats=("md", "html"))
    assert not any(k.startswith("plot:loss") for k in without)
    assert "No loss metrics were reported for this job." in _text(without, "md")
    assert _text(without, "html").count("<img ") == 2  # latency, cost
    assert 'alt="train and valid loss of job' not in _text(without, "html")


def test_loss_curve_reads_metrics_events() -> None:
    events = build_events(steps=10)["ftjob-local-abc123"]
    events.append(
        {"type": "metrics", "data": {"step": 10, "train_loss": 0.05, "total_steps": 10}}
    )  # re-reported
    events.append({"type": "metrics", "data": {"step": None, "train_loss": 9.0}})
    curve = loss_curve(events)
    assert [s for s, _ in curve["train_loss"]] == list(range(1, 11))
    assert curve["train_loss"][-1] == (10, 0.05)
    assert [s for s, _ in curve["valid_loss"]] == [5, 10]
    assert curve["total_steps"] == 10


def test_incomplete_run_warns_prominently(tmp_path: Path) -> None:
    written = render_report(build_run(10, status="incomplete"), tmp_path)
    md, html = _text(written, "md"), _text(written, "html")
    text = "This run is incomplete: 10 of 15 items have results from every endpoint."
    assert text in md and md.index(text) < md.index("## Scores")
    assert re.search(r'<div class="warnings" role="alert">.*' + re.escape(text), html, re.S)
    assert html.index(text) < html.index('id="scores"')
    assert any(text in w for w in json.loads(_text(written, "json"))["report"]["warnings"])
    assert md.count("eval items repeat training items") == 1  # the runner's wording, not repeated
    assert "1 request to endpoint &#x27;base&#x27; failed" in html


def test_leakage_and_failed_requests_are_warned_once(tmp_path: Path) -> None:
    run = build_run(6)
    run["warnings"] = []
    md = _text(render_report(run, tmp_path / "a", formats=("md",)), "md")
    assert "Data leakage: possible overlap between the evaluation set and training data (leaked=2" in md
    assert (
        "1 request to endpoint &#x27;base&#x27; failed" not in md
        and "1 request to endpoint 'base' failed" in md
    )
    run["leakage"] = {"leaked": 0, "exact": 0, "normalized": 0}
    run["warnings"] = ["base: 1 of 6 items have no answer (1 APIConnectionError); they are excluded"]
    md = _text(render_report(run, tmp_path / "b", formats=("md",)), "md")
    assert "leakage" not in md.lower()
    assert "request to endpoint" not in md and md.count("have no answer") == 1
    assert "- note: graders chosen from the references" in md


def test_bad_input_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="'endpoints'"):
        render_report({"id": "x", "items": []}, tmp_path)
    with pytest.raises(EvaluationError, match=r"endpoints\[0\] has no 'name'"):
        render_report({"id": "x", "endpoints": [{}], "items": []}, tmp_path)
    with pytest.raises(EvaluationError, match="unknown report format"):
        render_report(build_run(3), tmp_path, formats=("pdf",))
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": 1,\n oops}')
    with pytest.raises(EvaluationError, match="line 2"):
        load_report_json(bad)


# ---------------------------------------------------------------------------------------------------------- CLI


def test_cli_report_from_a_run_file_with_job_events_and_costs_from_the_store(
    run: dict, tmp_path: Path
) -> None:
    from tuneport.cli.report import report
    from tuneport.cost.figures import Figure
    from tuneport.cost.records import record_figure
    from tuneport.jobs.store import Store

    job_id = "ftjob-local-abc123"
    with Store() as store:
        store.insert_job(job_id, backend="local", status="succeeded", model="tiny-chat")
        for event in build_events(job_id, steps=12)[job_id]:
            store.add_event(job_id, event["message"], type=event["type"], data=event["data"])
        fig = Figure("local training actual", Decimal("0.42"), "seconds / 3600 x hourly_usd",
                     {"seconds": 1512, "hourly_usd": "1.00", "source": "--hourly"})  # fmt: skip
        record_figure(store, "training_local", fig, job_id=job_id)
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(run))
    result = CliRunner().invoke(report, [str(run_file), "--output", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.output)
    assert {"md", "html", "json", "plot:latency", f"plot:loss:{job_id}"} <= set(paths)
    md = Path(paths["md"]).read_text()
    assert "### local training actual: $0.42" in md and "- formula: seconds / 3600 x hourly\\_usd" in md
    data = json.loads(Path(paths["json"]).read_text())
    assert [s for s, _ in data["report"]["loss_curves"][job_id]["train_loss"]] == list(range(1, 13))

    plain = CliRunner().invoke(report, [str(run_file), "-o", str(tmp_path / "out2"), "--format", "md"])
    assert plain.exit_code == 0, plain.output
    assert plain.output.startswith("md    ") and "report.html" not in plain.output


def test_cli_report_errors(tmp_path: Path) -> None:
    from tuneport.cli.report import report

    missing = CliRunner().invoke(report, [str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and "no such file" in str(missing.exception)
    not_a_run = tmp_path / "list.json"
    not_a_run.write_text("[1, 2]")
    result = CliRunner().invoke(report, [str(not_a_run)])
    assert isinstance(result.exception, EvaluationError)


def test_cli_report_by_run_id_from_the_evaluation_runner(tmp_path: Path) -> None:
    """End to end with the real runner: evaluate two loopback endpoints, then report the stored run by its id."""
    evaluation = pytest.importorskip("tuneport.evaluation.runner")
    from _eval_support import NO_RETRY, teach, write_dataset
    from _fake_eval_server import FakeEvalServer

    from tuneport.cli.report import report

    server = FakeEvalServer().start()
    try:
        teach(server)
        data = write_dataset(tmp_path / "heldout.jsonl")
        run = evaluation.run_eval(data, endpoints=[server.url("base"), server.url("ft")], retry=NO_RETRY)
    finally:
        server.stop()
    result = CliRunner().invoke(report, [run["id"], "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.output)
    md = Path(paths["md"]).read_text()
    comp = next(c for c in run["comparisons"] if c["grader"] == "json_match")
    assert f"b = {comp['pass']['mcnemar']['b']} " in md and f"c = {comp['pass']['mcnemar']['c']} " in md
    html = Path(paths["html"]).read_text()
    n_disagree = len(re.findall(r'id="item-\d+" data-disagree="1"', html))
    assert n_disagree == comp["pass"]["mcnemar"]["n_discordant"] == 30
    assert json.loads(Path(paths["json"]).read_text())["run"]["id"] == run["id"]


def test_a_job_trained_on_a_hub_model_names_its_commit(run: dict, tmp_path: Path) -> None:
    events = build_events()
    sha = "0123456789abcdef0123456789abcdef01234567"
    events["ftjob-local-abc123"].insert(0, {
        "id": 0, "level": "info", "message": f"Base model acme/tiny-chat-instruct at commit {sha}",
        "data": {"base_model": {"source": "hub", "repo_id": "acme/tiny-chat-instruct", "revision": "main",
                                "sha": sha}},
    })  # fmt: skip
    written = render_report(run, tmp_path, job_events=events, formats=("md", "html"))
    assert "Trained on acme/tiny-chat-instruct at commit 0123456789ab." in _text(written, "md")
    assert "Trained on <code>acme/tiny-chat-instruct at commit 0123456789ab</code>." in _text(written, "html")
    plain = render_report(run, tmp_path / "plain", job_events=build_events(), formats=("md",))
    assert "Trained on" not in _text(plain, "md")
