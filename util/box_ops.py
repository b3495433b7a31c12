"""Box format conversions and (generalized) IoU, on top of torchvision.ops.

Boxes are `(cx, cy, w, h)` (normalized, what the model predicts) or
`(x0, y0, x1, y1)`.
"""
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou as _generalized_box_iou, generalized_box_iou_loss


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    return box_convert(boxes, "cxcywh", "xyxy")


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(x0, y0, x1, y1) -> (cx, cy, w, h)."""
    return box_convert(boxes, "xyxy", "cxcywh")


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (https://giou.stanford.edu/) of xyxy boxes, shape [N, M]."""
    return _generalized_box_iou(boxes1, boxes2)


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU of boxes1[i] with boxes2[i] (xyxy), shape [N]: the diagonal of
    `generalized_box_iou` without its N x N matrix, whose forward and backward were about a
    fifth of the demo's training step (the denoising queries' boxes, docs/TRAINING.md)."""
    return 1 - generalized_box_iou_loss(boxes1, boxes2, reduction="none")

