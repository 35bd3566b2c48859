"""Adversarial inputs to the evaluation (issue 13): an endpoint reporting impossible token usage, several
processes resuming one run at once, a rerun given a new name. Each test failed before its fix."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _eval_support import NO_RETRY, N, _question, _reference  # noqa: E402

from tuneport.errors import EvaluationError  # noqa: E402
from tuneport.evaluation.lease import run_lease  # noqa: E402
from tuneport.evaluation.runner import load_run, run_eval  # noqa: E402
from tuneport.jobs.store import Store  # noqa: E402

# ------------------------------------------------------------------------------------------- impossible usage


def _hosted(server, store: Store, monkeypatch: pytest.MonkeyPatch) -> str:
    """A saved endpoint priced by the token (an OpenAI model), served by the fake server."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-a-secret")
    store.add_endpoint("hosted", base_url=server.base_url, model="gpt-4o-mini", kind="openai",
                       api_key_env="OPENAI_API_KEY")  # fmt: skip
    server.answers["gpt-4o-mini"] = {_question(i): _reference(i) for i in range(N)}
    return "hosted"


@pytest.mark.parametrize(
    ("usage", "why"),
    [
        ({"prompt_tokens": -1000000, "completion_tokens": 5, "total_tokens": -999995}, "prompt_tokens=-1000000 is negative"),
        ({"prompt_tokens": 10, "completion_tokens": 2.5}, "completion_tokens=2.5 is not a whole number"),
        ({"prompt_tokens": "12", "completion_tokens": 1}, "prompt_tokens='12' is not a whole number"),
        ({"prompt_tokens": 10**15, "completion_tokens": 1}, "is more than any request uses"),
    ],
)  # fmt: skip
def test_impossible_usage_is_refused_and_never_priced(server, data, store, monkeypatch, usage, why) -> None:
    name = _hosted(server, store, monkeypatch)
    server.usage = usage
    run = run_eval(data, endpoints=[name], store=store, retry=NO_RETRY)
    s = run["summary"][name]
    # The answers are still graded...
    assert run["status"] == "complete" and s["n_answered"] == N
    assert s["graders"]["json_match"]["accuracy"] == 1.0
    # ... but their tokens are neither counted nor priced: no negative (or absurd) dollar figure.
    assert s["cost"]["per_item"] is None and s["cost"]["per_1000"] is None
    assert "refused" in s["cost"]["inputs"]["note"] and s["cost"]["inputs"]["usage_refused"] == N
    assert s["tokens"]["prompt"] == 0 and s["tokens"]["completion"] == 0 and s["tokens"]["priced_items"] == 0
    first = run["items"][0]["results"][name]
    assert why in first["usage_refused"] and first["usage"] == {"prompt_tokens": None, "completion_tokens": None}
    assert any(f"{name}: {N} answers came with token usage that cannot be right" in w for w in run["warnings"])
    # Nothing impossible was stored, and a reload (and the cache, on a rerun) says the same.
    rows = store.list_responses(run["id"])
    assert all(r["prompt_tokens"] is None and r["completion_tokens"] is None for r in rows)
    assert load_run(run["id"], store=store)["summary"][name]["cost"] == s["cost"]


def test_usage_stored_before_the_fix_is_refused_on_reload(server, data, store, monkeypatch) -> None:
    name = _hosted(server, store, monkeypatch)
    run = run_eval(data, endpoints=[name], store=store, retry=NO_RETRY)
    assert Decimal(run["summary"][name]["cost"]["per_item"]) > 0
    with sqlite3.connect(store.path) as raw:  # what an older tuneport stored from a buggy endpoint
        raw.execute("UPDATE responses SET prompt_tokens = -1000000 WHERE eval_run_id = ? AND item_index < 3",
                    (run["id"],))  # fmt: skip
    s = load_run(run["id"], store=store)["summary"][name]
    assert s["tokens"]["priced_items"] == N - 3 and s["cost"]["inputs"]["usage_refused"] == 3
    assert Decimal(s["cost"]["per_item"]) > 0 and s["tokens"]["prompt"] == 10 * (N - 3)


# ----------------------------------------------------------------------------------------- one resumer at once


