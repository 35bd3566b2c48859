"""Attention per example inside a padding-free row, for machines without a variable-length kernel (CPUs).

transformers makes packed rows exact with an L x L block-diagonal mask, so a row of 8 examples of 100 tokens pays
attention over 800 x 800 positions instead of 8 x 100 x 100: on uniform-length data padding-free batching became
slower than padding. Running causal SDPA on each example's slice of the row is exact and costs what padding would
have, without the padding. Registered under :data:`NAME` in transformers' ``AttentionInterface`` (and the SDPA mask
builder under the same name); anything that is not a packed single row (padded batches, a KV cache, one example)
goes to the stock SDPA path unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NAME", "register", "use_segmented_attention"]

NAME = "tuneport_segmented_sdpa"
_registered = False


def _segmented_sdpa(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if (
        position_ids is not None
        and kwargs.get("softcap") is None  # SDPA cannot cap attention logits (Gemma 2): keep the stock path
        and query.shape[0] == 1
        and query.shape[2] == key.shape[2]
        and query.shape[2] > 1
    ):
        positions = position_ids[0]
        breaks = torch.nonzero(torch.diff(positions) != 1).flatten()
        if breaks.numel() > 0:
            bounds = [0, *(breaks + 1).tolist(), positions.shape[0]]
            gqa = key.shape[1] != query.shape[1]
            # A sliding-window layer (Gemma 3, Mistral v0.1, Qwen2 with use_sliding_window) sees only the last
            # ``window`` positions, itself included: the same band transformers' own mask builds.
            window = kwargs.get("sliding_window")
            # split, not slices: the backward of a split is one concatenation, where each slice's backward
            # writes its gradient into a zeroed full-row tensor
            lengths = [e - s for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
            outs = []
            for n, q, k, v in zip(
                lengths, query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2), strict=True
            ):
                band = None
                if window and n > window:
                    i = torch.arange(n, device=query.device)
                    band = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)
                outs.append(
                    torch.nn.functional.scaled_dot_product_attention(
                        q,
                        k,
                        v,
                        attn_mask=band,
                        dropout_p=dropout if module.training else 0.0,
                        is_causal=band is None,
                        scale=scaling,
                        enable_gqa=gqa,
                    )
                )
            return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=dropout,
        scaling=scaling,
        is_causal=is_causal,
        **kwargs,
    )


def register() -> None:
    """Make :data:`NAME` a valid ``attn_implementation`` (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, _segmented_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    _registered = True


def use_segmented_attention(model: Any) -> bool:
    """Switch a model that uses SDPA or eager attention to per-example attention; False if it can't be switched."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    register()
    try:
        model.set_attn_implementation(NAME)
    except Exception:  # a model class that rejects custom attention: keep its own (masked) path
        return False
    return getattr(model.config, "_attn_implementation", None) == NAME
