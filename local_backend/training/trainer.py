"""The local trainer: transformers' ``Trainer`` + peft, with our data rendering, batching and events.

What it adds to HF ``Trainer`` (which already gives the optimizer, scheduler, gradient accumulation,
checkpoint/resume with RNG and data position):

- data rendered by the model's own chat template with the loss on trained assistant tokens only (chat_data);
- padding-free batches that are exact (collate), verified on the real model before use (model_setup);
- token-weighted validation loss and token accuracy over the whole validation file at each epoch (hf_trainer);
- OpenAI-shaped events and checkpoint objects through ``on_event``, a ``should_stop`` hook for cancel/pause
  (checkpoint first, then stop), early stopping (callbacks), start-up checks that fail with a clear error before
  any work (machine, model_setup);
- exports vLLM can serve (export), merging what it cannot.

Entry point: :func:`train`. It runs in the calling process and returns a :class:`TrainResult`; this module holds
the order of the phases (data, model, trainer, loop, outputs), each phase lives in the module named after it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneport.errors import SpecError
from tuneport.local_backend.training import machine, model_setup
from tuneport.local_backend.training.callbacks import (
    CHECKPOINTS_DIR,
    RunState,
    make_callback,
    relative_checkpoint,
)
from tuneport.local_backend.training.checkpoints import checkpoint_problem
from tuneport.local_backend.training.events import EventSink
from tuneport.local_backend.training.hf_trainer import (
    ListDataset,
    make_trainer_class,
    printer_callback_cls,
    training_arguments,
)
from tuneport.local_backend.training.train_config import TrainConfig

__all__ = ["TrainResult", "train", "RESULT_FILE"]

RESULT_FILE = "result.json"


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
    returns with ``cancelled=True`` (resume later with ``resume_from=<that checkpoint>``). Bad input -- a
    checkpoint that does not load included -- fails before any training with :class:`SpecError` or
    :class:`DataError`.
    """
    started = time.monotonic()
    config.validate()
    model_setup.quiet_transformers()
    run = RunState(config, on_event or (lambda _e: None), should_stop)
    if resume_from is not None:
        _check_resume_point(Path(resume_from), config)
    device = machine.resolve_device(config)
    threads, why = machine.pick_num_threads(config.num_threads)
    if why:
        run.emit(why, level="warn")
    with machine.torch_threads(threads):
        result = _train(config, run, device, threads, resume_from)
    result.seconds = time.monotonic() - started
    if int(os.environ.get("RANK", "0")) != 0:
        return result
    (Path(config.output_dir) / RESULT_FILE).write_text(
        json.dumps({**result.to_dict(), "config": config.to_dict()}, indent=2), "utf-8"
    )
    return result


def _check_resume_point(resume_from: Path, config: TrainConfig) -> None:
    problem = checkpoint_problem(resume_from)
    if problem is not None:
        raise SpecError(
            f"cannot resume from {resume_from}: {problem}",
            hint=f"Pass another of the checkpoint-N folders under {Path(config.output_dir) / CHECKPOINTS_DIR}.",
        )


def _train(config: TrainConfig, run: RunState, device: str, threads: int, resume_from: Any) -> TrainResult:
    from transformers import set_seed

    dtype = machine.torch_dtype(config, device)
    tokenizer = model_setup.load_tokenizer(config)
    train_data, val_data = _load_data(config, tokenizer, run)

    set_seed(config.seed)
    model = model_setup.load_model(config, dtype, device)
    if config.uses_lora:
        model_setup.check_target_modules(model, config)
    packing, segmented = model_setup.choose_packing(model, config, train_data.examples, device, run.emit)
    total_steps = _total_steps(len(train_data.examples), config)
    if config.uses_lora:
        model = model_setup.wrap_lora(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _check_disk(config, model, trainable, total_steps)

    out = Path(config.output_dir)
    trainer = _build_trainer(
        config, run, model, tokenizer, train_data, val_data, packing, total_steps, device
    )
    run.emit(
        f"Fine-tuning {config.finetuning_type} ({config.method}) on {device} with {threads} thread(s), "
        f"{('padding-free packed' + (' (per-example attention)' if segmented else '')) if packing else 'padded'} "
        f"batches of {config.batch_size}, dtype {str(dtype).removeprefix('torch.')}, "
        f"{trainable:,} trainable parameters"
    )
    loop_started = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    state = trainer.state
    result = TrainResult(
        output_dir=str(out),
        method=config.method,
        finetuning_type=config.finetuning_type,
        checkpoints=run.checkpoints,
        trained_tokens=int(state.num_input_tokens_seen),
        train_seconds=time.monotonic() - loop_started,
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
        saved = _last_saved(trainer)
        where = relative_checkpoint(saved) if saved is not None else CHECKPOINTS_DIR
        run.emit(f"Stopped at step {state.global_step}; resume from {where}")
        return result
    if (
        trainer.is_world_process_zero()
    ):  # in a multi-process run only rank 0 writes (others would race on files)
        _save_outputs(config, trainer, tokenizer, run, result, out, device)
    _end_distributed()
    return result


def _load_data(config: TrainConfig, tokenizer: Any, run: RunState) -> tuple[Any, Any]:
    """The rendered training and validation examples, with a warning for every cut or skipped line."""
    from tuneport.local_backend.training.chat_data import load_preference_examples, load_sft_examples
    from tuneport.local_backend.training.stop_tokens import system_role_note

    loader = load_preference_examples if config.method == "dpo" else load_sft_examples
    train_data = loader(config.training_file, tokenizer, config.max_seq_length)
    val_data = (
        loader(config.validation_file, tokenizer, config.max_seq_length) if config.validation_file else None
    )
    for data in (train_data, val_data):
        if data is None:
            continue
        name = Path(data.path).name
        if data.truncated_lines:
            run.emit(
                f"{len(data.truncated_lines)} example(s) of {name} were cut to max_seq_length="
                f"{config.max_seq_length} (lines {_lines(data.truncated_lines)})",
                level="warn",
            )
        if data.skipped_lines:
            run.emit(
                f"{len(data.skipped_lines)} example(s) of {name} have no token to learn and were skipped "
                f"(lines {_lines(data.skipped_lines)})",
                level="warn",
            )
    with_system = train_data.system_lines + (val_data.system_lines if val_data else [])
    note = system_role_note(tokenizer) if with_system else None
    if note:
        run.emit(f"{len(with_system)} example(s) have a system message and {note}")
    run.emit(
        f"Loaded {len(train_data.examples)} training example(s) ({train_data.n_tokens} tokens)"
        + (f" and {len(val_data.examples)} validation example(s)" if val_data else "")
    )
    return train_data, val_data


def _lines(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:10])) + (", ..." if len(numbers) > 10 else "")


