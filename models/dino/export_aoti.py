"""torch.export + AOTInductor packaging of a DINO model (tools/export_onnx.py --format aoti).

The package (`.pt2`) holds the model compiled ahead of time to C++ (a shared library with the
weights) and runs with torch alone (deploy/aoti_detector.py, `torch._inductor.aoti_load_package`):
no Python model code, PyTorch's kernels and numerics. Inputs and outputs are those of the ONNX
graph (models/dino/export.py: `images` [N, 3, H, W] ImageNet-normalized, zero-padded at the
bottom / right, the padding mask taken from the zeros; `pred_logits`, `pred_boxes`, and with
post-processing `scores`, `labels`, `boxes`), with one condition: **H and W are multiples of
SIZE_MULTIPLE (64)**, at least 2 x 64; a runner pads to that (deploy/common.pad_batch). Batch
size, H and W are dynamic.

Why multiples of 64: with H and W free, inductor's code generation reasons about every feature
map size as ceil-divisions of H and W through the backbone's strides; measured on the tiny test
DINO (2 cores, torch 2.14.1) the package compiled in 1770 s with free sizes and in 155 s with
H = 64 h, W = 64 w (64 is the stride of the coarsest level of the 4- and 5-scale DINOs, so every
level's size is then an exact quotient). The extra padding is masked as any batch padding is;
tools/export_onnx.py --val prints its effect on AP beside PyTorch's.

The deformable attention is the export path's gather-based sampling (plain ops: the package
needs torch alone), or with `operator=True` (tools/export_onnx.py --aoti-operator) calls of the
compiled operator torch.ops.dino.ms_deform_attn, faster on the CPU; the runner then loads the
operator's shared library before the package (deploy/aoti_detector.py, `op_library=`).

Loading a package runs the compiled code it contains: it is a program, not data. Load packages
you exported yourself (tools/inference.py --aoti checks that, docs/EXPORT.md).
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .export import ExportWrapper, traceable_backbones
from .ops import _ext

SIZE_MULTIPLE = 64
MAX_SIDE = 4096
MAX_BATCH = 64
METADATA_KEY = "dino"


def round_up(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    return -(-int(value) // multiple) * multiple


def pad_images(images: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """[N, 3, H, W] zero-padded at the bottom / right to multiples of `multiple` (at least 2 x multiple)."""
    h, w = images.shape[-2:]
    new_h, new_w = max(round_up(h, multiple), 2 * multiple), max(round_up(w, multiple), 2 * multiple)
    return torch.nn.functional.pad(images, (0, new_w - w, 0, new_h - h))


def _dynamic_shapes(with_sizes: bool) -> Dict[str, Any]:
    Dim = torch.export.Dim
    batch = Dim("batch", min=1, max=MAX_BATCH)
    # the coarsest level must keep 2 pixels a side: a 1-pixel map would specialise the graph
    height = SIZE_MULTIPLE * Dim("h64", min=2, max=MAX_SIDE // SIZE_MULTIPLE)
    width = SIZE_MULTIPLE * Dim("w64", min=2, max=MAX_SIDE // SIZE_MULTIPLE)
    shapes: Dict[str, Any] = {"images": {0: batch, 2: height, 3: width}}
    if with_sizes:
        shapes["orig_sizes"] = {0: batch}
    return shapes


def export_program(model: nn.Module, example: Tensor, num_select: Optional[int] = None,
                   operator: bool = False) -> torch.export.ExportedProgram:
    """The ExportedProgram of ExportWrapper(model) with dynamic batch, H = 64 h and W = 64 w; the
    deformable attention as the gather path's plain ops, or with `operator` as calls of the
    compiled torch.ops.dino.ms_deform_attn (which the package's runner then has to load)."""
    model.eval()
    if example.shape[-2] % SIZE_MULTIPLE or example.shape[-1] % SIZE_MULTIPLE:
        raise ValueError(f"the example's size {tuple(example.shape[-2:])} must be a multiple of {SIZE_MULTIPLE}")
    wrapper = ExportWrapper(model, num_select).eval()
    args: Tuple[Tensor, ...] = (example,)
    if num_select is not None:
        args += (torch.tensor([list(example.shape[-2:])] * example.shape[0], dtype=torch.int64),)
    keep = _ext.operator_in_export() if operator else contextlib.nullcontext()
    with torch.no_grad(), traceable_backbones(), keep:
        return torch.export.export(wrapper, args, dynamic_shapes=_dynamic_shapes(num_select is not None),
                                   strict=False)


def export_aoti(model: nn.Module, path: str, example: Tensor, num_select: Optional[int] = None,
                metadata: Optional[Dict[str, Any]] = None, operator: bool = False) -> None:
    """Write the AOTInductor package of `model` to `path` (a new file; the caller writes atomically).

    `metadata` (JSON-able) is stored in the package under "dino" with the size multiple, the inputs
    and, with `operator`, the file name of the operator's library added, read back by
    deploy/aoti_detector.py.
    """
    program = export_program(model, example, num_select, operator)
    stored = dict(metadata or {}, size_multiple=SIZE_MULTIPLE, input_names=["images"] +
                  (["orig_sizes"] if num_select is not None else []))
    if operator:
        stored["operator_library"] = os.path.basename(_ext.extension_origin() or "")
    configs = {"aot_inductor.metadata": {METADATA_KEY: json.dumps(stored)}}
    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(program, package_path=path, inductor_configs=configs)
    if not os.path.isfile(path):
        raise RuntimeError(f"AOTInductor wrote no package at {path}")


def read_metadata(package) -> Dict[str, Any]:
    """The "dino" metadata of a loaded package (torch._inductor.aoti_load_package's model), {} if none."""
    stored = package.get_metadata().get(METADATA_KEY)
    return json.loads(stored) if stored else {}
