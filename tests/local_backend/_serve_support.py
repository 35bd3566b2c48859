"""Helpers shared by the serving tests: seeded adapters, prompts, and transformers reference generations."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURE_DATA = Path(__file__).resolve().parents[2] / "fixtures" / "data"


def prompts(n: int = 3) -> list[list[dict]]:
    """Chat prompts: the first ``n`` support tickets (without their answers) and a one-word greeting."""
    out = []
    for line in (FIXTURE_DATA / "support_test.jsonl").read_text("utf-8").splitlines()[:n]:
        messages = json.loads(line)["messages"]
        out.append([m for m in messages if m["role"] != "assistant"])
    out.append([{"role": "user", "content": "hello"}])
    return out


def make_adapters(base: Path, root: Path, seeds: tuple[int, ...] = (1, 2)) -> dict[str, Path]:
    from tuneport.local_backend.serving.serve_fixtures import make_random_adapter

    return {f"ad{seed}": make_random_adapter(base, root / f"ad{seed}", seed=seed) for seed in seeds}


class Reference:
    """Greedy generations from plain transformers (and a fresh PeftModel per adapter): the ground truth."""

    def __init__(self, base: Path, adapters: dict[str, Path]) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(base))
        self.models = {None: AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()}
        for name, path in adapters.items():
            fresh = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
            self.models[name] = PeftModel.from_pretrained(fresh, str(path)).eval()

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, messages: list[dict], adapter: str | None, n: int, min_new: int = 0) -> list[int]:
        import torch

        ids = torch.tensor([self.prompt_ids(messages)])
        with torch.inference_mode():
            out = self.models[adapter].generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=min_new or None,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        return out[0, ids.shape[1] :].tolist()
