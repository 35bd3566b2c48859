"""Jobs on Hub ids from a prepared cache (HF_HUB_OFFLINE=1, no network): the commit sha in the job's provenance;
refusals (not cached, remote code, a 70B config that cannot fit) before any training or weight load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _hub_cache import SHA, add_to_cache

from tuneport.jobs.store import Store
from tuneport.local_backend.training import jobs as J
from tuneport.local_backend.training.runner import run_job
from tuneport.providers.local import LocalProvider
from tuneport.spec.jobspec import JobSpec

pytest.importorskip("torch")

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "data"
LLAMA3_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
              "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "tie_word_embeddings": False}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneport.fixtures.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-chat")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TUNEPORT_NUM_THREADS", "1")
    return tmp_path / "hf" / "hub"


@pytest.fixture
def provider():
    with Store() as store:
        yield LocalProvider(store=store, launch=False)


def start(provider: LocalProvider, tmp_path: Path, model: str, **local) -> str:
    lines = (DATA / "support_train.jsonl").read_text("utf-8").splitlines()[:12]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    body = {"model": model, "training_file": "train.jsonl", "seed": 3,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
            "local": {"lora_r": 8, "lora_alpha": 16, "max_seq_length": 256, **local}}  # fmt: skip
    return provider.start(JobSpec.from_dict(body, base_dir=tmp_path)).id


def failed(provider: LocalProvider, job_id: str) -> dict:
    assert run_job(job_id, store=provider.store) == 1
    messages = [e.message for e in provider.iter_events(job_id)]
    assert "Fine-tuning job started" not in messages
    assert not (J.job_dir(job_id) / "checkpoints").exists()
    return provider.get(job_id).error.model_dump()


def test_a_cached_hub_model_trains_offline_and_records_its_commit(provider, tmp_path, cache, tiny) -> None:
    snapshot = add_to_cache(cache, "acme/tiny-chat-instruct", tiny)
    job_id = start(provider, tmp_path, "acme/tiny-chat-instruct")
    assert run_job(job_id, store=provider.store) == 0
    row = provider.store.get_job(job_id)
    assert row["status"] == "succeeded"
    source = row["outputs"]["model_source"]
    assert source == {"source": "huggingface_hub", "repo_id": "acme/tiny-chat-instruct", "revision": "main",
                      "sha": SHA}  # fmt: skip
    assert row["outputs"]["model_path"] == str(snapshot)
    events = [e.message for e in provider.iter_events(job_id)]
    assert any(m.startswith(f"Base model acme/tiny-chat-instruct at commit {SHA}") for m in events)
    assert any(m.startswith("Memory: about ") and "fits" in m for m in events)
    result = json.loads((Path(row["outputs"]["output_dir"]) / "result.json").read_text())
    assert result["config"]["extra"]["model_source"]["sha"] == SHA


def test_not_cached_offline_fails_before_training_naming_the_fetch(provider, tmp_path, cache) -> None:
    error = failed(provider, start(provider, tmp_path, "Qwen/Qwen2.5-0.5B-Instruct"))
    assert error["code"] == "invalid_model" and error["param"] == "model"
    assert "Qwen/Qwen2.5-0.5B-Instruct" in error["message"]
    assert "hf download Qwen/Qwen2.5-0.5B-Instruct" in error["message"]


def test_remote_code_without_the_spec_allowing_it(provider, tmp_path, cache, tiny) -> None:
    custom = tmp_path / "custom"
    shutil.copytree(tiny, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM"}
    (custom / "config.json").write_text(json.dumps(config))
    add_to_cache(cache, "acme/custom", custom)
    error = failed(provider, start(provider, tmp_path, "acme/custom"))
    assert error["code"] == "invalid_model" and "needs trust_remote_code" in error["message"]
    assert "local.trust_remote_code: true" in error["message"]


def test_a_70b_config_is_refused_with_figures_before_any_weight_loads(
    provider, tmp_path, cache, tiny
) -> None:
    big = tmp_path / "llama-70b-config-only"
    big.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny / name, big / name)
    config = {**json.loads((tiny / "config.json").read_text()), **LLAMA3_70B}
    (big / "config.json").write_text(
        json.dumps(config)
    )  # no weights at all: the check reads config.json only
    job_id = start(provider, tmp_path, str(big))
    error = failed(provider, job_id)
    assert error["code"] == "insufficient_memory"
    message = error["message"]
    assert "does not fit for training here" in message and "70.6B params" in message
    assert "GB needed" in message and ("RAM available" in message or "GPU memory free" in message)
    assert "Settings that would fit" in message or "Nothing would fit" in message
    assert provider.store.get_job(job_id)["outputs"]["memory_estimate"]["bytes"] > 1e11
