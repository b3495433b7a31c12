"""Multi-scale deformable attention: the compiled operator ``torch.ops.dino.ms_deform_attn``,
the reference PyTorch implementation, and the dispatcher between them that model code calls.

Shapes (N batch, S = sum_l H_l*W_l, M heads, D channels per head, Lq queries,
L levels, P points):

* value               (N, S, M, D)
* spatial_shapes      (L, 2) int64, rows (H_l, W_l)
* level_start_index   (L,) int64
* sampling_locations  (N, Lq, M, L, P, 2), (x, y) normalised to [0, 1]
* attention_weights   (N, Lq, M, L, P)
* output              (N, Lq, M * D)
"""

import operator

import torch
import torch.nn.functional as F

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


def _check_im2col_step(im2col_step) -> None:
    # kept from the original's signature; the kernels take the whole batch at once
    try:
        step = operator.index(im2col_step)
    except TypeError:
        step = 0
    if step <= 0:
        raise ValueError(f"im2col_step must be a positive integer, got {im2col_step!r}")


def ms_deform_attn_compiled(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """``torch.ops.dino.ms_deform_attn`` (differentiable: its autograd calls
    ``torch.ops.dino.ms_deform_attn_backward``). ``value``, ``sampling_locations`` and
    ``attention_weights`` share one dtype, float32 or float64; any strides;
    ``spatial_shapes`` and ``level_start_index`` are made int64 on ``value``'s device."""
    spatial_shapes = spatial_shapes.to(device=value.device, dtype=torch.long)
    level_start_index = level_start_index.to(device=value.device, dtype=torch.long)
    return torch.ops.dino.ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                                         attention_weights)


class MSDeformAttnFunction:
    """The compiled op under the name of the original's ``torch.autograd.Function``, for
    callers of ``MSDeformAttnFunction.apply(value, spatial_shapes, level_start_index,
    sampling_locations, attention_weights, im2col_step)`` (tools/benchmark_msda.py).
    Autograd now comes from the operator's registration (``_library``); ``im2col_step``
    is checked and otherwise unused. Same dtype rules as :func:`ms_deform_attn_compiled`.
    """

    @staticmethod
    def apply(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step):
        _check_im2col_step(im2col_step)
        _require_extension()
        return ms_deform_attn_compiled(value, spatial_shapes, level_start_index, sampling_locations,
                                       attention_weights)


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
                   attention_weights, im2col_step=64, level_shapes=None):
    """Dispatch to the compiled op, the grid_sample or the gather-based PyTorch path
    (see ``models.dino.ops.backend``; the gather path while exporting).

    Inputs of other dtypes (float16, bfloat16, mixed) are computed in float32
    (float64 if any input is float64); the result has ``value``'s dtype.

    ``level_shapes``: optionally the (H, W) of ``spatial_shapes`` as Python (or symbolic)
    ints, e.g. from the feature maps' shapes. The grid_sample path needs the sizes as ints:
    without them it reads ``spatial_shapes`` (``.tolist()``), which is a device sync on a GPU
    and data-dependent under torch.compile (a graph break) or FakeTensorMode (an error).
    """
    _check_im2col_step(im2col_step)
    path = _ext.backend(value.device)
    if not torch.compiler.is_compiling():  # logging inside a traced graph is a graph break
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
        output = ms_deform_attn_core_pytorch(value, spatial_shapes if level_shapes is None else level_shapes,
                                             sampling_locations, attention_weights)
    elif path == "gather":
        output = ms_deform_attn_core_gather(value, spatial_shapes, level_start_index,
                                            sampling_locations, attention_weights)
    else:
        output = ms_deform_attn_compiled(value, spatial_shapes, level_start_index, sampling_locations,
                                         attention_weights)
    return output.to(out_dtype)
