"""The trainer's loss from the labelled positions' logits only: the same loss, gradients and token accuracy as
transformers' causal-LM loss over every position, and the fallback for models that can't keep only some logits."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments  # noqa: E402

from tuneport.local_backend.training.hf_trainer import (  # noqa: E402
    labelled_positions,
    make_trainer_class,
    token_accuracy,
)


def _model():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=101,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_cache=False,
    )
    return LlamaForCausalLM(cfg)


def _batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 101, (3, 12), generator=g)
    labels = ids.clone()
    labels[0, :7] = -100  # a prompt, then the answer
    labels[1, :3] = -100
    labels[1, 9:] = -100  # padding at the end
    labels[2, :11] = -100  # only the last token
    return {"input_ids": ids, "labels": labels}


def _trainer(tmp_path, model):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", disable_tqdm=True)
    return make_trainer_class()(model=model, args=args)


def test_labelled_positions_are_those_predicting_a_labelled_token() -> None:
    batch = _batch()
    keep = labelled_positions(_model(), batch["labels"])
    # row 0 labels 7..11 -> positions 6..10; row 1 labels 3..8 -> 2..7; row 2 label 11 -> 10
    assert keep.tolist() == list(range(2, 11))
    assert labelled_positions(_model(), torch.full((2, 5), -100)) is None


@pytest.mark.parametrize("num_items", [None, 13], ids=["mean", "sum-over-accumulated-tokens"])
def test_same_loss_gradients_and_accuracy_as_the_full_logits(tmp_path, num_items) -> None:
    batch = _batch()
    model = _model()
    n = None if num_items is None else torch.tensor(num_items)
    kwargs = {} if n is None else {"num_items_in_batch": n}
    full = model(**batch, **kwargs)
    full.loss.backward()
    expected_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    expected_acc = token_accuracy(full.logits, batch["labels"])
    model.zero_grad()

    trainer = _trainer(tmp_path, model)
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True, num_items_in_batch=n)
    assert outputs.logits.shape[1] == 9  # only the kept positions went through the head
    assert loss.item() == pytest.approx(full.loss.item(), abs=1e-6)
    loss.backward()
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, expected_grads[k], atol=1e-6), k
    assert (trainer._acc_correct, trainer._acc_total) == expected_acc
    assert expected_acc[1] == 5 + 6 + 1


class _NoKeep(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep``: the trainer must use the full logits."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids=None, labels=None, **kwargs):
        return self.inner(input_ids=input_ids, labels=labels, **kwargs)


def test_models_without_logits_to_keep_use_the_full_logits(tmp_path) -> None:
    batch = _batch()
    wrapped = _NoKeep(_model())
    assert labelled_positions(wrapped, batch["labels"]) is None
    trainer = _trainer(tmp_path, wrapped)
    loss, outputs = trainer.compute_loss(wrapped, batch, return_outputs=True)
    assert outputs.logits.shape[1] == 12
    assert loss.item() == pytest.approx(wrapped(**batch).loss.item(), abs=1e-6)
