"""`MSDeformAttn`: multi-scale deformable attention (Deformable DETR), as DINO uses it.

Every query looks at `n_points` places around its reference point on each of
`n_levels` feature maps, per head, and takes an attention-weighted sum of the
values sampled there. The places are learned offsets from the reference point
(in pixels of each level), or, for box references, offsets relative to the box.
Parameter names (`sampling_offsets`, `attention_weights`, `value_proj`,
`output_proj`) are those of the original checkpoints.
"""
import math
import warnings
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import constant_, xavier_uniform_

from ...fused_linear import linear
from .._ext import get_extension, is_exporting
from ..functions.ms_deform_attn_func import ms_deform_attn


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention over `n_levels` maps of `d_model` channels, with
    `n_heads` heads sampling `n_points` points per level each."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"MSDeformAttn: d_model={d_model} is not a multiple of n_heads={n_heads}")
        head_dim = d_model // n_heads
        if head_dim & (head_dim - 1):
            warnings.warn(f"MSDeformAttn: {head_dim} channels per head; the CPU and CUDA kernels are fastest "
                          f"with a power of 2")
        self.im2col_step = 64  # kept from the original (the kernels take the whole batch at once)
        get_extension()  # load the op now, not inside a torch.compile trace of the first forward
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self):
        constant_(self.sampling_offsets.weight.data, 0.0)
        # head h initially looks along direction 2*pi*h/n_heads, scaled so that the
        # larger coordinate is 1; point k sits at distance k+1 along it
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        grid = directions.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias = nn.Parameter(grid.view(-1))
        constant_(self.attention_weights.weight.data, 0.0)
        constant_(self.attention_weights.bias.data, 0.0)
        xavier_uniform_(self.value_proj.weight.data)
        constant_(self.value_proj.bias.data, 0.0)
        xavier_uniform_(self.output_proj.weight.data)
        constant_(self.output_proj.bias.data, 0.0)

    def forward(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor,
                input_spatial_shapes: Tensor, input_level_start_index: Tensor,
                input_padding_mask: Optional[Tensor] = None,
                input_level_shapes: Optional[Sequence[Tuple[int, int]]] = None) -> Tensor:
        """Attend from `query` [B, Q, C] into the flattened maps `input_flatten` [B, S, C].

        reference_points: [B, Q, n_levels, 2] normalised (x, y), (0, 0) the top-left and (1, 1)
            the bottom-right corner of each (padded) map; or [B, Q, n_levels, 4] boxes (cx, cy, w, h).
        input_spatial_shapes: [n_levels, 2] int64 (H, W) of each map, S = sum of H * W;
        input_level_start_index: [n_levels] where each map starts in S;
        input_padding_mask: [B, S] True on padding (those values count as zero), or None;
        input_level_shapes: the (H, W) of input_spatial_shapes as Python (or symbolic) ints, if known
            (the PyTorch path then need not read the tensor: no device sync, no graph break).
        Returns [B, Q, C].
        """
        batch, n_queries, _ = query.shape
        n_values = input_flatten.shape[1]
        if input_flatten.device.type == "cpu" and not (is_exporting() or torch.compiler.is_compiling()):
            # reads tensor values: a device sync on a GPU, a data-dependent int (graph break) in a traced
            # graph; there the kernels check every level against value themselves
            assert int((input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum()) == n_values

        value = linear(input_flatten, self.value_proj)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(batch, n_values, self.n_heads, self.d_model // self.n_heads)

        sampling_offsets = linear(query, self.sampling_offsets).view(
            batch, n_queries, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = linear(query, self.attention_weights).view(
            batch, n_queries, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(
            batch, n_queries, self.n_heads, self.n_levels, self.n_points)

        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: location = reference + offset / (W_l, H_l)
            level_wh = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            reference = reference_points[:, :, None, :, None, :]
            level_wh = level_wh.to(reference.dtype)[None, None, None, :, None, :]
            if is_exporting():  # ONNX has no addcdiv
                sampling_locations = reference + sampling_offsets / level_wh
            else:  # one pass instead of two
                sampling_locations = torch.addcdiv(reference, sampling_offsets, level_wh)
        elif reference_points.shape[-1] == 4:
            # offsets are relative to half the reference box size, spread over n_points
            sampling_locations = torch.addcmul(reference_points[:, :, None, :, None, :2], sampling_offsets,
                                               reference_points[:, :, None, :, None, 2:], value=0.5 / self.n_points)
        else:
            raise ValueError(f"the last dimension of reference_points must be 2 or 4 (points or boxes), "
                             f"not {reference_points.shape[-1]}")

        output = ms_deform_attn(value, input_spatial_shapes, input_level_start_index,
                                sampling_locations, attention_weights, self.im2col_step, input_level_shapes)
        return linear(output, self.output_proj)
