"""Building blocks shared by the DINO transformer and heads."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fused_linear import activation_fn, linear  # noqa: F401  (activation_fn: re-exported)


# feature level sizes: an (L, 2) tensor of (h, w) rows, or the same as a sequence of (h, w) pairs
LevelShapes = Union[Tensor, Sequence[Tuple[int, int]]]


def level_sizes(spatial_shapes: LevelShapes) -> List[Tuple[int, int]]:
    """(h, w) of every level. Pass a sequence taken from the feature maps' shapes
    when exporting: reading a tensor's values would freeze the sizes in the graph."""
    if isinstance(spatial_shapes, Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(h, w) for h, w in spatial_shapes]


class MLP(nn.Module):
    """`num_layers` linear layers with ReLU between them (the box head and query-position head)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            x = linear(x, layer, "relu" if i < last else None)
        return x


def sine_embed_boxes(boxes: Tensor, d_model: int = 256) -> Tensor:
    """Sine embedding of normalized boxes [..., 2 or 4] -> [..., d_model/2 * (2 or 4)].

    Order of the parts: y, x (, w, h), each d_model/2 interleaved sin/cos
    features with temperature 10000 (Conditional/DAB-DETR's query embedding).
    """
    half = d_model // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=boxes.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def embed(coord: Tensor) -> Tensor:
        pos = coord[..., None] * (2 * math.pi) / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    parts = [embed(boxes[..., 1]), embed(boxes[..., 0])]
    if boxes.shape[-1] == 4:
        parts += [embed(boxes[..., 2]), embed(boxes[..., 3])]
    elif boxes.shape[-1] != 2:
        raise ValueError(f"expected boxes with 2 or 4 coordinates, got {boxes.shape[-1]}")
    return torch.cat(parts, dim=-1)


def encoder_output_proposals(memory: Tensor, padding_mask: Tensor, spatial_shapes: LevelShapes,
                             learned_wh: Optional[Tensor] = None):
    """One anchor box per encoder token, for two-stage query selection.

    The box is centred on the token's cell (normalized by the valid size of its
    image) with side 0.05 * 2**level (or sigmoid(learned_wh) * 2**level). Returns the memory with padded/invalid
    tokens zeroed, and the proposals in inverse-sigmoid space with invalid ones
    set to +inf (so they never win the top-k).
    """
    batch = memory.shape[0]
    proposals = []
    start = 0
    for level, (h, w) in enumerate(level_sizes(spatial_shapes)):
        mask = padding_mask[:, start:start + h * w].view(batch, h, w)
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        # arange, not linspace(0, h - 1, h) (equal values): ONNX's linspace divides by h - 1, NaN for 1-pixel levels
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=memory.device),
            torch.arange(w, dtype=torch.float32, device=memory.device),
            indexing="ij",
        )
        grid = torch.stack([xs, ys], -1)
        scale = torch.stack([valid_w, valid_h], -1).view(batch, 1, 1, 2)
        centers = (grid.unsqueeze(0).expand(batch, -1, -1, -1) + 0.5) / scale
        base = learned_wh.sigmoid() if learned_wh is not None else 0.05
        sizes = torch.ones_like(centers) * base * (2.0 ** level)
        proposals.append(torch.cat((centers, sizes), -1).view(batch, -1, 4))
        start += h * w
    proposals = torch.cat(proposals, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals))
    proposals = proposals.masked_fill(padding_mask.unsqueeze(-1), float("inf"))
    proposals = proposals.masked_fill(~valid, float("inf"))
    memory = memory.masked_fill(padding_mask.unsqueeze(-1), 0.0).masked_fill(~valid, 0.0)
    return memory, proposals


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """RetinaNet's focal loss on [B, Q, C] logits, averaged over queries and
    summed over the batch, divided by the number of target boxes."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes
