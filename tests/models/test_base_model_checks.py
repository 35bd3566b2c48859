"""Base-model checks from the JSON files: no chat template, and code that would run only with trust_remote_code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneport.errors import SpecError
from tuneport.models.checks import check_base_model, has_chat_template, remote_code_reason


def folder(tmp_path: Path, config: dict, tokenizer_config: dict | None = None) -> Path:
    out = tmp_path / "m"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config or {"chat_template": "{{ x }}"}))
    return out


def test_a_base_model_without_template_is_refused_with_what_to_do(tmp_path: Path) -> None:
    model = folder(tmp_path, {"model_type": "llama"}, {"eos_token": "</s>"})
    assert not has_chat_template(model)
    with pytest.raises(SpecError) as info:
        check_base_model(model, trust_remote_code=False, label="acme/base-7b")
    assert "acme/base-7b has no chat template" in info.value.message and "base model" in info.value.message
    assert "Instruct" in info.value.hint and "chat_template" in info.value.hint
    (model / "chat_template.jinja").write_text("{{ messages }}")  # newer transformers keep it in its own file
    check_base_model(model, trust_remote_code=False)


def test_remote_code_needs_the_spec_to_allow_it(tmp_path: Path) -> None:
    config = {"model_type": "acme", "auto_map": {"AutoConfig": "c.C", "AutoModelForCausalLM": "m.M"}}
    model = folder(tmp_path, config)
    with pytest.raises(SpecError) as info:
        check_base_model(model, trust_remote_code=False, label="acme/custom")
    assert "acme/custom needs trust_remote_code" in info.value.message
    assert "AutoModelForCausalLM" in info.value.message
    assert "local.trust_remote_code: true" in info.value.hint
    check_base_model(model, trust_remote_code=True)  # allowed by the spec: no error


def test_an_unknown_model_type_needs_remote_code() -> None:
    known = {"llama", "qwen2"}
    assert remote_code_reason({"model_type": "llama"}, known) is None
    assert "not built into the installed transformers" in remote_code_reason({"model_type": "newarch"}, known)
    assert remote_code_reason({"model_type": "newarch"}) is None  # without the list, only auto_map counts
