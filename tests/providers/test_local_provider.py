"""The local Provider without training: uploads, job records, OpenAI shapes, paging, control, interruptions.

Jobs are created with ``launch=False`` (no runner process); the runner is exercised in tests/local_backend and
end to end in tests/cli.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _openai_schema import validate_component

from tuneport.errors import DataError, ProviderError
from tuneport.jobs.store import Store
from tuneport.local_backend.training import jobs as J
from tuneport.providers.local import LocalProvider, files_dir
from tuneport.spec.jobspec import JobSpec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"


@pytest.fixture
def store():
    with Store() as s:
        yield s


@pytest.fixture
def provider(store):
    return LocalProvider(store=store, launch=False)


@pytest.fixture
def spec(tmp_path: Path) -> JobSpec:
    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:20]) + "\n", "utf-8")
    (tmp_path / "val.jsonl").write_text("\n".join(lines[20:30]) + "\n", "utf-8")
    return JobSpec.from_dict(
        {"model": "tiny-chat", "training_file": "train.jsonl", "validation_file": "val.jsonl", "suffix": "t1",
         "metadata": {"team": "support"}, "local": {"output_dir": "out"}},
        base_dir=tmp_path,
    )  # fmt: skip


def test_upload_copies_once_per_content(provider, tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_text((FIXTURES / "support_train.jsonl").read_text("utf-8"), "utf-8")
    first = provider.upload(src)
    second = provider.upload(src)
    assert first.id == second.id and first.id.startswith("file-")
    copy = files_dir() / f"{first.id}.jsonl"
    assert copy.read_bytes() == src.read_bytes()
    validate_component(first.to_api(), "OpenAIFile")
    # The job keeps training on the uploaded bytes even if the user edits the file afterwards.
    src.write_text("changed\n", "utf-8")
    assert copy.read_bytes() != src.read_bytes()
    assert provider.upload(src).id != first.id
    with pytest.raises(DataError, match="not found"):
        provider.upload(tmp_path / "missing.jsonl")


def test_create_records_a_validating_job_in_openai_shape(provider, spec: JobSpec, tmp_path: Path) -> None:
    job = provider.start(spec)
    assert job.id.startswith("ftjob-") and len(job.id) == len("ftjob-") + 24
    assert job.status == "validating_files"
    assert job.model == "tiny-chat" and job.metadata == {"team": "support"}
    assert job.training_file.startswith("file-") and job.validation_file.startswith("file-")
    validate_component(job.to_api(), "FineTuningJob", live=True)
    local = job.to_api()["local"]
    assert local["output_dir"] == str(tmp_path / "out")  # relative to the spec file, pinned at create
    assert local["checkpoints_dir"] == str(tmp_path / "out" / "checkpoints")
    assert local["training_source"] == str(tmp_path / "train.jsonl")
    assert Path(local["training_path"]).read_bytes() == (tmp_path / "train.jsonl").read_bytes()
    assert Path(local["job_dir"]) == J.job_dir(job.id)
    events = list(provider.iter_events(job.id))
    assert [e.message for e in events] == [f"Created fine-tuning job: {job.id}"]
    validate_component(events[0].to_api(), "FineTuningJobEvent")


def test_unknown_file_id_and_unknown_job_are_clear_errors(provider, spec: JobSpec) -> None:
    with pytest.raises(ProviderError, match="not a file the local backend holds"):
        provider.create(spec, training_file="file-doesnotexist")
    with pytest.raises(ProviderError, match="no local job"):
        provider.get("ftjob-" + "x" * 24)
    with pytest.raises(ProviderError, match="no local job"):
        provider.get("../../etc")


def _elsewhere(spec: JobSpec, n: int) -> JobSpec:
    """The same spec with its own output_dir: one folder never holds two jobs' outputs."""
    data = spec.to_dict()
    data["local"]["output_dir"] = f"out-{n}"
    return JobSpec.from_dict(data, base_dir=spec.base_dir)


def test_list_pages_newest_first_and_filters_metadata(provider, spec: JobSpec) -> None:
    ids = []
    for n in range(3):
        ids.append(provider.start(_elsewhere(spec, n)).id)
        time.sleep(1.01)  # created_at has 1 s resolution; keep the order unambiguous
    page = provider.list(limit=2)
    assert [j.id for j in page.data] == [ids[2], ids[1]] and page.has_more
    rest = provider.list(after=page.last_id, limit=2)
    assert [j.id for j in rest.data] == [ids[0]] and not rest.has_more
    assert len(provider.list(metadata={"team": "support"}).data) == 3
    assert provider.list(metadata={"team": "other"}).data == []


def test_events_page_newest_first_with_after(provider, store, spec: JobSpec) -> None:
    job = provider.start(spec)
    for i in range(5):
        store.add_event(job.id, f"e{i}", type="metrics", data={"step": i, "train_loss": 1.0 / (i + 1)})
    page = provider.events(job.id, limit=2)
    assert [e.message for e in page.data] == ["e4", "e3"] and page.has_more
    older = provider.events(job.id, after=page.last_id, limit=10)
    assert [e.message for e in older.data] == ["e2", "e1", "e0", f"Created fine-tuning job: {job.id}"]
    assert [e.message for e in provider.iter_events(job.id, after=older.data[1].id)] == ["e2", "e3", "e4"]
    with pytest.raises(ProviderError, match="not an id"):
        provider.events(job.id, after="ftevent-abc")


