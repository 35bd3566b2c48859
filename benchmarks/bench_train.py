"""Trainer throughput: tuneport's trainer vs a naive HF Trainer + peft baseline and TRL's SFTTrainer.

    python benchmarks/bench_train.py [--rounds 3] [--steps 6] [--dtype float32|bfloat16] [--threads N] [--no-trl]

The baseline is what a first LoRA script looks like: ``transformers.Trainer`` + peft, examples padded to the
longest of each batch (``DataCollatorForSeq2Seq``), no packing. Ours is :func:`tuneport.local_backend.train`
(padding-free batches). Both get the same ~10M-parameter Llama (random init from a config; the 2-layer tiny model
is too small to show anything), the same rendered examples in the same order, the same seed, batch size and
thread count. Runs alternate in one process (baseline, ours, baseline, ours, ...) so machine noise hits both;
medians are reported.

TRL (``trl.SFTTrainer``, what a user would pick instead) runs in its fastest configurations that work on a CPU:
``padding_free=True`` (the batch flattened into one row with restarting position ids: the same examples per step,
so its loss curve is comparable), and ``packing=True`` with the ``bfd`` strategy (examples packed into rows of
``--trl-max-length`` tokens, padding-free: more examples per step, so only its tokens/s is comparable). It gets the
same pre-rendered examples and labels (assistant tokens only), the same peft LoRA model, seed, batch and threads.
The faster of the two is the TRL figure the ratio uses. Targets: >= 2x TRL on the long-tailed data, >= 1x on the
uniform lengths, the same loss.

After each dataset it prints the ceiling this machine puts on any trainer of this model: the weight matmuls of
one step (forward and input gradients of every frozen linear, at the step's real token count) timed alone, with
nothing else a step does; then what share of that ceiling ours and TRL reach and what the target would take.

Two datasets: long-tailed chat lengths (12-400 tokens, median ~60: padded batches are mostly padding; target
>= 2x real tokens/s) and uniform lengths (nothing to gain; target ~1x, never slower). The loss curves of both are
compared: padding-free batching keeps the same examples per step, so the curves should match.
Throughput is steady state: real tokens from the end of step 1 to the end of the last step (no warm-up, no
final checkpoint save) over that time. Peak memory is the growth of the process RSS during a run, sampled every
10 ms (the first run in the process also pays one-time allocations: compare medians).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

WORDS = [
    *"invoice refund shipping order account password billing dashboard error outage urgent please".split(),  # noqa: SIM905
    *"login cluster region database backup restore payment card charge plan upgrade downgrade".split(),  # noqa: SIM905
    *"customer support delivery tracking address label warehouse api key token limit quota".split(),  # noqa: SIM905
]


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        import os

        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak RSS growth over a block, sampled by a thread (torch's CPU allocations are invisible to tracemalloc)."""

    def __enter__(self) -> PeakRSS:
        self.start = _rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def build_model(tokenizer_dir: Path, out: Path, dtype: str) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=5,
        num_attention_heads=6,
        num_key_value_heads=6,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def make_dataset(path: Path, tokenizer, n: int, lengths: str, seed: int) -> list[int]:
    """Write ``n`` chat examples whose rendered lengths follow ``lengths`` ("longtail" or "uniform")."""
    from tuneport.local_backend.training.chat_data import render_with_labels

    rng = random.Random(seed)
    rendered = []
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(n):
            if lengths == "longtail":
                target = int(min(400, max(12, rng.lognormvariate(4.1, 0.75))))
            else:
                target = rng.randint(100, 110)
            # Most of the length in the user turn, a short assistant answer, like support chats.
            body = max(1, target - 24)
            user_words = [rng.choice(WORDS) for _ in range(max(1, int(body * 0.7)))]
            answer_words = [rng.choice(WORDS) for _ in range(max(1, int(body * 0.3)))]
            messages = [
                {"role": "user", "content": " ".join(user_words)},
                {"role": "assistant", "content": " ".join(answer_words)},
            ]
            ex = render_with_labels(tokenizer, messages)
            # Trim to the target length by dropping words until it fits (lengths drive the benchmark).
            while len(ex) > target and len(user_words) > 1:
                user_words = user_words[: max(1, int(len(user_words) * 0.9))]
                messages[0]["content"] = " ".join(user_words)
                ex = render_with_labels(tokenizer, messages)
            rendered.append(len(ex))
            fh.write(json.dumps({"messages": messages}) + "\n")
    return rendered


