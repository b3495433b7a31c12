"""FocalNet backbones (Yang et al., 2022), focal modulation instead of attention.

Keys follow FocalNet-DINO (the DINO code base extended with FocalNet by the
FocalNet authors) and the official FocalNet release:
`patch_embed.{proj,norm}`, `layers.N.blocks.M.{norm1,modulation,norm2,mlp,
gamma_1,gamma_2}`, `layers.N.downsample.{proj,norm}` (at the *end* of stages
0-2) and one `normN` per returned stage. Names: FocalNet-DINO's
`focalnet_L_384_22k` (3 focal levels, windows 5) and `focalnet_L_384_22k_fl4`
(4 levels, windows 3), and the ImageNet-1k LRF models (3 focal levels,
windows 3) as `focalnet_{T,S,B}_224_1k_fl3`.

The large models use overlapping convolutions for the stem (7x7, stride 4) and
the downsampling (3x3, stride 2), post-norm blocks and layer scale, like the
official release. FocalNet-DINO's config keys `focal_levels` and
`focal_windows` (one int for all stages) override the defaults when set.

Pretrained files: the official release (`{'model': ...}` with `head` and the
final `norm`) and timm's layout (`stem`, downsampling at the start of stages
1-3, 1x1 convolutions for the linear layers, `ls1.gamma`, `norm1_post`).
detrex checkpoints: `remap_detrex_focalnet`, the 'detrex' layout; detrex's fl4 configs need
`focal_normalize_modulator=False`.
"""
import re
from typing import List, Optional

import torch
from torch import Tensor, nn

from ._common import (Mlp, pad_to_multiple, drop_path_or_identity, drop_path_rate, finish_body, linear_from_conv1x1,
                      optional_list, reject_dilation, rename_keys, run_block, stage_indices, stochastic_depth_rates,
                      strip_prefix)
from .pretrained import StateDict
from .registry import register_backbone, register_layout_remap

_LRF_1K = dict(focal_levels=3, focal_windows=3, conv_embed=False, post_norm=False, layer_scale=False,
               normalize_modulator=False, drop_path_rate=0.1)
_LARGE = dict(embed_dim=192, depths=(2, 2, 18, 2), conv_embed=True, post_norm=True, layer_scale=True,
              drop_path_rate=0.3)

FOCALNET_SPECS = {
    "focalnet_T_224_1k_fl3": dict(_LRF_1K, embed_dim=96, depths=(2, 2, 6, 2)),
    "focalnet_S_224_1k_fl3": dict(_LRF_1K, embed_dim=96, depths=(2, 2, 18, 2)),
    "focalnet_B_224_1k_fl3": dict(_LRF_1K, embed_dim=128, depths=(2, 2, 18, 2)),
    "focalnet_L_384_22k": dict(_LARGE, focal_levels=3, focal_windows=5, normalize_modulator=False),
    "focalnet_L_384_22k_fl4": dict(_LARGE, focal_levels=4, focal_windows=3, normalize_modulator=True),
}

FOCALNET_FILES = {
    "focalnet_T_224_1k_fl3": "focalnet_tiny_lrf.pth",
    "focalnet_S_224_1k_fl3": "focalnet_small_lrf.pth",
    "focalnet_B_224_1k_fl3": "focalnet_base_lrf.pth",
    "focalnet_L_384_22k": "focalnet_large_lrf_384.pth",
    "focalnet_L_384_22k_fl4": "focalnet_large_lrf_384_fl4.pth",
}


class FocalModulation(nn.Module):
    """Gated aggregation of hierarchical depthwise-conv contexts, modulating a query projection."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, focal_factor: int = 2,
                 norm_in_modulation: bool = False, normalize_modulator: bool = False, drop: float = 0.0):
        super().__init__()
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)
        self.focal_layers = nn.ModuleList()
        self.ln = nn.LayerNorm(dim) if norm_in_modulation else None
        for k in range(focal_level):
            kernel = focal_factor * k + focal_window
            self.focal_layers.append(nn.Sequential(
                nn.Conv2d(dim, dim, kernel, groups=dim, padding=kernel // 2, bias=False), nn.GELU()))

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, H, W, C]."""
        c = x.shape[-1]
        q, ctx, gates = torch.split(self.f(x).permute(0, 3, 1, 2), (c, c, self.focal_level + 1), 1)
        ctx_all = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level:level + 1]
        ctx_global = self.act(ctx.mean((2, 3), keepdim=True))
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level:]
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)
        out = (q * self.h(ctx_all)).permute(0, 2, 3, 1)
        if self.ln is not None:
            out = self.ln(out)
        return self.proj_drop(self.proj(out))