def test_checkpoints_are_openai_objects_with_their_folder(provider, store, spec: JobSpec) -> None:
    job = provider.start(spec)
    for step in (4, 8):
        store.add_checkpoint(job.id, step, metrics={"step": step, "train_loss": 0.5}, path=f"/x/checkpoint-{step}",
                             fine_tuned_model_checkpoint=f"ft:tiny-chat:local:t1:abc:ckpt-step-{step}")  # fmt: skip
    page = provider.checkpoints(job.id)
    assert [c.step_number for c in page.data] == [8, 4]
    for c in page.data:
        validate_component(c.to_api(), "FineTuningJobCheckpoint")
        assert c.fine_tuning_job_id == job.id and c.to_api()["path"].endswith(f"checkpoint-{c.step_number}")


def test_cancel_and_resume_of_a_paused_job(provider, store, spec: JobSpec) -> None:
    job = provider.start(spec)
    store.update_job(job.id, status="paused")
    resumed = provider.resume(job.id)
    assert resumed.status == "queued"
    store.update_job(job.id, status="paused")
    cancelled = provider.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert provider.cancel(job.id).status == "cancelled"  # idempotent
    with pytest.raises(ProviderError, match="only paused jobs can be resumed"):
        provider.resume(job.id)
    with pytest.raises(ProviderError, match="already cancelled"):
        provider.pause(job.id)


def test_pause_and_cancel_of_a_running_job_ask_its_runner(
    provider, store, spec: JobSpec, tmp_path: Path
) -> None:
    job = provider.start(spec)
    # A stand-in runner: alive, the job id on its command line, counting the SIGTERMs that wake it.
    marker = tmp_path / "sigterms"
    code = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: open({str(marker)!r}, 'a').write('x'))\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    sleeper = subprocess.Popen([sys.executable, "-c", code, job.id], stdout=subprocess.PIPE, text=True)
    try:
        assert sleeper.stdout.readline() == "ready\n"  # its handler is installed
        store.update_job(job.id, status="running", pid=sleeper.pid, heartbeat_at=time.time())
        after = provider.pause(job.id)
        assert after.status == "running" and J.read_request(job.id)["action"] == "pause"
        provider.cancel(job.id)
        assert J.read_request(job.id)["action"] == "cancel"
        provider.pause(job.id)  # a later pause never downgrades a cancel
        assert J.read_request(job.id)["action"] == "cancel"
        deadline = time.time() + 10
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert marker.read_text().startswith("x")  # the runner was woken (signals sent close together merge)
        messages = [e.message for e in provider.iter_events(job.id)]
        assert messages.count("Pause requested: the job saves a checkpoint, then stops") == 2
        assert "Cancellation requested: the job saves a checkpoint, then stops" in messages
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_runner_is_detected_as_interrupted(provider, store, spec: JobSpec, tmp_path: Path) -> None:
    job = provider.start(spec)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ckpt = tmp_path / "out" / "checkpoints" / "checkpoint-6"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (
        tmp_path / "out" / "checkpoints" / "checkpoint-9"
    ).mkdir()  # cut short by the kill: no trainer_state.json
    store.update_job(job.id, status="running", pid=dead.pid, heartbeat_at=time.time())
    seen = provider.get(job.id)
    assert seen.status == "paused"
    info = seen.to_api()["local"]["interrupted"]
    assert info["last_checkpoint_step"] == 6 and "is gone" in info["reason"] and info["status"] == "running"
    assert seen.to_api()["local"]["latest_checkpoint"] == str(ckpt)
    warnings = [e for e in provider.iter_events(job.id) if e.level == "warn"]
    assert len(warnings) == 1 and "interrupted" in warnings[0].message and "step 6" in warnings[0].message
    provider.get(job.id)
    provider.list()
    assert len([e for e in provider.iter_events(job.id) if e.level == "warn"]) == 1  # recorded once


def test_liveness_rules(provider, store, spec: JobSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    job = provider.start(spec)
    # Just created, runner not spawned yet: not interrupted.
    assert provider.get(job.id).status == "validating_files"
    # Alive pid but not this job's runner (a reused pid): interrupted.
    store.update_job(job.id, pid=os.getpid(), heartbeat_at=time.time())
    assert provider.get(job.id).status == "paused"
    # A live runner whose heartbeat went stale: interrupted.
    job2 = provider.start(_elsewhere(spec, 2))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", job2.id])
    try:
        store.update_job(job2.id, status="running", pid=sleeper.pid, heartbeat_at=time.time())
        assert provider.get(job2.id).status == "running"
        monkeypatch.setenv("TUNEPORT_RUNNER_STALE_S", "5")
        store.update_job(job2.id, heartbeat_at=time.time() - 60)
        assert provider.get(job2.id).status == "paused"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_names_and_endpoint(provider, store, spec: JobSpec) -> None:
    from tuneport.cost.catalog import base_model_of

    name = J.fine_tuned_model_name("tiny-chat", "support", "ftjob-Ab3dE9xQzzzzzzzzzzzzzzzz")
    assert name == "ft:tiny-chat:local:support:Ab3dE9xQ" and base_model_of(name) == "tiny-chat"
    assert J.fine_tuned_model_name("/models/Qwen2.5-0.5B-Instruct", None, "ftjob-abcdefgh12") == (
        "ft:Qwen2.5-0.5B-Instruct:local::abcdefgh"
    )
    assert J.checkpoint_model_name(name, 8) == name + ":ckpt-step-8"
    job = provider.start(spec)
    with pytest.raises(ProviderError, match="no fine-tuned model yet"):
        provider.endpoint(job)
    store.update_job(job.id, status="succeeded", fine_tuned_model=name)
    endpoint = provider.endpoint(provider.get(job.id))
    assert endpoint.model == name and endpoint.kind == "local" and endpoint.job_id == job.id
