"""The transformers fallback engine, driven through the official OpenAI SDK: the proof it speaks the same API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai")

from _serve_support import Reference, make_adapters, prompts  # noqa: E402

from tuneport.local_backend.serving.adapters import AdapterError, check_adapter  # noqa: E402
from tuneport.local_backend.serving.engine import EngineOptions  # noqa: E402
from tuneport.local_backend.serving.fallback_server import FallbackServer  # noqa: E402


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_adapters(tiny_model, tmp_path_factory.mktemp("adapters"), seeds=(1, 2, 3))


@pytest.fixture(scope="module")
def server(tiny_model: Path, adapters: dict[str, Path]):
    specs = [
        check_adapter(name, adapters[name], base_model="tiny", base_path=tiny_model)
        for name in ("ad1", "ad2")
    ]
    lines: list[str] = []
    srv = FallbackServer("tiny", tiny_model, specs, EngineOptions(log=lines.append)).start()
    srv.lines = lines
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def reference(tiny_model: Path, adapters: dict[str, Path]) -> Reference:
    return Reference(tiny_model, adapters)


def test_it_says_it_is_the_slower_fallback(server) -> None:
    assert any("slower than vLLM" in line for line in server.lines)


def test_models_lists_base_and_adapters_with_parent(client) -> None:
    models = {m.id: m for m in client.models.list().data}
    assert list(models) == ["tiny", "ad1", "ad2"]
    assert models["ad1"].model_extra["parent"] == "tiny"
    assert models["tiny"].model_extra["parent"] is None


@pytest.mark.parametrize("model", ["tiny", "ad1", "ad2"])
def test_greedy_token_ids_equal_transformers_generate(client, reference: Reference, model: str) -> None:
    for messages in prompts(2):
        r = client.chat.completions.create(
            model=model, messages=messages, max_tokens=20, temperature=0,
            extra_body={"min_tokens": 20, "return_token_ids": True},
        )  # fmt: skip
        expected = reference.generate(messages, None if model == "tiny" else model, 20, min_new=20)
        assert r.model_extra["prompt_token_ids"] == reference.prompt_ids(messages)
        assert r.choices[0].model_extra["token_ids"] == expected
        assert r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens == 20
        assert r.usage.prompt_tokens == len(reference.prompt_ids(messages))
        assert r.usage.total_tokens == r.usage.prompt_tokens + 20
        assert r.choices[0].message.content == reference.tokenizer.decode(expected, skip_special_tokens=True)


def test_adapters_really_change_the_output(client) -> None:
    outs = {
        m: client.chat.completions.create(model=m, messages=prompts(1)[0], max_tokens=12, temperature=0)
        .choices[0]
        .message.content
        for m in ("tiny", "ad1", "ad2")
    }
    assert len(set(outs.values())) == 3, outs


def test_stop_on_eos_reports_stop_and_keeps_eos_in_token_ids(client, reference: Reference) -> None:
    eos = reference.tokenizer.eos_token_id
    # Some prompt/model pair ends on eos within 60 tokens on this fixture; find it through the reference.
    for model in ("tiny", "ad1", "ad2"):
        for messages in prompts(4):
            expected = reference.generate(messages, None if model == "tiny" else model, 60)
            if eos in expected:
                r = client.chat.completions.create(
                    model=model, messages=messages, max_tokens=60, temperature=0,
                    extra_body={"return_token_ids": True},
                )  # fmt: skip
                assert r.choices[0].finish_reason == "stop"
                assert r.choices[0].model_extra["token_ids"] == expected
                assert r.choices[0].model_extra["token_ids"][-1] == eos
                return
    pytest.skip("no prompt of the fixture ends on eos within 60 tokens")


def test_stop_strings_cut_the_text(client) -> None:
    full = client.chat.completions.create(model="ad1", messages=prompts(1)[0], max_tokens=30, temperature=0)
    text = full.choices[0].message.content
    stop = text[8:11]
    assert stop and stop not in text[:8]
    cut = client.chat.completions.create(
        model="ad1", messages=prompts(1)[0], max_tokens=30, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_sampling_is_reproducible_with_a_seed_and_varies_without(client) -> None:
    def sample(seed: int) -> str:
        r = client.chat.completions.create(
            model="ad2", messages=prompts(1)[0], max_tokens=16, temperature=1.0, top_p=0.95, seed=seed,
            extra_body={"min_tokens": 16},
        )  # fmt: skip
        return r.choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_n_returns_several_choices(client) -> None:
    r = client.chat.completions.create(model="tiny", messages=prompts(1)[0], max_tokens=5, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.content == r.choices[1].message.content
    assert r.usage.completion_tokens == 10


def test_streaming_gives_the_same_text_in_chunks(client) -> None:
    full = client.chat.completions.create(model="ad1", messages=prompts(1)[0], max_tokens=24, temperature=0)
    stream = client.chat.completions.create(
        model="ad1", messages=prompts(1)[0], max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == full.choices[0].message.content
    assert len([p for p in pieces if p]) > 3  # really incremental
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_unknown_model_is_a_404_in_openai_shape(client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=prompts(1)[0], max_tokens=4)
    assert "nope" in info.value.body["message"]


def test_bad_parameters_are_400_naming_the_field(client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=prompts(1)[0], max_tokens=4, temperature=5)
    assert info.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=prompts(1)[0], max_tokens=10**6)
    assert "max_tokens" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[], max_tokens=4)


def test_adapters_load_and_unload_at_runtime(server, client, adapters: dict[str, Path], reference: Reference):
    r = httpx.post(
        server.base_url + "/load_lora_adapter", json={"lora_name": "ad3", "lora_path": str(adapters["ad3"])}
    )
    assert r.status_code == 200, r.text
    assert "ad3" in [m.id for m in client.models.list().data]
    got = client.chat.completions.create(
        model="ad3",
        messages=prompts(1)[0],
        max_tokens=10,
        temperature=0,
        extra_body={"return_token_ids": True},
    )
    assert got.choices[0].model_extra["token_ids"] == Reference(
        Path(server.base_path), {"ad3": adapters["ad3"]}
    ).generate(prompts(1)[0], "ad3", 10)
    r = httpx.post(server.base_url + "/unload_lora_adapter", json={"lora_name": "ad3"})
    assert r.status_code == 200
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ad3", messages=prompts(1)[0], max_tokens=4)
    # the others are untouched
    base = client.chat.completions.create(
        model="tiny",
        messages=prompts(1)[0],
        max_tokens=10,
        temperature=0,
        extra_body={"return_token_ids": True},
    )
    assert base.choices[0].model_extra["token_ids"] == reference.generate(prompts(1)[0], None, 10)
    assert httpx.post(server.base_url + "/unload_lora_adapter", json={"lora_name": "ad3"}).status_code == 404


def test_python_api_refuses_an_adapter_for_another_base(server, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((Path(server.adapters["ad1"].path) / "adapter_config.json").read_text())
    other = tmp_path / "other-model"
    other.mkdir()
    config["base_model_name_or_path"] = str(other)
    (bad / "adapter_config.json").write_text(json.dumps(config))
    (bad / "adapter_model.safetensors").write_bytes(
        (Path(server.adapters["ad1"].path) / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(AdapterError, match="trained on .*other-model"):
        server.load_adapter("bad", bad)


def test_stop_leaves_no_connection_thread_behind(tiny_model: Path) -> None:
    """A keep-alive client's connection thread used to outlive stop(); woken at interpreter exit it freed tensors
    while Python finalized and the process aborted ("terminate called without an active exception")."""
    import threading

    before = set(threading.enumerate())
    srv = FallbackServer("tiny", tiny_model, [], EngineOptions()).start()
    keep_alive = openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0)
    for _ in range(2):  # the same pooled connection, left open by the client
        keep_alive.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    srv.stop()
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive() and t.name != "tqdm_monitor"]
    assert left == []  # (tqdm's monitor, started by the weight loading bar, is no connection's)
    keep_alive.close()