def _incomplete_run(server, data, store) -> tuple[str, int]:
    """A run of "ft" whose endpoint died after 20 answers; returns (run id, items still missing)."""
    server.fail_after = 20
    run = run_eval(data, endpoints=[server.url("ft")], store=store, retry=NO_RETRY, concurrency=1)
    assert run["status"] == "incomplete"
    missing = sum(1 for it in run["items"] if it["results"][server.url("ft")]["error"] is not None)
    assert missing == N - 20
    server.fail_after = None
    server.requests.clear()
    return run["id"], missing


@pytest.mark.slow
def test_three_concurrent_resumes_ask_each_missing_item_exactly_once(server, data) -> None:
    store = Store()  # the processes below use TUNEPORT_HOME's store (this test's own)
    run_id, missing = _incomplete_run(server, data, store)
    server.delay = 0.15  # 40 items at -j 2: about 3 s of asking, so the three processes overlap
    cmd = [sys.executable, "-c", "from tuneport.cli.main import main; main()", "eval", "--resume", run_id,
           "-j", "2", "--json"]  # fmt: skip
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert sum(server.requests.values()) == missing, results  # each missing item asked exactly once
    codes = [code for code, _, _ in results]
    assert codes.count(0) >= 1, results
    refused = [out + err for code, out, err in results if code != 0]
    assert refused, "the three resumes never overlapped: the test proves nothing"
    for err in refused:
        assert f"run {run_id} is being filled in by another process: pid" in err and "since" in err, err
    assert load_run(run_id, store=store)["status"] == "complete"
    with sqlite3.connect(store.path) as raw:  # every holder gave its lease back
        assert raw.execute("SELECT count(*) FROM eval_leases").fetchone()[0] == 0
    store.close()


def test_a_live_holder_is_named_and_a_dead_or_silent_one_taken_over(server, data, store) -> None:
    run_id, _ = _incomplete_run(server, data, store)
    host = os.uname().nodename
    lease = store.acquire_eval_lease(run_id, "other", host=host, pid=os.getppid(), stale_after=60)
    assert lease["holder"] == "other" and lease["taken_over"] is None
    with pytest.raises(EvaluationError) as info:
        run_eval(resume=run_id, store=store, retry=NO_RETRY)
    assert f"pid {os.getppid()} on {host}" in info.value.message and "since" in info.value.message
    assert "--resume" in (info.value.hint or "")
    assert sum(server.requests.values()) == 0  # refused before asking anything

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.release_eval_lease(run_id, "other")
    store.acquire_eval_lease(run_id, "crashed", host=host, pid=dead.pid, stale_after=60)
    assert run_eval(resume=run_id, store=store, retry=NO_RETRY)["status"] == "complete"

    # On another machine the pid means nothing: a heartbeat older than the bound makes the lease stale.
    store.acquire_eval_lease(run_id, "remote", host="elsewhere", pid=1, stale_after=60)
    with pytest.raises(EvaluationError, match="pid 1 on elsewhere"), run_lease(store, run_id):
        pass
    with sqlite3.connect(store.path) as raw:
        raw.execute("UPDATE eval_leases SET heartbeat_at = ?", (time.time() - 3600,))
    taken = store.acquire_eval_lease(run_id, "mine", host=host, pid=os.getpid(), stale_after=60)
    assert taken["holder"] == "mine" and taken["taken_over"]["holder"] == "remote"
    assert store.heartbeat_eval_lease(run_id, "mine") and not store.heartbeat_eval_lease(run_id, "remote")
    assert store.release_eval_lease(run_id, "mine") and not store.release_eval_lease(run_id, "mine")


# --------------------------------------------------------------------------------------------- a rerun's name


def test_name_given_to_a_rerun_that_continues_a_run_is_kept(server, data, store) -> None:
    run_id, _ = _incomplete_run(server, data, store)
    server.fail_after = 5  # dies again: the rerun below continues the same run
    again = run_eval(data, endpoints=[server.url("ft")], store=store, retry=NO_RETRY, name="second try")
    assert again["id"] == run_id and again["name"] == "second try"
    server.fail_after = None
    done = run_eval(resume=run_id, store=store, retry=NO_RETRY, name="final")
    assert done["status"] == "complete" and done["name"] == "final"
    assert store.get_eval_run(run_id)["config"]["spec"]["name"] == "final"
    assert run_eval(resume=run_id, store=store, retry=NO_RETRY)["name"] == "final"  # no --name: kept
