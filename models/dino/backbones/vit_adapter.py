"""DINOv2 ViT-S/B/L/g inside a ViT-Adapter (spatial prior module + injectors/extractors).

Computes what czczup/ViT-Adapter's `ViTAdapter` (the module of its DINOv2
Mask R-CNN configs) computes with the same weights: checked for S, B, L and g
against outputs recorded from the authors' code (tests/test_vit_adapter_reference.py).

The trunk is a DINOv2 ViT at patch 16 (convert the published patch-14 files
with tools/convert_14to16.py, or let the loader resample the kernel) with
layer scale, window attention in most blocks (ViT-Adapter's DINOv2 detection
setting: windows of 14, a global block closing each interaction group), built
from timm's windowed ViT block; ViT-g uses the packed SwiGLU FFN as DINOv2.
Window blocks pad the grid to whole windows after the qkv projection, as
ViT-Adapter does (`window_attention_padded_qkv`), not before it as ViTDet.

The adapter follows ViT-Adapter:

* spatial prior module: a conv stem giving maps at strides 4/8/16/32, the
  last three flattened into the adapter's multi-scale feature `c`
  (+ a learned level embedding);
* per interaction group of trunk blocks: an injector (deformable attention
  from the ViT tokens to `c`, scaled by a zero-initialised gamma) before the
  group, the group's blocks, and an extractor (deformable attention from `c`
  to the ViT tokens + a depth-wise conv FFN) after it; two extra extractors
  after the last group;
* outputs: `c` reshaped to strides 8/16/32 plus an up-sampled stride-4 map,
  each added to the resized ViT output and batch-normalised.

Deformable attention is this project's `MSDeformAttn`; ViT-Adapter's
`deform_ratio` (values projected to ratio x dim channels) is provided by
`RatioMSDeformAttn`.

`return_interm_indices` indexes the four outputs by stride 4, 8, 16, 32
(0..3), as ResNet's stages; channels are the ViT width.

Names: vitadapter_dinov2_small, vitadapter_dinov2_base, vitadapter_dinov2_large,
vitadapter_dinov2_giant. Pretrained files (`pretrained_backbone_path` or
`backbone_checkpoint`): DINOv2 release files (`dinov2_vits14_pretrain.pth`, patch
14, resampled to 16 on loading as ViT-Adapter's converter does, or their
`_14to16` conversion), timm `vit_*_patch14_dinov2` state dicts, the authors' COCO
detectors (`mask_rcnn_dinov2_adapter_{small,base,large}_fpn_3x_coco.pth`: trunk
and adapter), and this project's DINO checkpoints.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint
from torch import Tensor, nn
from torch.nn.init import constant_, trunc_normal_, xavier_uniform_

from models.dino.ops.modules import MSDeformAttn

from .pretrained import freeze_by_keywords, load_pretrained, pretrained_path, trusts_checkpoints
from .registry import register_backbone
from .vit_common import (WindowedViT, global_indexes_for_depth, load_and_freeze, pad_to_multiple,
                         remap_vit_checkpoint, require_timm, split_into_groups, vit_option)

logger = logging.getLogger("dino.backbone")

__all__ = ["RatioMSDeformAttn", "SpatialPriorModule", "InteractionBlock", "ViTAdapterBody", "ADAPTER_SPECS",
           "DINOv2Trunk", "build_vit_adapter", "build_dinov2_trunk", "adapter_key", "remap_adapter_checkpoint",
           "window_attention_padded_qkv"]

Shapes = List[Tuple[int, int]]


class RatioMSDeformAttn(MSDeformAttn):
    """MSDeformAttn whose sampled values have `ratio * d_model` channels (ViT-Adapter's deform_ratio).

    Queries, offsets and attention weights keep d_model; only the value and
    output projections change width, so the multi-head sampling runs on
    ratio * d_model / n_heads channels per head.
    """

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int, ratio: float = 1.0):
        super().__init__(d_model, n_levels, n_heads, n_points)
        self.ratio = ratio
        if ratio != 1.0:
            inner = int(d_model * ratio)
            if inner % n_heads:
                raise ValueError(f"deform_ratio {ratio} gives {inner} value channels, not divisible by {n_heads} heads")
            self.value_proj = nn.Linear(d_model, inner)
            self.output_proj = nn.Linear(inner, d_model)
            for layer in (self.value_proj, self.output_proj):
                xavier_uniform_(layer.weight)
                constant_(layer.bias, 0.0)
            self.d_model = inner  # the head split of the values uses this width


def _level_start(shapes: Shapes, device) -> Tuple[Tensor, Tensor]:
    # stacked, not torch.as_tensor(shapes): traced for ONNX export, the sizes stay dynamic
    spatial = torch.stack([torch.stack([torch.as_tensor(h), torch.as_tensor(w)]) for h, w in shapes])
    spatial = spatial.to(device=device, dtype=torch.long)
    start = torch.cat([spatial.new_zeros(1), spatial.prod(1).cumsum(0)[:-1]])
    return spatial, start


def _grid_centres(shapes: Shapes, device) -> Tensor:
    """Normalised (x, y) centres of every cell of every grid: (1, sum h*w, 1, 2)."""
    points = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32).add_(0.5).div_(h),
                                torch.arange(w, device=device, dtype=torch.float32).add_(0.5).div_(w),
                                indexing="ij")
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
    return torch.cat(points, 0)[None, :, None]


class ConvFFN(nn.Module):
    """Linear -> depth-wise 3x3 conv on each level's grid -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor, shapes: Shapes) -> Tensor:
        x = self.fc1(x)
        parts, start = [], 0
        for h, w in shapes:
            part = x[:, start:start + h * w].transpose(1, 2).reshape(x.shape[0], -1, h, w)
            parts.append(self.dwconv(part).flatten(2).transpose(1, 2))
            start += h * w
        x = self.drop(self.act(torch.cat(parts, 1)))
        return self.drop(self.fc2(x))


class Injector(nn.Module):
    """ViT tokens attend to the adapter's multi-scale features; the update is scaled by `gamma`."""

    def __init__(self, dim: int, num_heads: int, n_points: int, n_levels: int, deform_ratio: float,
                 init_values: float = 0.0):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RatioMSDeformAttn(dim, n_levels, num_heads, n_points, deform_ratio)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, query: Tensor, reference_points: Tensor, feat: Tensor, spatial: Tensor,
                start: Tensor) -> Tensor:
        update = self.attn(self.query_norm(query), reference_points, self.feat_norm(feat), spatial, start)
        return query + self.gamma * update


