"""Python side of the ``dino::ms_deform_attn`` operators: fake kernels and autograd.

The compiled extension defines the two operators with their schemas and registers
their CPU (and, if built, CUDA) kernels with PyTorch's dispatcher
(``src/ms_deform_attn_op.cpp``)::

    dino::ms_deform_attn(value, spatial_shapes, level_start_index, sampling_loc,
                         attn_weight) -> output
    dino::ms_deform_attn_backward(value, spatial_shapes, level_start_index, sampling_loc,
                                  attn_weight, grad_output)
        -> (grad_value, grad_sampling_loc, grad_attn_weight)

:func:`register` (called by ``_ext.get_extension`` right after the shared object is
loaded) adds what makes them usable by PyTorch's own stack:

* a fake kernel for each (``torch.library.register_fake``): output shapes, dtypes and
  devices from the inputs' metadata, without reading any data, so FakeTensorMode,
  ``torch.compile`` (dynamo, AOTAutograd, inductor) and ``torch.export`` trace the op as one
  node, on any device (a fake CUDA tensor needs no GPU);
* the derivative of the forward (``torch.library.register_autograd``), which calls the
  backward operator, so that the backward is itself one traceable operator node.

The fake kernels repeat the kernels' checks of ranks, sizes, dtypes and devices (not the
check of ``spatial_shapes``' values against ``value``, which needs data), so a wrong
shape fails while tracing as it would when running.
"""
from typing import Tuple

import torch
from torch import Tensor

OP = "dino::ms_deform_attn"
OP_BACKWARD = "dino::ms_deform_attn_backward"

_registered = False


def _check_inputs(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_loc: Tensor,
                  attn_weight: Tensor) -> None:
    """The checks of src/ms_deform_attn_checks.h that need no data (sizes may be symbolic)."""
    torch._check(value.dim() == 4, lambda: f"value must be (N, S, M, D), got {tuple(value.shape)}")
    torch._check(sampling_loc.dim() == 6 and sampling_loc.shape[5] == 2,
                 lambda: f"sampling_loc must be (N, Lq, M, L, P, 2), got {tuple(sampling_loc.shape)}")
    torch._check(attn_weight.dim() == 5, lambda: f"attn_weight must be (N, Lq, M, L, P), got {tuple(attn_weight.shape)}")
    torch._check(spatial_shapes.dim() == 2 and spatial_shapes.shape[1] == 2,
                 lambda: f"spatial_shapes must be (L, 2), got {tuple(spatial_shapes.shape)}")
    torch._check(level_start_index.dim() == 1 and level_start_index.shape[0] == spatial_shapes.shape[0],
                 lambda: f"level_start_index must be (L,), got {tuple(level_start_index.shape)}")
    N, _, M, _ = value.shape
    torch._check(sampling_loc.shape[0] == N and sampling_loc.shape[2] == M
                 and sampling_loc.shape[3] == spatial_shapes.shape[0],
                 lambda: f"sampling_loc {tuple(sampling_loc.shape)} does not match value {tuple(value.shape)} "
                         f"and {spatial_shapes.shape[0]} levels")
    for i in range(5):
        torch._check(attn_weight.shape[i] == sampling_loc.shape[i],
                     lambda: f"attn_weight {tuple(attn_weight.shape)} does not match sampling_loc "
                             f"{tuple(sampling_loc.shape)}")
    torch._check(value.dtype in (torch.float32, torch.float64),
                 lambda: f"value must be float32 or float64, got {value.dtype}")
    torch._check(sampling_loc.dtype == value.dtype and attn_weight.dtype == value.dtype,
                 lambda: f"value, sampling_loc and attn_weight must have the same dtype, got {value.dtype}, "
                         f"{sampling_loc.dtype}, {attn_weight.dtype}")
    torch._check(spatial_shapes.dtype == torch.int64 and level_start_index.dtype == torch.int64,
                 lambda: "spatial_shapes and level_start_index must be int64")
    torch._check(all(t.device == value.device for t in (sampling_loc, attn_weight, spatial_shapes,
                                                        level_start_index)),
                 lambda: f"all tensors must be on the same device as value ({value.device})")


def _fake_forward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_loc: Tensor,
                  attn_weight: Tensor) -> Tensor:
    _check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight)
    N, _, M, D = value.shape
    return value.new_empty((N, sampling_loc.shape[1], M * D))


def _fake_backward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_loc: Tensor,
                   attn_weight: Tensor, grad_output: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    _check_inputs(value, spatial_shapes, level_start_index, sampling_loc, attn_weight)
    N, _, M, D = value.shape
    torch._check(grad_output.dim() == 3 and grad_output.shape[0] == N and grad_output.shape[1] == sampling_loc.shape[1]
                 and grad_output.shape[2] == M * D,
                 lambda: f"grad_output must be (N, Lq, M * D), got {tuple(grad_output.shape)}")
    torch._check(grad_output.dtype == value.dtype and grad_output.device == value.device,
                 lambda: f"grad_output must have value's dtype ({value.dtype}) and device ({value.device}), got "
                         f"{grad_output.dtype} on {grad_output.device}")
    # the kernels return new contiguous tensors
    return (value.new_empty(value.shape), sampling_loc.new_empty(sampling_loc.shape),
            attn_weight.new_empty(attn_weight.shape))


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output: Tensor):
    value, spatial_shapes, level_start_index, sampling_loc, attn_weight = ctx.saved_tensors
    grad_value, grad_loc, grad_attn = torch.ops.dino.ms_deform_attn_backward(
        value, spatial_shapes, level_start_index, sampling_loc, attn_weight, grad_output)
    return grad_value, None, None, grad_loc, grad_attn


def register() -> None:
    """Add the fake kernels and the autograd formula to the operators the loaded extension
    defined. Once per process; a no-op afterwards."""
    global _registered
    if _registered:
        return
    torch.library.register_fake(OP, _fake_forward)
    torch.library.register_fake(OP_BACKWARD, _fake_backward)
    torch.library.register_autograd(OP, _backward, setup_context=_setup_context)
    _registered = True


def has_kernel(device_type: str) -> bool:
    """True if the dispatcher has a kernel of the forward operator for ``device_type``
    ("cpu", "cuda"), i.e. the loaded extension registered one."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    if key is None or not hasattr(torch.ops, "dino") or not hasattr(torch.ops.dino, "ms_deform_attn"):
        return False
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(OP, key))
