"""InternImage backbones (Wang et al., 2023): DCNv3 operators in a
transformer-like hierarchy.

Keys are the official InternImage detection backbone's (used by DINO-
InternImage): `patch_embed.{conv1,norm1.1,conv2,norm2.1}`,
`levels.N.blocks.M.{norm1.0,dcn,norm2.0,mlp,gamma1,gamma2}`, `levels.N.norm.0`
(pre-norm models only), `levels.N.downsample.{conv,norm.1}`. There are no
extra output norms: a stage's output is its feature map before downsampling.

Hyper-parameters are those of the DINO-InternImage results (layer scale 1.0,
post-norm for S/B/L, offset scale 2 for L). DCNv3 runs in plain PyTorch
(models/dino/backbones/dcnv3.py). Inputs of any size work (all convolutions
are padded, stride 2).

Pretrained files: the official classification releases (`{'model': ...}`
with `conv_head`, `head` and friends dropped) and detection checkpoints whose
keys start with `backbone.`. InternImage-T was pretrained without layer
scale, so its `gamma1/gamma2` start at 1.0 (reported as missing).
detrex checkpoints: `remap_detrex_internimage`, the 'detrex' layout (same keys).
"""
from typing import List, Optional

import torch
from torch import Tensor, nn

from ._common import (Mlp, drop_path_or_identity, drop_path_rate, finish_body, reject_dilation, rename_keys,
                      run_block, stage_indices, stochastic_depth_rates, strip_prefix)
from .dcnv3 import DCNv3, layer_norm_seq
from .pretrained import StateDict
from .registry import register_backbone, register_layout_remap

INTERNIMAGE_SPECS = {
    "internimage_T_1k": dict(channels=64, depths=(4, 4, 18, 4), groups=(4, 8, 16, 32), offset_scale=1.0,
                             post_norm=False, drop_path_rate=0.1),
    "internimage_S_1k": dict(channels=80, depths=(4, 4, 21, 4), groups=(5, 10, 20, 40), offset_scale=1.0,
                             post_norm=True, drop_path_rate=0.1),
    "internimage_B_1k": dict(channels=112, depths=(4, 4, 21, 4), groups=(7, 14, 28, 56), offset_scale=1.0,
                             post_norm=True, drop_path_rate=0.1),
    "internimage_L_22k": dict(channels=160, depths=(5, 5, 22, 5), groups=(10, 20, 40, 80), offset_scale=2.0,
                              post_norm=True, drop_path_rate=0.0),
}

INTERNIMAGE_FILES = {
    "internimage_T_1k": "internimage_t_1k_224.pth",
    "internimage_S_1k": "internimage_s_1k_224.pth",
    "internimage_B_1k": "internimage_b_1k_224.pth",
    "internimage_L_22k": "internimage_l_22k_192to384.pth",
}


