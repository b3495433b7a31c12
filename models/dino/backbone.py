"""The detector's backbone: a body (registered by name) joined with the
position encoding. `backbone.0` is the body and `backbone.1` the encoding, as
in the original, so checkpoint keys match."""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util.misc import NestedTensor

from .backbones import build_backbone_body
from .position_encoding import build_position_encoding


def downsample_mask(mask: Tensor, size) -> Tensor:
    """Nearest-neighbour resize of a padding mask [B, H, W] to `size`."""
    return F.interpolate(mask[None].float(), size=size).to(torch.bool)[0]


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
