"""Resizing ViTDet relative-position tables the BEiT way (detrex's `interp_type="beit"`).

A decomposed relative-position table holds one row per offset -(n-1)..(n-1)
along an axis (2n-1 rows). When a global-attention block sees a token grid
other than the one the table was made for, the table must be resized. ViTDet
(and timm's windowed ViT block used here) interpolate it linearly. BEiT and
EVA-01 place the stored rows at geometrically spaced offsets (spacing grows
by q = 1.0903078 per step: fine near 0, coarse far out) and read the new rows
off a cubic spline through them; detrex's DINO-EVA-01 1536 config evaluates a
1280-trained model that way (projects/dino_eva/configs/dino-eva-01/
dino_eva_01_1536_4scale_12ep.py, `interp_type="beit"`). As in detrex the
spline is computed in numpy, so no gradient reaches the table through it: the
option is meant for evaluation at a larger input than training.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import torch
from torch import Tensor, nn

BEIT_SPACING_RATIO = 1.0903078  # BEiT's q: the spacing of stored offsets grows by this factor per step


def beit_offsets(rows: int) -> np.ndarray:
    """Where the `rows` (odd) stored entries sit: 0, ±1, ±(1+q), ±(1+q+q^2), ... (float64)."""
    half = rows // 2
    positive = np.cumsum(BEIT_SPACING_RATIO ** np.arange(half, dtype=np.float64))
    return np.concatenate([-positive[::-1], [0.0], positive])


def beit_resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """`table` (rows, C) resized to (length, C): a not-a-knot cubic spline through the rows at
    `beit_offsets`, read at the integer offsets -(length//2)..(length//2) (extrapolated beyond the
    outermost stored offset). Returns float32 on the table's device, detached like detrex's."""
    from scipy.interpolate import make_interp_spline

    if table.shape[0] == length:
        return table
    values = table.detach().float().cpu().numpy().astype(np.float64)
    spline = make_interp_spline(beit_offsets(table.shape[0]), values, k=3, axis=0)
    half = length // 2
    targets = np.arange(-half, half + 1, dtype=np.float64)
    return torch.from_numpy(spline(targets, extrapolate=True).astype(np.float32)).to(table.device)


def run_block_with_beit_rel_pos(block: nn.Module, x: Tensor) -> Tensor:
    """Run a timm windowed-ViT block (global attention, `attn.rel_pos_h/w`) on x (B, H, W, C) with its
    tables BEiT-resized to the grid, so that timm's own linear resizing is never reached."""
    _, height, width, _ = x.shape
    attn = block.attn
    tables: Dict[str, Tensor] = {
        "attn.rel_pos_h": beit_resize_rel_pos(attn.rel_pos_h, 2 * height - 1).to(attn.rel_pos_h.dtype),
        "attn.rel_pos_w": beit_resize_rel_pos(attn.rel_pos_w, 2 * width - 1).to(attn.rel_pos_w.dtype),
    }
    return torch.func.functional_call(block, tables, (x,), strict=False)