class StemLayer(nn.Module):
    """Two 3x3 stride-2 convolutions with LayerNorm (and GELU between): stride 4, channels-last out."""

    def __init__(self, out_chans: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, out_chans // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = layer_norm_seq(out_chans // 2, channels_first_in=True, channels_first_out=True)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, kernel_size=3, stride=2, padding=1)
        self.norm2 = layer_norm_seq(out_chans, channels_first_in=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class DownsampleLayer(nn.Module):
    """3x3 stride-2 conv doubling the channels, then LayerNorm (channels-last in and out)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = layer_norm_seq(2 * channels, channels_first_in=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)))


class InternImageLayer(nn.Module):
    """DCNv3 and MLP residual branches, pre- or post-norm, with optional layer scale."""

    def __init__(self, channels: int, group: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 post_norm: bool = False, layer_scale: Optional[float] = None, offset_scale: float = 1.0):
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = layer_norm_seq(channels)
        self.dcn = DCNv3(channels, kernel_size=3, stride=1, pad=1, dilation=1, group=group,
                         offset_scale=offset_scale)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = layer_norm_seq(channels)
        self.mlp = Mlp(channels, int(channels * mlp_ratio))
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((channels,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((channels,), float(layer_scale)))
        else:
            self.gamma1 = self.gamma2 = 1.0

    def forward(self, x: Tensor) -> Tensor:
        if self.post_norm:
            x = x + self.drop_path(self.gamma1 * self.norm1(self.dcn(x)))
            return x + self.drop_path(self.gamma2 * self.norm2(self.mlp(x)))
        x = x + self.drop_path(self.gamma1 * self.dcn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))


class InternImageStage(nn.Module):
    def __init__(self, channels: int, depth: int, group: int, drop_paths: List[float], downsample: bool,
                 post_norm: bool, layer_scale: Optional[float], offset_scale: float, mlp_ratio: float = 4.0,
                 use_checkpoint: bool = False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            InternImageLayer(channels, group, mlp_ratio, drop_paths[i], post_norm, layer_scale, offset_scale)
            for i in range(depth))
        self.norm = None if post_norm else layer_norm_seq(channels)
        self.downsample = DownsampleLayer(channels) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = run_block(block, self.use_checkpoint, x)
        return x if self.norm is None else self.norm(x)


class InternImageBody(nn.Module):
    def __init__(self, channels: int, depths, groups, out_indices: List[int], offset_scale: float = 1.0,
                 post_norm: bool = False, layer_scale: Optional[float] = 1.0, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.1, use_checkpoint: bool = False):
        super().__init__()
        self.out_indices = list(out_indices)
        self.patch_embed = StemLayer(channels)
        dims = [channels * 2 ** i for i in range(4)]
        rates = stochastic_depth_rates(drop_path_rate, depths)
        self.levels = nn.ModuleList(
            InternImageStage(dims[i], depths[i], groups[i], rates[i], downsample=i < 3, post_norm=post_norm,
                             layer_scale=layer_scale, offset_scale=offset_scale, mlp_ratio=mlp_ratio,
                             use_checkpoint=use_checkpoint)
            for i in range(4))
        self._init_weights()
        self.num_features = dims
        self.num_channels = [dims[i] for i in self.out_indices]
        self.strides = [(4, 8, 16, 32)[i] for i in self.out_indices]

    def _init_weights(self) -> None:
        # N(0, 0.02): the official truncation at +-2 (absolute) never bites at this std.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, DCNv3):
                m.reset_parameters()

    def forward(self, x: Tensor) -> List[Tensor]:
        x = self.patch_embed(x)
        outs = []
        for i in range(max(self.out_indices) + 1):
            level = self.levels[i]
            x = level(x)
            if i in self.out_indices:
                outs.append(x.permute(0, 3, 1, 2).contiguous())
            if level.downsample is not None:
                x = level.downsample(x)
        return outs


_CLASSIFIER_PREFIXES = ("conv_head.", "head.", "clip_projector.", "fc_norm.", "avgpool.")


def remap_internimage(state: StateDict, body: InternImageBody) -> StateDict:
    """Official InternImage weights (classification or detection) -> this module's keys."""
    state = strip_prefix(state)
    return {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}


@register_backbone(*INTERNIMAGE_SPECS)
def build_internimage(args) -> nn.Module:
    reject_dilation(args)
    spec = INTERNIMAGE_SPECS[args.backbone]
    body = InternImageBody(spec["channels"], spec["depths"], spec["groups"], stage_indices(args),
                           offset_scale=spec["offset_scale"], post_norm=spec["post_norm"], layer_scale=1.0,
                           drop_path_rate=drop_path_rate(args, spec["drop_path_rate"]),
                           use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    return finish_body(body, args, INTERNIMAGE_FILES, remap_internimage)


# detrex's InternImage (dino-internimage) is the official detection backbone, key for key.
_DETREX_RULES = [(pattern, r"\g<0>") for pattern in (
    r"patch_embed\.(?:conv[12]|norm[12]\.1)\.(?:weight|bias)",
    r"levels\.\d\.blocks\.\d+\.gamma[12]",
    r"levels\.\d\.blocks\.\d+\.(?:norm[12]\.0|mlp\.fc[12])\.(?:weight|bias)",
    r"levels\.\d\.blocks\.\d+\.dcn\.(?:dw_conv\.0|dw_conv\.1\.1|offset|mask|input_proj|output_proj)"
    r"\.(?:weight|bias)",
    r"levels\.\d\.(?:norm\.0|downsample\.norm\.1)\.(?:weight|bias)",
    r"levels\.\d\.downsample\.conv\.weight",
)]


@register_layout_remap("detrex", *INTERNIMAGE_SPECS)
def remap_detrex_internimage(state: StateDict, args) -> StateDict:
    """detrex InternImage backbone keys -> this body's keys (the same names)."""
    return rename_keys(state, _DETREX_RULES, what=f"detrex {args.backbone}")
