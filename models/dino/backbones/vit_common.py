"""Pieces shared by the plain-ViT backbones (ViTDet/MAE, EVA-01, EVA-02, DINOv2 + ViT-Adapter).

* `PlainViT`: patch embedding + absolute position embedding (stored at the
  pre-training grid, resampled to the input grid on the fly) + a stack of timm
  transformer blocks that run on a (B, H, W, C) token grid. Which blocks use
  window attention and which global attention is set per block. Subclasses say
  how one block is run (`_run_block`).
* `PyramidBody`: a `PlainViT` (`.net`) plus the ViTDet simple feature pyramid
  (`.simfp_<log2 stride>`), returning the levels of `return_interm_indices`
  (0..4 -> strides 4, 8, 16, 32, 64 for a patch-16 ViT).
* `remap_vit_checkpoint`: reads the published checkpoint layouts (official
  EVA / EVA-02, mmpretrain, timm, MAE, DINOv2, detectron2/detrex detector
  files) into the key layout of a `PlainViT`, resampling patch and position
  embeddings, and keeping what it cannot place under its own name so that
  `load_pretrained` reports it as unexpected.
* `vit_option`: reads the `vit_*` config keys with per-backbone defaults.

Level index convention (same as ResNet's return_interm_indices): index i is the
map with stride 4 * 2**i for a patch-16 ViT; 0..3 come from the simple feature
pyramid (x4, x2, x1, x0.5 of the stride-16 map) and 4 is a stride-2
subsampling of level 3 (the "p6" of ViTDet's LastLevelMaxPool).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

logger = logging.getLogger("dino.backbone")

__all__ = [
    "require_timm", "PlainViT", "WindowedViT", "PyramidBody", "ConvNorm", "pad_to_multiple", "crop_levels",
    "resample_grid_embed", "resample_kernel", "remap_vit_checkpoint", "vit_option", "global_indexes_for_depth",
    "split_into_groups", "level_stride", "window_sizes_from_args", "load_and_freeze",
]


# --------------------------------------------------------------------------- #
# small helpers
# --------------------------------------------------------------------------- #
def require_timm():
    """timm, or an ImportError saying why it is needed (the modules import without it)."""
    try:
        import timm
    except ImportError as exc:
        raise ImportError("the plain-ViT backbones (EVA-01/02, ViTDet, DINOv2 ViT-Adapter) are built from timm "
                          "blocks: pip install 'timm>=1.0'") from exc
    return timm


def vit_option(args, key: str, default):
    """`args.<key>` unless it is missing or None, else `default`."""
    value = getattr(args, key, None)
    return default if value is None else value


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad an image batch on the bottom/right to a multiple of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw or torch.jit.is_tracing():  # a traced graph must pad whatever the traced size was
        x = F.pad(x, (0, pw, 0, ph))
    return x


def crop_levels(features: Sequence[Tensor], strides: Sequence[int], image_hw: Tuple[int, int]) -> List[Tensor]:
    """Cut each map to ceil(image size / stride), dropping what only saw internal padding."""
    h, w = image_hw
    # integer ceil, not math.ceil: traced for ONNX export, the sizes stay dynamic
    return [f[..., :(h + s - 1) // s, :(w + s - 1) // s] for f, s in zip(features, strides)]


def level_stride(patch_size: int, index: int) -> int:
    """Stride of pyramid level `index` (0..4) of a ViT with `patch_size` (4 * 2**index for patch 16)."""
    stride = patch_size * 2 ** index / 4
    if stride != int(stride):
        raise ValueError(f"pyramid level {index} of a patch-{patch_size} ViT has a non-integer stride {stride}")
    return int(stride)


def global_indexes_for_depth(indexes: Iterable[int], depth: int, full_depth: int) -> List[int]:
    """Global-attention block indexes for a trunk cut to `depth` blocks (a test/debug override).

    Indexes beyond the cut are dropped; if none is left, the last block is global.
    """
    if depth == full_depth:
        return sorted(set(int(i) for i in indexes))
    kept = sorted(set(int(i) for i in indexes if int(i) < depth))
    return kept or [depth - 1]


def split_into_groups(depth: int, groups: int = 4) -> List[List[int]]:
    """[[first, last], ...] splitting blocks 0..depth-1 into `groups` consecutive runs."""
    if depth < groups:
        raise ValueError(f"cannot split {depth} blocks into {groups} interaction groups")
    bounds = [round(depth * g / groups) for g in range(groups + 1)]
    return [[bounds[g], bounds[g + 1] - 1] for g in range(groups)]


def resample_grid_embed(pos: Tensor, grid: Tuple[int, int], mode: str = "bicubic") -> Tensor:
    """(1, h*w, C) position embedding of a square h x w grid resampled to `grid` -> (1, H*W, C)."""
    n, c = pos.shape[-2:]
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"position embedding with {n} positions is not a square grid")
    # while tracing (ONNX export) always resample, the identity at the same size: the check would freeze the size
    if not torch.jit.is_tracing() and (side, side) == tuple(grid):
        return pos
    x = pos.reshape(1, side, side, c).permute(0, 3, 1, 2)
    x = F.interpolate(x.float(), size=tuple(grid), mode=mode, align_corners=False).to(pos.dtype)
    return x.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], c)


def resample_kernel(weight: Tensor, size: int, mode: str = "bicubic") -> Tensor:
    """Patch-embedding kernel (C, 3, k, k) resized to (C, 3, size, size).

    mode 'bilinear' / 'bicubic' interpolates the kernel like the published
    14->16 converters; 'pinv' uses timm's pseudo-inverse resize (FlexiViT),
    which keeps the layer's response to a correspondingly resized image.
    """
    if weight.shape[-1] == size and weight.shape[-2] == size:
        return weight
    if mode == "pinv":
        from timm.layers import resample_patch_embed
        return resample_patch_embed(weight.float(), [size, size], interpolation="bicubic",
                                    antialias=True).to(weight.dtype)
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"unknown patch-embedding resampling mode {mode!r} (bilinear, bicubic or pinv)")
    return F.interpolate(weight.float(), size=(size, size), mode=mode, align_corners=False).to(weight.dtype)


# --------------------------------------------------------------------------- #
# the trunk
# --------------------------------------------------------------------------- #
class PlainViT(nn.Module):
    """Patch embedding, absolute position embedding and transformer blocks on a token grid.

    `forward(x: [B, 3, H, W])` -> [B, C, H / p, W / p] (H, W multiples of the
    patch size p), the output of the last block (no final norm, as ViTDet).

    Subclasses create `self.blocks` and implement `_run_block(index, block, x)`
    on x of shape (B, h, w, C).
    """

    def __init__(self, embed_dim: int, depth: int, patch_size: int = 16, pretrain_grid: int = 14,
                 use_abs_pos: bool = True, window_sizes: Optional[Sequence[int]] = None,
                 use_checkpoint: bool = False, patch_embed_bias: bool = True):
        super().__init__()
        self.embed_dim = embed_dim
        self.depth = depth
        self.patch_size = patch_size
        self.pretrain_grid = pretrain_grid
        self.window_sizes = list(window_sizes) if window_sizes is not None else [0] * depth
        if len(self.window_sizes) != depth:
            raise ValueError(f"{len(self.window_sizes)} window sizes given for {depth} blocks")
        self.use_checkpoint = use_checkpoint
        require_timm()
        from timm.layers import PatchEmbed
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=3, embed_dim=embed_dim,
                                      output_fmt="NHWC", strict_img_size=False, bias=patch_embed_bias)
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, pretrain_grid * pretrain_grid, embed_dim))
            trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.register_parameter("pos_embed", None)
        self.blocks = nn.ModuleList()

    @property
    def global_block_indexes(self) -> List[int]:
        return [i for i, w in enumerate(self.window_sizes) if not w]

    def init_linear_weights(self) -> None:
        """Truncated-normal Linear weights, zero biases, unit LayerNorms (ViTDet/EVA init)."""
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def position_embedding(self, grid: Tuple[int, int]) -> Optional[Tensor]:
        """The absolute position embedding resampled to `grid`, as (1, h, w, C)."""
        if self.pos_embed is None:
            return None
        pos = resample_grid_embed(self.pos_embed, grid)
        return pos.reshape(1, grid[0], grid[1], -1)

    def embed(self, x: Tensor) -> Tensor:
        """Patch + position embedding: [B, 3, H, W] -> (B, h, w, C)."""
        x = self.patch_embed(x)
        pos = self.position_embedding(tuple(x.shape[1:3]))
        return x if pos is None else x + pos.to(x.dtype)

    def _run_block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_tokens(self, x: Tensor) -> Tensor:
        """(B, h, w, C) tokens after the last block."""
        x = self.embed(x)
        for i, block in enumerate(self.blocks):
            if self.use_checkpoint and self.training and x.requires_grad:
                x = torch_checkpoint.checkpoint(self._run_block, i, block, x, use_reentrant=False)
            else:
                x = self._run_block(i, block, x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_tokens(x).permute(0, 3, 1, 2).contiguous()


class WindowedViT(PlainViT):
    """ViTDet-style trunk built from timm's windowed ViT block (`vision_transformer_sam.Block`).

    Each block runs window attention (window_sizes[i] > 0, the grid padded to
    whole windows after the first norm, as ViTDet) or global attention, with
    optional decomposed relative position biases (`use_rel_pos`, tables sized
    for `rel_pos_grid` in global blocks and the window in window blocks,
    interpolated for other sizes: linearly as ViTDet, or `rel_pos_interp="beit"`
    with BEiT's spline, `_rel_pos.py`), optional layer scale (`init_values`) and
    an MLP of `mlp_layer`. Used for MAE ViTs (ViTDet), EVA-01 and DINOv2.
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 patch_size: int = 16, pretrain_grid: int = 14, window_sizes: Optional[Sequence[int]] = None,
                 use_rel_pos: bool = False, rel_pos_grid: int = 64, drop_path_rate: float = 0.0,
                 init_values: Optional[float] = None, mlp_layer: Optional[Callable] = None,
                 act_layer: Callable = nn.GELU, norm_eps: float = 1e-6, use_abs_pos: bool = True,
                 use_checkpoint: bool = False, rel_pos_interp: str = "vitdet"):
        super().__init__(embed_dim, depth, patch_size, pretrain_grid, use_abs_pos, window_sizes, use_checkpoint)
        if rel_pos_interp not in ("vitdet", "beit"):
            raise ValueError(f"rel_pos_interp={rel_pos_interp!r}: use 'vitdet' (linear) or 'beit' (BEiT's spline)")
        self.beit_rel_pos = use_rel_pos and rel_pos_interp == "beit"
        from functools import partial

        from timm.layers import Mlp
        from timm.models.vision_transformer_sam import Block

        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList([
            Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                  init_values=init_values, drop_path=rates[i], act_layer=act_layer,
                  norm_layer=partial(nn.LayerNorm, eps=norm_eps), mlp_layer=mlp_layer or Mlp,
                  use_rel_pos=use_rel_pos, window_size=self.window_sizes[i],
                  input_size=(rel_pos_grid, rel_pos_grid))
            for i in range(depth)])
        self.init_linear_weights()

    def _run_block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        if self.beit_rel_pos and not self.window_sizes[index]:
            from ._rel_pos import run_block_with_beit_rel_pos
            return run_block_with_beit_rel_pos(block, x)
        return block(x)


