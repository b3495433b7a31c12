"""Multi-scale deformable attention: autograd function around the compiled op,
the reference PyTorch implementation, and a dispatcher between the two.

Shapes (N batch, S = sum_l H_l*W_l, M heads, D channels per head, Lq queries,
L levels, P points):

* value               (N, S, M, D)
* spatial_shapes      (L, 2) int64, rows (H_l, W_l)
* level_start_index   (L,) int64
* sampling_locations  (N, Lq, M, L, P, 2), (x, y) normalised to [0, 1]
* attention_weights   (N, Lq, M, L, P)
* output              (N, Lq, M * D)
"""

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from .. import _ext
from .ms_deform_attn_gather import ms_deform_attn_core_gather

_COMPUTE_DTYPES = (torch.float32, torch.float64)


def _require_extension():
    ext = _ext.get_extension()
    if ext is None:
        raise RuntimeError(
            "MultiScaleDeformableAttention extension is not built "
            f"({_ext.extension_error()}). Build it with `pip install ./models/dino/ops` "
            "or `cd models/dino/ops && python setup.py build_ext --inplace`, "
            "or use ms_deform_attn_core_pytorch.")
    return ext


class MSDeformAttnFunction(Function):
    """Compiled multi-scale deformable attention (CPU kernel, CUDA kernel if built).

    ``value``, ``sampling_locations`` and ``attention_weights`` must share one
    dtype, float32 or float64 (use :func:`ms_deform_attn` for other dtypes).
    """

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations,
                attention_weights, im2col_step):
        ext = _require_extension()
        value = value.contiguous()
        spatial_shapes = spatial_shapes.to(device=value.device, dtype=torch.long).contiguous()
        level_start_index = level_start_index.to(device=value.device, dtype=torch.long).contiguous()
        sampling_locations = sampling_locations.contiguous()
        attention_weights = attention_weights.contiguous()
        ctx.im2col_step = int(im2col_step)
        output = ext.ms_deform_attn_forward(value, spatial_shapes, level_start_index,
                                            sampling_locations, attention_weights, ctx.im2col_step)
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        ext = _require_extension()
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_sampling_loc, grad_attn_weight = ext.ms_deform_attn_backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(), ctx.im2col_step)
        return grad_value, None, None, grad_sampling_loc, grad_attn_weight, None


def ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    """Reference implementation with ``F.grid_sample`` (bilinear, zero padding,
    ``align_corners=False``). Works on any device and dtype grid_sample supports.
    """
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    if torch.is_tensor(value_spatial_shapes):
        shapes = [(int(h), int(w)) for h, w in value_spatial_shapes.tolist()]
    else:
        shapes = [(int(h), int(w)) for h, w in value_spatial_shapes]
    per_level = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample expects coordinates in [-1, 1]
    grids = sampling_locations * 2 - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        # (N, h*w, M, D) -> (N*M, D, h, w)
        v = per_level[lvl].permute(0, 2, 3, 1).reshape(N * M, D, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(N * M, Lq, P, 2)
        # -> (N*M, D, Lq, P)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))
    # (N, Lq, M, L, P) -> (N*M, 1, Lq, L*P)
    weights = attention_weights.permute(0, 2, 1, 3, 4).reshape(N * M, 1, Lq, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    # (N*M, D, Lq) -> (N, Lq, M*D)
    return out.view(N, M * D, Lq).transpose(1, 2).contiguous()


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights, im2col_step=64):
    """Dispatch to the compiled op, the grid_sample or the gather-based PyTorch path
    (see ``models.dino.ops.backend``; the gather path while exporting).

    Inputs of other dtypes (float16, bfloat16, mixed) are computed in float32
    (float64 if any input is float64); the result has ``value``'s dtype.
    """
    path = _ext.backend(value.device)
    _ext.announce(value.device.type, path)

    out_dtype = value.dtype
    compute = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype),
                                  attention_weights.dtype)
    if compute not in _COMPUTE_DTYPES:
        compute = torch.float32
    value = value.to(compute)
    sampling_locations = sampling_locations.to(compute)
    attention_weights = attention_weights.to(compute)

    if path == "pytorch":
        output = ms_deform_attn_core_pytorch(value, spatial_shapes, sampling_locations,
                                             attention_weights)
    elif path == "gather":
        output = ms_deform_attn_core_gather(value, spatial_shapes, level_start_index,
                                            sampling_locations, attention_weights)
    else:
        output = MSDeformAttnFunction.apply(value, spatial_shapes, level_start_index,
                                            sampling_locations, attention_weights, im2col_step)
    return output.to(out_dtype)
