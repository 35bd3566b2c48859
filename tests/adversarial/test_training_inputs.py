"""Issue 13, local training: what an adversarial (or unlucky) user did to a job, each reproduced.

- item 1: two specs with the same ``local.output_dir`` (the second job used to replace the first's adapter); a
  server client naming ``"../../../../outside"`` as output folder;
- item 13: a damaged newest checkpoint (truncated ``optimizer.pt``) made the job fail for good;
- item 14: a resumed run logged the metrics of the steps it re-ran a second time; a runner marked interrupted
  while it was only stalled carried on (and raced the runner a resume started); a stale row or an old heartbeat
  made a reader mark a live job interrupted;
- job events carried absolute server paths (``Checkpoint saved at ... /home/...``, ``data.serve_path``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneport.errors import ProviderError
from tuneport.jobs.store import Store
from tuneport.local_backend.training import jobs as J
from tuneport.providers.local import LocalProvider
from tuneport.spec.jobspec import JobSpec

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"


@pytest.fixture
def store():
    with Store() as s:
        yield s


@pytest.fixture
def provider(store):
    return LocalProvider(store=store, launch=False)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEPORT_NUM_THREADS", "1")
    monkeypatch.delenv("TUNEPORT_RUNNER_STEP_DELAY_S", raising=False)


def _spec(tmp_path: Path, model: str | Path = "tiny-chat", **local) -> JobSpec:
    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:16]) + "\n", "utf-8")
    (tmp_path / "val.jsonl").write_text("\n".join(lines[16:20]) + "\n", "utf-8")
    body = {
        "model": str(model), "training_file": "train.jsonl", "validation_file": "val.jsonl", "seed": 3,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
        "local": {"lora_r": 8, "lora_alpha": 16, **local},
    }  # fmt: skip
    return JobSpec.from_dict(body, base_dir=tmp_path)


# ------------------------------------------------------------------------------------------- item 1: outputs


def test_a_second_job_cannot_take_another_jobs_output_dir(provider, store, tmp_path: Path) -> None:
    first = provider.start(_spec(tmp_path, output_dir="claimed-dir"))
    with pytest.raises(ProviderError, match=rf"belongs to job {first.id}, which is validating_files"):
        provider.start(_spec(tmp_path, output_dir="claimed-dir"))
    assert [row["id"] for row in store.list_jobs()] == [first.id]  # nothing recorded for the refused job
    assert json.loads((tmp_path / "claimed-dir" / ".tuneport-job.json").read_text())["job_id"] == first.id
    # Still refused once the first job has succeeded: its endpoint serves from that folder.
    (tmp_path / "claimed-dir" / "adapter").mkdir()
    store.update_job(first.id, status="succeeded")
    with pytest.raises(ProviderError, match="belongs to job"):
        provider.start(_spec(tmp_path, output_dir="claimed-dir"))


def test_a_failed_job_that_wrote_nothing_frees_its_output_dir(provider, store, tmp_path: Path) -> None:
    first = provider.start(_spec(tmp_path, output_dir="out"))
    store.update_job(first.id, status="failed")  # e.g. its training file failed validation
    second = provider.start(_spec(tmp_path, output_dir="out"))
    assert json.loads((tmp_path / "out" / ".tuneport-job.json").read_text())["job_id"] == second.id


def test_an_output_dir_with_foreign_files_is_refused(provider, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ProviderError, match=r"already holds files tuneport did not write there \(notes.txt\)"):
        provider.start(_spec(tmp_path, output_dir="mine"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ProviderError, match="is a file, not a folder"):
        provider.start(_spec(tmp_path, output_dir="a-file"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_server_provider_writes_nothing_outside_the_job(store, tmp_path: Path) -> None:
    # What `tuneport server` does with POST /v1/fine_tuning/jobs {"local": {"output_dir": "../../../../outside"}}.
    server_side = LocalProvider(store=store, launch=False, allow_output_dir=False)
    body = {"model": "tiny-chat", "training_file": str(tmp_path / "t.jsonl"),
            "local": {"output_dir": "../../../../outside"}}  # fmt: skip
    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()[:12]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    spec = JobSpec.from_dict(body, source="request body")
    training = server_side.upload(tmp_path / "t.jsonl").id
    with pytest.raises(ProviderError, match="local.output_dir is not accepted here"):
        server_side.create(spec, training_file=training)
    assert not spec.resolve_path("../../../../outside").exists()
    assert store.list_jobs() == []
    # Without an output_dir the job's outputs go to its own folder under the home.
    plain = JobSpec.from_dict({k: v for k, v in body.items() if k != "local"}, source="request body")
    job = server_side.create(plain, training_file=training)
    assert store.get_job(job.id)["outputs"]["output_dir"] == str(J.job_dir(job.id))


# ------------------------------------------------------------------------------- item 14: interrupted races


def test_a_stale_row_does_not_mark_a_resumed_live_job_interrupted(provider, store, tmp_path: Path) -> None:
    job = provider.start(_spec(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.update_job(job.id, status="running", pid=dead.pid, heartbeat_at=time.time())
    stale = store.get_job(job.id)  # read while the first runner was alive...
    # ...which then died, was found interrupted, was resumed, and a new runner is now running it.
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", job.id])
    try:
        store.update_job(job.id, status="running", pid=runner.pid, heartbeat_at=time.time())
        row = J.reconcile(store, stale)
        assert row["status"] == "running" and row["pid"] == runner.pid
        assert store.get_job(job.id)["status"] == "running"
        assert not [e for e in store.list_events(job.id, limit=None) if "interrupted" in e["message"]]
    finally:
        runner.kill()
        runner.wait()


def test_a_runner_read_the_moment_it_was_spawned_is_alive(
    provider, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after Popen returns, the child's /proc cmdline can still be empty (the kernel is finishing the exec;
    read at once, it was empty 195 times in 200 here): a reader polling then took the new runner for a reused pid
    and marked the live job interrupted (seen in CI). The empty read is injected; the process is real."""
    job = provider.start(_spec(tmp_path))
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", job.id])
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: b"" if p.name == "cmdline" else real(p))
    try:
        store.update_job(job.id, status="validating_files", pid=runner.pid, heartbeat_at=None)
        assert J.runner_alive(runner.pid, job.id)
        assert J.reconcile(store, store.get_job(job.id))["status"] == "validating_files"
        monkeypatch.setattr(Path, "read_bytes", real)
        assert not J.runner_alive(runner.pid, "ftjob-another")  # a reused pid is still told apart
    finally:
        runner.kill()
        runner.wait()
    assert not J.runner_alive(runner.pid, job.id)
    assert not [e for e in store.list_events(job.id, limit=None) if "interrupted" in e["message"]]


