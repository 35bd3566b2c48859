"""The local trainer: transformers' ``Trainer`` + peft, with our data rendering, batching and events.

What this module adds to HF ``Trainer`` (which already gives the optimizer, scheduler, gradient accumulation,
checkpoint/resume with RNG and data position):

- data rendered by the model's own chat template with the loss on trained assistant tokens only (chat_data);
- padding-free batches that are exact (collate), after turning the model's KV cache off -- without that,
  transformers silently lets packed examples attend to each other -- and a check on the real model before use;
- token-weighted validation loss and token accuracy over the whole validation file at each epoch;
- OpenAI-shaped events and checkpoint objects through ``on_event``, a ``should_stop`` hook for cancel/pause
  (checkpoint first, then stop), early stopping, start-up checks that fail with a clear error before any work;
- exports vLLM can serve (export), merging what it cannot.

Entry point: :func:`train`. It runs in the calling process and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError
from tuneport.local_backend.training.events import EventSink, checkpoint_object, job_event
from tuneport.local_backend.training.train_config import TrainConfig

__all__ = [
    "TrainResult",
    "train",
    "disable_cache",
    "packing_is_exact",
    "pick_num_threads",
    "linear_module_names",
    "estimate_output_bytes",
]

RESULT_FILE = "result.json"
CHECKPOINTS_DIR = "checkpoints"


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced. ``serve_path`` is the folder to serve: adapter or model."""

    output_dir: str
    method: str
    finetuning_type: str
    adapter_dir: str | None = None
    merged_dir: str | None = None
    model_dir: str | None = None
    serve_path: str | None = None
    serve_as: str | None = None  # "adapter" (base + adapter) or "model" (a self-contained folder)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    final_metrics: dict[str, Any] = field(default_factory=dict)
    trained_tokens: int = 0
    steps: int = 0
    total_steps: int = 0
    epochs_completed: float = 0.0
    seconds: float = 0.0
    train_seconds: float = 0.0  # inside the training loop only (no loading, no export)
    packing: bool = False
    num_threads: int | None = None
    device: str = "cpu"
    cancelled: bool = False
    stopped_early: bool = False
    unservable_reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Machine and model checks


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _busy_cores(sample_s: float = 0.25) -> float | None:
    """Cores other processes keep busy, from two /proc/stat samples (we sleep in between, so it's not us)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            parts = [int(x) for x in fh.readline().split()[1:]]
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts), idle

    try:
        total1, idle1 = read()
        time.sleep(sample_s)
        total2, idle2 = read()
    except (OSError, ValueError, IndexError):
        return None
    if total2 <= total1:
        return None
    busy_share = 1.0 - (idle2 - idle1) / (total2 - total1)
    ncpu = os.cpu_count() or 1  # /proc/stat covers every online core
    return busy_share * ncpu


def pick_num_threads(requested: int | None = None) -> tuple[int, str | None]:
    """Torch threads for this run and, when it had to differ from the request, why.

    More threads than free cores is disastrous on these machines (one busy core made a run 27x slower), so the
    default is the number of cores nobody else is using, and a request above the core count is capped.
    """
    cores = _cpu_count()
    if requested is not None:
        if requested > cores:
            return cores, f"num_threads {requested} exceeds the {cores} cores available; using {cores}"
        return requested, None
    busy = _busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except OSError:  # pragma: no cover
            busy = 0.0
    free = max(1, min(cores, int(cores - busy + 0.5)))
    return free, None


def linear_module_names(model: Any) -> list[str]:
    """Distinct last names of the linear layers LoRA could target (the output head excluded)."""
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in (
            "Conv1D",
            "Linear4bit",
            "Linear8bitLt",
        ):
            last = name.rsplit(".", 1)[-1]
            if last not in ("lm_head", "score", "classifier"):
                names.add(last)
    return sorted(names)


def _check_target_modules(model: Any, config: TrainConfig) -> None:
    if isinstance(config.target_modules, str):
        return
    all_names = [name for name, _ in model.named_modules()]
    available = linear_module_names(model)
    missing = [t for t in config.target_modules if not any(n == t or n.endswith("." + t) for n in all_names)]
    if missing:
        raise SpecError(
            f"local training option `target_modules`: the model {config.model} has no module named "
            f"{', '.join(missing)}; its linear layers are: {', '.join(available)}",
            hint='Pick from those names, or use "all-linear".',
        )


def _dir_bytes(path: Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "*.pt")) -> int:
    total = 0
    for pattern in patterns:
        total += sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())
    return total


def estimate_output_bytes(
    config: TrainConfig, model_bytes: int, trainable_params: int, n_checkpoints: int, merge: bool
) -> int:
    """Disk the run will write: checkpoints (weights + Adam's two moments) and the final outputs."""
    if config.uses_lora:
        per_checkpoint = trainable_params * (4 + 8)
        final = trainable_params * 4 + (model_bytes if merge else 0)
    else:
        per_checkpoint = model_bytes + trainable_params * 8
        final = model_bytes
    return per_checkpoint * n_checkpoints + final


def _check_disk(config: TrainConfig, needed: int) -> None:
    out = Path(config.output_dir)
    probe = out
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    margin = int(needed * 1.1) + (16 << 20)
    if free < margin:
        raise SpecError(
            f"not enough disk space for the outputs in {out}: about {margin / 1e9:.2f} GB needed "
            f"(checkpoints and final model), {free / 1e9:.2f} GB free",
            hint="Free some space, choose another output_dir, keep fewer checkpoints (keep_checkpoints), "
            "or train LoRA instead of full fine-tuning.",
        )


def disable_cache(model: Any) -> None:
    """Turn the KV cache off on a model (and a peft wrapper's base) before training it.

    With ``use_cache=True`` transformers creates a cache in ``forward`` and then skips the block-diagonal mask
    it would build from restarting ``position_ids``: packed examples silently attend to each other.
    """
    seen = set()
    m = model
    while m is not None and id(m) not in seen:
        seen.add(id(m))
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "use_cache"):
            cfg.use_cache = False
        m = getattr(m, "base_model", None) if getattr(m, "base_model", None) is not m else None
        if m is None:
            break
        inner = getattr(m, "model", None)
        if inner is not None and getattr(inner, "config", None) is not None:
            inner.config.use_cache = False


