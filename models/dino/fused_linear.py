"""Linear layers through oneDNN on the CPU: fused inference, and training where the BLAS is slow.

Inference. `nn.Linear` on the CPU is an `addmm` that first copies the bias into
every row of the output and then multiplies; the ReLU after it is one more pass
over the result. For the encoder's FFN ([tokens, 256] -> [tokens, 2048] ->
[tokens, 256] at ~20k tokens for an 800x1216 image) those extra passes cost
about as much as a third of the multiplication. oneDNN's
`mkldnn::_linear_pointwise` (the kernel PyTorch's own compiler uses on CPUs)
adds the bias and applies the ReLU inside the matrix multiplication, in float32
or in native bfloat16. Taken only where it gives the same result as `layer(x)`
and nothing else is needed: CPU tensors, no gradient to record, float32 or
bfloat16 (autocast's bfloat16 included), not while exporting, tracing or
compiling (torch.compile: inductor fuses on its own), a build with oneDNN.

Training. PyTorch multiplies float32 matrices with MKL, which on a CPU that is
not Intel's runs a generic code path: on an AVX-512 AMD EPYC (Zen 5) it reached
~110 GMAC/s where oneDNN's kernel reaches ~250 for the transformer's shapes.
There, `linear` runs forward and backward of float32 layers that record a
gradient through oneDNN as well (`_OneDnnLinear`: the same three products
autograd would compute, plus bias sum and ReLU mask). On Intel CPUs, whose MKL
is PyTorch's tuned default, training keeps `nn.Linear`.

`DINO_FUSED_LINEAR=0` turns both paths off (for comparisons), `=train` takes
the training path on any x86 CPU with MKL (to measure it on an Intel one).
Everywhere else `linear` is `layer(x)` (+ activation).
"""
from __future__ import annotations

import functools
import os
import platform
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from util.precision import cpuinfo_field

from .ops._ext import is_exporting

ACTIVATIONS = {"relu": torch.nn.functional.relu, "gelu": torch.nn.functional.gelu, "glu": torch.nn.functional.glu,
               "selu": torch.nn.functional.selu}
FUSABLE_ACTIVATIONS = ("relu",)  # applied inside the kernel; others run after it
_setting = os.environ.get("DINO_FUSED_LINEAR", "1").strip().lower()
_enabled = _setting != "0"
_training_override: Optional[bool] = True if _setting == "train" else None  # None: decided by the CPU


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    """The activation function called `name` (a config's `transformer_activation`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"transformer_activation={name!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def set_enabled(enabled: bool) -> bool:
    """Turn the fused CPU path on or off for this process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    training_path.cache_clear()
    return previous


def set_training_path(on: Optional[bool]) -> Optional[bool]:
    """Force float32 training through oneDNN on (True) or off (False), or let the CPU decide (None);
    returns the previous override."""
    global _training_override
    previous, _training_override = _training_override, on
    training_path.cache_clear()
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


@functools.lru_cache(maxsize=None)
def training_path() -> Tuple[bool, str]:
    """Whether float32 training runs its linear layers through oneDNN on this CPU, and why (for the log)."""
    if not _enabled:
        return False, "nn.Linear (DINO_FUSED_LINEAR=0)"
    if _pointwise_kernel() is None:
        return False, "nn.Linear (this PyTorch build lacks oneDNN's linear)"
    vendor = cpuinfo_field("vendor_id") or "unidentified"
    if _training_override is not None:
        how = "oneDNN" if _training_override else "nn.Linear"
        return _training_override, f"{how} (set by DINO_FUSED_LINEAR or set_training_path; {vendor} CPU)"
    if not torch.backends.mkl.is_available() or platform.machine().lower() not in ("x86_64", "amd64"):
        return False, f"nn.Linear (no MKL on this {platform.machine()} build)"
    if vendor in ("unidentified", "GenuineIntel"):
        return False, f"nn.Linear (MKL, PyTorch's tuned default on this {vendor} CPU)"
    return True, f"oneDNN (MKL runs a generic code path on this {vendor} CPU)"


def _trains_through_onednn(x: Tensor, layer: nn.Linear) -> bool:
    """True where `linear` should record a gradient through `_OneDnnLinear` (module doc)."""
    if torch.compiler.is_compiling() or is_exporting():  # inductor and export see nn.Linear
        return False
    if x.device.type != "cpu" or x.dtype != torch.float32 or layer.weight.dtype != torch.float32:
        return False
    if x.numel() == 0 or torch.is_autocast_enabled("cpu"):  # oneDNN has no empty products
        return False
    if not torch.is_grad_enabled() or not (x.requires_grad or layer.weight.requires_grad):
        return False
    return training_path()[0]


class _OneDnnLinear(torch.autograd.Function):
    """y = act(x @ W^T + b) with forward and backward products through oneDNN; act is ReLU or none.

    Saves what autograd saves for `nn.Linear` + ReLU (input, weight, the ReLU's
    output). The weight gradient is a product of two tall matrices,
    x^T (in x N) and g (N x out); oneDNN wants the left one contiguous, so the
    narrower of the two is the one transposed into a copy.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], relu: bool) -> Tensor:
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        y = _pointwise_kernel()(rows, weight, bias, "relu" if relu else "none", [], "")
        ctx.relu, ctx.input_shape, ctx.has_bias = relu, x.shape, bias is not None
        ctx.save_for_backward(rows, weight, y if relu else None)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        rows, weight, y = ctx.saved_tensors
        kernel = _pointwise_kernel()
        g = grad_out.reshape(-1, weight.shape[0])
        g = torch.ops.aten.threshold_backward(g, y, 0) if ctx.relu else g.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = kernel(g, weight.t(), None, "none", [], "").view(ctx.input_shape)
        if ctx.needs_input_grad[1]:
            if rows.shape[1] <= g.shape[1]:  # (x^T g)^T with x^T copied
                grad_w = kernel(rows.t().contiguous(), g.t(), None, "none", [], "").t().contiguous()
            else:  # g^T x with g^T copied
                grad_w = kernel(g.t().contiguous(), rows.t(), None, "none", [], "")
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None


def linear(x: Tensor, layer: nn.Linear, activation: Optional[str] = None) -> Tensor:
    """`layer(x)` followed by the named activation ("relu", "gelu", ...; None: none). A ReLU
    runs inside oneDNN's kernel when the fused CPU path applies (module doc)."""
    after = activation_fn(activation) if activation is not None else None
    is_linear = isinstance(layer, nn.Linear)  # (a head may be replaced by another module)
    if is_linear and _trains_through_onednn(x, layer):
        relu = activation in FUSABLE_ACTIVATIONS
        y = _OneDnnLinear.apply(x, layer.weight, layer.bias, relu)
        return after(y) if after is not None and not relu else y
    dtype = _fused_dtype(x, layer) if is_linear else None
    if dtype is None:
        y = layer(x)
        return after(y) if after is not None else y
    fused = activation if activation in FUSABLE_ACTIVATIONS else "none"
    weight, bias = layer.weight, layer.bias
    if dtype != torch.float32:
        weight, bias = weight.to(dtype), bias.to(dtype)
    y = _pointwise_kernel()(x.to(dtype).contiguous(), weight, bias, fused, [], "")
    return after(y) if after is not None and fused == "none" else y
