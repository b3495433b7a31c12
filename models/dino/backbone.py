"""The detector's backbone: a body (registered by name) joined with the
position encoding. `backbone.0` is the body and `backbone.1` the encoding, as
in the original, so checkpoint keys match."""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util.misc import NestedTensor

from .backbones import build_backbone_body
from .ops import is_exporting
from .position_encoding import build_position_encoding


def downsample_mask(mask: Tensor, size) -> Tensor:
    """Nearest-neighbour resize of a padding mask [B, H, W] to `size`."""
    if is_exporting():  # ONNX Resize rounds source indices differently; index as PyTorch does instead
        return nearest_resize_mask(mask, size)
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]


def _nearest_source_index(in_size, out_size) -> Tensor:
    # PyTorch's nearest: floor(dst * float32(in / out)), both steps in float32
    scale = torch.scalar_tensor(in_size, dtype=torch.float32) / torch.scalar_tensor(out_size, dtype=torch.float32)
    index = (torch.arange(out_size, dtype=torch.float32) * scale).floor().to(torch.int64)
    return index.clamp(max=in_size - 1)


def nearest_resize_mask(mask: Tensor, size) -> Tensor:
    """`downsample_mask` as explicit row/column indexing, which traces to exact ONNX ops (Gather)."""
    rows = _nearest_source_index(mask.shape[1], size[0]).to(mask.device)
    cols = _nearest_source_index(mask.shape[2], size[1]).to(mask.device)
    return mask.index_select(1, rows).index_select(2, cols)


class Joiner(nn.Sequential):
    """Runs the body, then gives every feature map its padding mask and position encoding."""

    def __init__(self, body: nn.Module, position_embedding: nn.Module):
        super().__init__(body, position_embedding)
        self.num_channels: List[int] = list(body.num_channels)
        self.strides: List[int] = list(body.strides)

    def forward(self, samples: NestedTensor) -> Tuple[List[NestedTensor], List[Tensor]]:
        features, positions = [], []
        for x in self[0](samples.tensors):
            feature = NestedTensor(x, downsample_mask(samples.mask, x.shape[-2:]))
            features.append(feature)
            positions.append(self[1](feature).to(x.dtype))
        return features, positions


def build_backbone(args) -> Joiner:
    if getattr(args, "lr_backbone", 1.0) <= 0:
        raise ValueError("lr_backbone must be > 0 (freeze parts of the backbone with backbone_freeze_keywords)")
    return Joiner(build_backbone_body(args), build_position_encoding(args))
