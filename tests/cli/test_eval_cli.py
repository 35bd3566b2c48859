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
