"""The fused LoRA layer computes exactly what peft's LoRA layer computes: outputs, gradients, and the cases it
hands back to peft (disabled adapter, merged, DoRA, mixed adapter batches)."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from tuneport.local_backend.training.fused_lora import FusedLoraLinear, fuse_lora_layers  # noqa: E402


def _base(bias: bool = False):
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_bias=bias,
        mlp_bias=bias,
        use_cache=False,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg)


def _pair(*, dropout: float = 0.0, bias: bool = False, dtype=None, use_dora: bool = False):
    """The same LoRA model twice (B initialised non-zero so the adapter matters): peft's and fused."""
    model = _base(bias)
    if dtype is not None:
        model = model.to(dtype)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", use_dora=use_dora)
    model = get_peft_model(model, lora)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    fused = copy.deepcopy(model)
    switched = fuse_lora_layers(fused)
    assert switched == 14  # q k v o gate up down, two layers
    return model, fused


def _loss_and_grads(model, ids, seed=3):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads


@pytest.mark.parametrize(
    "kw",
    [{}, {"dropout": 0.3}, {"bias": True}],
    ids=["plain", "dropout", "base-bias"],
)
def test_same_logits_and_gradients_as_peft(kw) -> None:
    ref, fused = _pair(**kw)
    ref.train()
    fused.train()
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(1))
    logits_ref, grads_ref = _loss_and_grads(ref, ids)
    logits_fused, grads_fused = _loss_and_grads(fused, ids)
    assert torch.allclose(logits_fused, logits_ref, atol=1e-6)
    assert grads_fused.keys() == grads_ref.keys()
    assert len(grads_ref) == 28  # every lora_A and lora_B, nothing frozen
    for name, g in grads_ref.items():
        assert torch.allclose(grads_fused[name], g, atol=1e-6, rtol=1e-5), name


def test_bfloat16_matches_peft_to_bf16_precision() -> None:
    ref, fused = _pair(dtype=torch.bfloat16)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    logits_ref, grads_ref = _loss_and_grads(ref, ids)
    logits_fused, grads_fused = _loss_and_grads(fused, ids)
    assert logits_fused.dtype == torch.bfloat16
    assert (logits_fused.float() - logits_ref.float()).abs().max() < 0.05
    for name, g in grads_ref.items():
        assert (grads_fused[name].float() - g.float()).abs().max() <= 0.02 * g.float().abs().max() + 1e-3, name


def test_disabled_adapter_gives_the_base_model() -> None:
    """DPO's reference pass runs with the adapter disabled: that must be the base model, not base + adapter."""
    _, fused = _pair()
    fused.eval()
    ids = torch.randint(0, 97, (1, 8), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        with_adapter = fused(input_ids=ids).logits
        with fused.disable_adapter():
            without = fused(input_ids=ids).logits
        base = fused.get_base_model()
        # the base model's own layers, computed without any LoRA module
        plain = copy.deepcopy(base)
        for _, module in list(plain.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, FusedLoraLinear):
                    setattr(module, child_name, child.base_layer)
        expected = plain(input_ids=ids).logits
    assert torch.allclose(without, expected, atol=1e-6)
    assert not torch.allclose(with_adapter, without, atol=1e-4)


def test_merged_and_dora_layers_fall_back_to_peft() -> None:
    ref, fused = _pair(use_dora=True)
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(5))
    logits_ref, grads_ref = _loss_and_grads(ref, ids)
    logits_fused, grads_fused = _loss_and_grads(fused, ids)
    assert torch.allclose(logits_fused, logits_ref, atol=1e-6)
    for name, g in grads_ref.items():
        assert torch.allclose(grads_fused[name], g, atol=1e-6), name

    ref, fused = _pair()
    fused.eval()
    ref.eval()
    with torch.no_grad():
        before = fused(input_ids=ids).logits
        fused.merge_adapter()
        merged = fused(input_ids=ids).logits
        fused.unmerge_adapter()
        after = fused(input_ids=ids).logits
        expected = ref(input_ids=ids).logits
    assert torch.allclose(before, expected, atol=1e-6)
    assert torch.allclose(merged, expected, atol=1e-5)
    assert torch.allclose(after, expected, atol=1e-5)


def test_the_saved_adapter_is_peft_s(tmp_path) -> None:
    """A fused model saves the same adapter files, and plain peft loads them to the same outputs."""
    from peft import PeftModel

    ref, fused = _pair()
    fused.save_pretrained(str(tmp_path / "adapter"))
    keys_ref = set(ref.state_dict())
    assert set(fused.state_dict()) == keys_ref
    loaded = PeftModel.from_pretrained(_base(), str(tmp_path / "adapter"))
    assert not any(isinstance(m, FusedLoraLinear) for m in loaded.modules())
    ids = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, fused(input_ids=ids).logits, atol=1e-6)