def test_a_resumed_job_is_not_overdue_because_of_its_last_runners_heartbeat(
    provider, store, tmp_path: Path
) -> None:
    job = provider.start(_spec(tmp_path))
    # Paused by a SIGTERM ten minutes ago: the row keeps the last heartbeat of the runner that stopped.
    store.update_job(job.id, status="paused", pid=12345678, heartbeat_at=time.time() - 600)
    provider.resume(job.id)  # queued, no runner pid until the new runner starts
    assert provider.get(job.id).status == "queued"
    assert provider.list().data[0].status == "queued"


# --------------------------------------------------------------------------- runs of the tiny model (slow-ish)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from tuneport.fixtures.tiny_model import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-chat", seed=0))


def _stop_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    from tuneport.local_backend.training import runner as R

    calls = {"n": 0}

    def should_stop(self) -> bool:
        calls["n"] += 1
        return calls["n"] >= steps

    monkeypatch.setattr(R._Runner, "should_stop", should_stop)


def _train_then_pause(provider, tmp_path: Path, tiny_model: Path, monkeypatch, steps: int) -> str:
    """A job (8 steps, a checkpoint every step) paused after ``steps`` steps."""
    from tuneport.local_backend.training.runner import run_job

    job_id = provider.start(_spec(tmp_path, tiny_model)).id
    with monkeypatch.context() as m:
        _stop_after(m, steps)
        assert run_job(job_id, store=provider.store) == 0
    assert provider.get(job_id).status == "paused"
    return job_id


def _resume(provider, job_id: str) -> None:
    from tuneport.local_backend.training.runner import run_job

    provider.resume(job_id)
    assert run_job(job_id, resume=True, store=provider.store) == 0


