"""``tuneport eval`` and ``tuneport eval record`` through the real command line, against a loopback server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cli import tp  # noqa: E402
from _eval_support import N, eval_server, running_eval_server, write_dataset  # noqa: E402,F401 (fixtures)


def test_eval_json_and_human_output(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    base, ft = server.url("base"), server.url("ft")
    code, out, err = tp(capsys, "eval", str(data), "--endpoint", base, "-e", ft, "-j", "4",
                        "--grader", "json_valid", "--grader", '{"name": "json_match", "fields": ["category"]}',
                        "--json")  # fmt: skip
    assert code == 0, err
    run = json.loads(out)
    assert run["status"] == "complete" and [g["id"] for g in run["graders"]] == ["json_valid", "json_match"]
    assert run["summary"][ft]["graders"]["json_match"]["accuracy"] == 1.0
    match = next(c for c in run["comparisons"] if c["grader"] == "json_match")
    assert match["pass"]["winner"] == "b" and match["n"] == N

    code, out, err = tp(capsys, "eval", str(data), "-e", base, "-e", ft, "--hourly", "2.5")
    assert code == 0, err
    assert f"run {run['id']}" not in out  # a finished run is not reused: a new run, answered from the cache
    assert f"{ft}: 0 asked, {N} from the cache/recording" in out
    assert "accuracy 100.0%" in out and "json_match" in out
    assert f"{ft} vs {base} [json_match] n={N}" in out and f"better: {ft}" in out
    assert "n/a (no requests were timed" in out  # --hourly, but every answer came from the cache
    assert "note: no graders were given" in out


def test_record_then_replay_and_incomplete_exit_code(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    code, out, err = tp(capsys, "eval", "record", server.url("ft"), str(data), "--name", "old-ft", "--json")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["recorded"] == N and rec["use_as"] == "recorded:old-ft"
    asked = server.requests["ft"]
    code, out, err = tp(
        capsys, "eval", str(data), "-e", server.url("base"), "-e", "recorded:old-ft", "--json"
    )
    assert code == 0, err
    assert server.requests["ft"] == asked
    run = json.loads(out)
    assert run["summary"]["recorded:old-ft"]["graders"]["json_match"]["accuracy"] == 1.0

    server.fail_after, server.fail_models = server.served + 5, {"base"}
    code, out, err = tp(capsys, "eval", str(data), "-e", server.url("base"), "--no-cache", "--json",
                        "--timeout", "5", "--retries", "0", "-j", "1")  # fmt: skip
    assert code == 1  # incomplete: resumable, and scripts can tell
    partial = json.loads(out)
    assert partial["status"] == "incomplete" and partial["summary"][server.url("base")]["errors"] == N - 5
    server.fail_after = None
    code, out, err = tp(capsys, "eval", "--resume", partial["id"], "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "complete"


def test_errors_are_clear(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    code, out, _ = tp(capsys, "eval", str(data), "-e", "no-such-endpoint", "--json")
    assert code == 2
    error = json.loads(out)["error"]
    assert error["type"] == "EndpointError" and "no-such-endpoint" in error["message"]
    code, _, err = tp(capsys, "eval", str(data))
    assert code == 12 and "no endpoints to evaluate" in err
    code, _, err = tp(capsys, "eval", str(data), "-e", server.url("ft"), "--grader", "{bad")
    assert code == 2 and "not valid JSON" in err
    code, out, err = tp(capsys, "eval", "--help")
    assert code == 0 and "record" in out and "--endpoint" in out


def _train(tmp_path: Path, server) -> Path:
    from _eval_support import _question, _reference

    path = tmp_path / "train.jsonl"
    with path.open("w") as fh:
        for i in range(100, 130):
            fh.write(json.dumps({"messages": [{"role": "user", "content": _question(i)},
                                              {"role": "assistant", "content": _reference(i)}]}) + "\n")  # fmt: skip
    for model in ("ft", "base"):
        server.answers[model].update({_question(i): _reference(i) for i in range(100, 130)})
    return path


def test_per_endpoint_prompting_train_sample_and_verdict_sentences(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    train = _train(tmp_path, server)
    (tmp_path / "sys.txt").write_text("Answer with JSON only.\n")
    base, ft = server.url("base"), server.url("ft")
    code, out, err = tp(capsys, "eval", str(data), "-e", base, "--system", f"@{tmp_path / 'sys.txt'}",
                        "--few-shot", "3", "-e", ft, "--train-file", str(train), "--train-sample", "10",
                        "--sample-seed", "5")  # fmt: skip
    assert code == 0, err
    prompted = f"{base} (prompted: system + 3-shot)"
    lines = out.splitlines()
    assert lines[0].startswith(f"{ft} beats {prompted} on json_valid: +10 points [")
    assert any(line.startswith(f"{ft} beats {prompted} on json_match: +50 points [") and "p = " in line
               for line in lines)  # fmt: skip
    assert any(line.startswith(f"{ft} on json_match: training 100% vs held-out 100%") for line in lines)
    assert "with seed 5" in out
    bodies = [b for b in server.bodies if b["model"] == "base"]
    assert bodies[0]["messages"][0] == {"role": "system", "content": "Answer with JSON only."}
    assert len([b for b in server.bodies if b["model"] == "ft"]) == N + 10  # held-out + the training sample
    assert not any(b["messages"][0].get("content") == "Answer with JSON only." for b in server.bodies
                   if b["model"] == "ft")  # --system went to the -e it followed only  # fmt: skip


def test_system_before_any_endpoint_is_a_usage_error(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    code, out, err = tp(capsys, "eval", str(data), "--system", "hi", "-e", server.url("base"))
    assert code == 2 and "applies to the -e ENDPOINT it follows" in err


def test_noninferiority_gate_exit_codes(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    server.answers["ft2"] = dict(server.answers["ft"])
    ft, ft2, base = server.url("ft"), server.url("ft2"), server.url("base")
    code, out, err = tp(capsys, "eval", str(data), "-e", ft, "-e", ft2, "--baseline", ft, "--margin", "0.05")
    assert code == 0, err
    assert f"{ft2} is not worse than {ft} by more than 5 points on json_match" in out
    code, out, err = tp(capsys, "eval", str(data), "-e", ft, "-e", base, "--baseline", ft, "--margin", "0.05")
    assert code == 14, err
    assert f"{base} may be worse than {ft} by more than 5 points" in out and "quality gate failed" in err
    code, out, err = tp(capsys, "eval", str(data), "-e", ft, "-e", base, "--fail-under", f"{ft}=0.9")
    assert code == 0, err
    code, out, err = tp(capsys, "eval", str(data), "-e", ft, "-e", base, "--fail-under", "0.9")
    assert code == 14 and f"{base} scores 0.500 on json_match, under --fail-under 0.9" in err
    code, out, err = tp(capsys, "eval", str(data), "-e", ft, "-e", base, "--baseline", ft, "--margin", "1.5")
    assert code == 12 and "strictly between 0 and 1" in err


def test_compare_two_stored_runs_on_common_items(server, tmp_path, capsys) -> None:
    data = write_dataset(tmp_path / "heldout.jsonl")
    ft = server.url("ft")
    code, out, _ = tp(capsys, "eval", str(data), "-e", ft, "--name", "before", "--json")
    run_a = json.loads(out)["id"]
    server.answers["ft"] = dict(server.answers["base"])  # the endpoint drifted
    code, out, _ = tp(capsys, "eval", str(data), "-e", ft, "--no-cache", "--json")
    run_b = json.loads(out)["id"]
    code, out, err = tp(capsys, "eval", "compare", run_a, run_b)
    assert code == 0, err
    assert f"{ft}@{run_b} loses to {ft}@{run_a} on json_match: -50 points [" in out
    assert f"{N} common items (0 only in {run_a}, 0 only in {run_b})" in out
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"another question {i}"},
                                                      {"role": "assistant", "content": "x"}]}) + "\n"
                             for i in range(3)))  # fmt: skip
    code, out, _ = tp(capsys, "eval", str(other), "-e", ft, "--json")
    code, out, err = tp(capsys, "eval", "compare", run_a, json.loads(out)["id"])
    assert code == 12 and "no item in common" in err
