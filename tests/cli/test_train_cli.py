"""``tuneport train`` and ``tuneport jobs`` end to end: real detached runner processes on the tiny model (CPU).

Each test has its own TUNEPORT_HOME (tests/conftest.py). Training is kept tiny (30 examples, 16 steps) so every
run is a few seconds, most of it process start-up.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from _cli import tp  # noqa: E402

from tuneport.cli.main import cli  # noqa: E402
from tuneport.jobs.store import Store  # noqa: E402
from tuneport.local_backend.training import jobs as J  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneport.fixtures.tiny_model import build_tiny_model

    return Path(build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-chat", seed=0))


@pytest.fixture(autouse=True)
def _cli_and_cleanup(monkeypatch: pytest.MonkeyPatch):
    assert {"train", "jobs"} <= set(cli.list_commands(None))  # type: ignore[arg-type]
    monkeypatch.setenv("TUNEPORT_NUM_THREADS", "1")
    monkeypatch.delenv("TUNEPORT_RUNNER_STEP_DELAY_S", raising=False)
    yield
    with Store() as store:  # never leave a runner (or its torchrun workers) behind
        for row in store.list_jobs():
            if J.runner_alive(row.get("pid"), row["id"]):
                os.killpg(row["pid"], signal.SIGKILL)




def show(capsys, job_id: str) -> dict:
    code, out, err = tp(capsys, "jobs", "show", job_id, "--json")
    assert code == 0, err
    return json.loads(out)


def events(capsys, job_id: str) -> list[dict]:
    code, out, err = tp(capsys, "jobs", "events", job_id, "--json")
    assert code == 0, err
    return json.loads(out)["data"]


def write_spec(
    tmp_path: Path, model: str | Path, *, name: str = "spec.yaml", n_train: int = 30, **local
) -> Path:
    lines = (FIXTURES / "support_train.jsonl").read_text("utf-8").splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:n_train]) + "\n", "utf-8")
    val = (FIXTURES / "support_val.jsonl").read_text("utf-8").splitlines()
    (tmp_path / "val.jsonl").write_text("\n".join(val[:10]) + "\n", "utf-8")
    spec = {
        "model": str(model), "training_file": "train.jsonl", "validation_file": "val.jsonl", "suffix": "triage",
        "seed": 11, "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}},
        "local": {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1, **local},
    }  # fmt: skip
    path = tmp_path / name
    path.write_text(json.dumps(spec), "utf-8")  # JSON is YAML
    return path


def wait_for_event(job_id: str, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    with Store() as store:
        while time.monotonic() < deadline:
            if any(text in e["message"] for e in store.list_events(job_id, limit=None)):
                return
            row = store.get_job(job_id)
            assert row["status"] not in J.TERMINAL_STATUSES, f"job ended ({row['status']}) before {text!r}"
            time.sleep(0.05)
    raise AssertionError(f"no event {text!r} after {timeout}s")


def step_losses(evs: list[dict]) -> dict[int, float]:
    return {
        e["data"]["step"]: e["data"]["train_loss"]
        for e in evs
        if e.get("type") == "metrics"
        and "train_loss" in (e.get("data") or {})
        and "valid_loss" not in e["data"]
    }


def test_train_follow_succeeds_with_events_checkpoints_and_adapter(capsys, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "tiny-chat")  # the built-in model, built on first use
    code, out, err = tp(capsys, "train", str(spec), "--follow")
    assert code == 0, err + out
    job_id = out.splitlines()[0]
    assert job_id.startswith("ftjob-")
    assert f"{job_id} succeeded: ft:tiny-chat:local:triage:{job_id[6:14]}" in out
    assert "Fine-tuning job started" in out and "16/16" in out

    job = show(capsys, job_id)
    assert job["status"] == "succeeded" and job["error"] is None and job["trained_tokens"] > 0
    assert job["fine_tuned_model"] == f"ft:tiny-chat:local:triage:{job_id[6:14]}"
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 1.0}
    local = job["local"]
    adapter = Path(local["adapter"])
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert local["serve_path"] == str(adapter) and local["serve_as"] == "adapter"
    assert [c["step"] for c in local["checkpoints"]] == [16, 8]
    assert all(Path(c["path"], "adapter_model.safetensors").is_file() for c in local["checkpoints"])

    code, out, _ = tp(capsys, "jobs", "checkpoints", job_id, "--json")
    ckpts = json.loads(out)["data"]
    assert [c["step_number"] for c in ckpts] == [16, 8]
    assert ckpts[0]["fine_tuned_model_checkpoint"] == job["fine_tuned_model"] + ":ckpt-step-16"
    assert {"train_loss", "valid_loss"} <= set(ckpts[0]["metrics"])

    evs = events(capsys, job_id)
    messages = [e["message"] for e in evs]
    order = ["Created fine-tuning job", "Validating training_file", "Files validated", "Fine-tuning job started",
             "Training started", "New fine-tuned model created", "The job has successfully completed"]  # fmt: skip
    positions = [next(i for i, m in enumerate(messages) if m.startswith(p)) for p in order]
    assert positions == sorted(positions)
    losses = step_losses(evs)
    assert sorted(losses) == list(range(1, 17))
    assert sum(list(losses.values())[-4:]) < sum(list(losses.values())[:4])  # it learned something

    code, out, _ = tp(capsys, "jobs", "list", "--json")
    assert [j["id"] for j in json.loads(out)["data"]] == [job_id]
    code, out, _ = tp(capsys, "jobs", "show", job_id)
    assert "succeeded" in out and str(adapter) in out.replace("\n", "")


def test_invalid_dataset_fails_at_validating_files_with_findings(capsys, tmp_path: Path, tiny_model) -> None:
    spec = write_spec(tmp_path, tiny_model)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    lines[4] = '{"messages": [{"role": "user", "content": "hi"}'  # line 5: broken JSON
    lines[8] = '{"messages": [{"role": "user", "content": "no answer"}]}'  # line 9: no assistant message
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = tp(capsys, "train", str(spec), "--wait")
    assert code == 11, err
    job_id = out.splitlines()[0]
    assert "failed validating training_file" in err and "line 5" in err
    job = show(capsys, job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_training_file" and job["error"]["param"] == "training_file"
    assert "2 error(s)" in job["error"]["message"]
    evs = events(capsys, job_id)
    found = {
        e["data"]["line"]: e["data"]["category"]
        for e in evs
        if e["level"] == "error" and "line" in (e["data"] or {})
    }
    assert found == {5: "invalid_json", 9: "example_missing_assistant_message"}
    assert not any(e["message"] == "Fine-tuning job started" for e in evs)
    assert job["local"]["checkpoints"] == [] and not Path(job["local"]["checkpoints_dir"]).exists()


def test_spec_errors_stop_before_any_job(capsys, tmp_path: Path, tiny_model) -> None:
    spec = write_spec(tmp_path, tiny_model)
    data = json.loads(spec.read_text())
    data["method"]["supervised"]["hyperparameters"]["n_epochs"] = 0
    spec.write_text(json.dumps(data))
    code, out, err = tp(capsys, "train", str(spec))
    assert code == 3 and "n_epochs" in err and "from 1 to 50" in err
    code, out, _ = tp(capsys, "jobs", "list", "--json")
    assert json.loads(out)["data"] == []
    code, _, err = tp(capsys, "train", str(spec), "--follow", "--wait")
    assert code == 2 and "exclude each other" in err


def test_cancel_checkpoints_then_stops(capsys, tmp_path: Path, tiny_model, monkeypatch) -> None:
    spec = write_spec(tmp_path, tiny_model)
    monkeypatch.setenv("TUNEPORT_RUNNER_STEP_DELAY_S", "0.25")
    code, out, err = tp(capsys, "train", str(spec))
    assert code == 0, err
    job_id = out.strip()
    wait_for_event(job_id, "Checkpoint saved at step 4")
    code, out, err = tp(capsys, "jobs", "cancel", job_id, "--wait")
    assert code == 0 and "cancelled" in out, err
    job = show(capsys, job_id)
    assert job["status"] == "cancelled" and job["finished_at"] and job["fine_tuned_model"] is None
    assert "adapter" not in job["local"]
    stopped_at = int(Path(job["local"]["latest_checkpoint"]).name.split("-")[1])
    assert 4 <= stopped_at < 16
    messages = [e["message"] for e in events(capsys, job_id)]
    assert "Cancellation requested: the job saves a checkpoint, then stops" in messages
    assert any(m.startswith(f"Fine-tuning job cancelled at step {stopped_at}") for m in messages)
    code, _, err = tp(capsys, "jobs", "resume", job_id)
    assert code != 0 and "only paused jobs can be resumed" in err


def test_sigkill_then_resume_matches_an_uninterrupted_run(
    capsys, tmp_path: Path, tiny_model, monkeypatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code, out, err = tp(capsys, "train", str(write_spec(tmp_path / "a", tiny_model)))
    assert code == 0, err
    reference = out.strip()
    monkeypatch.setenv("TUNEPORT_RUNNER_STEP_DELAY_S", "0.25")  # room to kill it mid-run
    code, out, err = tp(capsys, "train", str(write_spec(tmp_path / "b", tiny_model)))
    assert code == 0, err
    victim = out.strip()

    kill_after = random.Random(20261121).choice([4, 6, 8, 10])  # checkpoints every 2 steps, 16 steps in all
    wait_for_event(victim, f"Checkpoint saved at step {kill_after}")
    with Store() as store:
        pid = store.get_job(victim)["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while J.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    job = show(capsys, victim)  # reading the job detects the dead runner
    assert job["status"] == "paused"
    interrupted = job["local"]["interrupted"]
    assert "is gone" in interrupted["reason"] and interrupted["last_checkpoint_step"] >= kill_after
    code, out, _ = tp(capsys, "jobs", "list")
    assert "paused (interrupted)" in out

    monkeypatch.delenv("TUNEPORT_RUNNER_STEP_DELAY_S")
    code, out, err = tp(capsys, "jobs", "resume", victim, "--wait")
    assert code == 0 and "succeeded" in out, err
    code, _, err = tp(capsys, "jobs", "wait", reference)
    assert code == 0, err

    a, b = show(capsys, reference), show(capsys, victim)
    loss_a = a["local"]["result"]["final_metrics"]["train_loss"]
    loss_b = b["local"]["result"]["final_metrics"]["train_loss"]
    assert abs(loss_a - loss_b) <= 1e-6
    resumed = [e for e in events(capsys, victim) if e["message"].startswith("Resuming from the checkpoint")]
    resumed_at = int(resumed[0]["data"]["resume_from"].rsplit("-", 1)[1])
    assert resumed_at == interrupted["last_checkpoint_step"]
    steps_a, steps_b = step_losses(events(capsys, reference)), step_losses(events(capsys, victim))
    assert set(steps_b) == set(range(1, 17))
    for step in range(resumed_at + 1, 17):  # every step after the resume point, not just the last
        assert abs(steps_a[step] - steps_b[step]) <= 1e-6, step

    from safetensors.torch import load_file

    wa = load_file(str(Path(a["local"]["adapter"]) / "adapter_model.safetensors"))
    wb = load_file(str(Path(b["local"]["adapter"]) / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6


def test_two_processes_on_gloo(capsys, tmp_path: Path, tiny_model, monkeypatch) -> None:
    spec = write_spec(tmp_path, tiny_model, num_processes=2)
    code, out, err = tp(capsys, "train", str(spec), "--wait", "--json")
    assert code == 0, out + err
    job = json.loads(out)
    assert job["status"] == "succeeded", job.get("error")
    assert (Path(job["local"]["adapter"]) / "adapter_model.safetensors").is_file()
    assert job["local"]["num_processes"] == 2
    with Store() as store:
        plan = store.get_job(job["id"])["outputs"]["plan"]
    assert plan["num_processes"] == 2 and plan["per_device_train_batch_size"] == 2 and plan["batch_size"] == 4
    evs = events(capsys, job["id"])
    assert any(e["message"] == "Launching 2 training processes (torch.distributed)" for e in evs)
    steps = [e["data"]["step"] for e in evs if e.get("type") == "metrics" and "valid_loss" not in e["data"]
             and "train_loss" in e["data"]]  # fmt: skip
    assert steps == list(range(1, 17))  # only rank 0 writes: every step exactly once


def test_a_plain_sigterm_pauses_the_job_resumably(capsys, tmp_path: Path, tiny_model, monkeypatch) -> None:
    # What a machine shutting down does: the job checkpoints and pauses instead of being thrown away.
    spec = write_spec(tmp_path, tiny_model)
    monkeypatch.setenv("TUNEPORT_RUNNER_STEP_DELAY_S", "0.25")
    code, out, err = tp(capsys, "train", str(spec))
    job_id = out.strip()
    wait_for_event(job_id, "Checkpoint saved at step 2")
    with Store() as store:
        os.kill(store.get_job(job_id)["pid"], signal.SIGTERM)
    code, out, err = tp(capsys, "jobs", "wait", job_id, "--timeout", "60")
    assert code == 0 and "is paused" in out, err
    job = show(capsys, job_id)
    assert job["status"] == "paused" and "interrupted" not in job["local"]
    paused = [e for e in events(capsys, job_id) if e["message"].startswith("Fine-tuning job paused")]
    assert len(paused) == 1 and "received signal 15" in paused[0]["message"]
    monkeypatch.delenv("TUNEPORT_RUNNER_STEP_DELAY_S")
    code, out, err = tp(capsys, "jobs", "resume", job_id, "--wait")
    assert code == 0 and "succeeded" in out, err
