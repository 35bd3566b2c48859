"""``spec check``'s model line: cached at sha X / not available offline, and the memory estimate against free RAM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _hub_cache import SHA, add_to_cache

from tuneport.cli.spec import build_report
from tuneport.spec.jobspec import JobSpec

SMALL = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2,
         "num_attention_heads": 4, "vocab_size": 1024}  # fmt: skip


def spec(tmp_path: Path, model: str) -> JobSpec:
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n' * 20)
    body = {"model": model, "training_file": "train.jsonl", "backend": "local", "local": {"device": "cpu"}}
    return JobSpec.from_dict(body, base_dir=tmp_path)


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def test_cached_hub_model_with_its_sha_and_the_fit(tmp_path: Path, offline: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(SMALL))
    (src / "model.safetensors").write_bytes(b"w")
    add_to_cache(offline, "acme/small", src)
    model = build_report(spec(tmp_path, "acme/small"), ("local",))["model"]
    assert model["source"].startswith(f"acme/small: cached at sha {SHA}")
    assert (
        model["fit"].startswith("memory: about ")
        and "RAM available" in model["fit"]
        and ": fits" in model["fit"]
    )
    assert "batch 1 x 2048 tokens" in model["fit"]  # the plan's "auto" batch for 20 examples


def test_not_available_offline(tmp_path: Path) -> None:
    model = build_report(spec(tmp_path, "acme/absent"), ("local",))["model"]
    assert "not available" in model["source"] and "hf download acme/absent" in model["source"]
    assert model["fit"] is None


def test_openai_backend_only_has_no_model_line(tmp_path: Path) -> None:
    assert "model" not in build_report(spec(tmp_path, "acme/absent"), ("openai",))