def packing_is_exact(model: Any, examples: list[Any], atol: float | None = None) -> tuple[bool, float]:
    """Whether a padding-free row gives each example the same log-probabilities as running it alone.

    Run on the real model before packing is used: a model whose attention ignores restarting positions (or a
    cache left on) would otherwise train on cross-contaminated examples without any error.
    """
    import torch

    from tuneport.local_backend.training.collate import PackedCollator

    sample = sorted(examples, key=len)[:3]
    if len(sample) < 2:
        return True, 0.0
    sample = [s if not hasattr(s, "chosen") else s.chosen for s in sample]
    param = next(model.parameters())
    if atol is None:
        atol = 1e-3 if param.dtype == torch.float32 else 0.15
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = PackedCollator()(sample)
            packed = (
                model(
                    input_ids=batch["input_ids"].to(param.device),
                    position_ids=batch["position_ids"].to(param.device),
                )
                .logits[0]
                .float()
                .log_softmax(-1)
            )
            worst = 0.0
            offset = 0
            for example in sample:
                ids = torch.tensor([example.input_ids], device=param.device)
                alone = model(input_ids=ids).logits[0].float().log_softmax(-1)
                diff = (packed[offset : offset + len(example)] - alone).abs().max().item()
                worst = max(worst, diff)
                offset += len(example)
    finally:
        model.train(was_training)
    return worst <= atol, worst


# ---------------------------------------------------------------------------------------------------------------
# Trainer subclass and callback


