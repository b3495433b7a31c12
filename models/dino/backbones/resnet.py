"""ResNet backbones (torchvision), with frozen batch norm as in DETR/DINO.

State-dict keys are `body.<torchvision resnet key>` (so `backbone.0.body...`
inside DINO), as the original. Pretrained weights are torchvision's ImageNet
files, read from a local path.
"""
import logging
from typing import List

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from .pretrained import drop_keys, freeze_by_keywords, load_pretrained, pretrained_path
from .registry import register_backbone

logger = logging.getLogger("dino.backbone")

# torchvision's published ImageNet files (for `backbone_dir`).
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
}
_CHANNELS = {
    "resnet18": [64, 128, 256, 512],
    "resnet34": [64, 128, 256, 512],
    "resnet50": [256, 512, 1024, 2048],
    "resnet101": [256, 512, 1024, 2048],
}
NORM_LAYERS = {
    "FrozenBatchNorm2d": FrozenBatchNorm2d,
    "BatchNorm2d": nn.BatchNorm2d,
    "SyncBatchNorm": nn.SyncBatchNorm,
}


class ResNetBody(nn.Module):
    """The ResNet stages selected by `return_interm_indices` (0 = layer1, stride 4)."""

    def __init__(self, name: str, return_interm_indices: List[int], dilation: bool = False,
                 norm_layer: str = "FrozenBatchNorm2d"):
        super().__init__()
        if norm_layer not in NORM_LAYERS:
            raise ValueError(f"batch_norm_type={norm_layer!r} is not supported; use one of {sorted(NORM_LAYERS)}")
        if sorted(set(return_interm_indices)) != list(return_interm_indices) or not set(return_interm_indices) <= {0, 1, 2, 3}:
            raise ValueError(f"return_interm_indices={return_interm_indices} must be increasing stage indexes in 0..3")
        if dilation and name in ("resnet18", "resnet34"):
            raise ValueError(f"dilation=True is not available for {name} (torchvision's BasicBlock has no dilation)")
        net = getattr(torchvision.models, name)(
            weights=None, replace_stride_with_dilation=[False, False, dilation], norm_layer=NORM_LAYERS[norm_layer])
        self.body = IntermediateLayerGetter(net, return_layers={f"layer{i + 1}": str(i) for i in return_interm_indices})
        self.num_channels = [_CHANNELS[name][i] for i in return_interm_indices]
        strides = [4, 8, 16, 32 if not dilation else 16]
        self.strides = [strides[i] for i in return_interm_indices]

    def forward(self, x: Tensor) -> List[Tensor]:
        return list(self.body(x).values())


def _remap_torchvision(state, module):
    return {f"body.{k}": v for k, v in drop_keys(state, ("fc.",)).items()}


@register_backbone("resnet18", "resnet34", "resnet50", "resnet101")
def build_resnet(args) -> nn.Module:
    body = ResNetBody(args.backbone, list(args.return_interm_indices), getattr(args, "dilation", False),
                      getattr(args, "batch_norm_type", "FrozenBatchNorm2d"))
    path = pretrained_path(args, TORCHVISION_FILES)
    if path:
        load_pretrained(body, path, _remap_torchvision, what=args.backbone)
    else:
        logger.warning("%s starts from random weights (no pretrained_backbone_path / backbone_dir given)",
                       args.backbone)
    keywords = getattr(args, "backbone_freeze_keywords", None)
    if keywords is None:
        # The original trains layer2-4 only: stem and layer1 stay as pretrained.
        for name, param in body.named_parameters():
            if not any(f"layer{i}" in name for i in (2, 3, 4)):
                param.requires_grad_(False)
    else:
        freeze_by_keywords(body, keywords)
    return body
