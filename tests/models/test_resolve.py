"""Model resolution: built-in names, local folders, and errors that say what to do (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tuneport.fixtures.tiny_model as tiny
from tuneport.errors import SpecError
from tuneport.models.resolve import BUILT_IN_MODELS, TINY_MODEL_NAME, is_built_in, model_folder, resolve_model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TUNEPORT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder


def test_tiny_chat_is_the_built_in_name() -> None:
    assert TINY_MODEL_NAME == tiny.TINY_MODEL_NAME == "tiny-chat"
    assert list(BUILT_IN_MODELS)[0] == "tiny-chat" and TINY_MODEL_NAME == "tiny-chat"
    assert is_built_in("tiny-chat") and not is_built_in("./tiny-chat") and not is_built_in("gpt-4o-mini")


def test_tiny_chat_is_built_by_the_recipe_once_into_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The recipe itself (torch, tokenizers) is tested in tests/fixtures; here it writes the files a complete
    # build has, so that resolution is tested on its own: the name goes to the recipe, and only once.
    builds: list[Path] = []

    def recipe(out, *, seed: int = 0) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in tiny._REQUIRED_FILES:
            (out / name).write_text("{}")
        builds.append(out)
        return out

    monkeypatch.setattr(tiny, "build_tiny_model", recipe)
    path = resolve_model("tiny-chat")
    assert path == home / "models" / "tiny-chat" and (path / "config.json").is_file()
    assert resolve_model("tiny-chat") == path
    assert len(builds) == 1


def test_an_existing_folder_resolves_to_itself(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(str(model_dir)) == model_dir.resolve()
    assert resolve_model(model_dir) == model_dir.resolve()
    monkeypatch.chdir(model_dir.parent)
    assert resolve_model("my-model") == model_dir.resolve()  # relative paths come back absolute


def test_a_folder_named_like_the_built_in_model_is_not_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tiny-chat").mkdir()
    (tmp_path / "tiny-chat" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("./tiny-chat") == (tmp_path / "tiny-chat").resolve()


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="has no config.json") as info:
        resolve_model(tmp_path)
    assert "config.json" in info.value.hint


def test_a_file_is_not_a_model_folder(tmp_path: Path) -> None:
    file = tmp_path / "weights.safetensors"
    file.write_bytes(b"")
    with pytest.raises(SpecError, match="is a file, not a model folder"):
        resolve_model(file)


def test_unknown_name_explains_no_downloads(home: Path) -> None:
    with pytest.raises(SpecError) as info:
        resolve_model("meta-llama/Llama-3.2-1B")
    err = info.value
    assert "'meta-llama/Llama-3.2-1B' is not a local folder and not a built-in model" in err.message
    assert "tiny-chat" in err.message and "not available offline" in err.message
    assert "--local-dir" in err.hint
    assert err.exit_code == SpecError.exit_code
    assert not (home / "models").exists()  # nothing was built or downloaded


def test_openai_model_points_at_openai_backend() -> None:
    for model in ("gpt-4o-mini-2024-07-18", "ft:gpt-4.1-mini-2025-04-14:org::x"):
        with pytest.raises(SpecError) as info:
            resolve_model(model)
        assert "--backend openai" in info.value.hint


def test_model_folder_names_the_folder_without_building(home: Path, tmp_path: Path) -> None:
    assert model_folder("tiny-chat") == home / "models" / "tiny-chat"
    assert not (home / "models").exists()  # only named, not built
    assert model_folder(str(tmp_path / "x")) == tmp_path / "x"
    assert model_folder("~/m") == Path.home() / "m"
