"""ConvNeXt backbones (Liu et al., 2022) with the original DINO key layout.

Keys are the original's `convnext.py` (the official ConvNeXt release layout):
`downsample_layers.{0..3}` (stem, then LayerNorm + stride-2 conv),
`stages.N.M.{dwconv,norm,pwconv1,pwconv2,gamma}`, and `norm0`..`norm3`. The
original builds all four output norms whatever `return_interm_indices` is,
so this module does too (checkpoints load key for key); the norms of stages
that are not returned are unused and therefore frozen.

Like the original, the stem does not pad: an input side that is not a
multiple of 4 loses its last pixels, and odd maps lose a row/column at each
downsampling.

Pretrained files: the official release (`{'model': ...}`, plus the
classifier's `norm` and `head`) and timm's layout (`stem`,
`stages.N.downsample`, `stages.N.blocks.M.{conv_dw,mlp.fc1,mlp.fc2}`).
detrex checkpoints: `remap_detrex_convnext`, the 'detrex' layout (unit norms for the stages
detrex keeps no output norm for).
"""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (drop_path_or_identity, drop_path_rate, finish_body, reject_dilation, rename_keys,
                      run_block, stage_indices, stochastic_depth_rates, strip_prefix)
from .pretrained import StateDict, timm_source
from .registry import register_backbone, register_layout_remap

_DEPTHS_T = (3, 3, 9, 3)
_DEPTHS = (3, 3, 27, 3)
_DIMS = {
    "tiny": (96, 192, 384, 768),
    "small": (96, 192, 384, 768),
    "base": (128, 256, 512, 1024),
    "large": (192, 384, 768, 1536),
    "xlarge": (256, 512, 1024, 2048),
}

# name -> (size, file of the official release looked up in `backbone_dir`).
# `convnext_<size>_22k` are the ImageNet-22k models at 224 (the original's
# model_urls naming; convnext_xlarge_22k is the original DINO's backbone);
# `convnext_<size>_22k_384` the IN-22k models fine-tuned on IN-1k at 384,
# which the DINO ConvNeXt results use.
CONVNEXT_MODELS = {
    "convnext_tiny_22k": ("tiny", "convnext_tiny_22k_224.pth"),
    "convnext_small_22k": ("small", "convnext_small_22k_224.pth"),
    "convnext_base_22k": ("base", "convnext_base_22k_224.pth"),
    "convnext_large_22k": ("large", "convnext_large_22k_224.pth"),
    "convnext_xlarge_22k": ("xlarge", "convnext_xlarge_22k_224.pth"),
    "convnext_tiny_22k_384": ("tiny", "convnext_tiny_22k_1k_384.pth"),
    "convnext_small_22k_384": ("small", "convnext_small_22k_1k_384.pth"),
    "convnext_base_22k_384": ("base", "convnext_base_22k_1k_384.pth"),
    "convnext_large_22k_384": ("large", "convnext_large_22k_1k_384.pth"),
}
CONVNEXT_FILES = {name: file for name, (_, file) in CONVNEXT_MODELS.items()}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a [B, C, H, W] map."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm, MLP (x4), layer scale, residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXtBody(nn.Module):
    def __init__(self, depths, dims, out_indices: List[int], drop_path_rate: float = 0.0,
                 layer_scale_init: float = 1e-6, use_checkpoint: bool = False):
        super().__init__()
        self.out_indices = list(out_indices)
        self.use_checkpoint = use_checkpoint
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(
                LayerNorm2d(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)))
        rates = stochastic_depth_rates(drop_path_rate, depths)
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dims[i], rates[i][j], layer_scale_init) for j in range(depths[i])))
            for i in range(4))
        for i in range(4):
            norm = LayerNorm2d(dims[i], eps=1e-6)
            if i not in self.out_indices:
                norm.requires_grad_(False)
            self.add_module(f"norm{i}", norm)
        self.dims = list(dims)
        self.num_channels = [dims[i] for i in self.out_indices]
        self.strides = [(4, 8, 16, 32)[i] for i in self.out_indices]

    def forward(self, x: Tensor) -> List[Tensor]:
        outs = []
        for i in range(max(self.out_indices) + 1):
            x = self.downsample_layers[i](x)
            for block in self.stages[i]:
                x = run_block(block, self.use_checkpoint, x)
            if i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x))
        return outs


_TIMM_BLOCK_NAMES = {"conv_dw": "dwconv", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2"}


def remap_convnext(state: StateDict, body: ConvNeXtBody) -> StateDict:
    """Official or timm ConvNeXt weights -> this module's keys."""
    state = strip_prefix(state)
    out = {}
    for k, v in state.items():
        if k.startswith(("head.", "norm.")):
            continue
        if k.startswith("stem."):
            k = "downsample_layers.0." + k[len("stem."):]
        parts = k.split(".")
        if parts[0] == "stages" and len(parts) > 2 and parts[2] == "downsample":
            k = ".".join(["downsample_layers", parts[1]] + parts[3:])
        elif parts[0] == "stages" and len(parts) > 3 and parts[2] == "blocks":
            rest = ".".join(parts[4:])
            for timm_name, name in _TIMM_BLOCK_NAMES.items():
                if rest.startswith(timm_name + "."):
                    rest = name + rest[len(timm_name):]
            k = ".".join(["stages", parts[1], parts[3], rest])
        out[k] = v
    return out


@register_backbone(*CONVNEXT_MODELS)
def build_convnext(args) -> nn.Module:
    reject_dilation(args)
    size = CONVNEXT_MODELS[args.backbone][0]
    body = ConvNeXtBody(_DEPTHS_T if size == "tiny" else _DEPTHS, _DIMS[size], stage_indices(args),
                        drop_path_rate=drop_path_rate(args, 0.0),
                        use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    tag = "fb_in22k_ft_in1k_384" if args.backbone.endswith("_384") else "fb_in22k"  # timm's names of the same files
    source = timm_source(args.backbone, f"convnext_{size}.{tag}", CONVNEXT_FILES[args.backbone], remap_convnext)
    return finish_body(body, args, CONVNEXT_FILES, remap_convnext, source)


# detrex's ConvNeXt (dino-convnext) has the original's module names but creates the output norms of
# the returned stages only; the others, which the forward never uses, are filled in as unit norms.
_DETREX_RULES = [(pattern, r"\g<0>") for pattern in (
    r"downsample_layers\.\d\.[01]\.(?:weight|bias)",
    r"stages\.\d\.\d+\.(?:dwconv|norm|pwconv1|pwconv2)\.(?:weight|bias)",
    r"stages\.\d\.\d+\.gamma",
    r"norm\d\.(?:weight|bias)",
)]


@register_layout_remap("detrex", *CONVNEXT_MODELS)
def remap_detrex_convnext(state: StateDict, args) -> StateDict:
    """detrex ConvNeXt backbone keys -> this body's keys (+ unit norms of the stages not returned)."""
    out = rename_keys(state, _DETREX_RULES, what=f"detrex {args.backbone}")
    returned = [int(i) for i in args.return_interm_indices]
    for i in range(4):
        width_key = f"stages.{i}.0.dwconv.weight"
        if f"norm{i}.weight" not in out and i in returned:
            raise ValueError(f"detrex {args.backbone}: the checkpoint has no norm{i} (it returns other stages); "
                             f"return_interm_indices={returned} does not fit it")
        if f"norm{i}.weight" not in out and width_key in out:
            width = out[width_key].shape[0]
            out[f"norm{i}.weight"] = torch.ones(width, dtype=out[width_key].dtype)
            out[f"norm{i}.bias"] = torch.zeros(width, dtype=out[width_key].dtype)
    return out
