"""`tuneport serve --watch-jobs`: a job that finishes while the server runs is served without a restart.

The fallback engine runs everywhere (a few seconds); the vLLM variant (one server start, ~30 s) runs only where
vLLM is importable and checks that the CPU mixed-batch guard still refuses the load that would fill the last slot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tuneport.jobs.store import open_store
from tuneport.local_backend.serving.serve import start_server
from tuneport.local_backend.serving.serve_fixtures import make_random_adapter
from tuneport.local_backend.serving.watch import JobWatcher

HELLO = [{"role": "user", "content": "hello"}]


def finish_job(store, job_id: str, *, model: str, adapter: Path | None, name: str) -> None:
    """Record a local job that succeeded, as the runner leaves it (outputs.adapter, fine_tuned_model)."""
    outputs = {"adapter": str(adapter)} if adapter else {"merged": "/nowhere/merged"}
    store.insert_job(
        job_id, backend="local", status="succeeded", model=model, fine_tuned_model=name, outputs=outputs,
        finished_at=int(time.time()),
    )  # fmt: skip


def token_ids(base_url: str, model: str) -> list[int]:
    body = {"model": model, "messages": HELLO, "max_tokens": 12, "temperature": 0, "min_tokens": 12,
            "return_token_ids": True}  # fmt: skip
    r = httpx.post(base_url + "/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["token_ids"]


def served(base_url: str) -> list[str]:
    return [m["id"] for m in httpx.get(base_url + "/models", timeout=30).json()["data"]]


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def test_jobs_finishing_while_serving_are_loaded_and_answer(tiny_model: Path, tmp_path: Path) -> None:
    base = str(tiny_model)  # what the jobs trained on
    name = tiny_model.name  # what the server answers to: the folder's name, never its path
    store = open_store()
    finish_job(store, "ftjob-old", model=base, adapter=make_random_adapter(tiny_model, tmp_path / "old", seed=1),
               name="ft:old")  # fmt: skip
    lines: list[str] = []
    server = start_server(base, engine="transformers", log=lines.append)
    try:
        with JobWatcher(server, interval=0.3, store=store, log=lines.append):
            base_ids = token_ids(server.base_url, name)
            # One that finishes now, one on another base model, one that produced a full model, one still running.
            finish_job(store, "ftjob-new", model=base, adapter=make_random_adapter(tiny_model, tmp_path / "new", seed=2),
                       name="ft:tiny:new")  # fmt: skip
            finish_job(store, "ftjob-other", model="tiny-chat",
                       adapter=make_random_adapter(tiny_model, tmp_path / "other", seed=3), name="ft:other")  # fmt: skip
            finish_job(store, "ftjob-full", model=base, adapter=None, name="ft:full")
            store.insert_job("ftjob-later", backend="local", status="running", model=base)
            assert wait_for(lambda: "ft:tiny:new" in served(server.base_url)), lines
            assert wait_for(lambda: any("ftjob-full" in line for line in lines)), lines

            later = make_random_adapter(tiny_model, tmp_path / "later", seed=4)
            store.update_job("ftjob-later", status="succeeded", fine_tuned_model="ft:tiny:later",
                             outputs={"adapter": str(later)}, finished_at=int(time.time()))  # fmt: skip
            assert wait_for(lambda: "ft:tiny:later" in served(server.base_url)), lines

            assert served(server.base_url) == [
                name,
                "ft:tiny:new",
                "ft:tiny:later",
            ]  # not ft:old, nor ft:other
            new_ids, later_ids = (
                token_ids(server.base_url, "ft:tiny:new"),
                token_ids(server.base_url, "ft:tiny:later"),
            )
            assert len({tuple(base_ids), tuple(new_ids), tuple(later_ids)}) == 3
            assert token_ids(server.base_url, name) == base_ids  # the base is untouched by the loads
        full = next(line for line in lines if "ftjob-full" in line)
        assert "full model, not a LoRA adapter" in full and "--model" in full
        assert not any("ftjob-other" in line or "ftjob-old" in line for line in lines)
    finally:
        server.stop()
        store.close()


def test_the_cli_flag_serves_a_job_that_finishes_later(tiny_model: Path, tmp_path: Path) -> None:
    base = str(tiny_model)  # what the jobs trained on
    name = tiny_model.name  # what the server answers to: the folder's name, never its path
    cmd = [sys.executable, "-m", "tuneport.cli.main", "serve", "--model", base, "--engine", "transformers",
           "--port", "0", "--json", "--watch-jobs", "--watch-interval", "0.3"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        info = json.loads(line)
        assert info["models"] == [name]
        with open_store() as store:
            finish_job(store, "ftjob-cli", model=base,
                       adapter=make_random_adapter(tiny_model, tmp_path / "cli", seed=5), name="ft:tiny:cli")  # fmt: skip
        assert wait_for(lambda: "ft:tiny:cli" in served(info["base_url"]))
        assert token_ids(info["base_url"], "ft:tiny:cli") != token_ids(info["base_url"], name)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vLLM is not installed in this environment"
)
def test_vllm_loads_a_finished_job_and_the_cpu_guard_refuses_the_last_slot(
    tiny_model: Path, tmp_path: Path
) -> None:
    base = str(tiny_model)  # what the jobs trained on
    name = tiny_model.name  # what the server answers to: the folder's name, never its path
    store = open_store()
    lines: list[str] = []
    # Room for one runtime adapter; on CPU one more slot stays empty (the mixed-batch guard).
    server = start_server(base, engine="vllm", runtime_slots=1, home=tmp_path / "home", max_model_len=512,
                          log=lines.append)  # fmt: skip
    try:
        watcher = JobWatcher(server, interval=3600, store=store, log=lines.append)
        base_ids = token_ids(server.base_url, name)
        finish_job(store, "ftjob-v1", model=base, adapter=make_random_adapter(tiny_model, tmp_path / "v1", seed=1),
                   name="ft:tiny:v1")  # fmt: skip
        assert watcher.poll() == ["ft:tiny:v1"]
        assert served(server.base_url) == [name, "ft:tiny:v1"]
        assert token_ids(server.base_url, "ft:tiny:v1") != base_ids
        if server.lora_guard:
            assert server.max_loras == 2
            finish_job(store, "ftjob-v2", model=base,
                       adapter=make_random_adapter(tiny_model, tmp_path / "v2", seed=2), name="ft:tiny:v2")  # fmt: skip
            assert watcher.poll() == []
            assert "one slot must stay empty" in watcher.skipped["ftjob-v2"]
            assert served(server.base_url) == [name, "ft:tiny:v1"]
            assert token_ids(server.base_url, name) == base_ids
        watcher.stop()
    finally:
        server.stop()
        store.close()
