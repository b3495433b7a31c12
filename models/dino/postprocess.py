"""Turn raw DINO outputs into detections in image coordinates."""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from util import box_ops


class PostProcess(nn.Module):
    """Top-`num_select` (query, class) pairs by sigmoid score, boxes as xyxy
    pixels of each image's `target_sizes` (h, w); optional class-agnostic NMS
    when `nms_iou_threshold > 0`. With `clip_boxes` the boxes are clipped to
    the image and those left without area dropped (detectron2's
    detector_postprocess, which detrex applies), so images may get fewer than
    `num_select` detections.

    Models trained with contiguous class ids (detrex) predict 0..K-1;
    `set_category_ids(ids)` makes the returned labels the dataset's own
    category ids (label i -> ids[i]), as evaluation and results files need;
    detections of classes beyond the K ids (a model with more classes than
    the dataset has categories) are dropped.
    """

    def __init__(self, num_select: int = 100, nms_iou_threshold: float = -1, clip_boxes: bool = False):
        super().__init__()
        self.num_select = num_select
        self.nms_iou_threshold = nms_iou_threshold
        self.clip_boxes = clip_boxes
        self.category_ids: Optional[Tensor] = None

    def set_category_ids(self, ids: Optional[Sequence[int]]) -> None:
        """Report label i as category ids[i] (None: labels are category ids already)."""
        self.category_ids = None if ids is None else torch.as_tensor(list(ids), dtype=torch.int64)

    @torch.no_grad()
    def forward(self, outputs: Dict[str, Tensor], target_sizes: Tensor, not_to_xyxy: bool = False,
                test: bool = False) -> List[Dict[str, Tensor]]:
        logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if len(logits) != len(target_sizes) or target_sizes.shape[1] != 2:
            raise ValueError("target_sizes must hold one (h, w) row per image of the batch")
        num_classes = logits.shape[2]
        prob = logits.sigmoid().view(logits.shape[0], -1)
        k = min(self.num_select, prob.shape[1])
        scores, flat_index = torch.topk(prob, k, dim=1)
        query_index = torch.div(flat_index, num_classes, rounding_mode="floor")
        labels = flat_index % num_classes
        known = None
        if self.category_ids is not None:
            ids = self.category_ids.to(labels.device)
            known = labels < len(ids)
            labels = ids[labels.clamp(max=len(ids) - 1)]

        if not not_to_xyxy:
            boxes = box_ops.box_cxcywh_to_xyxy(boxes)
        if test:  # COCO result format: x, y, w, h
            boxes = torch.cat([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], -1)
        boxes = torch.gather(boxes, 1, query_index.unsqueeze(-1).repeat(1, 1, 4))
        img_h, img_w = target_sizes.to(boxes.dtype).unbind(1)
        # the image sizes stay tensors (no .tolist(): a device sync on a GPU, data-dependent when traced)
        limits = torch.stack([img_w, img_h, img_w, img_h], dim=1)
        boxes = boxes * limits[:, None, :]

        results = []
        for i, (s, l, b) in enumerate(zip(scores, labels, boxes)):
            if known is not None:
                s, l, b = s[known[i]], l[known[i]], b[known[i]]
            if self.clip_boxes and not (test or not_to_xyxy):  # clipping applies to xyxy boxes
                b = torch.minimum(b.clamp(min=0), limits[i])
                keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
                s, l, b = s[keep], l[keep], b[keep]
            if self.nms_iou_threshold > 0:
                keep = nms(b, s, iou_threshold=self.nms_iou_threshold)
                s, l, b = s[keep], l[keep], b[keep]
            results.append({"scores": s, "labels": l, "boxes": b})
        return results
