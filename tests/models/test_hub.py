"""Hub ids from a prepared huggingface_hub cache, offline: used when cached, a clear error when not (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _hub_cache import SHA, SHA_V1, add_to_cache

import tuneport.models.hub as hub
from tuneport.errors import SpecError
from tuneport.models.hub import HubRef, cached_snapshot, parse_hub_id, plan_hub_model
from tuneport.models.resolve import resolve_model, resolve_model_source


def fake_model(folder: Path, **config) -> Path:
    """The files resolution looks at (a config, a weight file, a tokenizer config with a template)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **config}))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    return folder


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def test_parse_hub_ids() -> None:
    assert parse_hub_id("Qwen/Qwen2.5-0.5B-Instruct") == HubRef("Qwen/Qwen2.5-0.5B-Instruct", None)
    assert parse_hub_id("Qwen/Qwen2.5-0.5B-Instruct@v1.0") == HubRef("Qwen/Qwen2.5-0.5B-Instruct", "v1.0")
    assert parse_hub_id(f"org/name@{SHA}").revision == SHA
    for text in (
        "tiny-chat",
        "gpt-4o-mini",
        "a/b/c",
        "/abs/path",
        "./rel/x",
        "org/..",
        "org/name@",
        "ft:a:b",
    ):
        assert parse_hub_id(text) is None, text


def test_a_cached_model_is_used_offline_with_its_commit(cache: Path, tmp_path: Path) -> None:
    snapshot = add_to_cache(cache, "acme/tiny-instruct", fake_model(tmp_path / "src"))
    source = resolve_model_source("acme/tiny-instruct")
    assert source.path == snapshot and source.kind == "hub"
    assert source.provenance == {"source": "huggingface_hub", "repo_id": "acme/tiny-instruct", "revision": "main",
                                 "sha": SHA}  # fmt: skip
    assert resolve_model("acme/tiny-instruct") == snapshot
    assert (snapshot / "config.json").is_symlink()  # the real layout: snapshot files link into blobs/


def test_revisions_by_name_and_by_sha(cache: Path, tmp_path: Path) -> None:
    add_to_cache(cache, "acme/m", fake_model(tmp_path / "a"))
    add_to_cache(cache, "acme/m", fake_model(tmp_path / "b"), sha=SHA_V1, refs=("v1",))
    assert resolve_model_source("acme/m@v1").provenance["sha"] == SHA_V1
    assert resolve_model_source("acme/m@v1").provenance["revision"] == "v1"
    assert resolve_model_source(f"acme/m@{SHA}").path.name == SHA
    assert resolve_model_source("acme/m").provenance["sha"] == SHA


def test_hf_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_to_cache(tmp_path / "home-hf" / "hub", "acme/m", fake_model(tmp_path / "src"))
    assert resolve_model_source("acme/m").provenance["sha"] == SHA


def test_offline_and_not_cached_names_the_model_and_the_fetch_command(cache: Path, monkeypatch) -> None:
    monkeypatch.setattr(hub, "_remote_info", lambda ref: pytest.fail("offline: the Hub must not be asked"))
    with pytest.raises(SpecError) as info:
        resolve_model("Qwen/Qwen2.5-0.5B-Instruct@v2")
    err = info.value
    assert "'Qwen/Qwen2.5-0.5B-Instruct@v2'" in err.message and "not in the cache" in err.message
    assert "HF_HUB_OFFLINE" in err.message and str(cache) in err.message
    assert "`hf download Qwen/Qwen2.5-0.5B-Instruct --revision v2`" in err.hint
    assert "python -m tuneport.models.hub Qwen/Qwen2.5-0.5B-Instruct@v2" in err.hint


def test_an_incomplete_snapshot_is_not_cached(cache: Path, tmp_path: Path) -> None:
    src = fake_model(tmp_path / "src")
    (src / "model.safetensors").unlink()
    (src / "model.safetensors.index.json").write_text(
        json.dumps(
            {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
        )
    )
    (src / "model-00001-of-00002.safetensors").write_bytes(b"x")  # the second shard never arrived
    add_to_cache(cache, "acme/big", src)
    assert cached_snapshot(HubRef("acme/big")) is None
    with pytest.raises(SpecError, match="not in the cache"):
        resolve_model("acme/big")


def test_plan_says_what_will_happen(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_to_cache(cache, "acme/m", fake_model(tmp_path / "src"))
    assert (
        plan_hub_model(HubRef("acme/m")).describe()
        == f"acme/m: cached at sha {SHA} ({cache}/models--acme--m/snapshots/{SHA})"
    )
    offline = plan_hub_model(HubRef("acme/other"))
    assert offline.action == "unavailable" and "hf download acme/other" in offline.describe()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(
        hub, "_remote_info", lambda ref: (SHA_V1, 988_097_824, ["config.json", "model.safetensors"])
    )
    online = plan_hub_model(HubRef("acme/other"))
    assert online.describe() == f"acme/other: will download 0.99 GB from the Hugging Face Hub at sha {SHA_V1}"

    def unreachable(ref):
        raise OSError("Name or service not known")

    monkeypatch.setattr(hub, "_remote_info", unreachable)
    assert "could not be reached" in plan_hub_model(HubRef("acme/other")).describe()


def test_download_goes_into_the_cache_and_names_the_ref(cache: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    src = fake_model(tmp_path / "src")
    monkeypatch.setattr(hub, "_remote_info", lambda ref: (SHA_V1, 100, ["config.json", "model.safetensors"]))
    calls = []

    def snapshot_download(repo_id, *, revision, cache_dir, allow_patterns):
        calls.append((repo_id, revision, allow_patterns))
        return str(add_to_cache(Path(cache_dir), repo_id, src, sha=revision, refs=()))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    got = resolve_model_source("acme/new@release")
    assert calls == [("acme/new", SHA_V1, ["config.json", "model.safetensors"])]
    assert got.provenance["sha"] == SHA_V1 and got.provenance["revision"] == "release"
    assert (cache / "models--acme--new" / "refs" / "release").read_text() == SHA_V1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_source("acme/new@release").path == got.path  # now offline from the cache


def test_download_fetches_what_a_load_needs() -> None:
    files = ["config.json", "model.safetensors", "pytorch_model.bin", "original/consolidated.00.pth",
             "tokenizer.json", "onnx/model.onnx", "training_args.bin", "chat_template.jinja", "README.md"]  # fmt: skip
    assert hub._wanted(files) == ["config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"]
    assert "pytorch_model.bin" in hub._wanted(["config.json", "pytorch_model.bin"])
