"""The store: migrations, reopening, concurrency from real processes, paging, the secrets guard, errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tuneport.errors import StoreError
from tuneport.jobs import store as store_module
from tuneport.jobs.store import Store, open_store, schema_version


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "t.db") as opened:
        yield opened


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


# --------------------------------------------------------------------------------------------------- migrations


def test_fresh_database_is_migrated_once_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with Store(path) as first:
        first.insert_job("ftjob-1", backend="local", status="queued", model="tiny-chat")
    with Store(path) as second:  # reopening: nothing re-applied, data still there
        assert second.get_job("ftjob-1")["model"] == "tiny-chat"

    raw = _raw(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == schema_version() >= 1
    applied = raw.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [version for version, _ in applied] == list(range(1, schema_version() + 1))
    assert applied[0][1] == "0001_init.sql"
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"datasets", "files", "jobs", "events", "checkpoints", "endpoints", "eval_runs", "responses",
            "costs"} <= tables  # fmt: skip


def test_each_migration_is_one_transaction_and_new_ones_apply_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.db"
    Store(path).close()
    shipped = store_module._migrations()
    nxt = len(shipped) + 1
    broken = (
        nxt,
        f"{nxt:04d}_broken.sql",
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    monkeypatch.setattr(store_module, "_migrations", lambda: (*shipped, broken))
    with pytest.raises(StoreError) as info:
        Store(path)
    assert str(path) in str(info.value)
    raw = _raw(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == nxt - 1  # the failed migration left nothing behind
    assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0

    good = (nxt, f"{nxt:04d}_add.sql", "-- a comment; with a semicolon\nCREATE TABLE added (x INTEGER);\n")
    monkeypatch.setattr(store_module, "_migrations", lambda: (*shipped, good))
    Store(path).close()
    Store(path).close()
    assert raw.execute("PRAGMA user_version").fetchone()[0] == nxt
    assert raw.execute("SELECT version FROM schema_migrations").fetchall() == [(v,) for v in range(1, nxt + 1)]


def test_newer_schema_than_this_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    Store(path).close()
    raw = _raw(path)
    raw.execute(f"PRAGMA user_version = {schema_version() + 1}")
    raw.commit()
    with pytest.raises(StoreError) as info:
        Store(path)
    assert str(path) in str(info.value) and "newer" in str(info.value)
    assert "Upgrade tuneport" in info.value.hint


def test_corrupt_file_gives_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not sqlite at all" * 200)
    with pytest.raises(StoreError) as info:
        Store(path)
    assert str(path) in str(info.value)
    assert "move it aside" in info.value.hint


def test_unusable_home_gives_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    monkeypatch.setenv("TUNEPORT_HOME", str(blocker / "home"))  # a folder cannot live inside a file
    with pytest.raises(StoreError) as info:
        open_store()
    assert "TUNEPORT_HOME" in info.value.hint
    with pytest.raises(StoreError) as info:
        Store(blocker / "t.db")
    assert str(blocker / "t.db") in str(info.value)


def test_tuneport_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("TUNEPORT_HOME", str(home))
    with open_store() as opened:
        opened.add_endpoint("e", base_url="http://localhost:8000/v1", model="tiny-chat", kind="vllm")
        assert opened.path == home / "tuneport.db"
    assert (home / "tuneport.db").is_file()
    with Store(home / "tuneport.db") as again:
        assert again.get_endpoint("e")["model"] == "tiny-chat"


def test_closed_store_says_so(tmp_path: Path) -> None:
    opened = Store(tmp_path / "t.db")
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.list_jobs()


# -------------------------------------------------------------------------------------------------- concurrency

_WORKER = r"""
import sys, time
from pathlib import Path
from tuneport.jobs.store import Store

path, worker, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.001)
store = Store(path)  # all workers open the fresh database at the same moment
own = f"ftjob-w{worker}"
store.insert_job(own, backend="local", status="running", pid=worker)
store.upsert_job("ftjob-shared", backend="local", status="running")
for i in range(n):
    job = own if i % 2 == 0 else "ftjob-shared"
    store.add_event(job, f"w{worker} step {i}", type="metrics", data={"worker": worker, "i": i})
    if i % 10 == 0:
        store.upsert_job("ftjob-shared", backend="local", status="running", trained_tokens=i, metadata={"w": str(worker)})
        store.update_job(own, trained_tokens=i, heartbeat_at=time.time())
