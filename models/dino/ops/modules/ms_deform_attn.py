"""Multi-scale deformable attention module (Deformable DETR, used by DINO)."""

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import constant_, xavier_uniform_

from ...fused_linear import linear
from .._ext import is_exporting
from ..functions.ms_deform_attn_func import ms_deform_attn


def _is_power_of_2(n):
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"invalid input for _is_power_of_2: {n} (type: {type(n)})")
    return n != 0 and (n & (n - 1)) == 0


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Args:
        d_model: hidden dimension.
        n_levels: number of feature levels.
        n_heads: number of attention heads.
        n_points: sampling points per head and level.
    """

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model must be divisible by n_heads, but got {d_model} and {n_heads}")
        if not _is_power_of_2(d_model // n_heads):
            warnings.warn("MSDeformAttn is most efficient when d_model / n_heads is a power of 2.")

        self.im2col_step = 64
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

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes,
                input_level_start_index, input_padding_mask=None):
        """
        Args:
            query: (N, Len_q, C)
            reference_points: (N, Len_q, n_levels, 2) normalised (x, y) in [0, 1]
                (top-left (0, 0), bottom-right (1, 1), padding included), or
                (N, Len_q, n_levels, 4) boxes (cx, cy, w, h).
            input_flatten: (N, sum_l H_l * W_l, C)
            input_spatial_shapes: (n_levels, 2) int64, rows (H_l, W_l)
            input_level_start_index: (n_levels,) int64
            input_padding_mask: (N, sum_l H_l * W_l) bool, True on padding, or None.

        Returns:
            (N, Len_q, C)
        """
        N, Len_q, _ = query.shape
        N, Len_in, _ = input_flatten.shape
        if not is_exporting():  # reads tensor values: a data-dependent int in an exported graph
            assert int((input_spatial_shapes[:, 0] * input_spatial_shapes[:, 1]).sum()) == Len_in

        value = linear(input_flatten, self.value_proj)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(N, Len_in, self.n_heads, self.d_model // self.n_heads)

        sampling_offsets = linear(query, self.sampling_offsets).view(
            N, Len_q, self.n_heads, self.n_levels, self.n_points, 2)
        attention_weights = linear(query, self.attention_weights).view(
            N, Len_q, self.n_heads, self.n_levels * self.n_points)
        attention_weights = F.softmax(attention_weights, -1).view(
            N, Len_q, self.n_heads, self.n_levels, self.n_points)

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
                                sampling_locations, attention_weights, self.im2col_step)
        return linear(output, self.output_proj)
