"""The fit check's memory estimate against measured peaks: a few configurations, each trained in its own process.

    python benchmarks/bench_fit.py [--steps 2] [--threads 1]

Each configuration builds a random Llama from a config (tiny-chat's tokenizer), then a fresh process loads the
tokenizer, takes its RSS as the baseline, runs :func:`tuneport.local_backend.training.trainer.train` for a few
steps and samples its RSS every 5 ms. The measured figure is the peak growth over the baseline (weights, adapter,
optimizer, activations, logits, allocator); the estimate is :func:`tuneport.models.fit.estimate_memory` for the
same settings (``tokens``: the longest row a batch can have, here every example is cut to max_seq_length).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# name, model dims, training settings
CONFIGS: list[tuple[str, dict, dict]] = [
    ("h256 L4 fp32 b4x256", {"hidden": 256, "layers": 4, "inter": 704}, {"batch": 4, "seq": 256}),
    ("h256 L4 fp32 b8x512", {"hidden": 256, "layers": 4, "inter": 704}, {"batch": 8, "seq": 512}),
    ("h256 L4 fp32 b8x512 ckpt", {"hidden": 256, "layers": 4, "inter": 704}, {"batch": 8, "seq": 512, "gc": True}),
    ("h512 L6 fp32 b4x512", {"hidden": 512, "layers": 6, "inter": 1408}, {"batch": 4, "seq": 512}),
    ("h512 L6 bf16 b4x512", {"hidden": 512, "layers": 6, "inter": 1408}, {"batch": 4, "seq": 512, "dtype": "bfloat16"}),
]  # fmt: skip

_CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path
args = json.loads(sys.argv[1])
import torch, transformers  # noqa: F401  (imported before the baseline: they are not the job's memory)
from transformers import AutoTokenizer
from tuneport.local_backend.training.train_config import TrainConfig
from tuneport.local_backend.training.trainer import train

def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

AutoTokenizer.from_pretrained(args["model"])
base = rss(); peak = [base]; stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
cfg = TrainConfig(model=args["model"], training_file=args["data"], output_dir=args["out"], n_epochs=1,
                  max_steps=args["steps"], batch_size=args["batch"], max_seq_length=args["seq"], packing=False,
                  gradient_checkpointing=args["gc"], dtype=args["dtype"], num_threads=args["threads"],
                  lora_r=8, lora_alpha=16, learning_rate=1e-3, seed=1, device="cpu")
train(cfg)
stop.set(); t.join(); peak[0] = max(peak[0], rss())
print(json.dumps({"growth": peak[0] - base}))
"""


def build_model(tokenizer_dir: Path, out: Path, hidden: int, layers: int, inter: int) -> Path:
    """A random Llama of these dims with tiny-chat's tokenizer and template (config + weights + tokenizer)."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    src = json.loads((tokenizer_dir / "config.json").read_text())
    config = LlamaConfig(
        vocab_size=src["vocab_size"], hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64, head_dim=64,
        max_position_embeddings=4096, bos_token_id=src["bos_token_id"], eos_token_id=src["eos_token_id"],
        pad_token_id=src["pad_token_id"], tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tokenizer_dir / name, out / name)
    return out


def write_long_data(path: Path, n: int, words: int) -> Path:
    """``n`` chats long enough that every one is cut to max_seq_length: each batch is full, the estimate's case."""
    import random

    rng = random.Random(0)
    vocab = "invoice refund shipping order account password billing error outage urgent login cluster".split()  # noqa: SIM905
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            text = " ".join(rng.choice(vocab) for _ in range(words))
            # A short question and a long answer: the cut keeps assistant tokens to learn.
            messages = [{"role": "user", "content": "help"}, {"role": "assistant", "content": text}]
            fh.write(json.dumps({"messages": messages}) + "\n")
    return path


def measure(model: Path, data: Path, out: Path, *, batch: int, seq: int, gc: bool = False, dtype: str = "float32",
            steps: int = 2, threads: int = 1) -> int:  # fmt: skip
    """Peak RSS growth (bytes) of a fresh process training ``steps`` steps with these settings."""
    args = {"model": str(model), "data": str(data), "out": str(out), "batch": batch, "seq": seq, "gc": gc,
            "dtype": dtype, "steps": steps, "threads": threads}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the training process failed:\n{proc.stderr[-3000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["growth"])


def estimate(model: Path, *, batch: int, seq: int, gc: bool = False, dtype: str = "float32") -> object:
    from tuneport.models.fit import FitSettings, estimate_memory, model_shape

    shape = model_shape(json.loads((model / "config.json").read_text()))
    settings = FitSettings(
        dtype=dtype, lora_r=8, batch_size=batch, tokens=seq, gradient_checkpointing=gc, device="cpu"
    )
    return estimate_memory(shape, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from tuneport.fixtures.tiny_model import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="bench-fit-"))
    tiny = build_tiny_model(work / "tiny")
    data = write_long_data(work / "long.jsonl", 16, 700)
    built: dict[tuple, Path] = {}
    print(f"{'config':28s} {'estimate':>10s} {'measured':>10s} {'ratio':>6s}")
    for name, dims, train in CONFIGS:
        key = tuple(sorted(dims.items()))
        if key not in built:
            built[key] = build_model(tiny, work / f"m{len(built)}", **dims)
        model = built[key]
        kw = {"batch": train["batch"], "seq": train["seq"], "gc": train.get("gc", False),
              "dtype": train.get("dtype", "float32")}  # fmt: skip
        est = estimate(model, **kw)
        got = measure(
            model, data, work / f"out-{len(name)}-{id(kw)}", steps=args.steps, threads=args.threads, **kw
        )
        print(f"{name:28s} {est.total / 1e6:8.0f}MB {got / 1e6:8.0f}MB {got / est.total:6.2f}")
        print(f"    {est.breakdown()}")


if __name__ == "__main__":
    main()