class _ListDataset:
    """A torch-style map dataset over rendered examples (HF Trainer only needs __len__ and __getitem__)."""

    def __init__(self, examples: list[Any]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.examples[i]


def _make_trainer_class():
    """Build the Trainer subclass lazily so importing this module never imports transformers."""
    import torch
    from transformers import Trainer

    class TuneportTrainer(Trainer):
        """HF Trainer + token accuracy in the step logs + exact token-weighted evaluation over the full file."""

        def __init__(self, *args: Any, eval_collator: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._acc_correct = 0
            self._acc_total = 0
            self._eval_collator = eval_collator
            self.tuneport_extra_logs: dict[str, float] = {}

        # -- training metrics
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            with torch.no_grad():
                correct, total = _token_accuracy(outputs.logits, inputs["labels"])
            self._acc_correct += correct
            self._acc_total += total
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
            if "loss" in logs and self._acc_total:
                logs["train_mean_token_accuracy"] = self._acc_correct / self._acc_total
                self._acc_correct = self._acc_total = 0
            super().log(logs, start_time)

        # -- evaluation over the whole validation file, token-weighted
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):  # noqa: D102
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
            metrics = self.full_evaluation(dataset, metric_key_prefix)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

        def full_evaluation(self, dataset: Any, prefix: str = "eval") -> dict[str, float]:
            model = self.model
            was_training = model.training
            model.eval()
            loss_sum = 0.0
            correct = total = 0
            device = self.args.device
            bs = self.args.per_device_eval_batch_size
            try:
                with torch.no_grad():
                    for i in range(0, len(dataset), bs):
                        batch = self._eval_collator([dataset[j] for j in range(i, min(i + bs, len(dataset)))])
                        batch = {k: v.to(device) for k, v in batch.items()}
                        labels = batch.pop("labels")
                        logits = model(**batch).logits.float()
                        shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
                        shift_labels = labels[:, 1:].reshape(-1)
                        loss_sum += torch.nn.functional.cross_entropy(
                            shift_logits, shift_labels, ignore_index=-100, reduction="sum"
                        ).item()
                        c, t = _token_accuracy(logits, labels)
                        correct += c
                        total += t
            finally:
                model.train(was_training)
            return {
                f"{prefix}_loss": loss_sum / max(total, 1),
                f"{prefix}_mean_token_accuracy": correct / max(total, 1),
            }

    return TuneportTrainer


def _token_accuracy(logits: Any, labels: Any) -> tuple[int, int]:
    """Next-token accuracy over labelled positions (shifted like the loss)."""
    preds = logits[..., :-1, :].argmax(-1)
    targets = labels[..., 1:]
    mask = targets != -100
    return int((preds[mask] == targets[mask]).sum().item()), int(mask.sum().item())


def _make_callback(run: _Run):
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Turns HF Trainer hooks into OpenAI-shaped events; handles cancel and early stopping."""

        def __init__(self) -> None:
            self.last_train: dict[str, float] = {}
            self.last_eval: dict[str, float] = {}
            self.epoch_end_pending = False
            self.best: float | None = None
            self.bad_evals = 0
            self.last_saved_step = -1
            self.announced: set[int] = set()

        def on_train_begin(self, args, state, control, **kwargs):
            run.emit(
                f"Training started: {state.max_steps} steps over {run.config.n_epochs} epoch(s)",
                data={"total_steps": state.max_steps, "resumed_from_step": state.global_step or None},
            )

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.last_train = {
                    "train_loss": float(logs["loss"]),
                    "train_mean_token_accuracy": logs.get("train_mean_token_accuracy"),
                }
                run.train_losses.append(float(logs["loss"]))
                data = {
                    "step": state.global_step,
                    "total_steps": state.max_steps,
                    "train_loss": float(logs["loss"]),
                    "train_mean_token_accuracy": logs.get("train_mean_token_accuracy"),
                    "learning_rate": logs.get("learning_rate"),
                    "epoch": round(state.epoch or 0.0, 4),
                    "trained_tokens": int(state.num_input_tokens_seen),
                }
                for k, v in logs.items():
                    if k.startswith("rewards/") or k.startswith("dpo/"):
                        data[k] = v
                run.emit(
                    f"Step {state.global_step}/{state.max_steps}: training loss={logs['loss']:.4f}", data=data
                )

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics = metrics or {}
            if "eval_loss" not in metrics:
                return
            self.last_eval = {
                "valid_loss": metrics["eval_loss"],
                "valid_mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
                "full_valid_loss": metrics["eval_loss"],
                "full_valid_mean_token_accuracy": metrics.get("eval_mean_token_accuracy"),
            }
            run.emit(
                f"Step {state.global_step}/{state.max_steps}: validation loss={metrics['eval_loss']:.4f}",
                data={
                    "step": state.global_step,
                    "total_steps": state.max_steps,
                    **self.last_train,
                    **self.last_eval,
                },
            )
            if self.epoch_end_pending and self.last_saved_step == state.global_step:
                self._announce(args, state)
            patience = run.config.early_stopping_patience
            if patience is not None:
                if (
                    self.best is None
                    or metrics["eval_loss"] < self.best - run.config.early_stopping_min_delta
                ):
                    self.best = metrics["eval_loss"]
                    self.bad_evals = 0
                else:
                    self.bad_evals += 1
                    if self.bad_evals >= patience:
                        run.stopped_early = True
                        control.should_training_stop = True
                        control.should_save = True
                        run.emit(
                            f"Early stopping: validation loss has not improved for {patience} evaluation(s) "
                            f"(best {self.best:.4f})"
                        )

        def on_epoch_end(self, args, state, control, **kwargs):
            # Every epoch ends with a checkpoint, whatever the step-based policy is. If this step was saved
            # already (a step checkpoint, or a stop request), the job checkpoint is announced once its epoch-end
            # evaluation is known rather than saving the same folder twice.
            self.epoch_end_pending = True
            if self.last_saved_step != state.global_step:
                control.should_save = True
            elif args.eval_strategy == "no" or run.config.validation_file is None:
                self._announce(args, state)

        def on_step_end(self, args, state, control, **kwargs):
            if run.should_stop is not None and run.should_stop():
                run.cancelled = True
                control.should_save = True
                control.should_training_stop = True
                run.emit("Stop requested: saving a checkpoint, then stopping")

        def on_save(self, args, state, control, **kwargs):
            self.last_saved_step = state.global_step
            run.emit(f"Checkpoint saved at step {state.global_step}: {self._path(args, state)}")
            if self.epoch_end_pending:
                self._announce(args, state)

        def _path(self, args, state) -> str:
            return os.path.join(args.output_dir, f"checkpoint-{state.global_step}")

        def _announce(self, args, state) -> None:
            self.epoch_end_pending = False
            if state.global_step in self.announced:
                return
            self.announced.add(state.global_step)
            ckpt = checkpoint_object(
                state.global_step,
                {**self.last_train, **self.last_eval},
                self._path(args, state),
                round(state.epoch or 0.0, 4),
            )
            run.checkpoints.append(ckpt)
            run.on_event(ckpt)

    return EventCallback()


@dataclass
class _Run:
    config: TrainConfig
    on_event: EventSink
    should_stop: Callable[[], bool] | None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    cancelled: bool = False
    stopped_early: bool = False

    def emit(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        if level == "warn":
            self.warnings.append(message)
        self.on_event(job_event(message, level=level, data=data))


# ---------------------------------------------------------------------------------------------------------------
# Entry point


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _resolve_device(config: TrainConfig) -> str:
    import torch

    has_cuda = torch.cuda.is_available()
    if config.finetuning_type == "qlora":
        if not has_cuda or config.device == "cpu":
            raise SpecError(
                "local training option `finetuning_type`: qlora (4-bit base weights) needs a CUDA GPU; "
                "this machine has none"
                if not has_cuda
                else "qlora cannot run with device: cpu",
                hint="Use finetuning_type: lora on CPU (same adapter format, full-precision base).",
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise SpecError(
                "local training option `finetuning_type`: qlora needs the bitsandbytes package",
                hint="pip install bitsandbytes",
            ) from exc
    if config.device == "cuda" and not has_cuda:
        raise SpecError("local training option `device`: cuda was asked for but no CUDA GPU is available")
    return "cuda" if has_cuda and config.device in ("auto", "cuda") else "cpu"


def _torch_dtype(config: TrainConfig, device: str) -> Any:
    import torch

    if config.dtype == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32  # exact and deterministic on CPU; pick bfloat16 explicitly for speed
    if config.dtype == "float16" and device == "cpu":
        raise SpecError(
            "local training option `dtype`: float16 training is not supported on CPU; use bfloat16"
        )
    return getattr(torch, config.dtype)


def _load_tokenizer(config: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    from tuneport.local_backend.training.chat_data import check_chat_template

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(config.model))
    except Exception as exc:
        raise SpecError(
            f"local training option `model`: cannot load a tokenizer from {config.model}: {exc}",
            hint="The model folder needs tokenizer files (tokenizer.json / tokenizer_config.json).",
        ) from exc
    check_chat_template(tokenizer, config.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_model(config: TrainConfig, dtype: Any, device: str) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if config.finetuning_type == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(config.model), **kwargs)
    except Exception as exc:
        raise SpecError(f"local training option `model`: cannot load {config.model}: {exc}") from exc
    disable_cache(model)
    return model


def _wrap_lora(model: Any, config: TrainConfig) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.finetuning_type == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules
        if isinstance(config.target_modules, str)
        else list(config.target_modules),
        modules_to_save=list(config.modules_to_save) or None,
        use_dora=config.finetuning_type == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    disable_cache(peft_model)
    return peft_model


def _total_steps(n_examples: int, config: TrainConfig) -> int:
    per_epoch = math.ceil(math.ceil(n_examples / config.batch_size) / config.gradient_accumulation_steps)
    steps = per_epoch * config.n_epochs
    return min(steps, config.max_steps) if config.max_steps else steps


def train(
    config: TrainConfig,
    *,
    on_event: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.training_file``; return where the outputs are and how it went.

    ``on_event`` receives ``fine_tuning.job.event`` and ``fine_tuning.job.checkpoint`` dicts as they happen.
    ``should_stop`` is polled after every optimizer step; when it returns True the run saves a checkpoint and
    returns with ``cancelled=True`` (resume later with ``resume_from=<that checkpoint>``). Bad input fails before
    any training with :class:`SpecError` or :class:`DataError`.
    """
    started = time.monotonic()
    config.validate()
    _quiet_transformers()
    run = _Run(config, on_event or (lambda _e: None), should_stop)
    if resume_from is not None and not (Path(resume_from) / "trainer_state.json").is_file():
        raise SpecError(
            f"cannot resume from {resume_from}: it is not a checkpoint folder (no trainer_state.json)",
            hint=f"Pass one of the checkpoint-N folders under {Path(config.output_dir) / CHECKPOINTS_DIR}.",
        )
    device = _resolve_device(config)
    threads, why = pick_num_threads(config.num_threads)
    if why:
        run.emit(why, level="warn")
    with _torch_threads(threads):
        result = _train(config, run, device, threads, resume_from)
    result.seconds = time.monotonic() - started
    out = Path(config.output_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return result
    (out / RESULT_FILE).write_text(
        json.dumps({**result.to_dict(), "config": config.to_dict()}, indent=2), "utf-8"
    )
    return result


def _train(config: TrainConfig, run: _Run, device: str, threads: int, resume_from: Any) -> TrainResult:
    from transformers import TrainingArguments, set_seed

    from tuneport.local_backend.training.chat_data import load_preference_examples, load_sft_examples
    from tuneport.local_backend.training.collate import PackedCollator, PaddingCollator, PreferenceCollator

    dtype = _torch_dtype(config, device)
    tokenizer = _load_tokenizer(config)

    loader = load_preference_examples if config.method == "dpo" else load_sft_examples
    train_data = loader(config.training_file, tokenizer, config.max_seq_length)
    val_data = (
        loader(config.validation_file, tokenizer, config.max_seq_length) if config.validation_file else None
    )
    for data in (train_data, val_data):
        if data is None:
            continue
        if data.truncated_lines:
            run.emit(
                f"{len(data.truncated_lines)} example(s) of {data.path} were cut to max_seq_length="
                f"{config.max_seq_length} (lines {', '.join(map(str, data.truncated_lines[:10]))}"
                f"{', ...' if len(data.truncated_lines) > 10 else ''})",
                level="warn",
            )
        if data.skipped_lines:
            run.emit(
                f"{len(data.skipped_lines)} example(s) of {data.path} have no token to learn and were skipped "
                f"(lines {', '.join(map(str, data.skipped_lines[:10]))}{', ...' if len(data.skipped_lines) > 10 else ''})",
                level="warn",
            )
    run.emit(
        f"Loaded {len(train_data.examples)} training example(s) ({train_data.n_tokens} tokens)"
        + (f" and {len(val_data.examples)} validation example(s)" if val_data else "")
    )

    set_seed(config.seed)
    model = _load_model(config, dtype, device)
    if config.uses_lora:
        _check_target_modules(model, config)

    # Packing: verified on the real model before it is trusted.
    packing = config.packing is not False
    segmented = False
    if packing:
        from tuneport.local_backend.training.segmented_attention import use_segmented_attention

        model.to(device)
        segmented = use_segmented_attention(model)
        exact, worst = packing_is_exact(model, train_data.examples)
        if not exact and segmented:
            model.set_attn_implementation("sdpa")
            segmented = False
            exact, worst = packing_is_exact(model, train_data.examples)
        if not exact:
            if config.packing is True:
                raise SpecError(
                    f"local training option `packing`: packed examples of {config.model} do not get the same "
                    f"outputs as unpacked ones (max log-prob difference {worst:.3g}): this model's attention does "
                    "not separate examples by position ids",
                    hint='Set packing: false (or "auto", which falls back to padding).',
                )
            run.emit(
                f"Packing turned off: {config.model} does not separate packed examples (difference {worst:.3g}); "
                "batches are padded instead"
            )
            packing = False

    n_examples = len(train_data.examples)
    total_steps = _total_steps(n_examples, config)

    if config.uses_lora:
        model = _wrap_lora(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    will_merge = config.save_merged or config.finetuning_type == "dora" or bool(config.modules_to_save)
    n_ckpts = config.keep_checkpoints or (
        config.n_epochs + (total_steps // config.save_steps if config.save_steps else 0)
    )
    _check_disk(
        config, estimate_output_bytes(config, _dir_bytes(Path(config.model)), trainable, n_ckpts, will_merge)
    )

    if config.method == "dpo":
        collator = PreferenceCollator(packed=packing, pad_token_id=tokenizer.pad_token_id)
    else:
        collator = PackedCollator() if packing else PaddingCollator(tokenizer.pad_token_id)

    out = Path(config.output_dir)
    ckpt_dir = out / CHECKPOINTS_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    warmup = math.ceil(total_steps * config.warmup_ratio) if config.warmup_ratio else 0
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.n_epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=warmup,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        optim="adamw_torch",
        seed=config.seed,
        data_seed=config.seed,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="epoch" if val_data else "no",
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=config.keep_checkpoints,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        ddp_find_unused_parameters=False if config.uses_lora else None,
        disable_tqdm=True,
        use_cache=False,
    )

    trainer_kwargs: dict[str, Any] = {
        "model": model,
        "args": args,
        "train_dataset": _ListDataset(train_data.examples),
        "eval_dataset": _ListDataset(val_data.examples) if val_data else None,
        "data_collator": collator,
        "processing_class": tokenizer,
        "callbacks": [_make_callback(run)],
        "eval_collator": collator,
    }
    if config.method == "dpo":
        from tuneport.local_backend.training.dpo import make_dpo_trainer_class

        trainer_cls = make_dpo_trainer_class()
        trainer_kwargs["beta"] = config.dpo_beta
        trainer_kwargs["ref_model"] = None if config.uses_lora else _frozen_copy(model)
    else:
        trainer_cls = _make_trainer_class()
    trainer = trainer_cls(**trainer_kwargs)
    trainer.remove_callback(_printer_callback_cls())
    disable_cache(trainer.model)

    run.emit(
        f"Fine-tuning {config.finetuning_type} ({config.method}) on {device} with {threads} thread(s), "
        f"{('padding-free packed' + (' (per-example attention)' if segmented else '')) if packing else 'padded'} "
        f"batches of {config.batch_size}, dtype {str(dtype).removeprefix('torch.')}, "
        f"{trainable:,} trainable parameters"
    )
    loop_started = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    train_seconds = time.monotonic() - loop_started
    state = trainer.state

    result = TrainResult(
        output_dir=str(out),
        method=config.method,
        finetuning_type=config.finetuning_type,
        checkpoints=run.checkpoints,
        trained_tokens=int(state.num_input_tokens_seen),
        train_seconds=train_seconds,
        steps=state.global_step,
        total_steps=state.max_steps,
        epochs_completed=float(state.epoch or 0.0),
        packing=packing,
        num_threads=threads,
        device=device,
        cancelled=run.cancelled,
        stopped_early=run.stopped_early,
        warnings=run.warnings,
        train_losses=run.train_losses,
    )
    result.final_metrics = _final_metrics(trainer, run, val_data)

    if run.cancelled:
        run.emit(
            f"Stopped at step {state.global_step}; resume from {run.checkpoints[-1]['path'] if run.checkpoints else ckpt_dir}"
        )
        return result

    if (
        trainer.is_world_process_zero()
    ):  # in a multi-process run only rank 0 writes (others would race on files)
        _save_outputs(config, trainer, tokenizer, run, result, out, device, state)
    _end_distributed()
    return result


def _end_distributed() -> None:
    """Multi-process runs: every rank waits for rank 0's outputs, then the process group is torn down cleanly.

    A rank that exits while its process group is alive aborts ("terminate called without an active exception")
    and takes the whole run down with it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _save_outputs(
    config: TrainConfig,
    trainer: Any,
    tokenizer: Any,
    run: _Run,
    result: TrainResult,
    out: Path,
    device: str,
    state: Any,
) -> None:
    import torch

    from tuneport.local_backend.training.export import (
        save_adapter,
        save_full_model,
        save_merged,
        unservable_reasons,
    )

    model = trainer.model
    model.eval()
    if config.uses_lora:
        result.adapter_dir = str(save_adapter(model, out / "adapter", config.model))
        from tuneport.local_backend.training.export import read_adapter_config

        reasons = unservable_reasons(read_adapter_config(result.adapter_dir))
        result.unservable_reasons = reasons
        if reasons:
            run.emit(
                "vLLM cannot serve this adapter ("
                + "; ".join(reasons)
                + "): a merged model is written for serving",
                level="warn",
            )
        if config.save_merged or reasons:
            result.merged_dir = str(save_merged(model, tokenizer, out / "merged"))
        if reasons:
            result.serve_path, result.serve_as = result.merged_dir, "model"
        else:
            result.serve_path, result.serve_as = result.adapter_dir, "adapter"
    else:
        result.model_dir = str(save_full_model(model, tokenizer, out / "model"))
        result.serve_path, result.serve_as = result.model_dir, "model"
    if device == "cuda":
        result.final_metrics["peak_gpu_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    run.emit(
        f"Training finished: {state.global_step} steps, {result.trained_tokens} tokens; outputs in {out}",
        data={"step": state.global_step, "total_steps": state.max_steps, **result.final_metrics},
    )


def _quiet_transformers() -> None:
    """No progress bars or info logs on stderr: progress goes through events (the runner owns the output)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()


def _final_metrics(trainer: Any, run: _Run, val_data: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {"step": trainer.state.global_step}
    if run.train_losses:
        metrics["train_loss"] = run.train_losses[-1]
    for entry in reversed(trainer.state.log_history):
        if "train_mean_token_accuracy" in entry:
            metrics["train_mean_token_accuracy"] = entry["train_mean_token_accuracy"]
            break
    if val_data is not None:
        for entry in reversed(trainer.state.log_history):
            if "eval_loss" in entry:
                metrics["full_valid_loss"] = entry["eval_loss"]
                metrics["full_valid_mean_token_accuracy"] = entry.get("eval_mean_token_accuracy")
                metrics["valid_loss"] = entry["eval_loss"]
                metrics["valid_mean_token_accuracy"] = entry.get("eval_mean_token_accuracy")
                break
    return metrics


def _frozen_copy(model: Any) -> Any:
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _printer_callback_cls() -> Any:
    from transformers.trainer_callback import PrinterCallback

    return PrinterCallback