# --------------------------------------------------------------------------- #
# simple feature pyramid
# --------------------------------------------------------------------------- #
class ConvNorm(nn.Conv2d):
    """Conv2d (no bias) followed by a channel LayerNorm (`.norm`), the ViTDet pyramid layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        from timm.layers import LayerNorm2d
        self.norm = LayerNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(super().forward(x))


def simple_pyramid_stage(level: int, dim: int, out_channels: int) -> nn.Sequential:
    """ViTDet pyramid stage for level 0..3 (x4 / x2 / x1 / x0.5 of the trunk map)."""
    from timm.layers import LayerNorm2d
    if level == 0:
        layers: List[nn.Module] = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
                                   nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2)]
        width = dim // 4
    elif level == 1:
        layers, width = [nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)], dim // 2
    elif level == 2:
        layers, width = [], dim
    elif level == 3:
        layers, width = [nn.MaxPool2d(kernel_size=2, stride=2)], dim
    else:
        raise ValueError(f"pyramid level {level} has no stage of its own")
    layers += [ConvNorm(width, out_channels, 1), ConvNorm(out_channels, out_channels, 3)]
    return nn.Sequential(*layers)


class PyramidBody(nn.Module):
    """A `PlainViT` trunk (`net`) + ViTDet simple feature pyramid.

    Returns the levels listed in `return_interm_indices` (0..4, see module doc),
    each with `out_channels` channels. Inputs of any size work: the image is
    zero-padded to a multiple of the largest pyramid stride (ViTDet's size
    divisibility) and each output is cut back to ceil(size / stride).
    With `pad_input=False` the image goes in as it is, as in detectron2's
    ViT (detrex projects/dino): the patch embedding drops a remainder of
    less than a patch and the pyramid's max-pool floors odd maps.
    """

    def __init__(self, net: PlainViT, return_interm_indices: Sequence[int], out_channels: int = 256,
                 pad_input: bool = True):
        super().__init__()
        self.pad_input = pad_input
        levels = [int(i) for i in return_interm_indices]
        if not levels or sorted(set(levels)) != levels or not set(levels) <= {0, 1, 2, 3, 4}:
            raise ValueError(f"return_interm_indices={list(return_interm_indices)} must be increasing level "
                             f"indexes in 0..4 (strides 4, 8, 16, 32, 64 for a patch-16 ViT)")
        self.net = net
        self.levels = levels
        self.stage_levels = sorted(set(i for i in levels if i < 4) | ({3} if 4 in levels else set()))
        for level in self.stage_levels:
            self.add_module(f"simfp_{int(math.log2(level_stride(net.patch_size, level)))}",
                            simple_pyramid_stage(level, net.embed_dim, out_channels))
        self.num_channels = [out_channels] * len(levels)
        self.strides = [level_stride(net.patch_size, i) for i in levels]
        self.size_divisibility = max(net.patch_size, *[level_stride(net.patch_size, i)
                                                       for i in self.stage_levels])
        self.num_layers = net.depth

    def stage(self, level: int) -> nn.Module:
        return getattr(self, f"simfp_{int(math.log2(level_stride(self.net.patch_size, level)))}")

    def forward(self, x: Tensor) -> List[Tensor]:
        hw = tuple(x.shape[-2:])
        feature = self.net(pad_to_multiple(x, self.size_divisibility) if self.pad_input else x)
        maps: Dict[int, Tensor] = {level: self.stage(level)(feature) for level in self.stage_levels}
        if 4 in self.levels:
            maps[4] = F.max_pool2d(maps[3], kernel_size=1, stride=2)
        return crop_levels([maps[i] for i in self.levels], self.strides, hw)


# --------------------------------------------------------------------------- #
# checkpoint layouts
# --------------------------------------------------------------------------- #
# Prefixes of the published files, longest first: detectron2/detrex detector
# files ('backbone.net.'), mmpretrain/mmdet ('backbone.'), OpenCLIP ('visual.').
_PREFIXES = ("backbone.net.", "backbone.0.net.", "backbone.", "net.", "encoder.", "visual.trunk.", "visual.",
             "model.", "image_encoder.")
# Top-level keys a detection trunk has no use for (classification / pre-training heads, tokens).
_IGNORED_TOP = re.compile(
    r"^(cls_token|mask_token|dist_token|register_tokens|reg_token|norm\.|fc_norm\.|head\.|head_dist\.|lm_head\.|"
    r"rope\.|rope_win\.|rope_glb\.|rel_pos_bias\.|ln_post\.|ln2\.|pre_logits|neck\.|decoder|pos_drop)")
# per-block source module prefix -> canonical name (followed by weight / bias)
_BLOCK_KEYS = {
    "norm1.": "norm1.", "norm2.": "norm2.", "ln1.": "norm1.", "ln2.": "norm2.",
    "attn.qkv.": "qkv.", "attn.q_proj.": "q.", "attn.k_proj.": "k.", "attn.v_proj.": "v.",
    "attn.proj.": "proj.", "attn.inner_attn_ln.": "attn_norm.", "attn.norm.": "attn_norm.",
    "mlp.fc1.": "fc1.", "mlp.fc2.": "fc2.", "mlp.w12.": "w12.", "mlp.w1.": "gate.", "mlp.w2.": "up.",
    "mlp.w3.": "fc2.", "mlp.fc1_g.": "gate.", "mlp.fc1_x.": "up.", "mlp.ffn_ln.": "mlp_norm.",
    "mlp.norm.": "mlp_norm.",
}
_BLOCK_PARAMS = {
    "attn.q_bias": "q.bias", "attn.k_bias": "k.bias", "attn.v_bias": "v.bias",
    "attn.rel_pos_h": "rel_pos_h", "attn.rel_pos_w": "rel_pos_w",
    "ls1.gamma": "ls1", "ls2.gamma": "ls2", "gamma_1": "ls1", "gamma_2": "ls2", "gamma1": "ls1", "gamma2": "ls2",
}
_BLOCK_RE = re.compile(r"^(?:blocks|layers)\.(\d+)\.(?:(\d+)\.)?(.*)$")
# Per-block buffers of some files (fixed rotary tables, index buffers): nothing to load.
_IGNORED_IN_BLOCK = re.compile(r"^(attn\.rope\.|rope\.|attn\.relative_position_index)")


def _strip_prefix(state: Dict[str, Tensor]) -> Tuple[str, Dict[str, Tensor], List[str]]:
    """Remove the wrapper prefix in front of the ViT keys (found from the first block's keys).

    Returns (prefix, the ViT part without the prefix, keys outside it, e.g. a detector's head).
    """
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "blocks.0.") or k.startswith(prefix + "layers.0.") for k in state):
            inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            return prefix, inside, [k for k in state if not k.startswith(prefix)]
    return "", dict(state), []


def _canonical(state: Dict[str, Tensor]):
    """Split a ViT state dict into (globals, {block: {canonical name: (source key, tensor)}}, ignored, leftovers)."""
    prefix, state, outside = _strip_prefix(state)
    chunked = any(re.match(r"^blocks\.\d+\.\d+\.", k) for k in state)
    top: Dict[str, Tuple[str, Tensor]] = {}
    blocks: Dict[int, Dict[str, Tuple[str, Tensor]]] = {}
    ignored: List[str] = list(outside)
    leftovers: Dict[str, Tensor] = {}
    for key, value in state.items():
        source = prefix + key
        m = _BLOCK_RE.match(key)
        if m and (m.group(2) is None or chunked):
            index = int(m.group(2) if chunked else m.group(1))
            rest = m.group(3)
            if _IGNORED_IN_BLOCK.match(rest):
                ignored.append(source)
                continue
            name = _BLOCK_PARAMS.get(rest)
            if name is None:
                for src, dst in _BLOCK_KEYS.items():
                    if rest.startswith(src) and rest[len(src):] in ("weight", "bias"):
                        name = dst + rest[len(src):]
                        break
            if name is None:
                leftovers[source] = value
            else:
                blocks.setdefault(index, {})[name] = (source, value)
            continue
        if key in ("patch_embed.proj.weight", "patch_embed.projection.weight"):
            top["patch_embed.weight"] = (source, value)
        elif key in ("patch_embed.proj.bias", "patch_embed.projection.bias"):
            top["patch_embed.bias"] = (source, value)
        elif key == "pos_embed":
            top["pos_embed"] = (source, value)
        elif _IGNORED_TOP.match(key):
            ignored.append(source)
        else:
            leftovers[source] = value
    return top, blocks, ignored, leftovers


class _BlockSource:
    """Canonical tensors of one source block; records which ones were used."""

    def __init__(self, entries: Dict[str, Tuple[str, Tensor]]):
        self.entries = entries
        self.used: set = set()

    def has(self, name: str) -> bool:
        return name in self.entries

    def get(self, name: str) -> Tensor:
        self.used.add(name)
        return self.entries[name][1]

    def qkv(self, part: str, kind: str) -> Optional[Tensor]:
        """q / k / v weight or bias from separate or fused tensors (k bias: zeros if absent)."""
        if self.has(f"{part}.{kind}"):
            return self.get(f"{part}.{kind}")
        if self.has(f"qkv.{kind}"):
            return self.get(f"qkv.{kind}").chunk(3, dim=0)["qkv".index(part)]
        if kind == "bias" and part == "k" and (self.has("q.bias") or self.has("qkv.bias")):
            ref = self.qkv("q", "bias")
            return torch.zeros_like(ref)
        return None

    def glu_half(self, half: int, kind: str, packed_hint: bool) -> Optional[Tensor]:
        """Gate (0) or value (1) half of a SwiGLU input projection from w1/w2, w12 or a packed fc1."""
        name = ("gate", "up")[half]
        if self.has(f"{name}.{kind}"):
            return self.get(f"{name}.{kind}")
        for packed in ("w12",) + (("fc1",) if packed_hint else ()):
            if self.has(f"{packed}.{kind}"):
                return self.get(f"{packed}.{kind}").chunk(2, dim=0)[half]
        return None

    def unused(self) -> Dict[str, Tensor]:
        return {src: t for name, (src, t) in self.entries.items() if name not in self.used}


def _block_value(target_key: str, target: Tensor, src: _BlockSource, swiglu_packed: bool) -> Optional[Tensor]:
    """The source tensor for one parameter of a timm block (`target_key` relative to the block)."""
    kind = target_key.rsplit(".", 1)[-1]
    if target_key in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
                      "attn.proj.weight", "attn.proj.bias"):
        name = target_key.replace("attn.", "")
        return src.get(name) if src.has(name) else None
    if target_key in ("attn.norm.weight", "attn.norm.bias"):
        return src.get("attn_norm." + kind) if src.has("attn_norm." + kind) else None
    if target_key == "attn.qkv.weight":
        parts = [src.qkv(p, "weight") for p in "qkv"]
        return None if any(p is None for p in parts) else torch.cat(parts, 0)
    if target_key == "attn.qkv.bias":
        parts = [src.qkv(p, "bias") for p in "qkv"]
        return None if any(p is None for p in parts) else torch.cat(parts, 0)
    m = re.match(r"^attn\.([qkv])_proj\.(weight|bias)$", target_key)
    if m:
        return src.qkv(m.group(1), m.group(2))
    if target_key in ("attn.q_bias", "attn.v_bias"):
        return src.qkv(target_key[5], "bias")
    if target_key in ("attn.rel_pos_h", "attn.rel_pos_w"):
        name = target_key[5:]
        if not src.has(name):
            return None
        value = src.get(name)
        if value.shape[0] != target.shape[0]:  # window / input size differs from the pre-training run
            value = F.interpolate(value.t()[None].float(), size=target.shape[0], mode="linear",
                                  align_corners=False)[0].t().to(value.dtype)
        return value
    if target_key in ("gamma_1", "ls1.gamma", "gamma_2", "ls2.gamma"):
        name = "ls1" if "1" in target_key else "ls2"
        return src.get(name) if src.has(name) else None
    if target_key in ("mlp.fc1_g.weight", "mlp.fc1_g.bias", "mlp.fc1_x.weight", "mlp.fc1_x.bias"):
        return src.glu_half(0 if "fc1_g" in target_key else 1, kind, packed_hint=True)
    if target_key in ("mlp.fc1.weight", "mlp.fc1.bias"):
        if swiglu_packed:
            gate, up = src.glu_half(0, kind, packed_hint=False), src.glu_half(1, kind, packed_hint=False)
            if gate is not None and up is not None:
                return torch.cat([gate, up], 0)
        return src.get("fc1." + kind) if src.has("fc1." + kind) else None
    if target_key in ("mlp.fc2.weight", "mlp.fc2.bias"):
        return src.get("fc2." + kind) if src.has("fc2." + kind) else None
    if target_key in ("mlp.norm.weight", "mlp.norm.bias"):
        return src.get("mlp_norm." + kind) if src.has("mlp_norm." + kind) else None
    return None


def remap_vit_checkpoint(state: Dict[str, Tensor], net: PlainViT, prefix: str = "net.",
                         patch_resample: str = "bicubic", swiglu_packed: bool = False) -> Dict[str, Tensor]:
    """A published ViT state dict in the key layout of `net` (keys prefixed with `prefix`).

    Handles fused or separate q/k/v (with BEiT-style q_bias/v_bias), packed
    or split SwiGLU projections, layer-scale names (ls1.gamma / gamma_1 /
    gamma1), mmpretrain's `layers.N` / `patch_embed.projection`, DINOv2's
    chunked `blocks.C.N`, and wrapper prefixes. The patch kernel is resampled
    to the model's patch size, the position embedding (class-token slot
    dropped) to the model's pre-training grid, relative-position tables to
    the model's lengths. Source tensors that found no place are returned
    under their own names (so they show up as unexpected keys); heads, tokens
    and final norms a detection trunk does not use are dropped with a log line.
    """
    top, blocks, ignored, leftovers = _canonical(state)
    own = net.state_dict()
    out: Dict[str, Tensor] = {}
    if "patch_embed.weight" in top:
        weight = top["patch_embed.weight"][1]
        if weight.ndim == 2:  # a linear patch projection (C, 3*p*p) -> conv kernel
            p = int(round(math.sqrt(weight.shape[1] / 3)))
            weight = weight.reshape(weight.shape[0], p, p, 3).permute(0, 3, 1, 2)
        if weight.shape[-1] != net.patch_size:
            logger.info("resampling the patch embedding %dx%d -> %dx%d (%s)", weight.shape[-2], weight.shape[-1],
                        net.patch_size, net.patch_size, patch_resample)
        out["patch_embed.proj.weight"] = resample_kernel(weight, net.patch_size, patch_resample)
    if "patch_embed.bias" in top:
        out["patch_embed.proj.bias"] = top["patch_embed.bias"][1]
    if "pos_embed" in top and net.pos_embed is not None:
        pos = top["pos_embed"][1]
        if pos.ndim == 4:  # (1, h, w, C) as in timm's SAM ViT
            pos = pos.reshape(1, -1, pos.shape[-1])
        pos = pos.reshape(1, -1, pos.shape[-1])
        n = pos.shape[1]
        if int(math.isqrt(n)) ** 2 != n and int(math.isqrt(n - 1)) ** 2 == n - 1:
            pos = pos[:, 1:]  # class-token slot
        grid = (net.pretrain_grid, net.pretrain_grid)
        if pos.shape[1] != grid[0] * grid[1]:
            logger.info("resampling the position embedding %d -> %dx%d positions", pos.shape[1], *grid)
        out["pos_embed"] = resample_grid_embed(pos, grid)
    elif "pos_embed" in top:
        leftovers[top["pos_embed"][0]] = top["pos_embed"][1]

    for index, entries in sorted(blocks.items()):
        src = _BlockSource(entries)
        if index >= len(net.blocks):
            leftovers.update(src.unused())
            continue
        block_prefix = f"blocks.{index}."
        for key, target in own.items():
            if not key.startswith(block_prefix):
                continue
            value = _block_value(key[len(block_prefix):], target, src, swiglu_packed)
            if value is not None:
                out[key] = value
        leftovers.update(src.unused())
    if ignored:
        logger.info("pretrained file: %d tensors not used by the ViT trunk (heads, tokens, final norm, parts "
                    "outside the ViT), e.g. %s", len(ignored), ", ".join(ignored[:4]))
    result = {prefix + k: v for k, v in out.items()}
    result.update(leftovers)
    return result


# --------------------------------------------------------------------------- #
# building from args
# --------------------------------------------------------------------------- #
def window_sizes_from_args(args, depth: int, full_depth: int, default_window: int,
                           default_global: Sequence[int]) -> List[int]:
    """Per-block window sizes from `vit_window_size` and `vit_global_attn_indexes` (0 = global)."""
    window = int(vit_option(args, "vit_window_size", default_window))
    globals_ = global_indexes_for_depth(vit_option(args, "vit_global_attn_indexes", default_global), depth,
                                        full_depth)
    bad = [i for i in globals_ if not 0 <= i < depth]
    if bad:
        raise ValueError(f"vit_global_attn_indexes {bad} are outside the {depth} blocks of {args.backbone}")
    return [0 if (i in globals_ or window <= 0) else window for i in range(depth)]


def load_and_freeze(body: nn.Module, net: PlainViT, args, default_files: Dict[str, str],
                    patch_resample: str, swiglu_packed: bool = False, freeze_patch_embed: bool = False) -> None:
    """Load the local pretrained file (if any) into `body.net` and apply the freezing options."""
    from .pretrained import freeze_by_keywords, load_pretrained, pretrained_path, trusts_checkpoints

    path = pretrained_path(args, default_files)
    if path:
        mode = vit_option(args, "vit_patch_resample", patch_resample)

        def remap(state, module):
            out = remap_vit_checkpoint(state, net, "net.", patch_resample=mode, swiglu_packed=swiglu_packed)
            # detector files (detectron2 / detrex 'backbone.simfp_*', ours 'backbone.0.simfp_*'): the
            # simple-pyramid weights have our layout
            own = module.state_dict()
            pyramid = {}
            for key, value in state.items():
                for wrapper in ("backbone.0.", "backbone."):
                    if key.startswith(wrapper + "simfp_") and key[len(wrapper):] in own:
                        pyramid[key[len(wrapper):]] = value
                        break
            if pyramid:
                logger.info("loading %d simple-feature-pyramid tensors from %s", len(pyramid), path)
            out.update(pyramid)
            return out

        load_pretrained(body, path, remap, what=args.backbone, trust=trusts_checkpoints(args))
    else:
        from .pretrained import PretrainedSource, attach_pretrained_source
        hint = default_files.get(args.backbone, f"the pretrained file of {args.backbone}")
        attach_pretrained_source(body, args, PretrainedSource(args.backbone, hint))
    if bool(vit_option(args, "vit_freeze_patch_embed", freeze_patch_embed)):
        for p in net.patch_embed.parameters():
            p.requires_grad_(False)
    freeze_by_keywords(body, getattr(args, "backbone_freeze_keywords", None))
