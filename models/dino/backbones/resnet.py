"""ResNet backbones (torchvision), with frozen batch norm as in DETR/DINO.

State-dict keys are `body.<torchvision resnet key>` (so `backbone.0.body...`
inside DINO), as the original. Pretrained weights are torchvision's ImageNet
files (IMAGENET1K_V1, as the original): a local file when the config names one,
else through torchvision's own download and cache when training starts.
"""
import logging
import re
from typing import Dict, List

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops.misc import FrozenBatchNorm2d

from .pretrained import (attach_pretrained_source, drop_keys, freeze_by_keywords, load_pretrained, pretrained_path,
                         torchvision_source, trusts_checkpoints)
from .registry import register_backbone, register_layout_remap

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


def _fold_into(conv: nn.Conv2d, norm: FrozenBatchNorm2d) -> None:
    """conv <- norm(conv(.)) exactly up to rounding: scale the filters, put the shift in the bias."""
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    shift = norm.bias - norm.running_mean * scale
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def fold_frozen_batch_norm(body: nn.Module) -> int:
    """Fold every frozen batch norm of a torchvision ResNet into the convolution before it (in
    place) and put an identity in its place; returns how many were folded.

    For inference only: it saves a multiply-add pass (and, under bfloat16 autocast, two casts)
    over every feature map, and the model's state dict changes (no `bn*` buffers, conv biases),
    so a folded model is not one to save or train. Trainable batch norm is left alone.
    """
    folded = 0
    for module in list(body.modules()):
        pairs = [(f"conv{i}", f"bn{i}") for i in range(1, 4)]
        if isinstance(module, nn.Sequential):
            pairs += [(str(i), str(i + 1)) for i in range(len(module) - 1)]
        for conv_name, norm_name in pairs:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, FrozenBatchNorm2d):
                _fold_into(conv, norm)
                setattr(module, norm_name, nn.Identity())
                folded += 1
    return folded


def _remap_torchvision(state, module):
    return {f"body.{k}": v for k, v in drop_keys(state, ("fc.",)).items()}


@register_backbone("resnet18", "resnet34", "resnet50", "resnet101")
def build_resnet(args) -> nn.Module:
    body = ResNetBody(args.backbone, list(args.return_interm_indices), getattr(args, "dilation", False),
                      getattr(args, "batch_norm_type", "FrozenBatchNorm2d"))
    path = pretrained_path(args, TORCHVISION_FILES)
    if path:
        load_pretrained(body, path, _remap_torchvision, what=args.backbone, trust=trusts_checkpoints(args))
    else:
        attach_pretrained_source(body, args, torchvision_source(args.backbone, TORCHVISION_FILES[args.backbone],
                                                                _remap_torchvision))
    keywords = getattr(args, "backbone_freeze_keywords", None)
    if keywords is None:
        # The original trains layer2-4 only: stem and layer1 stay as pretrained.
        for name, param in body.named_parameters():
            if not any(f"layer{i}" in name for i in (2, 3, 4)):
                param.requires_grad_(False)
    else:
        freeze_by_keywords(body, keywords)
    return body


# --- detrex / detectron2 checkpoints ------------------------------------------
# detectron2's ResNet (detrex's DINO-R50/R101, built with stride_in_1x1=False,
# i.e. the stride in the 3x3 conv as torchvision, and FrozenBN with eps 1e-5 as
# torchvision's FrozenBatchNorm2d) computes what torchvision's does; only the
# names differ: stem.conv1(.norm) -> conv1/bn1, resN.i.convK(.norm) ->
# layer{N-1}.i.convK/bnK, resN.i.shortcut(.norm) -> layer{N-1}.i.downsample.0/1.
_DETECTRON2_RESNET = [
    (re.compile(r"^stem\.conv1\.norm\."), "bn1."),
    (re.compile(r"^stem\.conv1\."), "conv1."),
    (re.compile(r"^res(\d)\.(\d+)\.shortcut\.norm\."), lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1."),
    (re.compile(r"^res(\d)\.(\d+)\.shortcut\."), lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0."),
    (re.compile(r"^res(\d)\.(\d+)\.conv(\d)\.norm\."), lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}."),
    (re.compile(r"^res(\d)\.(\d+)\.conv(\d)\."), lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}."),
]


@register_layout_remap("detrex", "resnet18", "resnet34", "resnet50", "resnet101")
def remap_detrex_resnet(state: Dict[str, Tensor], args) -> Dict[str, Tensor]:
    """detectron2 ResNet keys (`stem.*`, `res2..res5.*`) -> this body's (`body.<torchvision key>`).

    Keys of stages the body does not hold (e.g. res5 when return_interm_indices
    stops earlier) are kept under their torchvision names so that loading
    reports them; an unknown key raises ValueError.
    """
    out = {}
    for key, value in state.items():
        for pattern, target in _DETECTRON2_RESNET:
            m = pattern.match(key)
            if m:
                new = target if isinstance(target, str) else target(m)
                out["body." + new + key[m.end():]] = value
                break
        else:
            raise ValueError(f"detrex ResNet checkpoint: key backbone.{key} is not a detectron2 ResNet name")
    return out
