"""Contrastive denoising (CDN) queries of DINO.

During training, every ground-truth box is fed to the decoder in `G` groups,
each holding a *positive* copy (box noise < 1 box half-size, to be
reconstructed) and a *negative* copy (noise between 1 and 2 half-sizes, to be
classified as background). Labels may be flipped with probability
`label_noise_ratio / 2`. Queries of one group cannot attend to other groups,
and the matching queries cannot attend to any denoising query.

Layout of the `pad_size = 2 * G * S` denoising slots of an image (S = most
objects in any image of the batch): group g occupies slots
[2gS, 2gS + S) (positives) and [2gS + S, 2(g+1)S) (negatives); object j of an
image sits at offset j in both halves; unused slots stay zero.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from util.misc import inverse_sigmoid


def num_denoising_groups(dn_number: int, max_objects: int) -> int:
    """Groups G as the original computes them from `dn_number`.

    `dn_number >= 50` is a budget of denoising queries per image: G =
    2 * dn_number // (2 * max_objects); a smaller `dn_number` gives
    G = 2 * dn_number. Never fewer than one group.
    """
    doubled = dn_number * 2
    if max_objects == 0:
        return 1
    if doubled >= 100:
        doubled = doubled // (max_objects * 2)
    return max(doubled, 1)


def denoising_attention_mask(num_groups: int, objects_per_half: int, num_queries: int,
                             device: torch.device) -> Tensor:
    """[T, T] bool mask (True = blocked) for T = pad_size + num_queries queries."""
    group_size = 2 * objects_per_half
    pad_size = group_size * num_groups
    total = pad_size + num_queries
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[pad_size:, :pad_size] = True
    for g in range(num_groups):
        rows = slice(group_size * g, group_size * (g + 1))
        mask[rows, :group_size * g] = True
        mask[rows, group_size * (g + 1):pad_size] = True
    return mask


def _noisy_boxes(boxes: Tensor, negative: Tensor, box_noise_scale: float) -> Tensor:
    """Jitter cxcywh boxes: each corner moves by up to `scale` half-sizes,
    negatives by 1 to 2 times that."""
    xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], -1)
    half_sizes = boxes[:, 2:].repeat(1, 2) / 2
    sign = torch.randint_like(boxes, low=0, high=2, dtype=torch.float32) * 2.0 - 1.0
    # + 1 on the negatives' rows (an add, not a boolean-mask index: no data-dependent shape to trace)
    magnitude = torch.rand_like(boxes) + negative.unsqueeze(-1)
    xyxy = (xyxy + magnitude * sign * half_sizes * box_noise_scale).clamp(min=0.0, max=1.0)
    return torch.cat([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], -1)


def prepare_for_cdn(targets: Sequence[Dict[str, Tensor]], dn_number: int, label_noise_ratio: float,
                    box_noise_scale: float, num_queries: int, num_classes: int, hidden_dim: int,
                    label_enc: nn.Embedding) -> Tuple[Tensor, Tensor, Tensor, Dict]:
    """Denoising queries for a training batch.

    Returns (label queries [B, pad, D], box queries [B, pad, 4] in
    inverse-sigmoid space, attention mask [pad+Q, pad+Q], dn_meta with
    'pad_size' and 'num_dn_group').
    """
    device = label_enc.weight.device
    counts = [len(t["labels"]) for t in targets]
    batch_size, max_objects = len(targets), max(counts) if counts else 0
    groups = num_denoising_groups(dn_number, max_objects)
    copies = 2 * groups

    labels = torch.cat([t["labels"] for t in targets]).to(device)
    boxes = torch.cat([t["boxes"] for t in targets]).to(device)
    batch_idx = torch.cat([torch.full_like(t["labels"].long(), i) for i, t in enumerate(targets)]).to(device)
    n = len(boxes)

    noisy_labels = labels.repeat(copies, 1).view(-1)
    noisy_boxes = boxes.repeat(copies, 1)
    if label_noise_ratio > 0:
        p = torch.rand_like(noisy_labels.float())
        flip = torch.nonzero(p < label_noise_ratio * 0.5).view(-1)
        noisy_labels = noisy_labels.scatter(0, flip, torch.randint_like(flip, 0, num_classes))
    # copy c of the batch's objects is a positive for even c, a negative for odd c
    negative = (torch.arange(copies * n, device=device) // max(n, 1)) % 2 == 1
    if box_noise_scale > 0:
        noisy_boxes = _noisy_boxes(noisy_boxes, negative, box_noise_scale)

    pad_size = max_objects * copies
    label_queries = torch.zeros(batch_size, pad_size, hidden_dim, device=device)
    box_queries = torch.zeros(batch_size, pad_size, 4, device=device)
    if n:
        slot_in_image = torch.cat([torch.arange(c, device=device) for c in counts])
        slots = torch.cat([slot_in_image + max_objects * c for c in range(copies)])
        rows = batch_idx.repeat(copies)
        label_queries[rows, slots] = label_enc(noisy_labels.long()).to(label_queries.dtype)
        box_queries[rows, slots] = inverse_sigmoid(noisy_boxes)

    attn_mask = denoising_attention_mask(groups, max_objects, num_queries, device)
    return label_queries, box_queries, attn_mask, {"pad_size": pad_size, "num_dn_group": groups}


def split_denoising_outputs(outputs_class: Tensor, outputs_coord: Tensor,
                            dn_meta: Optional[Dict]) -> Tuple[Tensor, Tensor]:
    """Remove the denoising queries from the per-layer outputs [L, B, pad+Q, *]
    and store them in dn_meta['output_known_lbs_bboxes'] (final + aux layers)."""
    if not dn_meta or dn_meta["pad_size"] == 0:
        return outputs_class, outputs_coord
    pad = dn_meta["pad_size"]
    known_class, known_coord = outputs_class[:, :, :pad], outputs_coord[:, :, :pad]
    dn_meta["output_known_lbs_bboxes"] = {
        "pred_logits": known_class[-1],
        "pred_boxes": known_coord[-1],
        "aux_outputs": [{"pred_logits": c, "pred_boxes": b} for c, b in zip(known_class[:-1], known_coord[:-1])],
    }
    return outputs_class[:, :, pad:], outputs_coord[:, :, pad:]


def denoising_match_indices(targets: Sequence[Dict[str, Tensor]], dn_meta: Dict) -> List[Tuple[Tensor, Tensor]]:
    """(query index, target index) pairs of the positive denoising queries per image."""
    groups = dn_meta["num_dn_group"]
    group_size = dn_meta["pad_size"] // groups
    indices = []
    for t in targets:
        n = len(t["labels"])
        device = t["labels"].device
        tgt = torch.arange(n, dtype=torch.int64, device=device).repeat(groups)
        query = (torch.arange(groups, dtype=torch.int64, device=device) * group_size).repeat_interleave(n) + tgt
        indices.append((query, tgt))
    return indices
