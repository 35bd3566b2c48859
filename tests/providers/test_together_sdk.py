"""The official ``together`` SDK against the fake, over real loopback HTTP: the proof the fake speaks Together's API
(the SDK's own upload flow, request bodies, response models and errors), so the provider tests mean something."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

together = pytest.importorskip("together")

from fake_together import CANARY_KEY, FakeTogether  # noqa: E402

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


@pytest.fixture
def fake():
    server = FakeTogether().serve()
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    return together.Together(api_key=CANARY_KEY, base_url=fake.base_url.removesuffix("/v1"), max_retries=0)


def _dataset(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(12)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sdk_uploads_creates_follows_and_downloads(client, fake, tmp_path):
    path = _dataset(tmp_path)
    file = client.files.upload(file=path, purpose="fine-tune", check=False)
    assert file.id in fake.files and fake.file_bytes[file.id] == path.read_bytes()
    assert client.files.retrieve(file.id).bytes == path.stat().st_size
    assert [f.id for f in client.files.list().data] == [file.id]

    job = client.fine_tuning.create(training_file=file.id, model=MODEL, n_epochs=2, lora=True, suffix="demo",
                                    train_on_inputs=False)  # fmt: skip
    assert fake.bodies[job.id]["training_type"]["type"] == "Lora"
    statuses = [client.fine_tuning.retrieve(job.id).status for _ in range(4)]
    assert statuses == ["queued", "running", "uploading", "completed"]
    events = client.fine_tuning.list_events(job.id).data
    assert [e.type for e in events][0] == "job_pending"
    assert client.fine_tuning.list_checkpoints(job.id).data[0].step == 10
    assert [j.id for j in client.fine_tuning.list().data] == [job.id]
    limits = client.fine_tuning.model_limits(model_name=MODEL)
    assert limits.lora_training.max_rank == 64


def test_sdk_sees_the_fakes_errors(client, fake):
    with pytest.raises(together.NotFoundError):
        client.fine_tuning.retrieve("ft-missing")
    bad = together.Together(api_key="wrong", base_url=fake.base_url.removesuffix("/v1"), max_retries=0)
    with pytest.raises(together.AuthenticationError):
        bad.fine_tuning.list()


def test_sdk_cancel(client, fake, tmp_path):
    file = client.files.upload(file=_dataset(tmp_path), purpose="fine-tune", check=False)
    job = client.fine_tuning.create(training_file=file.id, model=MODEL, train_on_inputs="auto")
    assert client.fine_tuning.cancel(job.id).status == "cancelled"
