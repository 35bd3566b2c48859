"""A model whose classes live in its own repository (``auto_map``) is served only with --trust-remote-code.

The model here is tiny-chat with its architecture moved into the folder's own Python files (a subclass of
LlamaForCausalLM under a model type transformers does not know), the shape of the Hub repositories that need
``trust_remote_code``. Without the flag it is refused before any engine starts; with it, the transformers engine
runs the folder's code and answers what tiny-chat answers; vLLM is told ``--trust-remote-code``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from tuneport.errors import ServeError  # noqa: E402
from tuneport.local_backend.serving.engine import EngineOptions  # noqa: E402
from tuneport.local_backend.serving.serve import start_server  # noqa: E402
from tuneport.local_backend.serving.vllm_server import VLLMServer  # noqa: E402

_CONFIGURATION = '''
from transformers import LlamaConfig


class TinyRemoteConfig(LlamaConfig):
    model_type = "tiny_remote"
'''
_MODELING = '''
from pathlib import Path

from transformers import LlamaForCausalLM

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteForCausalLM(LlamaForCausalLM):
    config_class = TinyRemoteConfig

    def __init__(self, config):
        super().__init__(config)
        (Path(config.marker_dir) / "remote-code-ran").write_text("yes")
'''


@pytest.fixture(scope="module")
def remote_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("remote") / "tiny-remote"
    shutil.copytree(tiny_model, folder)
    (folder / "configuration_tiny_remote.py").write_text(_CONFIGURATION)
    (folder / "modeling_tiny_remote.py").write_text(_MODELING)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="tiny_remote",
        architectures=["TinyRemoteForCausalLM"],
        marker_dir=str(folder.parent),
        auto_map={
            "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
            "AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteForCausalLM",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("engine", ["vllm", "transformers"])
def test_refused_before_any_engine_starts_without_the_flag(remote_model: Path, engine: str) -> None:
    with pytest.raises(ServeError, match="needs trust_remote_code") as info:
        start_server(str(remote_model), engine=engine, port=1)  # port 1: nothing may have tried to listen
    assert "--trust-remote-code" in info.value.hint
    assert "auto_map" in str(info.value) or "AutoModelForCausalLM" in str(info.value)
    assert not (remote_model.parent / "remote-code-ran").exists()


def test_vllm_is_told_to_trust_the_code_only_when_asked(tiny_model: Path) -> None:
    plain = VLLMServer("tiny-chat", tiny_model, [], EngineOptions(port=12345), device="cpu").command()
    trusting = VLLMServer(
        "tiny-chat", tiny_model, [], EngineOptions(port=12345, trust_remote_code=True), device="cpu"
    ).command()
    assert "--trust-remote-code" not in plain and trusting.count("--trust-remote-code") == 1


def test_the_transformers_engine_runs_the_repository_code_with_the_flag(remote_model: Path, tiny_model: Path):
    from openai import OpenAI

    question = [{"role": "user", "content": "My invoice shows a charge twice."}]
    answers = {}
    for name, folder, trust in (("remote", remote_model, True), ("plain", tiny_model, False)):
        server = start_server(str(folder), engine="transformers", port=0, trust_remote_code=trust)
        try:
            client = OpenAI(base_url=server.base_url, api_key="unused")
            reply = client.chat.completions.create(
                model=server.model, messages=question, max_tokens=12, temperature=0
            )
            answers[name] = reply.choices[0].message.content
        finally:
            server.stop()
    assert (remote_model.parent / "remote-code-ran").read_text() == "yes"
    assert answers["remote"] == answers["plain"]  # the same weights through the repository's own class
