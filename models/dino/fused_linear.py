"""Linear layers through oneDNN's fused linear kernel when the CPU runs inference.

`nn.Linear` on the CPU is an `addmm` that first copies the bias into every row
of the output and then multiplies; the ReLU after it is one more pass over the
result. For the encoder's FFN ([tokens, 256] -> [tokens, 2048] -> [tokens, 256]
at ~20k tokens for an 800x1216 image) those extra passes cost about as much as
a third of the multiplication. oneDNN's `mkldnn::_linear_pointwise` (the kernel
PyTorch's own compiler uses on CPUs) adds the bias and applies the ReLU inside
the matrix multiplication, in float32 or in native bfloat16.

`linear(x, layer, activation)` takes that path only where it gives the same
result as `layer(x)` and nothing else is needed: CPU tensors, no gradient to
record, float32 or bfloat16 (autocast's bfloat16 included), not while exporting,
tracing or compiling (torch.compile: inductor fuses on its own), a build with oneDNN. Everywhere else it is `layer(x)` (+ activation).
`DINO_FUSED_LINEAR=0` turns the fused path off (for comparisons).
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from .ops._ext import is_exporting
from .utils import activation_fn

FUSABLE_ACTIVATIONS = ("relu",)  # applied inside the kernel; others run after it
_enabled = os.environ.get("DINO_FUSED_LINEAR", "1") != "0"


def set_enabled(enabled: bool) -> bool:
    """Turn the fused CPU path on or off for this process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


@functools.lru_cache(maxsize=None)
def _pointwise_kernel() -> Optional[Callable]:
    """oneDNN's fused linear, or None when this PyTorch build lacks it (or it fails to run)."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        kernel = torch.ops.mkldnn._linear_pointwise
        x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        if not torch.equal(kernel(x, w, b, "relu", [], ""), torch.full((2, 4), 3.0)):
            return None
    except (AttributeError, RuntimeError):
        return None
    return kernel


def _fused_dtype(x: Tensor, layer: nn.Linear) -> Optional[torch.dtype]:
    """The dtype the fused kernel would compute in for this call, or None when it must not run."""
    if not _enabled or x.device.type != "cpu" or layer.bias is None or layer.weight.dtype != torch.float32:
        return None
    if torch.compiler.is_compiling():  # torch.compile fuses by itself (and cannot trace the kernel probe)
        return None
    if torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad or layer.bias.requires_grad):
        return None
    if torch.is_autocast_enabled("cpu"):
        dtype = torch.get_autocast_dtype("cpu")
    else:
        dtype = x.dtype
    if dtype not in (torch.float32, torch.bfloat16) or is_exporting() or _pointwise_kernel() is None:
        return None
    return dtype


def linear(x: Tensor, layer: nn.Linear, activation: Optional[str] = None) -> Tensor:
    """`layer(x)` followed by the named activation ("relu", "gelu", ...; None: none). A ReLU
    runs inside oneDNN's kernel when the fused CPU path applies (module doc)."""
    after = activation_fn(activation) if activation is not None else None
    dtype = _fused_dtype(x, layer)
    if dtype is None:
        y = layer(x)
        return after(y) if after is not None else y
    fused = activation if activation in FUSABLE_ACTIVATIONS else "none"
    weight, bias = layer.weight, layer.bias
    if dtype != torch.float32:
        weight, bias = weight.to(dtype), bias.to(dtype)
    y = _pointwise_kernel()(x.to(dtype).contiguous(), weight, bias, fused, [], "")
    return after(y) if after is not None and fused == "none" else y
