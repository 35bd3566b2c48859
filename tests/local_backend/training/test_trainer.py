"""The trainer end to end on tiny-chat: determinism, exact padding-free batches, resume, events, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneport.errors import SpecError
from tuneport.local_backend.training.machine import pick_num_threads
from tuneport.local_backend.training.train_config import VLLM_LORA_RANKS, TrainConfig
from tuneport.local_backend.training.trainer import train


def _config(tiny_model: Path, small_data: dict[str, Path], out: Path, **kw) -> TrainConfig:
    base = dict(
        model=tiny_model,
        training_file=small_data["train"],
        validation_file=small_data["val"],
        output_dir=out,
        n_epochs=2,
        batch_size=4,
        learning_rate=2e-3,
        seed=7,
        num_threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def reference_run(tiny_model, small_data, tmp_path_factory):
    """One uninterrupted 2-epoch packed run with validation (6 steps), with every event it emitted."""
    events: list[dict] = []
    out = tmp_path_factory.mktemp("ref")
    result = train(_config(tiny_model, small_data, out), on_event=events.append)
    return result, events, out


def test_run_is_seeded_and_deterministic(reference_run, tiny_model, small_data, tmp_path) -> None:
    ref, _, _ = reference_run
    again = train(_config(tiny_model, small_data, tmp_path / "again"))
    assert len(ref.train_losses) == 6
    assert again.train_losses == ref.train_losses  # bit-identical on CPU
    assert ref.train_losses[-1] < ref.train_losses[0]  # it learns


def test_padding_free_batches_give_the_padded_loss_curve(
    reference_run, tiny_model, small_data, tmp_path
) -> None:
    ref, _, _ = reference_run
    assert ref.packing is True  # "auto" verified the model and packed
    padded = train(_config(tiny_model, small_data, tmp_path / "padded", packing=False))
    assert padded.packing is False
    assert padded.train_losses == pytest.approx(ref.train_losses, abs=1e-5)
    # Padding costs compute, not tokens: both count only real tokens.
    assert padded.trained_tokens == ref.trained_tokens


def test_events_and_checkpoints_are_openai_shaped(reference_run) -> None:
    result, events, out = reference_run
    kinds = {e["object"] for e in events}
    assert kinds == {"fine_tuning.job.event", "fine_tuning.job.checkpoint"}
    metrics = [e for e in events if e["object"] == "fine_tuning.job.event" and e["type"] == "metrics"]
    steps = [e["data"] for e in metrics if "train_loss" in e["data"] and "valid_loss" not in e["data"]]
    assert [d["step"] for d in steps[:6]] == [1, 2, 3, 4, 5, 6]
    assert all(d["total_steps"] == 6 and 0.0 <= d["train_mean_token_accuracy"] <= 1.0 for d in steps[:6])
    for e in events:
        if e["object"] == "fine_tuning.job.checkpoint":
            continue
        assert (
            e["level"] in ("info", "warn", "error") and isinstance(e["message"], str) and e["created_at"] > 0
        )

    ckpts = [e for e in events if e["object"] == "fine_tuning.job.checkpoint"]
    assert [c["step_number"] for c in ckpts] == [3, 6]  # one per epoch
    assert result.checkpoints == ckpts
    for c in ckpts:
        m = c["metrics"]
        assert set(m) == {
            "step",
            "train_loss",
            "train_mean_token_accuracy",
            "valid_loss",
            "valid_mean_token_accuracy",
            "full_valid_loss",
            "full_valid_mean_token_accuracy",
        }
        assert Path(c["path"]).is_dir() and (Path(c["path"]) / "optimizer.pt").is_file()
    assert ckpts[1]["metrics"]["full_valid_loss"] < ckpts[0]["metrics"]["full_valid_loss"]

    assert result.final_metrics["full_valid_loss"] == ckpts[-1]["metrics"]["full_valid_loss"]
    assert result.trained_tokens > 0 and result.seconds > 0 and result.steps == 6
    assert result.serve_as == "adapter" and (Path(result.adapter_dir) / "adapter_model.safetensors").is_file()
    saved = json.loads((out / "result.json").read_text())
    assert saved["train_losses"] == result.train_losses and saved["config"]["lora_r"] == 8


def test_stop_then_resume_matches_uninterrupted_run(reference_run, tiny_model, small_data, tmp_path) -> None:
    """Cancel after 4 steps (mid second epoch, packed), resume from the checkpoint: same losses, same adapter."""
    from safetensors.torch import load_file

    ref, _, _ = reference_run
    steps = iter(range(1, 100))
    cfg = _config(tiny_model, small_data, tmp_path / "run")
    first = train(cfg, should_stop=lambda: next(steps) >= 4)
    assert first.cancelled and first.steps == 4 and first.adapter_dir is None
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-4"
    assert (checkpoint / "rng_state.pth").is_file() and (checkpoint / "scheduler.pt").is_file()

    resumed = train(cfg, resume_from=checkpoint)
    assert resumed.steps == 6 and not resumed.cancelled
    assert first.train_losses == pytest.approx(ref.train_losses[:4], abs=1e-6)
    assert resumed.train_losses == pytest.approx(ref.train_losses[4:], abs=1e-6)
    a = load_file(str(Path(ref.adapter_dir) / "adapter_model.safetensors"))
    b = load_file(str(Path(resumed.adapter_dir) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] - b[k]).abs().max().item() < 1e-6 for k in a)


def test_step_checkpoints_when_asked(tiny_model, small_data, tmp_path) -> None:
    res = train(
        _config(tiny_model, small_data, tmp_path / "o", validation_file=None, n_epochs=1, save_steps=2)
    )
    names = sorted(p.name for p in (tmp_path / "o" / "checkpoints").iterdir())
    assert names == ["checkpoint-2", "checkpoint-3"]  # every 2 steps, plus the epoch end
    assert [c["step_number"] for c in res.checkpoints] == [3]  # only epochs become job checkpoints


def test_gradient_checkpointing_gives_same_losses(reference_run, tiny_model, small_data, tmp_path) -> None:
    ref, _, _ = reference_run
    res = train(_config(tiny_model, small_data, tmp_path / "gc", gradient_checkpointing=True, max_steps=2))
    assert res.train_losses == pytest.approx(ref.train_losses[:2], abs=1e-5)


def test_early_stopping(tiny_model, small_data, tmp_path) -> None:
    events: list[dict] = []
    res = train(
        _config(
            tiny_model,
            small_data,
            tmp_path / "es",
            n_epochs=4,
            learning_rate=1e-9,
            early_stopping_patience=1,
            early_stopping_min_delta=0.01,
        ),
        on_event=events.append,
    )
    assert res.stopped_early and res.steps == 6  # epoch 2 did not improve on epoch 1 by 0.01
    assert any("Early stopping" in e.get("message", "") for e in events)
    assert res.adapter_dir is not None


# --- bad input fails before training, saying what and where -------------------------------------------------


def test_missing_model_path(small_data, tmp_path) -> None:
    with pytest.raises(SpecError, match=r"`model`: model folder .*nowhere does not exist"):
        train(_config(tmp_path / "nowhere", small_data, tmp_path / "o"))


def test_unservable_rank_names_allowed_ranks(tiny_model, small_data, tmp_path) -> None:
    with pytest.raises(
        SpecError, match=r"`lora_r`: rank 7 .*allowed ranks: 1, 8, 16, 32, 64, 128, 256, 320, 512"
    ):
        train(_config(tiny_model, small_data, tmp_path / "o", lora_r=7))
    assert 7 not in VLLM_LORA_RANKS


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("learning_rate", 0.0, r"`learning_rate`: must be in \(0.0, 1.0\]"),
        ("learning_rate", float("nan"), r"`learning_rate`: must be a finite number"),
        ("n_epochs", 0, r"`n_epochs`: must be between 1 and 1000"),
        ("batch_size", 2.5, r"`batch_size`: must be an integer"),
        ("warmup_ratio", 1.5, r"`warmup_ratio`: must be in \[0.0, 1.0\]"),
        ("packing", "yes", r"`packing`"),
        ("lr_scheduler", "wobbly", r"`lr_scheduler`: 'wobbly' is not one of"),
    ],
)
def test_out_of_range_hyperparameters(tiny_model, small_data, tmp_path, field, value, pattern) -> None:
    with pytest.raises(SpecError, match=pattern):
        train(_config(tiny_model, small_data, tmp_path / "o", **{field: value}))


def test_unknown_target_modules_lists_what_the_model_has(tiny_model, small_data, tmp_path) -> None:
    with pytest.raises(
        SpecError, match=r"no module named c_attn; its linear layers are: down_proj, gate_proj, k_proj"
    ):
        train(_config(tiny_model, small_data, tmp_path / "o", target_modules=["q_proj", "c_attn"]))


def test_qlora_on_cpu_is_refused(tiny_model, small_data, tmp_path) -> None:
    with pytest.raises(SpecError, match="qlora .* needs a CUDA GPU"):
        train(_config(tiny_model, small_data, tmp_path / "o", finetuning_type="qlora", device="cpu"))


def test_tokenizer_without_chat_template(tiny_model, small_data, tmp_path) -> None:
    model = tmp_path / "no-template"
    shutil.copytree(tiny_model, model)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    for extra in model.glob("chat_template.*"):
        extra.unlink()
    with pytest.raises(SpecError, match="has no chat template"):
        train(_config(model, small_data, tmp_path / "o"))


def test_not_enough_disk_space(tiny_model, small_data, tmp_path, monkeypatch) -> None:
    import shutil as shutil_mod
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil_mod, "disk_usage", lambda _p: usage(10**9, 10**9, 1000))
    with pytest.raises(SpecError, match=r"not enough disk space for the outputs in .*GB needed"):
        train(_config(tiny_model, small_data, tmp_path / "o", finetuning_type="full"))
    assert not (tmp_path / "o" / "checkpoints").exists() or not any(
        (tmp_path / "o" / "checkpoints").iterdir()
    )


def test_threads_never_exceed_the_cores() -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    n, why = pick_num_threads(cores + 5)
    assert n == cores and "exceeds" in why
    n, why = pick_num_threads(None)
    assert 1 <= n <= cores and why is None
