"""A LoRA linear layer computed in one autograd node: the frozen base matmul, the adapter and its gradients.

peft runs a LoRA layer as three ``nn.Linear`` calls and an add (``base(x) + B(A(dropout(x))) * scale``): four
autograd nodes, a scaled copy of the adapter's output and an extra output-sized tensor per layer, and backward
matmuls in whatever layout autograd picks. For the small rank-``r`` products that layout matters: on CPU,
``(xa.T @ g).T`` is ~5x faster than ``g.T @ xa`` for the same ``B`` gradient. :class:`LoraLinearFunction` does
the same arithmetic (``y = x W^T + b + scale * (dropout(x) A^T) B^T``) with the adapter added in place and the
backward products in their fast layouts; it saves the same tensors peft's path does (the adapter's input and
``x A^T``), so memory does not grow.

:func:`fuse_lora_layers` switches a peft model's plain LoRA linears to :class:`FusedLoraLinear`, which takes the
fused path only where it is the same computation: one active adapter, not merged, not disabled (DPO's reference
pass disables the adapter), no DoRA or other variant, no LoRA bias, a plain frozen ``nn.Linear`` base (not a
4-bit QLoRA layer), no ``fan_in_fan_out``, one dtype and no autocast. Anything else goes through peft's own
``forward`` unchanged. The weights, ``state_dict`` and saved adapter are exactly peft's.
"""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear

__all__ = ["LoraLinearFunction", "FusedLoraLinear", "fuse_lora_layers"]


class LoraLinearFunction(torch.autograd.Function):
    """``x W^T + b + scale * (xd A^T) B^T`` where ``xd`` is ``x`` or its dropout; ``W`` and ``b`` are frozen."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        xd: torch.Tensor | None,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        xd2 = x2 if xd is None else xd.reshape(-1, shape[-1])
        y = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        xa = xd2 @ lora_a.t()
        y.addmm_(xa, lora_b.t(), alpha=scale)
        ctx.save_for_backward(xd2, xa, weight, lora_a, lora_b)
        ctx.scale = scale
        ctx.separate_dropout = xd is not None
        ctx.in_shape = shape
        return y.reshape(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        xd2, xa, weight, lora_a, lora_b = ctx.saved_tensors
        scale = ctx.scale
        shape = ctx.in_shape
        g2 = grad.reshape(-1, grad.shape[-1])
        need_x, need_xd, _, _, need_a, need_b, _ = ctx.needs_input_grad
        need_gb = need_a or need_x or need_xd
        # g @ B, in the layout that is fast for a skinny right-hand side
        gb = (lora_b.t() @ g2.t()).t() if need_gb else None
        grad_x = grad_xd = grad_a = grad_b = None
        if ctx.separate_dropout:
            if need_x:
                grad_x = (g2 @ weight).reshape(shape)
            if need_xd:
                grad_xd = (gb @ lora_a).mul_(scale).reshape(shape)
        elif need_x:
            grad_x = torch.addmm(g2 @ weight, gb, lora_a, alpha=scale).reshape(shape)
        if need_a:
            grad_a = (gb.t() @ xd2).mul_(scale)
        if need_b:
            grad_b = (xa.t() @ g2).t().mul_(scale)
        return grad_x, grad_xd, None, None, grad_a, grad_b, None


class FusedLoraLinear(PeftLoraLinear):
    """peft's LoRA ``Linear``, computed by :class:`LoraLinearFunction` wherever that is the same computation."""

    def _fused_adapter(self, x: torch.Tensor, args: tuple, kwargs: dict) -> str | None:
        if args or kwargs or self.disable_adapters or self.merged:
            return None
        active = [a for a in self.active_adapters if a in self.lora_A]
        if len(active) != 1:
            return None
        name = active[0]
        base = self.base_layer
        if type(base) is not torch.nn.Linear or self.fan_in_fan_out or name in self.lora_variant:
            return None
        if base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            return None
        a, b = self.lora_A[name], self.lora_B[name]
        if type(a) is not torch.nn.Linear or type(b) is not torch.nn.Linear or b.bias is not None:
            return None
        dtypes = {x.dtype, base.weight.dtype, a.weight.dtype, b.weight.dtype}
        if len(dtypes) != 1 or torch.is_autocast_enabled(x.device.type):
            return None
        return name

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = self._fused_adapter(x, args, kwargs)
        if name is None:
            return super().forward(x, *args, **kwargs)
        dropout = self.lora_dropout[name]
        xd = None
        if not isinstance(dropout, torch.nn.Identity) and not (
            isinstance(dropout, torch.nn.Dropout) and (dropout.p == 0 or not dropout.training)
        ):
            xd = dropout(x)
        base = self.base_layer
        return LoraLinearFunction.apply(
            x,
            xd,
            base.weight,
            base.bias,
            self.lora_A[name].weight,
            self.lora_B[name].weight,
            float(self.scaling[name]),
        )


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Switch every plain peft LoRA ``Linear`` in ``model`` to :class:`FusedLoraLinear`; how many were switched."""
    count = 0
    for module in model.modules():
        if type(module) is PeftLoraLinear:
            module.__class__ = FusedLoraLinear
            count += 1
    return count
