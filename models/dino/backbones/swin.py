"""Swin Transformer backbones (Liu et al., 2021) as the original DINO uses them.

The module tree, and so the state-dict keys, is the original's:
`patch_embed.{proj,norm}`, `layers.N.blocks.M.{norm1,attn,norm2,mlp}`,
`layers.N.downsample.{reduction,norm}` (patch merging at the *end* of stages
0-2), one `normN` per returned stage, and the persistent
`attn.relative_position_index` buffers. Inside DINO these sit under
`backbone.0.`, so the original's DINO-Swin checkpoints load key for key.

Inputs of any size work as in the original: the image is zero-padded to a
multiple of the patch size, every block pads its map to a multiple of the
window after `norm1`, shifted windows use the original's -100 attention mask,
and patch merging pads odd maps.

Pretrained files: the official Swin releases (`{'model': ...}`, same keys plus
`head`, the final `norm` and `attn_mask` buffers) and timm's layout (patch
merging at the start of stages 1-3, `head.fc`). Relative position bias tables
are resized bicubically when the file's window differs from the model's.
detrex checkpoints (detectron2's SwinTransformer): `remap_detrex_swin`, the 'detrex' layout.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (Mlp, pad_to_multiple, drop_path_or_identity, drop_path_rate, finish_body, keep_own_buffers,
                      rename_keys, resize_rel_pos_table, run_block, stage_indices, stochastic_depth_rates, strip_prefix)
from .pretrained import StateDict, timm_source
from .registry import register_backbone, register_layout_remap

_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))

# `backbone` name -> architecture. The number before the pretraining set is the
# pretraining resolution: 224 models use 7x7 windows, 384 models 12x12.
SWIN_SPECS = {
    "swin_T_224_1k": dict(_T, window_size=7),
    "swin_T_224_22k": dict(_T, window_size=7),
    "swin_S_224_1k": dict(_S, window_size=7),
    "swin_B_224_22k": dict(_B, window_size=7),
    "swin_B_384_22k": dict(_B, window_size=12),
    "swin_L_224_22k": dict(_L, window_size=7),
    "swin_L_384_22k": dict(_L, window_size=12),
}

# File names of the official releases, looked up in `backbone_dir`. The first
# three are the original DINO's; swin_B_384_22k is the IN-22k model fine-tuned
# on IN-1k at 384, as in the original.
SWIN_FILES = {
    "swin_T_224_1k": "swin_tiny_patch4_window7_224.pth",
    "swin_B_384_22k": "swin_base_patch4_window12_384.pth",
    "swin_L_384_22k": "swin_large_patch4_window12_384_22k.pth",
    "swin_T_224_22k": "swin_tiny_patch4_window7_224_22kto1k_finetune.pth",
    "swin_S_224_1k": "swin_small_patch4_window7_224.pth",
    "swin_B_224_22k": "swin_base_patch4_window7_224_22k.pth",
    "swin_L_224_22k": "swin_large_patch4_window7_224_22k.pth",
}

# the same weights as published by timm (pretrained=True downloads and caches them)
SWIN_TIMM_NAMES = {
    "swin_T_224_1k": "swin_tiny_patch4_window7_224.ms_in1k",
    "swin_T_224_22k": "swin_tiny_patch4_window7_224.ms_in22k_ft_in1k",
    "swin_S_224_1k": "swin_small_patch4_window7_224.ms_in1k",
    "swin_B_224_22k": "swin_base_patch4_window7_224.ms_in22k",
    "swin_B_384_22k": "swin_base_patch4_window12_384.ms_in22k",
    "swin_L_224_22k": "swin_large_patch4_window7_224.ms_in22k",
    "swin_L_384_22k": "swin_large_patch4_window12_384.ms_in22k",
}

SWIN_DROP_PATH_RATE = 0.2  # the original's default, used for every DINO-Swin model


def relative_position_index(window: int) -> Tensor:
    """[w*w, w*w] index into the (2w-1)^2 bias table for every pair of window tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(height: int, width: int, window: int, shift: int, device) -> Tensor:
    """[num_windows, w*w, w*w] additive mask (0 / -100) that keeps cyclically shifted
    windows from attending across the regions the roll brought together."""
    # ceil as (n + w - 1) // w: an exported graph divides integers truncating, so -(-n // w) would not round up
    hp = (height + window - 1) // window * window
    wp = (width + window - 1) // window * window
    region = torch.zeros(hp, wp, device=device)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            region[rows, cols] = label
            label += 1
    region = region.view(hp // window, window, wp // window, window).transpose(1, 2).reshape(-1, window * window)
    diff = region[:, None, :] - region[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def window_partition(x: Tensor, window: int) -> Tensor:
    """[B, H, W, C] (H, W multiples of window) -> [B, num_windows, w*w, C]."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(b, -1, window * window, c)


def window_merge(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of `window_partition`: [B, num_windows, w*w, C] -> [B, H, W, C]."""
    b, _, _, c = windows.shape
    x = windows.view(b, height // window, width // window, window, window, c).transpose(2, 3)
    return x.reshape(b, height, width, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent, as in the original, so checkpoints carry it key for key.
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> Tensor:
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: [B, num_windows, N, C]; mask: [num_windows, N, N] or None."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, c // self.num_heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # [B, nW, heads, N, head_dim]
        bias = self.position_bias().to(q.dtype)
        if mask is None:
            # One batch dimension lets the fused attention kernels run.
            out = F.scaled_dot_product_attention(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), attn_mask=bias)
            out = out.view(b, nw, self.num_heads, n, -1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias + mask[:, None].to(q.dtype))
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class SwinBlock(nn.Module):
    """(Shifted-)window attention and an MLP, both pre-norm residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = drop_path_or_identity(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, height: int, width: int, shift_mask: Tensor) -> Tensor:
        b, length, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x).view(b, height, width, c)
        y = F.pad(y, (0, 0, 0, (ws - width % ws) % ws, 0, (ws - height % ws) % ws))
        hp, wp = y.shape[1], y.shape[2]
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        y = self.attn(window_partition(y, ws), shift_mask if shift else None)
        y = window_merge(y, ws, hp, wp)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        y = y[:, :height, :width].reshape(b, length, c)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhoods concatenated (odd maps zero-padded), normed, projected to 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, height, width, c), (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then optional patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, drop_paths: List[float],
                 downsample: bool, mlp_ratio: float = 4.0, use_checkpoint: bool = False):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else self.shift_size, mlp_ratio, drop_paths[i])
            for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        mask = shifted_window_mask(height, width, self.window_size, self.shift_size, x.device)
        for block in self.blocks:
            x = run_block(block, self.use_checkpoint, x, height, width, mask)
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; the image is zero-padded to a multiple of the patch."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: Tensor):
        """[B, 3, H, W] -> tokens [B, h*w, C], h, w."""
        p = self.patch_size
        x = self.proj(pad_to_multiple(x, p))
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class SwinBody(nn.Module):
    """Swin Transformer returning the normed outputs of the stages in `out_indices`.

    With `dilation`, stage 2 does not merge patches and stage 3 keeps its
    resolution and width (stride 16, 4 * embed_dim channels), as in the original.
    """

    def __init__(self, embed_dim: int, depths, num_heads, window_size: int, out_indices: List[int],
                 mlp_ratio: float = 4.0, drop_path_rate: float = SWIN_DROP_PATH_RATE,
                 dilation: bool = False, use_checkpoint: bool = False):
        super().__init__()
        self.out_indices = list(out_indices)
        self.dilation = dilation
        self.patch_embed = PatchEmbed(4, 3, embed_dim)
        dims = [embed_dim * 2 ** i for i in range(4)]
        merge = [True, True, True, False]
        if dilation:
            merge[2] = False
            dims[3] = dims[2]
        rates = stochastic_depth_rates(drop_path_rate, depths)
        self.layers = nn.ModuleList(
            SwinStage(dims[i], depths[i], num_heads[i], window_size, rates[i], merge[i], mlp_ratio, use_checkpoint)
            for i in range(4))
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(dims[i]))
        self.num_features = dims
        self.num_channels = [dims[i] for i in self.out_indices]
        strides = [4, 8, 16, 16 if dilation else 32]
        self.strides = [strides[i] for i in self.out_indices]

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
                x = stage.downsample(x, height, width)
                height, width = (height + 1) // 2, (width + 1) // 2
        return outs


def remap_swin(state: StateDict, body: SwinBody) -> StateDict:
    """Official or timm Swin weights -> this module's keys."""
    state = strip_prefix(state)
    if "layers.0.downsample.reduction.weight" not in state and "layers.1.downsample.reduction.weight" in state:
        # timm merges patches at the start of stages 1-3.
        renamed = {}
        for k, v in state.items():
            parts = k.split(".")
            if len(parts) > 2 and parts[0] == "layers" and parts[2] == "downsample":
                parts[1] = str(int(parts[1]) - 1)
            renamed[".".join(parts)] = v
        state = renamed
    state = {k: v for k, v in state.items()
             if not (k.startswith(("head.", "norm.")) or k.endswith("attn_mask"))}
    if body.dilation:
        # The dilated last stage has other widths; it starts from scratch, as in the original.
        state = {k: v for k, v in state.items() if not k.startswith(("layers.3.", "layers.2.downsample."))}
    own = body.state_dict()
    for k, v in list(state.items()):
        if k.endswith("relative_position_bias_table") and k in own and v.shape != own[k].shape:
            state[k] = resize_rel_pos_table(v, body.layers[0].window_size)
    return keep_own_buffers(state, body, "relative_position_index")


@register_backbone(*SWIN_SPECS)
def build_swin(args) -> nn.Module:
    spec = SWIN_SPECS[args.backbone]
    body = SwinBody(spec["embed_dim"], spec["depths"], spec["num_heads"], spec["window_size"],
                    out_indices=stage_indices(args),
                    drop_path_rate=drop_path_rate(args, SWIN_DROP_PATH_RATE),
                    dilation=bool(getattr(args, "dilation", False)),
                    use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    source = timm_source(args.backbone, SWIN_TIMM_NAMES[args.backbone], SWIN_FILES[args.backbone], remap_swin)
    return finish_body(body, args, SWIN_FILES, remap_swin, source)


# detectron2's SwinTransformer (detrex dino-swin) has this module tree key for key; its
# relative_position_index buffers are replaced by freshly computed ones (the same formula).
_DETREX_RULES = [(pattern, r"\g<0>") for pattern in (
    r"patch_embed\.(?:proj|norm)\.(?:weight|bias)",
    r"layers\.\d+\.blocks\.\d+\.(?:norm[12]|attn\.qkv|attn\.proj|mlp\.fc[12])\.(?:weight|bias)",
    r"layers\.\d+\.blocks\.\d+\.attn\.relative_position_(?:bias_table|index)",
    r"layers\.\d+\.downsample\.(?:reduction\.weight|norm\.(?:weight|bias))",
    r"norm\d\.(?:weight|bias)",
)]


@register_layout_remap("detrex", *SWIN_SPECS)
def remap_detrex_swin(state: StateDict, args) -> StateDict:
    """detrex / detectron2 SwinTransformer backbone keys -> this body's keys (the same names)."""
    if getattr(args, "dilation", False):
        raise ValueError(f"detrex {args.backbone}: detectron2's Swin has no dilated last stage; set dilation=False")
    out = rename_keys(state, _DETREX_RULES, what=f"detrex {args.backbone}")
    for key, value in out.items():
        if key.endswith("relative_position_index"):
            out[key] = relative_position_index(int(round(value.shape[0] ** 0.5)))
    return out
