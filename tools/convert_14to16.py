"""Convert a patch-14 ViT checkpoint (DINOv2, EVA-02) to patch size 16.

    python tools/convert_14to16.py pretrained/dinov2_vits14_pretrain.pth
        -> pretrained/dinov2_vits14_pretrain_14to16.pth
    python tools/convert_14to16.py dinov2_vitl14_pretrain.pth -o vitl16.pth --method bicubic --keep-names

With the defaults the output has the same keys and tensors as ViT-Adapter's
`detection/convert_14to16.py` (checked in tests/test_vit_adapter_reference.py
against that script's output on a synthetic file):

* the patch-embedding kernel (C, 3, 14, 14) is resized to (C, 3, 16, 16):
  `--method bilinear` (default; what ViT-Adapter's converter does), `bicubic`,
  or `pinv` (timm's pseudo-inverse resize, which keeps the embedding of a
  correspondingly up-scaled image);
* the position embedding is resampled (bicubic, class-token slot kept) to
  `--pos-grid` positions per side: `keep` (default) leaves the grid as it is
  (37 x 37 for DINOv2, which ViT-Adapter reads as a 592 px patch-16 grid,
  `vit_pretrain_img_size = 592`), `same-pixels` keeps the pixel extent
  (round(grid * 14 / 16): 37 -> 32, i.e. 512 px), or an integer;
* DINOv2's `mask_token` (pre-training only) is dropped;
* layer-scale names become ViT-Adapter's (`ls1.gamma` -> `gamma1`,
  `ls2.gamma` -> `gamma2`); `--keep-names` keeps DINOv2's names instead.

The input is never written over; an existing output is replaced only with
`--overwrite`, and the output is written atomically (a temporary file renamed
into place). Errors are one line (`--debug` shows the traceback).

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
from util.atomic import OutputError, check_output_file  # noqa: E402
from util.checkpoint import CheckpointError, save_checkpoint_files  # noqa: E402
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


# ViT-Adapter's names for DINOv2's layer scales
ADAPTER_NAMES = ((".ls1.gamma", ".gamma1"), (".ls2.gamma", ".gamma2"))


def convert(state: Dict[str, Tensor], patch_size: int = 16, method: str = "bilinear",
            pos_grid: str = "keep", keep_names: bool = False) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """The converted state dict and a {key: what was done} report."""
    out: Dict[str, Tensor] = {}
    report: Dict[str, str] = {}
    old_patch = None
    renamed = 0
    for key, value in state.items():
        if "mask_token" in key:
            report[key] = "dropped (pre-training only)"
            continue
        if not keep_names:
            new_key = key
            for old, new in ADAPTER_NAMES:
                new_key = new_key.replace(old, new)
            renamed += new_key != key
            key = new_key
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
    if renamed:
        report["layer scale"] = f"{renamed} tensors renamed ls1.gamma / ls2.gamma -> gamma1 / gamma2 (ViT-Adapter)"
    return out, report


def output_path(src: str, dst: Optional[str], patch_size: int, overwrite: bool) -> str:
    """Where to write: `dst` or <input>_14to<patch>.<ext>; never the input (compared as files), an
    existing file only with overwrite (util/atomic.py's check, done before the input is read)."""
    root, ext = os.path.splitext(src)
    dst = dst or f"{root}_14to{patch_size}{ext or '.pth'}"
    return check_output_file(dst, inputs=[src], overwrite=overwrite, flag="--output")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="patch-14 checkpoint (.pth / .pt)")
    parser.add_argument("--output", "-o", help="output file (default: <input>_14to16.<ext>)")
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--method", choices=("bilinear", "bicubic", "pinv"), default="bilinear",
                        help="patch kernel resampling (default: bilinear, as ViT-Adapter)")
    parser.add_argument("--pos-grid", default="keep",
                        help="'keep' (default), 'same-pixels', or the new grid side as an integer")
    parser.add_argument("--keep-names", action="store_true",
                        help="keep DINOv2's ls1.gamma / ls2.gamma (default: ViT-Adapter's gamma1 / gamma2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--trust_checkpoint", "--trust-checkpoint", dest="trust_checkpoint", action="store_true",
                        help="read a pickled file that holds Python objects outside the allow-list; this RUNS "
                             "CODE FROM THE FILE: only for files you trust")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    if args.pos_grid not in ("keep", "same-pixels") and not args.pos_grid.isdigit():
        parser.error("--pos-grid must be 'keep', 'same-pixels' or an integer")
    try:
        dst = output_path(args.checkpoint, args.output, args.patch_size, args.overwrite)
        state = read_checkpoint(args.checkpoint, args.trust_checkpoint)
        out, report = convert(state, args.patch_size, args.method, args.pos_grid, args.keep_names)
        save_checkpoint_files(out, [dst])
    except (OutputError, CheckpointError, OSError, ValueError, KeyError, RuntimeError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        named = isinstance(exc, (OutputError, CheckpointError)) or args.checkpoint in message
        print(f"error: {message}" if named else f"error: {args.checkpoint}: {message}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the file, the traceback with --debug
        if args.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, args.checkpoint), file=sys.stderr)
        return 1
    for key, what in report.items():
        print(f"{key}: {what}")
    print(f"wrote {dst} ({len(out)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