def _total_steps(n_examples: int, config: TrainConfig) -> int:
    per_epoch = math.ceil(math.ceil(n_examples / config.batch_size) / config.gradient_accumulation_steps)
    steps = per_epoch * config.n_epochs
    return min(steps, config.max_steps) if config.max_steps else steps


def _check_disk(config: TrainConfig, model: Any, trainable: int, total_steps: int) -> None:
    will_merge = config.save_merged or config.finetuning_type == "dora" or bool(config.modules_to_save)
    n_ckpts = config.keep_checkpoints or (
        config.n_epochs + (total_steps // config.save_steps if config.save_steps else 0)
    )
    model_bytes = machine.dir_bytes(Path(config.model))
    machine.check_disk(
        config, machine.estimate_output_bytes(config, model_bytes, trainable, n_ckpts, will_merge)
    )


def _build_trainer(
    config: TrainConfig,
    run: RunState,
    model: Any,
    tokenizer: Any,
    train_data: Any,
    val_data: Any,
    packing: bool,
    total_steps: int,
    device: str,
) -> Any:
    """The Trainer (SFT or DPO) with its collator, arguments and our callback; checkpoints under output_dir."""
    from tuneport.local_backend.training.collate import PackedCollator, PaddingCollator, PreferenceCollator

    if config.method == "dpo":
        collator = PreferenceCollator(packed=packing, pad_token_id=tokenizer.pad_token_id)
    else:
        collator = PackedCollator() if packing else PaddingCollator(tokenizer.pad_token_id)
    checkpoints_dir = Path(config.output_dir) / CHECKPOINTS_DIR
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": training_arguments(
            config, checkpoints_dir, total_steps, device, has_validation=bool(val_data)
        ),
        "train_dataset": ListDataset(train_data.examples),
        "eval_dataset": ListDataset(val_data.examples) if val_data else None,
        "data_collator": collator,
        "processing_class": tokenizer,
        "callbacks": [make_callback(run)],
        "eval_collator": collator,
    }
    if config.method == "dpo":
        from tuneport.local_backend.training.dpo import make_dpo_trainer_class

        trainer_cls = make_dpo_trainer_class()
        kwargs["beta"] = config.dpo_beta
        kwargs["ref_model"] = None if config.uses_lora else model_setup.frozen_copy(model)
    else:
        trainer_cls = make_trainer_class()
    trainer = trainer_cls(**kwargs)
    trainer.remove_callback(printer_callback_cls())
    model_setup.disable_cache(trainer.model)
    return trainer


def _last_saved(trainer: Any) -> int | None:
    """The step of the newest checkpoint folder the trainer wrote in this run, if any."""
    folder = Path(trainer.args.output_dir)
    step = trainer.state.global_step
    return step if (folder / f"checkpoint-{step}").is_dir() else None


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
    run: RunState,
    result: TrainResult,
    out: Path,
    device: str,
) -> None:
    """Write the adapter (and a merged model where vLLM needs one) or the full model; say what to serve."""
    import torch

    from tuneport.local_backend.training.export import (
        read_adapter_config,
        save_adapter,
        save_full_model,
        save_merged,
        unservable_reasons,
    )

    model = trainer.model
    model.eval()
    if config.uses_lora:
        result.adapter_dir = str(save_adapter(model, out / "adapter", config.model))
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
    written = [f"{Path(p).name}/" for p in (result.adapter_dir, result.merged_dir, result.model_dir) if p]
    state = trainer.state
    run.emit(
        f"Training finished: {state.global_step} steps, {result.trained_tokens} tokens; outputs: {', '.join(written)}",
        data={"step": state.global_step, "total_steps": state.max_steps, **result.final_metrics},
    )


def _final_metrics(trainer: Any, run: RunState, val_data: Any) -> dict[str, Any]:
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