class Extractor(nn.Module):
    """Adapter features attend to the ViT tokens, then a conv FFN (with drop path)."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float, cffn_ratio: float,
                 drop_path: float = 0.0, with_cffn: bool = True):
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RatioMSDeformAttn(dim, 1, num_heads, n_points, deform_ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
            self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
            from timm.layers import DropPath
            self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, query: Tensor, reference_points: Tensor, feat: Tensor, spatial: Tensor, start: Tensor,
                query_shapes: Shapes) -> Tensor:
        query = query + self.attn(self.query_norm(query), reference_points, self.feat_norm(feat), spatial, start)
        if self.with_cffn:
            query = query + self.drop_path(self.ffn(self.ffn_norm(query), query_shapes))
        return query


class InteractionBlock(nn.Module):
    """Injector -> (the group's ViT blocks, run by the body) -> extractor (+ extra extractors)."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float, cffn_ratio: float,
                 drop_path: float, init_values: float, extra_extractors: int = 0, with_cffn: bool = True):
        super().__init__()
        self.injector = Injector(dim, num_heads, n_points, 3, deform_ratio, init_values)
        self.extractor = Extractor(dim, num_heads, n_points, deform_ratio, cffn_ratio, drop_path, with_cffn)
        self.extra_extractors = nn.ModuleList([
            Extractor(dim, num_heads, n_points, deform_ratio, cffn_ratio, drop_path, with_cffn)
            for _ in range(extra_extractors)]) if extra_extractors else None


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if kind == "BN":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"vit_adapter_norm={kind!r} is not supported; use 'SyncBN' or 'BN'")


