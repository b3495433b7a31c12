"""ONNX export of a DINO model: the graph wrapper, the in-graph post-processing
and `export_onnx`, used by tools/export_onnx.py (see docs/EXPORT.md).

The exported graph takes `images` float32 [N, 3, H, W] (ImageNet-normalized RGB,
N, H and W dynamic) and returns `pred_logits` [N, Q, C] and `pred_boxes`
[N, Q, 4] (normalized cx, cy, w, h) as the PyTorch model does. With
`postprocess=True` it also takes `orig_sizes` int64 [N, 2] (h, w) and returns
`scores` [N, K], `labels` [N, K] (int64) and `boxes` [N, K, 4] (xyxy pixels),
the top K = num_select detections of `PostProcess` (without NMS).

Padding: a batch of images of different sizes is given as PyTorch's
`nested_tensor_from_tensor_list` builds it, zero-padded at the bottom and
right. The graph recovers the padding mask from those zeros (trailing rows /
columns that are zero in every channel), so the model sees the same masks as
in PyTorch. An ImageNet-normalized 8-bit image never has a pixel that is zero
in all three channels (mean * 255 is not an integer), so no real row or
column is taken for padding.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util.misc import NestedTensor

OPSET = 18
INPUT_NAMES = ("images", "orig_sizes")
OUTPUT_NAMES = ("pred_logits", "pred_boxes", "scores", "labels", "boxes")


def padding_mask_from_zeros(images: Tensor) -> Tensor:
    """[N, H, W] bool, True on the trailing rows and columns that are zero in every channel."""
    nonzero = (images != 0).any(1)  # N, H, W
    row_has = nonzero.any(2).to(torch.int64)  # N, H
    col_has = nonzero.any(1).to(torch.int64)  # N, W
    # a row is padding when neither it nor any row below it has a nonzero pixel
    row_pad = row_has.flip(1).cumsum(1).flip(1) == 0
    col_pad = col_has.flip(1).cumsum(1).flip(1) == 0
    return row_pad[:, :, None] | col_pad[:, None, :]


def topk_detections(logits: Tensor, boxes: Tensor, orig_sizes: Tensor, num_select: int
                    ) -> Tuple[Tensor, Tensor, Tensor]:
    """PostProcess without NMS, batched: (scores [N, K], labels [N, K], xyxy pixel boxes [N, K, 4])."""
    num_classes = logits.shape[2]
    prob = logits.sigmoid().flatten(1)
    k = min(num_select, logits.shape[1] * num_classes)
    scores, flat_index = torch.topk(prob, k, dim=1)
    query_index = torch.div(flat_index, num_classes, rounding_mode="floor")
    labels = flat_index - query_index * num_classes
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    xyxy = torch.gather(xyxy, 1, query_index.unsqueeze(-1).expand(-1, -1, 4))
    img_h, img_w = orig_sizes.to(xyxy.dtype).unbind(1)
    scale = torch.stack([img_w, img_h, img_w, img_h], 1)[:, None, :]
    return scores, labels, xyxy * scale


def _rel_pos_from_tensors(q_size, k_size, rel_pos: Tensor) -> Tensor:
    """timm's `get_rel_pos` for self-attention (q_size == k_size), with the table size taken from
    the traced sizes: timm's version reads them as Python ints, which a trace freezes."""
    size = 2 * q_size - 1
    table = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=size, mode="linear")
    table = table.reshape(-1, size).permute(1, 0)
    coords = torch.arange(q_size)[:, None] - torch.arange(k_size)[None, :] + (k_size - 1)
    return table[coords]


@contextlib.contextmanager
def traceable_backbones():
    """While exporting, swap library code that freezes image sizes in a trace for tensor versions
    (ViTDet / EVA relative position tables of timm's SAM-style blocks)."""
    try:
        import timm.models.vision_transformer_sam as sam
    except ImportError:
        yield
        return
    original = sam.get_rel_pos
    sam.get_rel_pos = _rel_pos_from_tensors
    try:
        yield
    finally:
        sam.get_rel_pos = original


class ExportWrapper(nn.Module):
    """The graph that is exported: padded images in, the model's final outputs out."""

    def __init__(self, model: nn.Module, num_select: Optional[int] = None):
        super().__init__()
        self.model = model
        self.num_select = num_select

    def forward(self, images: Tensor, orig_sizes: Optional[Tensor] = None):
        out = self.model(NestedTensor(images, padding_mask_from_zeros(images)))
        logits, boxes = out["pred_logits"], out["pred_boxes"]
        if orig_sizes is None:
            return logits, boxes
        return (logits, boxes) + topk_detections(logits, boxes, orig_sizes, self.num_select)


def export_onnx(model: nn.Module, path: str, example: Tensor, num_select: Optional[int] = None,
                opset: int = OPSET) -> None:
    """Write the ONNX graph of `model` (eval mode) to `path` (a new file, written by the caller atomically).

    `example` [N, 3, H, W] fixes only the values traced through; N, H and W stay
    dynamic. `num_select` adds the post-processing outputs (and `orig_sizes`).
    """
    model.eval()
    wrapper = ExportWrapper(model, num_select).eval()
    args: Tuple[Tensor, ...] = (example,)
    inputs = ["images"]
    outputs = ["pred_logits", "pred_boxes"]
    axes = {"images": {0: "batch", 2: "height", 3: "width"},
            "pred_logits": {0: "batch"}, "pred_boxes": {0: "batch"}}
    if num_select is not None:
        h, w = example.shape[-2:]
        args += (torch.tensor([[h, w]] * example.shape[0], dtype=torch.int64),)
        inputs.append("orig_sizes")
        outputs += ["scores", "labels", "boxes"]
        axes.update({"orig_sizes": {0: "batch"}, "scores": {0: "batch"}, "labels": {0: "batch"},
                     "boxes": {0: "batch"}})
    with torch.no_grad(), warnings.catch_warnings(), traceable_backbones():
        # the tracer warns about every Python bool taken from a shape; none of them depends on the image size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the TorchScript-based exporter is chosen on purpose (docs/EXPORT.md, "Exporter")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        torch.onnx.export(wrapper, args, path, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    if not os.path.isfile(path):
        raise RuntimeError(f"torch.onnx.export wrote no file at {path}")
