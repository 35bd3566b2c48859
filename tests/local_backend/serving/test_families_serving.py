"""Each family, trained with LoRA and served by vLLM on CPU: greedy ids equal transformers + peft, answers stop at the
family's turn end (also where the tokenizer's eos is another token), and an adapter for another base is refused.

One vLLM server per family (about 30 s to start and 2 GB each), all of that family's checks on it. Skipped where
vLLM is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed in this environment", allow_module_level=True)

import torch  # noqa: E402
from _serve_support import FIXTURE_DATA  # noqa: E402

from tuneport.fixtures.families import FAMILIES, build_family  # noqa: E402
from tuneport.local_backend.serving.adapters import AdapterError, check_adapter  # noqa: E402
from tuneport.local_backend.serving.serve import start_server  # noqa: E402
from tuneport.local_backend.training.stop_tokens import stop_ids, turn_end_ids  # noqa: E402
from tuneport.local_backend.training.train_config import TrainConfig  # noqa: E402
from tuneport.local_backend.training.trainer import train  # noqa: E402

pytestmark = pytest.mark.slow

N_TOKENS = 24


def _training_file(path: Path, name: str) -> Path:
    records = [json.loads(line) for line in (FIXTURE_DATA / "support_train.jsonl").read_text("utf-8").splitlines()[:8]]
    if name == "tiny-mistral":  # its template drops a system message from finished conversations (refused)
        for r in records:
            r["messages"] = [m for m in r["messages"] if m["role"] != "system"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    return path


def _prompts() -> list[list[dict]]:
    out = []
    for line in (FIXTURE_DATA / "support_test.jsonl").read_text("utf-8").splitlines()[:2]:
        messages = json.loads(line)["messages"]
        first_user = next(m for m in messages if m["role"] == "user")  # Gemma's format needs alternating turns
        out.append([*(m for m in messages if m["role"] == "system"), first_user])
    out.append([{"role": "user", "content": "hello"}])
    return out


@dataclass
class Served:
    name: str
    base: Path
    adapter: Path
    merged: Path
    server: Any
    tokenizer: Any
    models: dict[str | None, Any]
    stops: list[int]

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def reference(self, messages: list[dict], adapter: str | None) -> list[int]:
        ids = torch.tensor([self.prompt_ids(messages)])
        with torch.inference_mode():
            out = self.models[adapter].generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N_TOKENS,
                min_new_tokens=N_TOKENS, do_sample=False, eos_token_id=self.stops,
                pad_token_id=self.tokenizer.pad_token_id,
            )  # fmt: skip
        return out[0, ids.shape[1] :].tolist()

    def chat(self, model: str, messages: list[dict], **body: Any) -> dict:
        r = httpx.post(
            self.server.base_url + "/chat/completions",
            json={"model": model, "messages": messages, "temperature": 0, "return_token_ids": True, **body},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = request.param
    root = tmp_path_factory.mktemp(name)
    base = build_family(name, root / "base")
    config = TrainConfig(
        model=str(base), training_file=str(_training_file(root / "train.jsonl", name)), output_dir=str(root / "out"),
        max_steps=6, batch_size=4, learning_rate=3e-2, max_seq_length=256, save_merged=True, num_threads=1,
    )  # fmt: skip
    result = train(config)
    assert result.serve_as == "adapter"
    adapter, merged = Path(result.adapter_dir), Path(result.merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    models: dict[str | None, Any] = {None: AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()}
    fresh = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    models["ft"] = PeftModel.from_pretrained(fresh, str(adapter)).eval()
    server = start_server(str(base), [f"ft={adapter}"], engine="vllm", home=root / "home", max_model_len=512)
    try:
        yield Served(name, base, adapter, merged, server, tokenizer, models, stop_ids(tokenizer, base))
    finally:
        server.stop()


def test_greedy_ids_equal_transformers_and_peft(served: Served) -> None:
    differs = 0
    for messages in _prompts():
        for model, adapter in ((served.base.name, None), ("ft", "ft")):
            got = served.chat(model, messages, max_tokens=N_TOKENS, min_tokens=N_TOKENS)
            assert got["prompt_token_ids"] == served.prompt_ids(messages)
            assert got["choices"][0]["token_ids"] == served.reference(messages, adapter), (served.name, model)
        differs += served.reference(messages, "ft") != served.reference(messages, None)
    assert differs, "the trained adapter changes no greedy answer: the parity check could not see it applied"


def test_generation_stops_at_the_turn_end(served: Served) -> None:
    turn_end = turn_end_ids(served.tokenizer)[0]
    assert served.tokenizer.convert_ids_to_tokens(turn_end) == FAMILIES[served.name].turn_end
    for model in (served.base.name, "ft"):
        # The answer ends with the turn end at once (the bias makes it the only choice): the server must stop there
        # and not run on to max_tokens, whatever the tokenizer's eos is.
        got = served.chat(model, _prompts()[2], max_tokens=16, logit_bias={str(turn_end): 100})
        choice = got["choices"][0]
        assert choice["finish_reason"] == "stop", (served.name, model, choice)
        assert got["usage"]["completion_tokens"] == 1
        assert choice["message"]["content"] == ""
    if FAMILIES[served.name].eos != FAMILIES[served.name].turn_end:
        assert "--generation-config" in served.server.command()  # the base's config alone would not stop there


def test_merged_export_stops_at_the_turn_end_and_matches_the_adapter(served: Served) -> None:
    from transformers import AutoModelForCausalLM

    eos = json.loads((served.merged / "generation_config.json").read_text())["eos_token_id"]
    assert turn_end_ids(served.tokenizer)[0] in (eos if isinstance(eos, list) else [eos])
    merged = AutoModelForCausalLM.from_pretrained(str(served.merged), dtype=torch.float32).eval()
    ids = torch.tensor([served.prompt_ids(_prompts()[0])])
    with torch.inference_mode():
        diff = (merged(input_ids=ids).logits - served.models["ft"](input_ids=ids).logits).abs().max().item()
    assert diff < 1e-3


def test_adapter_for_another_base_is_refused(served: Served, tmp_path: Path) -> None:
    other_name = "tiny-qwen2" if served.name == "tiny-llama3" else "tiny-llama3"
    other = build_family(other_name, tmp_path / other_name)
    # As a downloaded adapter would be: its declared base is a hub id, not a folder here, so only the record of
    # the architecture it was trained on (and the shapes) can tell.
    moved = tmp_path / "adapter"
    shutil.copytree(served.adapter, moved)
    config_path = moved / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = f"org/{served.name}-instruct"
    config_path.write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"trained on another kind of base model|does not fit the base model"):
        check_adapter("ft", moved, base_model=other_name, base_path=other)
    with pytest.raises(AdapterError):  # refused before any engine starts
        start_server(str(other), [f"ft={moved}"], engine="vllm", home=tmp_path / "home")