class SpatialPriorModule(nn.Module):
    """Conv stem giving adapter features at strides 4 (optional), 8, 16 and 32, all `dim` wide."""

    def __init__(self, inplanes: int, dim: int, norm: str = "SyncBN", with_stride4: bool = True):
        super().__init__()

        def conv_bn_relu(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), _norm2d(norm, cout),
                    nn.ReLU(inplace=True)]

        self.stem = nn.Sequential(*conv_bn_relu(3, inplanes, 2), *conv_bn_relu(inplanes, inplanes, 1),
                                  *conv_bn_relu(inplanes, inplanes, 1), nn.MaxPool2d(3, stride=2, padding=1))
        self.conv2 = nn.Sequential(*conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, dim, 1) if with_stride4 else None
        self.fc2 = nn.Conv2d(2 * inplanes, dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, dim, 1)

    def forward(self, x: Tensor) -> Tuple[Optional[Tensor], Tensor, Tensor, Tensor]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return (self.fc1(c1) if self.fc1 is not None else None), self.fc2(c2), self.fc3(c3), self.fc4(c4)


class ViTAdapterBody(nn.Module):
    """DINOv2 trunk (`net`) + ViT-Adapter; returns the stride 4/8/16/32 maps of `return_interm_indices`."""

    def __init__(self, net: WindowedViT, return_interm_indices: Sequence[int],
                 interaction_indexes: Sequence[Sequence[int]], num_heads: int, conv_inplane: int = 64,
                 n_points: int = 4, deform_ratio: float = 1.0, cffn_ratio: float = 0.25, drop_path: float = 0.0,
                 init_values: float = 0.0, norm: str = "SyncBN", add_vit_feature: bool = True,
                 use_extra_extractor: bool = True, use_checkpoint: bool = False):
        super().__init__()
        levels = [int(i) for i in return_interm_indices]
        if not levels or sorted(set(levels)) != levels or not set(levels) <= {0, 1, 2, 3}:
            raise ValueError(f"return_interm_indices={list(return_interm_indices)} must be increasing indexes in "
                             f"0..3 (ViT-Adapter maps at strides 4, 8, 16, 32)")
        if net.patch_size != 16:
            raise ValueError(f"ViT-Adapter needs a patch-16 trunk (got patch {net.patch_size}); convert patch-14 "
                             f"weights with tools/convert_14to16.py")
        groups = [[int(a), int(b)] for a, b in interaction_indexes]
        covered = [i for a, b in groups for i in range(a, b + 1)]
        if covered != list(range(net.depth)):
            raise ValueError(f"interaction indexes {groups} must cover blocks 0..{net.depth - 1} in order")
        dim = net.embed_dim
        self.net = net
        self.levels = levels
        self.interaction_indexes = groups
        self.add_vit_feature = add_vit_feature
        self.use_checkpoint = use_checkpoint
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        self.spm = SpatialPriorModule(conv_inplane, dim, norm, with_stride4=0 in levels)
        self.interactions = nn.ModuleList([
            InteractionBlock(dim, num_heads, n_points, deform_ratio, cffn_ratio, drop_path, init_values,
                             extra_extractors=2 if (use_extra_extractor and i == len(groups) - 1) else 0)
            for i in range(len(groups))])
        self.up = nn.ConvTranspose2d(dim, dim, 2, stride=2) if 0 in levels else None
        self.norms = nn.ModuleDict({str(i): _norm2d(norm, dim) for i in levels})
        self.num_channels = [dim] * len(levels)
        self.strides = [4 * 2 ** i for i in levels]
        self.num_layers = net.depth
        self._init_adapter()

    def _init_adapter(self) -> None:
        for module in [self.spm, self.interactions] + ([self.up] if self.up is not None else []):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d, nn.SyncBatchNorm)):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        for m in self.interactions.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def _run_blocks(self, first: int, last: int, x: Tensor) -> Tensor:
        for i in range(first, last + 1):
            block = self.net.blocks[i]
            if self.use_checkpoint and self.training and x.requires_grad:
                x = torch_checkpoint.checkpoint(self.net._run_block, i, block, x, use_reentrant=False)
            else:
                x = self.net._run_block(i, block, x)
        return x

    def forward(self, x: Tensor) -> List[Tensor]:
        image_hw = tuple(x.shape[-2:])
        x = pad_to_multiple(x, 32)
        H, W = x.shape[-2:]
        device = x.device
        c1, c2, c3, c4 = self.spm(x)
        c_shapes = [(H // 8, W // 8), (H // 16, W // 16), (H // 32, W // 32)]
        c = torch.cat([m.flatten(2).transpose(1, 2) + self.level_embed[i]
                       for i, m in enumerate((c2, c3, c4))], 1)

        tokens = self.net.embed(x)  # (B, h, w, C)
        B, h, w, dim = tokens.shape
        # injector: ViT tokens (one grid) sample the three adapter levels; extractor: the reverse
        inj_spatial, inj_start = _level_start(c_shapes, device)
        inj_ref = _grid_centres([(h, w)], device)
        ext_spatial, ext_start = _level_start([(h, w)], device)
        ext_ref = _grid_centres(c_shapes, device)
        for (first, last), block in zip(self.interaction_indexes, self.interactions):
            flat = block.injector(tokens.reshape(B, h * w, dim), inj_ref, c, inj_spatial, inj_start)
            tokens = self._run_blocks(first, last, flat.reshape(B, h, w, dim))
            flat = tokens.reshape(B, h * w, dim)
            c = block.extractor(c, ext_ref, flat, ext_spatial, ext_start, c_shapes)
            for extra in block.extra_extractors or ():
                c = extra(c, ext_ref, flat, ext_spatial, ext_start, c_shapes)

        sizes = [a * b for a, b in c_shapes]
        c2, c3, c4 = [part.transpose(1, 2).reshape(B, dim, *shape)
                      for part, shape in zip(torch.split(c, sizes, 1), c_shapes)]
        maps = {1: c2, 2: c3, 3: c4}
        if 0 in self.levels:
            maps[0] = self.up(c2) + c1
        if self.add_vit_feature:
            vit = tokens.permute(0, 3, 1, 2)
            for level, m in maps.items():
                maps[level] = m + (vit if level == 2 else
                                   F.interpolate(vit, size=m.shape[-2:], mode="bilinear", align_corners=False))
        outs = [self.norms[str(i)](maps[i]) for i in self.levels]
        # integer ceil, not math.ceil: traced for ONNX export, the sizes stay dynamic
        return [o[..., :(image_hw[0] + s - 1) // s, :(image_hw[1] + s - 1) // s] for o, s in zip(outs, self.strides)]


# shapes and ViT-Adapter (DINOv2, Mask R-CNN 3x) defaults; g has no published adapter config: its
# values are ours (global block closing each of 4 groups of 10, drop path as L)
ADAPTER_SPECS: Dict[str, dict] = {
    "vitadapter_dinov2_small": dict(embed_dim=384, depth=12, num_heads=6, ffn="mlp", drop_path=0.2,
                                    deform_ratio=1.0, global_attn=(2, 5, 8, 11),
                                    interactions=[[0, 2], [3, 5], [6, 8], [9, 11]],
                                    file="dinov2_vits14_pretrain_14to16.pth"),
    "vitadapter_dinov2_base": dict(embed_dim=768, depth=12, num_heads=12, ffn="mlp", drop_path=0.3,
                                   deform_ratio=0.5, global_attn=(2, 5, 8, 11),
                                   interactions=[[0, 2], [3, 5], [6, 8], [9, 11]],
                                   file="dinov2_vitb14_pretrain_14to16.pth"),
    "vitadapter_dinov2_large": dict(embed_dim=1024, depth=24, num_heads=16, ffn="mlp", drop_path=0.4,
                                    deform_ratio=0.5, global_attn=(5, 11, 17, 23),
                                    interactions=[[0, 5], [6, 11], [12, 17], [18, 23]],
                                    file="dinov2_vitl14_pretrain_14to16.pth"),
    "vitadapter_dinov2_giant": dict(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu", drop_path=0.4,
                                    deform_ratio=0.5, global_attn=(9, 19, 29, 39),
                                    interactions=[[0, 9], [10, 19], [20, 29], [30, 39]],
                                    file="dinov2_vitg14_pretrain_14to16.pth"),
}


def window_attention_padded_qkv(attn: nn.Module, x: Tensor, window: int) -> Tensor:
    """Window attention of a timm ViT attention module, the grid padded *after* the qkv projection.

    ViT-Adapter's `WindowedAttention` pads the projected q/k/v with zeros to
    whole windows (padded keys: zero logits, padded values: zero), whereas
    ViTDet pads the normed tokens before the projection (padded k/v = the
    biases). The two differ in every window that overhangs the token grid;
    this is the ViT-Adapter behaviour. x: (B, H, W, C) after the first norm.
    """
    B, H, W, C = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(x)
    ph, pw = (-H) % window, (-W) % window
    if ph or pw:
        qkv = F.pad(qkv, (0, 0, 0, pw, 0, ph))
    nh, nw = (H + ph) // window, (W + pw) // window
    qkv = qkv.view(B, nh, window, nw, window, 3, heads, C // heads)
    q, k, v = qkv.permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(3, B * nh * nw, heads, window * window, -1).unbind(0)
    drop = attn.attn_drop.p if attn.training else 0.0
    out = F.scaled_dot_product_attention(attn.q_norm(q), attn.k_norm(k), v, dropout_p=drop)
    out = out.view(B, nh, nw, heads, window, window, -1).permute(0, 1, 4, 2, 5, 3, 6)
    out = out.reshape(B, nh * window, nw * window, C)[:, :H, :W]
    return attn.proj_drop(attn.proj(out))


class DINOv2Trunk(WindowedViT):
    """The DINOv2 trunk of ViT-Adapter: timm windowed ViT blocks whose window blocks pad as ViT-Adapter does."""

    def _run_block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        window = self.window_sizes[index]
        if not window:
            return block(x)
        x = x + block.drop_path1(block.ls1(window_attention_padded_qkv(block.attn, block.norm1(x), window)))
        return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def build_dinov2_trunk(args, spec: dict, depth: int, patch: Optional[int] = None) -> DINOv2Trunk:
    """The DINOv2 trunk of `spec` (layer scale, windows, packed SwiGLU for g) as configured by `args`."""
    patch = int(patch or vit_option(args, "vit_patch_size", 16))
    window = int(vit_option(args, "vit_window_size", 14))
    global_attn = global_indexes_for_depth(vit_option(args, "vit_global_attn_indexes", spec["global_attn"]),
                                           depth, spec["depth"])
    require_timm()
    if spec["ffn"] == "swiglu":  # DINOv2-g: packed SwiGLU, hidden 4096 (fc1 8192 = gate + value)
        from timm.layers import SwiGLUPacked
        mlp = dict(mlp_ratio=2 * 4096 / spec["embed_dim"], mlp_layer=SwiGLUPacked, act_layer=nn.SiLU)
    else:
        mlp = dict(mlp_ratio=4.0)
    return DINOv2Trunk(
        embed_dim=spec["embed_dim"], depth=depth, num_heads=spec["num_heads"], qkv_bias=True, patch_size=patch,
        pretrain_grid=int(vit_option(args, "vit_pretrain_img_size", 592)) // patch,
        window_sizes=[0 if (i in global_attn or window <= 0) else window for i in range(depth)],
        drop_path_rate=float(vit_option(args, "vit_drop_path_rate", spec["drop_path"])), init_values=1.0,
        use_checkpoint=bool(getattr(args, "use_checkpoint", False)), **mlp)


# ViT-Adapter's names for the adapter parts (their ViTAdapter module) -> this body's names
_ADAPTER_ROOTS = ("level_embed", "spm", "interactions", "up", "norms")
_WRAPPERS = ("backbone.0.", "backbone.", "")


def adapter_key(key: str) -> Optional[str]:
    """This body's name for an adapter tensor of a checkpoint, or None if `key` is not one.

    Reads the authors' detection checkpoints (`backbone.spm.*`, `backbone.interactions.N.*`,
    `backbone.norm1`..`norm4` -> `norms.0`..`3`, `ffn.dwconv.dwconv` -> `ffn.dwconv`), a bare
    ViTAdapter state dict, and this project's DINO checkpoints (`backbone.0.*`).
    """
    rest = next(key[len(w):] for w in _WRAPPERS if key.startswith(w))
    m = re.match(r"^norm([1-4])\.(.+)$", rest)
    if m:
        rest = f"norms.{int(m.group(1)) - 1}.{m.group(2)}"
    rest = rest.replace(".ffn.dwconv.dwconv.", ".ffn.dwconv.")
    return rest if rest.split(".", 1)[0] in _ADAPTER_ROOTS else None


def remap_adapter_checkpoint(state: Dict[str, Tensor], body: "ViTAdapterBody",
                             patch_resample: str = "bilinear") -> Dict[str, Tensor]:
    """A checkpoint in any published layout keyed as `body`'s state dict.

    The trunk goes through `remap_vit_checkpoint` (DINOv2 release files at
    patch 14 or converted to 16, ViT-Adapter's `gamma1/gamma2` names, chunked
    blocks, `backbone.` prefixes); the adapter parts of a ViT-Adapter
    detection checkpoint (or of this project's DINO checkpoints) are renamed by
    `adapter_key`. Adapter tensors for maps this body does not return (the
    stride-4 branch without level 0) are dropped with a log line; anything
    else that finds no place stays under its own name, so it is reported
    unexpected.
    """
    from timm.layers import GluMlp
    packed = isinstance(body.net.blocks[0].mlp, GluMlp)  # DINOv2-g: w12 / w3 -> packed fc1 / fc2
    out = remap_vit_checkpoint(state, body.net, "net.", patch_resample=patch_resample, swiglu_packed=packed)
    own = body.state_dict()
    stride4_only = () if 0 in body.levels else ("spm.fc1.", "up.", "norms.0.")
    placed: Dict[str, Tensor] = {}
    unused: List[str] = []
    for key, value in state.items():
        name = adapter_key(key)
        if name is None or name not in own and not name.startswith(stride4_only):
            continue  # not an adapter tensor, or one that stays under its own name (reported unexpected)
        out.pop(key, None)  # a leftover of the trunk remap
        if name in own:
            placed[name] = value
        else:
            unused.append(key)
    if placed:
        logger.info("loading %d ViT-Adapter tensors (spatial prior module, interactions, output norms)", len(placed))
    if unused:
        logger.info("%d adapter tensors belong to the stride-4 map, which return_interm_indices=%s does not "
                    "include: %s%s", len(unused), body.levels, ", ".join(unused[:3]), " ..." if len(unused) > 3 else "")
    out.update(placed)
    return out


def checkpoint_path(args) -> Optional[str]:
    """`pretrained_backbone_path`, else `backbone_checkpoint`, else `backbone_dir` + the DINOv2 file name."""
    explicit, checkpoint = getattr(args, "pretrained_backbone_path", None), getattr(args, "backbone_checkpoint", None)
    if explicit and checkpoint and explicit != checkpoint:
        logger.warning("both pretrained_backbone_path (%s) and backbone_checkpoint (%s) are set; loading the first",
                       explicit, checkpoint)
    return explicit or checkpoint or pretrained_path(args, {k: v["file"] for k, v in ADAPTER_SPECS.items()})


def load_adapter_weights(body: "ViTAdapterBody", args) -> None:
    """Load the configured file (DINOv2 release / converted, or a ViT-Adapter detector) and apply freezing."""
    path = checkpoint_path(args)
    if path is None:  # nothing local: the shared path (marks the body as wanting weights, freezing)
        load_and_freeze(body, body.net, args, {k: v["file"] for k, v in ADAPTER_SPECS.items()},
                        patch_resample="bilinear")
        return
    mode = vit_option(args, "vit_patch_resample", "bilinear")
    load_pretrained(body, path, lambda state, module: remap_adapter_checkpoint(state, module, mode),
                    what=args.backbone, trust=trusts_checkpoints(args))
    if bool(vit_option(args, "vit_freeze_patch_embed", False)):
        body.net.patch_embed.requires_grad_(False)
    freeze_by_keywords(body, getattr(args, "backbone_freeze_keywords", None))


@register_backbone(*ADAPTER_SPECS)
def build_vit_adapter(args) -> nn.Module:
    spec = ADAPTER_SPECS[args.backbone]
    depth = int(vit_option(args, "vit_depth", spec["depth"]))
    interactions = vit_option(args, "vit_adapter_interaction_indexes", None)
    if interactions is None:
        interactions = spec["interactions"] if depth == spec["depth"] else split_into_groups(depth, min(4, depth))
    net = build_dinov2_trunk(args, spec, depth)
    body = ViTAdapterBody(
        net, list(args.return_interm_indices), interactions, num_heads=spec["num_heads"],
        conv_inplane=int(vit_option(args, "vit_adapter_conv_inplane", 64)),
        n_points=int(vit_option(args, "vit_adapter_n_points", 4)),
        deform_ratio=float(vit_option(args, "vit_adapter_deform_ratio", spec["deform_ratio"])),
        cffn_ratio=float(vit_option(args, "vit_adapter_cffn_ratio", 0.25)),
        drop_path=float(vit_option(args, "vit_drop_path_rate", spec["drop_path"])),
        init_values=float(vit_option(args, "vit_adapter_init_values", 0.0)),
        norm=str(vit_option(args, "vit_adapter_norm", "SyncBN")),
        use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    load_adapter_weights(body, args)
    return body
