"""The job runner, run in this process: every bad input ends the job ``failed`` with a clear, typed error in the
store before any training, and stop requests end it ``cancelled`` / ``paused``.

End-to-end runs in their own processes (train, cancel, SIGKILL + resume, two processes) are in
tests/cli/test_train_cli.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneport.jobs.store import Store
from tuneport.local_backend.training import jobs as J
from tuneport.local_backend.training.runner import classify_error, run_job
from tuneport.providers.local import LocalProvider
from tuneport.spec.jobspec import JobSpec

FIXTURE_DATA = Path(__file__).resolve().parents[3] / "fixtures" / "data"


def write_head(src: str, n: int, dest: Path) -> Path:
    lines = (FIXTURE_DATA / src).read_text("utf-8").splitlines()[:n]
    dest.write_text("\n".join(lines) + "\n", "utf-8")
    return dest


def write_fake_checkpoint(folder: Path) -> Path:
    """A checkpoint folder whose files all check out (the trainer never reads it in these tests)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    torch.save({"state": {}}, folder / "optimizer.pt")
    torch.save({"last_epoch": 2}, folder / "scheduler.pt")
    save_file({"w": torch.zeros(2)}, str(folder / "adapter_model.safetensors"))
    return folder


@pytest.fixture
def store():
    with Store() as s:
        yield s


@pytest.fixture
def provider(store):
    return LocalProvider(store=store, launch=False)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_head("support_train.jsonl", 16, tmp_path / "train.jsonl"),
        "val": write_head("support_val.jsonl", 10, tmp_path / "val.jsonl"),
    }


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNEPORT_NUM_THREADS", "1")


def _start(provider, tmp_path: Path, model: Path | str, **fields) -> str:
    local = fields.pop("local", {})
    body = {
        "model": str(model), "training_file": "train.jsonl", "validation_file": "val.jsonl", "seed": 3,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
        "local": {"lora_r": 8, "lora_alpha": 16, **local}, **fields,
    }  # fmt: skip
    return provider.start(JobSpec.from_dict(body, base_dir=tmp_path)).id


def _failed(provider, job_id: str) -> dict:
    assert run_job(job_id, store=provider.store) == 1
    job = provider.get(job_id)
    assert job.status == "failed" and job.finished_at is not None
    messages = [e.message for e in provider.iter_events(job_id)]
    assert "Fine-tuning job started" not in messages  # failed before any training
    assert not (J.job_dir(job_id) / "checkpoints").exists()
    assert messages[-1].startswith("Fine-tuning job failed: ")
    return job.error.model_dump()


def test_missing_base_model_folder(provider, tmp_path: Path, data) -> None:
    error = _failed(provider, _start(provider, tmp_path, tmp_path / "no-such-model"))
    assert error["code"] == "invalid_model" and error["param"] == "model"
    assert "no-such-model" in error["message"] and "not a local folder" in error["message"]


def test_unservable_lora_rank_fails_before_loading_anything(
    provider, tmp_path: Path, data, tiny_model
) -> None:
    error = _failed(provider, _start(provider, tmp_path, tiny_model, local={"lora_r": 7}))
    assert error["code"] == "invalid_hyperparameters" and error["param"] == "local.lora_r"
    assert "rank 7 cannot be served by vLLM" in error["message"] and "save_merged" in error["message"]


def test_tokenizer_without_chat_template(provider, tmp_path: Path, data, tiny_model) -> None:
    model = tmp_path / "no-template"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    error = _failed(provider, _start(provider, tmp_path, model))
    assert error["code"] == "invalid_model" and error["param"] == "model"
    assert "no chat template" in error["message"]


def test_target_modules_the_model_lacks(provider, tmp_path: Path, data, tiny_model) -> None:
    error = _failed(
        provider, _start(provider, tmp_path, tiny_model, local={"target_modules": ["q_proj", "c_attn"]})
    )
    assert error["code"] == "invalid_hyperparameters" and error["param"] == "local.target_modules"
    assert "c_attn" in error["message"] and "q_proj" in error["message"]  # names what exists


def test_no_disk_space(provider, tmp_path: Path, data, tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil as shutil_module

    real = shutil_module.disk_usage
    monkeypatch.setattr(
        "tuneport.local_backend.training.machine.shutil.disk_usage", lambda p: real(p)._replace(free=1024)
    )
    error = _failed(provider, _start(provider, tmp_path, tiny_model))
    assert error["code"] == "insufficient_disk_space" and "GB free" in error["message"]


def test_invalid_validation_file_fails_at_validating_files(
    provider, tmp_path: Path, data, tiny_model
) -> None:
    lines = data["val"].read_text().splitlines()
    lines[3] = '{"messages": [{"role": "user", "content": "hi"}]}'  # no assistant message
    data["val"].write_text("\n".join(lines) + "\n")
    job_id = _start(provider, tmp_path, tiny_model)
    error = _failed(provider, job_id)
    assert error["code"] == "invalid_validation_file" and error["param"] == "validation_file"
    assert "line 4" in error["message"]
    findings = [e for e in provider.iter_events(job_id) if e.level == "error" and (e.data or {}).get("line")]
    assert findings and findings[0].data["line"] == 4 and findings[0].data["file"] == "validation_file"


def test_a_cancel_requested_before_start_ends_it_without_work(
    provider, tmp_path: Path, data, tiny_model
) -> None:
    job_id = _start(provider, tmp_path, tiny_model)
    J.request_stop(job_id, "cancel")
    assert run_job(job_id, store=provider.store) == 0
    assert provider.get(job_id).status == "cancelled"
    assert J.read_request(job_id) is None


def test_resume_refuses_changed_data(provider, store, tmp_path: Path, data, tiny_model) -> None:
    job_id = _start(provider, tmp_path, tiny_model)
    row = store.get_job(job_id)
    write_fake_checkpoint(Path(row["outputs"]["checkpoints_dir"]) / "checkpoint-2")
    Path(row["outputs"]["training_path"]).write_text("tampered\n")
    store.update_job(job_id, status="paused")
    provider.resume(job_id)
    assert run_job(job_id, resume=True, store=store) == 1
    error = provider.get(job_id).error
    assert error.code == "invalid_training_file" and "cannot resume" in error.message


def test_error_classification() -> None:
    from tuneport.errors import DataError, SpecError

    assert classify_error(SpecError("local training option `n_epochs`: must be ...")).param == (
        "hyperparameters.n_epochs"
    )
    assert classify_error(DataError("bad")).code == "invalid_training_file"
    crash = classify_error(ZeroDivisionError("x"))
    assert crash.code == "internal_error" and "runner.log" in crash.message
