"""What `tuneport serve` refuses before any engine starts: bad adapters, busy ports, models too big, bad flags."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from _serve_support import make_adapters
from click.testing import CliRunner

from tuneport.errors import ServeError
from tuneport.local_backend.serving import adapters as A
from tuneport.local_backend.serving import preflight as P
from tuneport.local_backend.serving.adapters import AdapterError, check_adapter, resolve_adapter
from tuneport.local_backend.serving.engine import EngineOptions
from tuneport.local_backend.serving.scratch import ScratchDir
from tuneport.local_backend.serving.vllm_server import VLLMServer


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_adapters(tiny_model, tmp_path_factory.mktemp("adapters"), seeds=(1,))


@pytest.fixture(scope="module")
def other_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different Llama (hidden 64): adapters trained on it must not load on tiny-chat."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("other") / "other-llama"
    config = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=32)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def test_parse_adapter_arg() -> None:
    assert A.parse_adapter_arg("support=ftjob-abc") == ("support", "ftjob-abc")
    assert A.parse_adapter_arg("./runs/adapter") == (None, "./runs/adapter")
    with pytest.raises(AdapterError, match="NAME=JOB_ID"):
        A.parse_adapter_arg("=x")
    with pytest.raises(AdapterError, match="may hold only"):
        A.parse_adapter_arg("bad name=x")


def test_adapter_by_path_gets_its_folder_name_and_rank(tiny_model: Path, adapters) -> None:
    spec = resolve_adapter(str(adapters["ad1"]), base_model="tiny-chat", base_path=tiny_model)
    assert (spec.name, spec.rank, spec.path) == ("ad1", 8, adapters["ad1"].resolve())


def test_adapter_by_job_id_and_model_name(tiny_model: Path, adapters) -> None:
    from tuneport.jobs.store import open_store

    with open_store() as store:
        store.insert_job("ftjob-aaaaaaaaaaaa", backend="local", status="succeeded", model="tiny-chat",
                         fine_tuned_model="ft:tiny-chat:local:x:aaaaaaaa",
                         outputs={"adapter": str(adapters["ad1"]), "serve_as": "adapter"})  # fmt: skip
        store.insert_job("ftjob-bbbbbbbbbbbb", backend="local", status="running", model="tiny-chat")
        store.insert_job("ftjob-cccccccccccc", backend="local", status="succeeded", model="tiny-chat",
                         outputs={"model": "/x/model", "serve_path": "/x/model", "serve_as": "model"})  # fmt: skip
        spec = resolve_adapter(
            "ftjob-aaaaaaaaaaaa", base_model="tiny-chat", base_path=tiny_model, store=store
        )
        assert spec.name == "ft:tiny-chat:local:x:aaaaaaaa" and spec.path == adapters["ad1"].resolve()
        named = resolve_adapter("s=ft:tiny-chat:local:x:aaaaaaaa", base_model="tiny-chat", base_path=tiny_model,
                                store=store)  # fmt: skip
        assert named.name == "s"
        with pytest.raises(AdapterError, match="no such job"):
            resolve_adapter("ftjob-zzzzzzzzzzzz", base_model="tiny-chat", base_path=tiny_model, store=store)
        with pytest.raises(AdapterError, match="is running"):
            resolve_adapter("ftjob-bbbbbbbbbbbb", base_model="tiny-chat", base_path=tiny_model, store=store)
        with pytest.raises(AdapterError, match="full model") as info:
            resolve_adapter("ftjob-cccccccccccc", base_model="tiny-chat", base_path=tiny_model, store=store)
        assert "--model /x/model" in info.value.hint


def test_unknown_adapter_path(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="does not exist"):
        resolve_adapter(f"a={tmp_path / 'missing'}", base_model="tiny-chat", base_path=tiny_model)
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        check_adapter("a", tmp_path, base_model="tiny-chat", base_path=tiny_model)


def test_adapter_for_another_base_is_refused_by_shape(
    tiny_model: Path, other_base: Path, tmp_path: Path
) -> None:
    from tuneport.local_backend.serving.serve_fixtures import make_random_adapter

    # Declares a hub id (so only shapes can tell): still refused, naming the mismatching module.
    path = make_random_adapter(other_base, tmp_path / "a", seed=0, declared_base="org/some-model")
    with pytest.raises(AdapterError, match="does not fit the base model") as info:
        check_adapter("a", path, base_model=str(tiny_model), base_path=tiny_model)
    assert "has shape [8, 64] but the base" in info.value.message
    # and it does fit its own base
    assert check_adapter("a", path, base_model=str(other_base), base_path=other_base).rank == 8


def test_adapter_declaring_another_local_base_is_refused(
    tiny_model: Path, adapters, other_base: Path, tmp_path
):
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((adapters["ad1"] / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(other_base)
    (bad / "adapter_config.json").write_text(json.dumps(config))
    (bad / "adapter_model.safetensors").write_bytes(
        (adapters["ad1"] / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(AdapterError, match="was trained on"):
        check_adapter("bad", bad, base_model="tiny-chat", base_path=tiny_model)


def test_lora_rank_for() -> None:
    assert A.lora_rank_for([8]) == 16
    assert A.lora_rank_for([8, 64]) == 64
    assert A.lora_rank_for([], 32) == 32
    with pytest.raises(AdapterError, match="above --max-lora-rank"):
        A.lora_rank_for([64], 16)
    with pytest.raises(ServeError, match="not a rank vLLM accepts"):
        A.lora_rank_for([8], 12)


def test_port_in_use_is_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}") as info:
            P.check_port_free("127.0.0.1", port)
        assert "--port" in info.value.hint


def test_model_too_large_for_memory(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert P.estimate_model_bytes(tiny_model, 4) == pytest.approx((tiny_model / "model.safetensors").stat().st_size,
                                                                  rel=0.01)  # fmt: skip
    monkeypatch.setattr(P, "available_memory_bytes", lambda: 100 * 2**20)
    with pytest.raises(ServeError, match="GiB is available"):
        P.check_memory(tiny_model, dtype_bytes=4, overhead_bytes=2**30, engine="vLLM on CPU")


def _server(tiny_model, specs, **kw) -> VLLMServer:
    return VLLMServer("tiny-chat", tiny_model, specs, EngineOptions(port=12345, **kw), device="cpu")


def test_vllm_command_on_cpu_keeps_a_spare_lora_slot(tiny_model: Path, adapters) -> None:
    spec = check_adapter("a", adapters["ad1"], base_model="tiny-chat", base_path=tiny_model)
    cmd = _server(tiny_model, [spec], extra_args=["--max-num-seqs", "8", "--dtype=bfloat16"]).command()
    assert cmd[cmd.index("--max-loras") + 1] == "2"  # one adapter + the empty last slot
    assert cmd[cmd.index("--lora-modules") + 1] == "a=./lora/0"  # a link in the scratch folder: no path shown
    assert "--enforce-eager" in cmd and cmd[cmd.index("--served-model-name") + 1] == "tiny-chat"
    assert "--dtype" not in cmd and "--dtype=bfloat16" in cmd  # the user's flag replaces tuneport's default
    assert cmd[-3:] == ["--max-num-seqs", "8", "--dtype=bfloat16"]
    with pytest.raises(ServeError, match="would fill every LoRA slot"):
        _server(tiny_model, [spec], max_loras=1)
    gpu = VLLMServer("tiny-chat", tiny_model, [spec], EngineOptions(port=1, tensor_parallel_size=2),
                     device="cuda").command()
    assert "--enforce-eager" not in gpu and gpu[gpu.index("--max-loras") + 1] == "1"
    assert gpu[gpu.index("--tensor-parallel-size") + 1] == "2"


def test_vllm_environment_sends_caches_to_the_scratch_folder(tiny_model, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "")
    server = _server(tiny_model, [], home=tmp_path)
    server.scratch = ScratchDir(tmp_path)
    env = server.environment()
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_TARGET_DEVICE"] == "cpu"
    for key in ("TMPDIR", "VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "VLLM_RPC_BASE_PATH"):
        assert env[key].startswith(str(tmp_path)) or env[key].startswith(str(server.scratch.tmp)), key
    server.scratch.remove()
    assert not server.scratch.path.exists()


def test_stale_scratch_folders_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / "run" / "serve-999999-1"
    stale.mkdir(parents=True)
    (stale / "owner").write_text(json.dumps({"pid": 2**22 + 7, "tmp": str(stale / "tmp")}))
    fresh = ScratchDir(tmp_path)
    assert not stale.exists() and fresh.path.exists()
    fresh.remove()


def test_cli_reports_a_bad_adapter_as_a_tuneport_error(tiny_model: Path, tmp_path: Path) -> None:
    from tuneport.cli.serve import serve

    result = CliRunner().invoke(serve, ["--model", str(tiny_model), "--adapter", f"x={tmp_path / 'nope'}"])
    assert isinstance(result.exception, AdapterError)
    assert "does not exist" in result.exception.message


def test_cli_serves_with_the_fallback_and_stops_on_sigterm(tiny_model: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    port = P.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from tuneport.cli.serve import serve; serve()", "--model", str(tiny_model),
         "--engine", "transformers", "--port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        info = json.loads(proc.stdout.readline())
        # served under the folder's name: no client sees where the model lives
        assert info["engine"] == "transformers" and info["models"] == [tiny_model.name]
        r = httpx.post(info["base_url"] + "/chat/completions", timeout=60, json={
            "model": tiny_model.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})  # fmt: skip
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        time.sleep(0.2)
        with pytest.raises(httpx.TransportError):
            httpx.get(info["base_url"] + "/models", timeout=2)
    finally:
        proc.kill()
        proc.wait()
    assert "slower than vLLM" in proc.stderr.read()
