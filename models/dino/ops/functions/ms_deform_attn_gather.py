"""Multi-scale deformable attention as a gather-based bilinear sampling, in
tensor operations that export to plain ONNX (Gather, Floor, Mul, Add, MatMul).

This is the path used while exporting (``tools/export_onnx.py``): it needs no
Python integers from the level sizes (``spatial_shapes`` stays a tensor, so H
and W stay dynamic in the graph), no per-level loop and no ``GridSample``
(see docs/EXPORT.md for the measured comparison with ``GridSample``).
The maths equals ``grid_sample(mode="bilinear", padding_mode="zeros",
align_corners=False)``: pixel coordinate ``x * W - 0.5``; corners off the map
contribute zero.

Shapes as in ``ms_deform_attn_func``: value (N, S, M, D), spatial_shapes (L, 2)
rows (H, W), level_start_index (L,), sampling_locations (N, Lq, M, L, P, 2),
attention_weights (N, Lq, M, L, P) -> output (N, Lq, M * D).
"""

import torch
from torch import Tensor


def ms_deform_attn_core_gather(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                               sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Bilinear sampling of every level by gathering the four corner rows of ``value``."""
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    dtype = sampling_locations.dtype
    # per level (1, 1, 1, L, 1): sizes as floats for coordinates, as int64 for indices
    h_i = spatial_shapes[:, 0].view(1, 1, 1, L, 1)
    w_i = spatial_shapes[:, 1].view(1, 1, 1, L, 1)
    h_f, w_f = h_i.to(dtype), w_i.to(dtype)
    start = level_start_index.view(1, 1, 1, L, 1)

    x = sampling_locations[..., 0] * w_f - 0.5
    y = sampling_locations[..., 1] * h_f - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x0i, y0i = x0.to(torch.int64), y0.to(torch.int64)

    # rows of value_flat are (n, m, s): one Gather over N*M*S rows of D channels
    value_flat = value.permute(0, 2, 1, 3).reshape(N * M * S, D)
    head_offset = (torch.arange(N, device=value.device).view(N, 1, 1, 1, 1) * M
                   + torch.arange(M, device=value.device).view(1, 1, M, 1, 1)) * S

    out = None
    for dy in (0, 1):
        yi = y0i + dy
        wy = fy if dy else 1 - fy
        y_ok = (yi >= 0) & (yi < h_i)
        for dx in (0, 1):
            xi = x0i + dx
            wx = fx if dx else 1 - fx
            ok = y_ok & (xi >= 0) & (xi < w_i)
            weight = (wx * wy * attention_weights).masked_fill(~ok, 0.0)
            index = head_offset + start + yi.clamp(min=0) * w_i + xi.clamp(min=0)
            index = torch.where(ok, index, head_offset)  # any in-range row; its weight is 0
            # (N, Lq, M, L, P) -> (N, M, Lq, L*P)
            index = index.permute(0, 2, 1, 3, 4).reshape(N * M * Lq * L * P)
            weight = weight.permute(0, 2, 1, 3, 4).reshape(N * M * Lq, 1, L * P)
            rows = value_flat.index_select(0, index).view(N * M * Lq, L * P, D)
            part = torch.bmm(weight, rows)  # (N*M*Lq, 1, D)
            out = part if out is None else out + part
    # (N, M, Lq, D) -> (N, Lq, M*D)
    return out.view(N, M, Lq, D).permute(0, 2, 1, 3).reshape(N, Lq, M * D)