class FocalNetBlock(nn.Module):
    def __init__(self, dim: int, focal_level: int, focal_window: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0, post_norm: bool = False, norm_in_modulation: bool = False,
                 normalize_modulator: bool = False, layer_scale: Optional[float] = None):
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(dim, focal_level, focal_window, norm_in_modulation=norm_in_modulation,
                                          normalize_modulator=normalize_modulator)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if layer_scale is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), layer_scale))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layer_scale))
        else:
            self.gamma_1 = self.gamma_2 = 1.0

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        b, length, c = x.shape
        y = x if self.post_norm else self.norm1(x)
        y = self.modulation(y.view(b, height, width, c)).view(b, length, c)
        if self.post_norm:
            y = self.norm1(y)
        x = x + self.drop_path(self.gamma_1 * y)
        if self.post_norm:
            return x + self.drop_path(self.gamma_2 * self.norm2(self.mlp(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Patch projection (plain or overlapping conv) + LayerNorm; pads the input to a multiple of the stride."""

    def __init__(self, stride: int, in_chans: int, embed_dim: int, overlap: bool):
        super().__init__()
        self.stride = stride
        if overlap:
            kernel, padding = (7, 2) if stride == 4 else (3, 1)
        else:
            kernel, padding = stride, 0
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor):
        """[B, C, H, W] -> tokens [B, h*w, C'], h, w."""
        s = self.stride
        x = self.proj(pad_to_multiple(x, s))
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class FocalNetStage(nn.Module):
    def __init__(self, dim: int, depth: int, drop_paths: List[float], downsample: bool, overlap: bool,
                 use_checkpoint: bool = False, **block_kw):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(FocalNetBlock(dim, drop_path=drop_paths[i], **block_kw) for i in range(depth))
        self.downsample = PatchEmbed(2, dim, 2 * dim, overlap) if downsample else None

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        for block in self.blocks:
            x = run_block(block, self.use_checkpoint, x, height, width)
        return x


class FocalNetBody(nn.Module):
    def __init__(self, embed_dim: int, depths, focal_levels, focal_windows, out_indices: List[int],
                 conv_embed: bool = False, post_norm: bool = False, layer_scale: bool = False,
                 norm_in_modulation: bool = False, normalize_modulator: bool = False,
                 drop_path_rate: float = 0.1, use_checkpoint: bool = False):
        super().__init__()
        self.out_indices = list(out_indices)
        self.patch_embed = PatchEmbed(4, 3, embed_dim, conv_embed)
        dims = [embed_dim * 2 ** i for i in range(4)]
        rates = stochastic_depth_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList(
            FocalNetStage(dims[i], depths[i], rates[i], downsample=i < 3, overlap=conv_embed,
                          use_checkpoint=use_checkpoint, focal_level=focal_levels[i], focal_window=focal_windows[i],
                          post_norm=post_norm, norm_in_modulation=norm_in_modulation,
                          normalize_modulator=normalize_modulator, layer_scale=1e-4 if layer_scale else None)
            for i in range(4))
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(dims[i]))
        self.num_features = dims
        self.num_channels = [dims[i] for i in self.out_indices]
        self.strides = [(4, 8, 16, 32)[i] for i in self.out_indices]

    def forward(self, x: Tensor) -> List[Tensor]:
        x, height, width = self.patch_embed(x)
        outs = []
        for i in range(max(self.out_indices) + 1):
            stage = self.layers[i]
            x = stage(x, height, width)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(x)
                outs.append(out.view(-1, height, width, out.shape[-1]).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x, height, width = stage.downsample(x.transpose(1, 2).reshape(x.shape[0], -1, height, width))
        return outs


def remap_focalnet(state: StateDict, body: FocalNetBody) -> StateDict:
    """Official or timm FocalNet weights -> this module's keys."""
    state = strip_prefix(state)
    if any(k.startswith("stem.") for k in state):  # timm
        renamed = {}
        for k, v in state.items():
            k = "patch_embed." + k[len("stem."):] if k.startswith("stem.") else k
            k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
            k = re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", k)
            k = re.sub(r"\.norm([12])_post\.", r".norm\1.", k)
            k = k.replace(".modulation.norm.", ".modulation.ln.")
            renamed[k] = v
        state = linear_from_conv1x1(renamed, body)
    return {k: v for k, v in state.items() if not k.startswith(("head.", "norm."))}


def _option(args, key: str, default):
    value = getattr(args, key, None)
    return default if value is None else value


@register_backbone(*FOCALNET_SPECS)
def build_focalnet(args) -> nn.Module:
    reject_dilation(args)
    spec = FOCALNET_SPECS[args.backbone]
    levels = optional_list(getattr(args, "focal_levels", None), 4) or [spec["focal_levels"]] * 4
    windows = optional_list(getattr(args, "focal_windows", None), 4) or [spec["focal_windows"]] * 4
    body = FocalNetBody(spec["embed_dim"], spec["depths"], levels, windows, stage_indices(args),
                        conv_embed=spec["conv_embed"], post_norm=spec["post_norm"], layer_scale=spec["layer_scale"],
                        normalize_modulator=bool(_option(args, "focal_normalize_modulator",
                                                         spec["normalize_modulator"])),
                        drop_path_rate=drop_path_rate(args, spec["drop_path_rate"]),
                        use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    return finish_body(body, args, FOCALNET_FILES, remap_focalnet)


# detrex's FocalNet (dino-focal) is FocalNet-DINO's module tree, key for key. Its fl4 configs do not
# normalize the modulator (normalize_modulator=False), unlike the official fl4 model: set
# focal_normalize_modulator=False for those checkpoints.
_DETREX_RULES = [(pattern, r"\g<0>") for pattern in (
    r"patch_embed\.(?:proj|norm)\.(?:weight|bias)",
    r"layers\.\d\.blocks\.\d+\.(?:norm[12]|mlp\.fc[12]|modulation\.(?:f|h|proj|ln))\.(?:weight|bias)",
    r"layers\.\d\.blocks\.\d+\.modulation\.focal_layers\.\d\.0\.weight",
    r"layers\.\d\.blocks\.\d+\.gamma_[12]",
    r"layers\.\d\.downsample\.(?:proj|norm)\.(?:weight|bias)",
    r"norm\d\.(?:weight|bias)",
)]


@register_layout_remap("detrex", *FOCALNET_SPECS)
def remap_detrex_focalnet(state: StateDict, args) -> StateDict:
    """detrex FocalNet backbone keys -> this body's keys (the same names)."""
    return rename_keys(state, _DETREX_RULES, what=f"detrex {args.backbone}")