store.update_job(own, status="succeeded", if_status="running")
store.close()
"""


def test_several_processes_share_a_fresh_database_without_losing_anything(tmp_path: Path) -> None:
    path, go, workers, n = tmp_path / "t.db", tmp_path / "go", 4, 200
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(w), str(n), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for w in range(workers)
    ]
    time.sleep(0.3)  # let the interpreters start, then release them together
    go.touch()

    # Follow the shared job's log while the workers write, as `tuneport jobs events --follow` does.
    followed: list[dict] = []
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if path.exists():
            try:
                with Store(path) as reader:
                    after = followed[-1]["id"] if followed else None
                    followed += reader.list_events("ftjob-shared", after=after, limit=50)
            except StoreError:  # the database may not be migrated yet, or the job not created
                pass
        time.sleep(0.02)
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()

    with Store(path) as reader:
        after = followed[-1]["id"] if followed else None
        followed += reader.list_events("ftjob-shared", after=after, limit=None)
        shared = reader.list_events("ftjob-shared", limit=None)
        assert followed == shared  # following with `after` missed nothing and repeated nothing
        assert len(shared) == workers * n // 2
        for w in range(workers):
            own = reader.list_events(f"ftjob-w{w}", limit=None)
            assert [e["data"]["i"] for e in own] == list(range(0, n, 2))  # each writer's order is kept
            assert [e["data"]["i"] for e in shared if e["data"]["worker"] == w] == list(range(1, n, 2))
            job = reader.get_job(f"ftjob-w{w}")
            assert job["status"] == "succeeded" and job["trained_tokens"] == n - 10
        assert reader.get_job("ftjob-shared")["trained_tokens"] == n - 10
        assert len(reader.list_jobs()) == workers + 1

    raw = _raw(path)
    assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == workers * n
    ids = [i for (i,) in raw.execute("SELECT id FROM events ORDER BY id")]
    assert ids == list(range(1, workers * n + 1))
    assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    assert raw.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == schema_version()


# ------------------------------------------------------------------------------------------------- jobs, events


def test_event_paging_with_after(store: Store) -> None:
    store.insert_job("ftjob-a", backend="local", status="running")
    store.insert_job("ftjob-b", backend="local", status="running")
    for i in range(7):
        store.add_event("ftjob-a", f"a{i}", data={"step": i})
        store.add_event("ftjob-b", f"b{i}")

    pages, after = [], None
    while page := store.list_events("ftjob-a", after=after, limit=3):
        pages.append([e["message"] for e in page])
        after = page[-1]["id"]
    assert pages == [["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6"]]
    newest = store.list_events("ftjob-a", limit=2, order="desc")
    assert [e["message"] for e in newest] == ["a6", "a5"]
    older = store.list_events("ftjob-a", after=newest[-1]["id"], limit=2, order="desc")
    assert [e["message"] for e in older] == ["a4", "a3"]
    assert store.list_events("ftjob-a", limit=1)[0]["data"] == {"step": 0}
    with pytest.raises(ValueError, match="level"):
        store.add_event("ftjob-a", "x", level="debug")
    with pytest.raises(StoreError, match="ftjob-nope"):
        store.add_event("ftjob-nope", "x")


def test_provider_events_are_not_duplicated_by_a_second_sync(store: Store) -> None:
    store.upsert_job("ftjob-remote", backend="openai", status="running")
    assert store.add_event("ftjob-remote", "Job started", provider_event_id="ftevent-1") is not None
    assert store.add_event("ftjob-remote", "Job started", provider_event_id="ftevent-1") is None
    assert len(store.list_events("ftjob-remote")) == 1


def test_jobs_update_list_and_guarded_status_change(store: Store) -> None:
    store.insert_job("ftjob-1", backend="local", status="running", metadata={"team": "a"}, created_at=100)
    store.insert_job("ftjob-2", backend="openai", status="succeeded", created_at=200)
    store.insert_job("ftjob-3", backend="local", status="failed", metadata={"team": "b"}, created_at=300)
    with pytest.raises(StoreError, match="already"):
        store.insert_job("ftjob-1", backend="local", status="queued")

    assert [j["id"] for j in store.list_jobs()] == ["ftjob-3", "ftjob-2", "ftjob-1"]
    assert [j["id"] for j in store.list_jobs(backend="local")] == ["ftjob-3", "ftjob-1"]
    assert [j["id"] for j in store.list_jobs(status=["running", "succeeded"])] == ["ftjob-2", "ftjob-1"]
    assert [j["id"] for j in store.list_jobs(metadata={"team": "b"})] == ["ftjob-3"]
    assert [j["id"] for j in store.list_jobs(after="ftjob-3", limit=1)] == ["ftjob-2"]

    # A cancel lands first; the runner's "succeeded" must not overwrite it.
    assert (
        store.update_job("ftjob-1", status="cancelled", if_status=["queued", "running"])["status"]
        == "cancelled"
    )
    assert store.update_job("ftjob-1", status="succeeded", if_status="running") is None
    assert store.get_job("ftjob-1")["status"] == "cancelled"

    outputs = {"adapter_dir": "/tmp/x/adapter", "checkpoints_dir": "/tmp/x/checkpoints"}
    job = store.update_job("ftjob-3", outputs=outputs, error={"code": "oom", "message": "out of memory"})
    assert job["outputs"] == outputs and job["error"]["code"] == "oom"
    with pytest.raises(StoreError, match="ftjob-404"):
        store.update_job("ftjob-404", status="failed")
    with pytest.raises(TypeError, match="colour"):
        store.update_job("ftjob-3", colour="red")


def test_checkpoints_and_cascade(store: Store) -> None:
    store.insert_job("ftjob-1", backend="local", status="running")
    store.add_checkpoint("ftjob-1", 10, metrics={"train_loss": 2.0}, path="/ckpt/10")
    store.add_checkpoint("ftjob-1", 20, metrics={"train_loss": 1.5}, path="/ckpt/20")
    store.add_checkpoint("ftjob-1", 20, metrics={"train_loss": 1.4}, path="/ckpt/20")  # re-saved: updated
    assert [(c["step"], c["metrics"]["train_loss"]) for c in store.list_checkpoints("ftjob-1")] == [
        (20, 1.4),
        (10, 2.0),
    ]
    store.add_event("ftjob-1", "hello")
    assert store.delete_job("ftjob-1")
    assert store.list_checkpoints("ftjob-1") == [] and store.list_events("ftjob-1") == []


# ------------------------------------------------------------------------------------------ everything else


def test_datasets_and_provider_files(store: Store) -> None:
    sha = "ab" * 32
    store.upsert_dataset(sha, path="/d/train.jsonl", size_bytes=123, n_examples=10, stats={"tokens": 999})
    again = store.upsert_dataset(sha, path="/moved/train.jsonl", size_bytes=123)
    assert (
        again["path"] == "/moved/train.jsonl"
        and again["stats"] == {"tokens": 999}
        and again["n_examples"] == 10
    )
    assert store.get_dataset_by_sha256("cd" * 32) is None

    assert store.find_file("openai", sha, "fine-tune") is None
    store.record_file("openai", "file-abc", dataset_sha256=sha, purpose="fine-tune", size_bytes=123)
    assert store.find_file("openai", sha, "fine-tune")["provider_file_id"] == "file-abc"
    assert store.find_file("together", sha, "fine-tune") is None
    assert store.forget_file("openai", "file-abc")
    assert store.find_file("openai", sha, "fine-tune") is None


def test_endpoints_crud(store: Store) -> None:
    store.add_endpoint(
        "gpt", base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key_env="OPENAI_API_KEY"
    )
    store.add_endpoint("local", base_url="http://127.0.0.1:8000/v1", model="tiny-chat", kind="vllm")
    with pytest.raises(StoreError, match="already exists"):
        store.add_endpoint("gpt", base_url="https://x/v1", model="m")
    store.add_endpoint("gpt", base_url="https://x/v1", model="m2", replace=True)
    assert store.get_endpoint("gpt")["model"] == "m2"
    assert [e["name"] for e in store.list_endpoints()] == ["gpt", "local"]
    assert store.remove_endpoint("gpt") and not store.remove_endpoint("gpt")
    with pytest.raises(StoreError, match="api_key_env"):
        store.add_endpoint("bad", base_url="https://x/v1", model="m", api_key_env="my key")


def test_eval_runs_responses_and_costs(store: Store) -> None:
    run = store.create_eval_run(name="smoke", endpoints=["base", "tuned"], dataset_sha256="ab" * 32)
    store.add_response(run["id"], "base", 0, cache_key="k0", response={"text": "hi"}, latency_ms=12.5)
    store.add_response(run["id"], "base", 1, cache_key="k1", error={"type": "timeout"})
    store.add_response(run["id"], "base", 0, cache_key="k0", response={"text": "hello"}, latency_ms=10.0)
    assert [r["response"] for r in store.list_responses(run["id"])] == [{"text": "hello"}, None]
    assert store.find_cached_response("k0")["response"] == {"text": "hello"}
    assert store.find_cached_response("k1") is None  # failures are never served from the cache
    assert store.update_eval_run(run["id"], status="succeeded", summary={"win_rate": 0.5})["summary"] == {
        "win_rate": 0.5
    }

    cost = store.add_cost("training", "0.10", inputs={"source": "openai pricing", "as_of": "2026-01-01"})
    store.add_cost("training", Decimal("0.20"))
    assert cost["amount"] == Decimal("0.10")
    assert sum(c["amount"] for c in store.list_costs(kind="training")) == Decimal(
        "0.30"
    )  # exact, no float drift
    with pytest.raises(TypeError, match="float"):
        store.add_cost("training", 0.1)
    with pytest.raises(StoreError, match="not a decimal"):
        store.add_cost("training", "ten dollars")


# --------------------------------------------------------------------------------------------------- secrets

CANARY = "sk-proj-CANARY" + "q7" * 24


def test_secrets_are_refused_everywhere_and_never_reach_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with Store(path) as opened:
        opened.insert_job("ftjob-1", backend="openai", status="queued")
        attempts = [
            lambda: opened.add_endpoint("e", base_url="https://x/v1", model="m", api_key_env=CANARY),
            lambda: opened.add_endpoint(
                "e", base_url="https://x/v1", model="m", extra={"api_key": "hunter2-x"}
            ),
            lambda: opened.add_endpoint(
                "e",
                base_url="https://x/v1",
                model="m",
                extra={"headers": {"Authorization": f"Bearer {CANARY}"}},
            ),
            lambda: opened.add_endpoint("e", base_url=f"https://x/v1?key={CANARY}", model="m"),
            lambda: opened.add_endpoint("e", base_url="https://user:pw@x/v1", model="m"),
            lambda: opened.insert_job(
                "ftjob-2", backend="openai", status="queued", metadata={"note": CANARY}
            ),
            lambda: opened.update_job("ftjob-1", spec={"training": {"token_note": [CANARY]}}),
            lambda: opened.create_eval_run(config={"endpoint_key": CANARY}),
        ]
        for attempt in attempts:
            with pytest.raises(StoreError) as info:
                attempt()
            assert CANARY not in str(info.value) and "hunter2" not in str(info.value)
            assert "environment variable" in info.value.hint
        # Naming the variable is the supported way, and works.
        assert opened.add_endpoint("ok", base_url="https://x/v1", model="m", api_key_env="OPENAI_API_KEY")
        assert opened.get_job("ftjob-2") is None and opened.get_endpoint("e") is None
    for file in tmp_path.iterdir():
        assert CANARY.encode() not in file.read_bytes() and b"hunter2" not in file.read_bytes()


def test_add_responses_writes_a_batch_and_replaces_reruns() -> None:
    with open_store() as store:
        run = store.create_eval_run(name="batch")
        run_id = run["id"]
        rows = [
            {"eval_run_id": run_id, "endpoint": "ft", "item_index": i, "response": {"text": f"a{i}"}, "latency_ms": 5.0}
            for i in range(50)
        ]
        assert store.add_responses(rows) == 50
        assert store.add_responses([]) == 0
        store.add_responses([{"eval_run_id": run_id, "endpoint": "ft", "item_index": 3, "error": {"message": "boom"}}])
        got = store.list_responses(run_id)
        assert len(got) == 50
        assert got[3]["error"] == {"message": "boom"} and got[3]["response"] is None
        assert got[4]["response"] == {"text": "a4"} and got[4]["sample"] == 0


def test_find_job_by_id_or_by_its_fine_tuned_model(store: Store) -> None:
    store.upsert_job("ftjob-old", backend="local", status="succeeded", fine_tuned_model="ft:m:x", created_at=100)
    store.upsert_job("ftjob-new", backend="local", status="succeeded", fine_tuned_model="ft:m:x", created_at=200)
    assert store.find_job("ftjob-old")["id"] == "ftjob-old"
    assert store.find_job("ft:m:x")["id"] == "ftjob-new"  # the newest job of that name
    assert store.find_job("ft:m:none") is None and store.find_job("ftjob-none") is None
