"""DINO's training loss.

For the final decoder layer, every auxiliary layer and the encoder's
two-stage proposals ("interm"), predictions are matched to targets with the
Hungarian matcher and scored with focal classification, L1 and GIoU box
losses. Positive denoising queries are supervised against the box they were
made from (suffix `_dn`). Key names and normalisation follow the original so
logs and `weight_dict` coefficients carry over.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util import box_ops
from util.misc import accuracy, get_world_size, is_dist_avail_and_initialized

from .dn_components import denoising_match_indices
from .utils import sigmoid_focal_loss

Indices = List[Tuple[Tensor, Tensor]]
DN_LOSS_NAMES = ("loss_bbox", "loss_giou", "loss_ce", "loss_xy", "loss_hw", "cardinality_error")


def _prediction_index(indices: Indices) -> Tuple[Tensor, Tensor]:
    batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    return batch, torch.cat([src for src, _ in indices])


class SetCriterion(nn.Module):
    def __init__(self, num_classes: int, matcher: nn.Module, weight_dict: Dict[str, float],
                 focal_alpha: float, losses: Sequence[str] = ("labels", "boxes", "cardinality")):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.focal_alpha = focal_alpha
        self.losses = list(losses)

    # ------------------------------------------------------------- loss terms
    def loss_labels(self, outputs, targets, indices: Indices, num_boxes: float, log: bool = True):
        """Sigmoid focal loss against one-hot targets; unmatched queries are background."""
        logits = outputs["pred_logits"]
        idx = _prediction_index(indices)
        matched_classes = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        onehot = torch.zeros(logits.shape[0], logits.shape[1], logits.shape[2] + 1, dtype=logits.dtype,
                             device=logits.device)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[idx] = matched_classes
        onehot.scatter_(2, classes.unsqueeze(-1), 1)
        onehot = onehot[:, :, :-1]
        loss = sigmoid_focal_loss(logits, onehot, num_boxes, alpha=self.focal_alpha, gamma=2) * logits.shape[1]
        losses = {"loss_ce": loss}
        if log:
            losses["class_error"] = 100 - accuracy(logits[idx], matched_classes)[0]
        return losses

    @torch.no_grad()
    def loss_cardinality(self, outputs, targets, indices: Indices, num_boxes: float):
        """Logging only: |#predictions whose arg-max is not the last class - #targets|."""
        logits = outputs["pred_logits"]
        lengths = torch.as_tensor([len(t["labels"]) for t in targets], device=logits.device)
        predicted = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1)
        return {"cardinality_error": F.l1_loss(predicted.float(), lengths.float())}

    def loss_boxes(self, outputs, targets, indices: Indices, num_boxes: float):
        """L1 on (cx, cy, w, h) and 1 - GIoU of the matched boxes (plus logged xy / hw parts)."""
        idx = _prediction_index(indices)
        src = outputs["pred_boxes"][idx]
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)], 0).to(src.device)
        l1 = F.l1_loss(src, tgt, reduction="none")
        giou = box_ops.paired_generalized_box_iou(box_ops.box_cxcywh_to_xyxy(src), box_ops.box_cxcywh_to_xyxy(tgt))
        losses = {"loss_bbox": l1.sum() / num_boxes, "loss_giou": (1 - giou).sum() / num_boxes}
        with torch.no_grad():
            losses["loss_xy"] = l1[..., :2].sum() / num_boxes
            losses["loss_hw"] = l1[..., 2:].sum() / num_boxes
        return losses

    def get_loss(self, name: str, outputs, targets, indices: Indices, num_boxes: float, **kwargs):
        terms = {"labels": self.loss_labels, "cardinality": self.loss_cardinality, "boxes": self.loss_boxes}
        if name not in terms:
            raise KeyError(f"unknown loss '{name}'; available: {sorted(terms)}")
        return terms[name](outputs, targets, indices, num_boxes, **kwargs)

    def _all_terms(self, outputs, targets, indices: Indices, num_boxes: float, suffix: str, log: bool):
        out = {}
        for name in self.losses:
            kwargs = {"log": log} if name == "labels" else {}
            out.update(self.get_loss(name, outputs, targets, indices, num_boxes, **kwargs))
        return {k + suffix: v for k, v in out.items()}

    # ------------------------------------------------------------- forward
    def num_target_boxes(self, targets, device) -> float:
        """Targets per process (averaged over processes), at least 1."""
        n = float(sum(len(t["labels"]) for t in targets))
        if not is_dist_avail_and_initialized():
            return max(n, 1.0)  # known on the host: no device tensor and no .item() (a GPU sync)
        total = torch.as_tensor([n], device=device)
        torch.distributed.all_reduce(total)
        return torch.clamp(total / get_world_size(), min=1).item()

    def forward(self, outputs: Dict, targets: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        device = outputs["pred_logits"].device
        num_boxes = self.num_target_boxes(targets, device)
        dn_meta = outputs.get("dn_meta")
        dn_outputs = dn_meta.get("output_known_lbs_bboxes") if (self.training and dn_meta) else None
        if dn_outputs is not None:
            dn_indices = denoising_match_indices(targets, dn_meta)
            dn_num_boxes = num_boxes * dn_meta["num_dn_group"]

        def denoising_terms(layer_outputs, suffix):
            if dn_outputs is None:
                zero = torch.zeros((), device=device)
                return {name + suffix: zero for name in DN_LOSS_NAMES}
            return self._all_terms(layer_outputs, targets, dn_indices, dn_num_boxes, suffix, log=False)

        losses = denoising_terms(dn_outputs, "_dn")
        losses.update(self._all_terms(outputs, targets, self.matcher(outputs, targets), num_boxes, "", log=True))

        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update(self._all_terms(aux, targets, self.matcher(aux, targets), num_boxes, f"_{i}", log=False))
            dn_aux = dn_outputs["aux_outputs"][i] if dn_outputs is not None else None
            losses.update(denoising_terms(dn_aux, f"_dn_{i}"))

        if "interm_outputs" in outputs:
            interm = outputs["interm_outputs"]
            losses.update(self._all_terms(interm, targets, self.matcher(interm, targets), num_boxes, "_interm",
                                          log=False))
        return losses
