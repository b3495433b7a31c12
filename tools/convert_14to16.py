"""Convert a patch-14 ViT checkpoint (DINOv2, EVA-02) to patch size 16.

    python tools/convert_14to16.py pretrained/dinov2_vits14_pretrain.pth
        -> pretrained/dinov2_vits14_pretrain_14to16.pth

* the patch-embedding kernel (C, 3, 14, 14) is resized to (C, 3, 16, 16):
  `--method bilinear` (default; what ViT-Adapter's converter does), `bicubic`,
  or `pinv` (timm's pseudo-inverse resize, which keeps the embedding of a
  correspondingly up-scaled image);
* the position embedding is resampled (bicubic, class-token slot kept) to
  `--pos-grid` positions per side: `keep` (default) leaves the grid as it is
  (37 x 37 for DINOv2, which ViT-Adapter reads as a 592 px patch-16 grid,
  `vit_pretrain_img_size = 592`), `same-pixels` keeps the pixel extent
  (round(grid * 14 / 16): 37 -> 32, i.e. 512 px), or an integer;
* DINOv2's `mask_token` (pre-training only) is dropped; all other keys keep
  their names, so the file still loads wherever the original did.

The backbone loaders of this project accept either file (they resample what
does not match the model), so converting is optional there; it makes the
kernel resampling explicit and reproducible.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.dino.backbones.pretrained import read_checkpoint  # noqa: E402
from models.dino.backbones.vit_common import resample_grid_embed, resample_kernel  # noqa: E402

PATCH_KEYS = ("patch_embed.proj.weight", "patch_embed.projection.weight")


def _split_pos(pos: Tensor) -> Tuple[Optional[Tensor], Tensor]:
    """(class-token slot or None, grid positions) of a (1, N, C) position embedding."""
    n = pos.shape[1]
    if math.isqrt(n) ** 2 == n:
        return None, pos
    if math.isqrt(n - 1) ** 2 == n - 1:
        return pos[:, :1], pos[:, 1:]
    raise ValueError(f"position embedding with {n} positions is not a (class token +) square grid")


def convert(state: Dict[str, Tensor], patch_size: int = 16, method: str = "bilinear",
            pos_grid: str = "keep") -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """The converted state dict and a {key: what was done} report."""
    out: Dict[str, Tensor] = {}
    report: Dict[str, str] = {}
    old_patch = None
    for key, value in state.items():
        if key == "mask_token":
            report[key] = "dropped (pre-training only)"
            continue
        if key.endswith(PATCH_KEYS):
            old_patch = value.shape[-1]
            value = resample_kernel(value, patch_size, method)
            report[key] = f"kernel {old_patch}x{old_patch} -> {patch_size}x{patch_size} ({method})"
        out[key] = value
    if old_patch is None:
        raise ValueError("no patch embedding (patch_embed.proj.weight) in the checkpoint")
    for key in [k for k in out if k == "pos_embed" or k.endswith(".pos_embed")]:
        cls, grid = _split_pos(out[key].reshape(1, -1, out[key].shape[-1]))
        side = math.isqrt(grid.shape[1])
        if pos_grid == "keep":
            new_side = side
        elif pos_grid == "same-pixels":
            new_side = int(round(side * old_patch / patch_size))
        else:
            new_side = int(pos_grid)
        if new_side != side:
            grid = resample_grid_embed(grid, (new_side, new_side))
            report[key] = f"grid {side}x{side} -> {new_side}x{new_side} (bicubic)"
        else:
            report[key] = f"grid {side}x{side} kept"
        out[key] = grid if cls is None else torch.cat([cls, grid], 1)
    return out, report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="patch-14 checkpoint (.pth / .pt)")
    parser.add_argument("--output", "-o", help="output file (default: <input>_14to16.<ext>)")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--method", choices=("bilinear", "bicubic", "pinv"), default="bilinear",
                        help="patch kernel resampling (default: bilinear, as ViT-Adapter)")
    parser.add_argument("--pos-grid", default="keep",
                        help="'keep' (default), 'same-pixels', or the new grid side as an integer")
    args = parser.parse_args(argv)
    if args.pos_grid not in ("keep", "same-pixels") and not args.pos_grid.isdigit():
        parser.error("--pos-grid must be 'keep', 'same-pixels' or an integer")
    state = read_checkpoint(args.checkpoint)
    out, report = convert(state, args.patch_size, args.method, args.pos_grid)
    root, ext = os.path.splitext(args.checkpoint)
    dst = args.output or f"{root}_14to{args.patch_size}{ext or '.pth'}"
    torch.save(out, dst)
    for key, what in report.items():
        print(f"{key}: {what}")
    print(f"wrote {dst} ({len(out)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