def run_ours(model: Path, data: Path, out: Path, steps: int, batch: int, threads: int, dtype: str) -> dict:
    from tuneport.local_backend.training.train_config import TrainConfig
    from tuneport.local_backend.training.trainer import train

    cfg = TrainConfig(
        model=model,
        training_file=data,
        output_dir=out,
        n_epochs=1,
        max_steps=steps,
        batch_size=batch,
        learning_rate=1e-3,
        seed=1,
        num_threads=threads,
        dtype=dtype,
        packing=True,
    )
    marks: list[tuple[float, int]] = []

    def on_event(event: dict) -> None:
        data = event.get("data") or {}
        if event.get("type") == "metrics" and "trained_tokens" in data:
            marks.append((time.monotonic(), data["trained_tokens"]))

    with PeakRSS() as mem:
        res = train(cfg, on_event=on_event)
    return {**_steady_state(marks), "losses": res.train_losses, "peak_rss_growth": mem.growth}


def _steady_state(marks: list[tuple[float, int]]) -> dict:
    """Tokens and seconds from the end of step 1 to the end of the last step: no warm-up, no final save."""
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return {"tokens": n1 - n0, "seconds": t1 - t0}


def _lora_on(model: Path, dtype: str):
    """The baselines' model: the tiny Llama with LoRA r=8 on every linear layer, seeded like ours."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(str(model), dtype=getattr(torch, dtype))
    return get_peft_model(
        base,
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )


def _loss_log():
    """(losses, (time, real tokens seen) marks, the callback that fills both at every logged step)."""
    from transformers import TrainerCallback

    losses: list[float] = []
    marks: list[tuple[float, int]] = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                marks.append((time.monotonic(), int(state.num_input_tokens_seen)))

    return losses, marks, Losses()


def _training_args(out: Path, steps: int, batch: int) -> dict:
    """The settings every baseline shares with ours: same steps, batch, rate, schedule, optimizer and seeds."""
    return dict(
        output_dir=str(out), per_device_train_batch_size=batch, max_steps=steps, learning_rate=1e-3,
        lr_scheduler_type="linear", optim="adamw_torch", seed=1, data_seed=1, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )  # fmt: skip


def run_baseline(
    model: Path, data: Path, out: Path, steps: int, batch: int, threads: int, dtype: str
) -> dict:
    """HF Trainer + peft LoRA, padded to the longest in the batch: the naive recipe."""
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from tuneport.local_backend.training.chat_data import load_sft_examples

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(model))
    examples = load_sft_examples(data, tok, 2048).examples
    dataset = [
        {"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e)} for e in examples
    ]
    real_tokens = {"n": 0, "padded": 0}
    pad_collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)

    def collate(features):
        batch_ = pad_collator(features)
        real_tokens["n"] += int(batch_["attention_mask"].sum())
        real_tokens["padded"] += int(batch_["attention_mask"].numel())
        return batch_

    losses, marks, callback = _loss_log()
    peft_model = _lora_on(model, dtype)
    args = TrainingArguments(**_training_args(out, steps, batch), remove_unused_columns=False)
    trainer = Trainer(
        model=peft_model, args=args, train_dataset=dataset, data_collator=collate, callbacks=[callback]
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    with PeakRSS() as mem:
        trainer.train()
    return {
        # Real (non-padding) tokens the Trainer fed the model (the collator's own count includes a prefetched batch).
        **_steady_state(marks),
        "losses": losses,
        "peak_rss_growth": mem.growth,
        "pad_efficiency": real_tokens["n"] / max(real_tokens["padded"], 1),
    }


def run_trl(
    model: Path,
    data: Path,
    out: Path,
    steps: int,
    batch: int,
    threads: int,
    dtype: str,
    *,
    packing: bool = False,
    max_length: int = 1024,
) -> dict:
    """TRL's SFTTrainer, padding-free (same examples per step) or packed (bfd) into rows of ``max_length``."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from tuneport.local_backend.training.chat_data import load_sft_examples

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(str(model))
    examples = load_sft_examples(data, tok, 2048).examples
    dataset = Dataset.from_list([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    losses, marks, callback = _loss_log()
    peft_model = _lora_on(model, dtype)
    args = SFTConfig(
        **_training_args(out, steps, batch),
        padding_free=True,
        packing=packing,
        packing_strategy="bfd",
        max_length=max_length if packing else None,
        shuffle_dataset=False,
    )
    trainer = SFTTrainer(
        model=peft_model, args=args, train_dataset=dataset, processing_class=tok, callbacks=[callback]
    )
    trainer.remove_callback(PrinterCallback)
    with PeakRSS() as mem:
        trainer.train()
    return {**_steady_state(marks), "losses": losses, "peak_rss_growth": mem.growth}


def _weight_matmuls(model: Path) -> list[tuple[int, int, bool]]:
    """(in, out, input gradient needed) of every frozen linear layer a LoRA step multiplies by."""
    config = json.loads((model / "config.json").read_text())
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or h // heads
    q, kv = heads * head_dim, config.get("num_key_value_heads", heads) * head_dim
    shapes = []
    for layer in range(layers):
        # The first block's q/k/v read frozen embeddings: no engine computes their input gradients.
        shapes += [(h, q, layer > 0), (h, kv, layer > 0), (h, kv, layer > 0), (q, h, True)]
        shapes += [(h, i, True), (h, i, True), (i, h, True)]
    return shapes


def weight_flops_per_token(model: Path) -> float:
    """A lower bound on the FLOPs one trained token costs in LoRA training: the frozen linear layers' forward
    (2 per weight) and input-gradient (2 per weight) products only. Attention's own products, the output head,
    the adapters and every elementwise op are left out, so the real figure is higher."""
    return sum(2 * n_in * n_out * (2 if grad else 1) for n_in, n_out, grad in _weight_matmuls(model))


def matmul_floor(model: Path, tokens: int, threads: int, dtype: str, repeats: int = 5) -> tuple[float, float]:
    """(seconds, FLOP/s) of the weight matmuls alone for one step of ``tokens`` tokens, at the step's own shapes
    (forward ``x @ W^T`` and input gradient ``g @ W`` per frozen linear), best of ``repeats``: a time no trainer
    of this model can beat on this machine, whatever it does about padding, attention or the loss."""
    import torch

    torch.set_num_threads(threads)
    kind = getattr(torch, dtype)
    work = []
    for n_in, n_out, grad in _weight_matmuls(model):
        x, w = torch.randn(tokens, n_in, dtype=kind), torch.randn(n_out, n_in, dtype=kind)
        work.append((x, w, torch.randn(tokens, n_out, dtype=kind) if grad else None))

    def step() -> None:
        for x, w, g in work:
            torch.mm(x, w.t())
            if g is not None:
                torch.mm(g, w)

    step()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best, tokens * weight_flops_per_token(model) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="default: the free cores")
    parser.add_argument("--no-trl", action="store_true", help="skip TRL's SFTTrainer")
    parser.add_argument("--trl-max-length", type=int, default=1024, help="row length of TRL's packed runs")
    args = parser.parse_args()

    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from tuneport.fixtures.tiny_model import build_tiny_model
    from tuneport.local_backend.training.machine import pick_num_threads

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    threads = args.threads or pick_num_threads(None)[0]
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    tiny = build_tiny_model(work / "tiny")
    model = build_model(tiny, work / "model-10m", args.dtype)
    import torch
    from transformers import AutoModelForCausalLM

    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(model)).parameters())
    tok = AutoTokenizer.from_pretrained(str(model))
    print(
        f"model: Llama {n_params / 1e6:.1f}M params ({args.dtype}), LoRA r=8 all-linear; batch {args.batch_size}, "
        f"{args.steps} steps per run, {args.rounds} rounds alternated; {threads} torch thread(s); "
        f"torch {torch.__version__}"
    )
    per_token = weight_flops_per_token(model)
    print(f"a trained token costs at least {per_token / 1e6:.1f} MFLOP of weight matmuls (forward and input gradients)")

    for name in ("longtail", "uniform"):
        data = work / f"{name}.jsonl"
        lengths = make_dataset(data, tok, args.examples, name, seed=11)
        print(
            f"\n== {name}: {len(lengths)} examples, tokens min {min(lengths)} / median "
            f"{statistics.median(lengths):.0f} / max {max(lengths)}"
        )
        runners = {"baseline": run_baseline, "ours": run_ours}
        if not args.no_trl:
            runners["trl-pf"] = run_trl
            runners["trl-pack"] = partial(run_trl, packing=True, max_length=args.trl_max_length)
        rows: dict[str, list[dict]] = {kind: [] for kind in runners}
        for r in range(args.rounds):
            for kind, fn in runners.items():
                res = fn(
                    model,
                    data,
                    work / f"out-{name}-{kind}-{r}",
                    args.steps,
                    args.batch_size,
                    threads,
                    args.dtype,
                )
                res["tps"] = res["tokens"] / res["seconds"]
                rows[kind].append(res)
                print(
                    f"  round {r + 1} {kind:8s}: {res['tps']:8.0f} real tokens/s  "
                    f"({res['tokens']} tokens in {res['seconds']:.2f} s), peak RSS +{res['peak_rss_growth'] / 1e6:.0f} MB"
                )
        med = {k: statistics.median(x["tps"] for x in v) for k, v in rows.items()}
        tokens_per_step = round(rows["ours"][0]["tokens"] / (args.steps - 1))  # real tokens of a step, on average
        mem = {k: statistics.median(x["peak_rss_growth"] for x in v) for k, v in rows.items()}
        pad_eff = statistics.median(x["pad_efficiency"] for x in rows["baseline"])
        diffs = [
            max(abs(a - b) for a, b in zip(o["losses"], b_["losses"], strict=True))
            for o, b_ in zip(rows["ours"], rows["baseline"], strict=True)
        ]
        print(f"  baseline pad efficiency (real / padded tokens): {pad_eff:.1%}")
        print(
            f"  median real tokens/s: baseline {med['baseline']:.0f}, ours {med['ours']:.0f} -> "
            f"ratio {med['ours'] / med['baseline']:.2f}x"
        )
        if not args.no_trl:
            trl_kind = max(("trl-pf", "trl-pack"), key=lambda k: med[k])
            target = 2 if name == "longtail" else 1
            print(
                f"  median real tokens/s: TRL padding-free {med['trl-pf']:.0f}, TRL packed (bfd, rows of "
                f"{args.trl_max_length}) {med['trl-pack']:.0f}; fastest TRL is {trl_kind} -> ours / TRL "
                f"{med['ours'] / med[trl_kind]:.2f}x (target >= {target}x); "
                f"TRL / baseline {med[trl_kind] / med['baseline']:.2f}x"
            )
            floor, rate = matmul_floor(model, tokens_per_step, threads, args.dtype)
            ceiling = tokens_per_step / floor
            print(
                f"  ceiling: the weight matmuls of one step ({tokens_per_step} tokens) alone take {floor * 1e3:.0f} ms "
                f"here ({rate / 1e9:.0f} GFLOP/s, best of 5), so no trainer passes {ceiling:,.0f} real tokens/s on "
                f"this data; ours reaches {med['ours'] / ceiling:.0%} of it, TRL {med[trl_kind] / ceiling:.0%}, and "
                f"{target}x TRL would be {target * med[trl_kind] / ceiling:.0%} of it"
            )
            trl_diffs = [
                max(abs(a - b) for a, b in zip(o["losses"], t["losses"], strict=True))
                for o, t in zip(rows["ours"], rows["trl-pf"], strict=True)
            ]
            print(
                f"  loss curves: TRL padding-free {[round(x, 4) for x in rows['trl-pf'][0]['losses']]}\n"
                f"               TRL packed       {[round(x, 4) for x in rows['trl-pack'][0]['losses']]} "
                "(more examples per step: not comparable step by step)\n"
                f"  max |loss difference| ours vs TRL padding-free per step: {max(trl_diffs):.2e}"
            )
        print(
            f"  median peak RSS growth: baseline {mem['baseline'] / 1e6:.0f} MB, ours {mem['ours'] / 1e6:.0f} MB "
            f"({mem['ours'] / max(mem['baseline'], 1):.2f}x)"
        )
        print(
            f"  loss curves: ours {[round(x, 4) for x in rows['ours'][0]['losses']]}\n"
            f"               base {[round(x, 4) for x in rows['baseline'][0]['losses']]}\n"
            f"  max |loss difference| per step: {max(diffs):.2e}"
        )


if __name__ == "__main__":
    main()