def _train_losses(store, job_id: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for e in store.list_events(job_id, limit=None):
        if e["type"] == "metrics" and e["message"].startswith("Step ") and "training loss" in e["message"]:
            out.setdefault(e["data"]["step"], []).append(e["data"]["train_loss"])
    return out


def test_resume_falls_back_past_a_damaged_checkpoint(provider, store, tmp_path, tiny_model, monkeypatch) -> None:
    job_id = _train_then_pause(provider, tmp_path, tiny_model, monkeypatch, steps=3)
    checkpoints = Path(store.get_job(job_id)["outputs"]["checkpoints_dir"])
    optimizer = checkpoints / "checkpoint-3" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])  # a disk that filled up mid-copy
    _resume(provider, job_id)
    job = provider.get(job_id)
    assert job.status == "succeeded", job.error
    warned = [e for e in provider.iter_events(job_id) if e.level == "warn" and "cannot be resumed" in e.message]
    assert len(warned) == 1 and "optimizer.pt is damaged" in warned[0].message
    assert "resumes from step 2" in warned[0].message
    resumed = [e for e in provider.iter_events(job_id) if e.message.startswith("Resuming from the checkpoint")]
    assert resumed[-1].data["resume_from"] == "checkpoints/checkpoint-2"
    assert (checkpoints / "damaged-checkpoint-3" / "optimizer.pt").is_file()
    assert sorted(_train_losses(store, job_id)) == list(range(1, 9))


def test_resumed_steps_are_logged_once_and_events_hold_no_server_paths(
    provider, store, tmp_path, tiny_model, monkeypatch
) -> None:
    job_id = _train_then_pause(provider, tmp_path, tiny_model, monkeypatch, steps=3)
    # As if the runner had been killed after logging step 3 but before its checkpoint was complete.
    checkpoints = Path(store.get_job(job_id)["outputs"]["checkpoints_dir"])
    (checkpoints / "checkpoint-3" / "trainer_state.json").unlink()
    _resume(provider, job_id)
    assert provider.get(job_id).status == "succeeded"
    losses = _train_losses(store, job_id)
    assert sorted(losses) == list(range(1, 9))
    assert all(len(v) == 1 for v in losses.values()), losses  # step 3 ran twice, was logged once
    validation = [e for e in store.list_events(job_id, limit=None) if "validation loss" in e["message"]]
    assert len({e["message"].split(":")[0] for e in validation}) == len(validation)

    home = str(Path(os.environ["TUNEPORT_HOME"]))
    for e in provider.iter_events(job_id):
        text = e.message + json.dumps(e.data)
        assert home not in text and str(tmp_path) not in text, text
    created = [e for e in provider.iter_events(job_id) if e.message.startswith("New fine-tuned model created")]
    assert created[0].data == {"serve_as": "adapter", "serve_path": "adapter"}
    # The local side still knows where everything is.
    local = provider.get(job_id).to_api()["local"]
    assert Path(local["adapter"]).is_dir() and Path(local["checkpoints"][0]["path"]).is_dir()


def test_a_runner_whose_job_was_marked_interrupted_stops_without_writing(
    provider, store, tmp_path, tiny_model, monkeypatch
) -> None:
    """A runner stalled mid-validation (a suspended laptop) is marked interrupted by a reader; when it wakes it
    must not carry on training into the folder a resumed runner will use."""
    from tuneport.local_backend.training import runner as R

    job_id = provider.start(_spec(tmp_path, tiny_model)).id
    real_validate = R.validate_file
    monkeypatch.setenv("TUNEPORT_RUNNER_STALE_S", "1")

    def stalled_validate(*args, **kwargs):
        report = real_validate(*args, **kwargs)
        store.update_job(job_id, heartbeat_at=time.time() - 120)
        with monkeypatch.context() as m:  # the reader sees a silent runner (this pytest process is not it)
            m.setattr(J, "runner_alive", lambda pid, job: False)
            assert provider.get(job_id).status == "paused"
        return report

    monkeypatch.setattr(R, "validate_file", stalled_validate)
    code = R.run_job(job_id, store=store)
    assert code == 3
    job = provider.get(job_id)
    assert job.status == "paused" and job.to_api()["local"]["interrupted"]["status"] == "validating_files"
    messages = [e.message for e in provider.iter_events(job_id)]
    assert messages[-1].startswith("Job interrupted while validating_files")
    assert not any(m.startswith(("Planned", "Training started", "Fine-tuning job started")) for m in messages)
    assert not (J.job_dir(job_id) / "checkpoints").exists()
