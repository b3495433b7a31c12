"""EVA-02 (T/S/B/L) and EVA-01 (giant) plain-ViT backbones with the ViTDet pyramid (DINO-EVA).

EVA-02 blocks are timm's `EvaBlock` (2D RoPE on q/k, SwiGLU FFN, sub-LN in the
FFN for B/L) run on a token grid with window attention in most blocks, as
detrex's DINO-EVA-02 backbone:

* rotary embedding of window blocks: a window_size x window_size grid whose
  coordinates are scaled to the 16 x 16 pre-training grid
  (`vit_rope_pt_grid`), of global blocks: the input grid with the token
  spacing of a `vit_img_size` square input (detrex pads every image to that
  square; we keep the spacing without padding);
* absolute position embedding of the pre-training grid (224 px by default),
  resampled to the input grid.

EVA-01 is the giant ViT (1408 wide, 40 blocks) with BEiT-style q/v biases and
ViTDet's decomposed relative position biases, built from timm's windowed ViT
block. `vit_rel_pos_interp='beit'` resizes the global blocks' tables with
BEiT's spline (detrex's DINO-EVA-01 1536: a 1280 model run on 1536 squares);
`vit_pad_input=False` feeds the image unpadded, as detrex's projects/dino
(DINO-EVA-01 with DETR-like augmentation).

Names: eva02_tiny, eva02_small, eva02_base, eva02_large, eva01_giant.
Body state dict: `net.*` (the trunk, timm key layout) and `simfp_<k>.*` (pyramid).
Pretrained files: EVA-02 official (`eva02_B_pt_in21k_p14to16.pt`, ...),
mmpretrain (`backbone.layers.N...`), timm (`eva02_*`), detrex DINO-EVA
detector files (backbone part), EVA-01 official / `eva_o365.pth`.
detrex checkpoints (DINO-EVA-02 B/L, DINO-EVA-01): `remap_detrex_eva02` / `remap_detrex_eva01`,
the 'detrex' layout of the registry (docs/BACKBONES.md, "detrex checkpoints").
"""
from __future__ import annotations

from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ._common import rename_keys
from .registry import register_backbone, register_layout_remap
from .vit_common import (PlainViT, PyramidBody, WindowedViT, load_and_freeze, require_timm, vit_option,
                         window_sizes_from_args)

__all__ = ["EVA02ViT", "EVA02_SPECS", "EVA01_SPEC", "build_eva02", "build_eva01"]


def rope_table(h, w, step: float, head_dim: int, device: torch.device) -> Tensor:
    """timm's `build_rotary_pos_embed(in_pixels=False, ref_feat_shape=[h * step, w * step])`, (sin, cos)
    concatenated, for ONNX export: `h`, `w` may be traced sizes (0-dim tensors), and the (f0, f0, f1, f1, ...)
    interleave is a stack, not timm's `repeat_interleave`, whose TorchScript-exporter form on traced sizes
    crashes the exporter (segfault in its `permute` symbolic) or gives wrong reshapes."""
    num_bands = head_dim // 4
    bands = 1.0 / (10000.0 ** (torch.arange(num_bands, device=device).to(torch.float32) / num_bands))
    axes = []
    for n in (h, w):
        size = torch.as_tensor(n, device=device).to(torch.float32)
        axes.append(torch.arange(n, device=device).to(torch.float32) / size * (size * step))
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)  # h, w, 2
    angles = (grid.unsqueeze(-1) * bands).flatten(-2).flatten(0, 1)  # h*w, 2 * num_bands
    return torch.cat([torch.stack([t, t], -1).flatten(-2) for t in (angles.sin(), angles.cos())], -1)


class EVA02ViT(PlainViT):
    """EVA-02 trunk: timm `EvaBlock`s with RoPE, windowed as in ViTDet.

    `rope_pt_grid` is the side of the pre-training token grid the rotary
    coordinates are expressed in (16 for EVA-02's 224 px / patch 14),
    `ref_grid` the side of the token grid of a square detection input
    (`vit_img_size / patch`), which fixes the token spacing of global blocks.
    """

    def __init__(self, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4 * 2 / 3,
                 qkv_fused: bool = False, scale_mlp: bool = True, patch_size: int = 16, pretrain_grid: int = 14,
                 ref_grid: int = 64, rope_pt_grid: int = 16, window_sizes: Optional[Sequence[int]] = None,
                 drop_path_rate: float = 0.0, use_checkpoint: bool = False):
        super().__init__(embed_dim, depth, patch_size, pretrain_grid, True, window_sizes, use_checkpoint)
        require_timm()
        from timm.layers import LayerNorm
        from timm.models.eva import EvaBlock

        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList([
            EvaBlock(dim=embed_dim, num_heads=num_heads, qkv_bias=True, qkv_fused=qkv_fused, mlp_ratio=mlp_ratio,
                     swiglu_mlp=True, scale_mlp=scale_mlp, num_prefix_tokens=0, drop_path=rates[i],
                     norm_layer=partial(LayerNorm, eps=1e-6))
            for i in range(depth)])
        self.head_dim = embed_dim // num_heads
        self.ref_grid = ref_grid
        self.rope_pt_grid = rope_pt_grid
        self._rope_cache: Dict[Tuple, Tensor] = {}
        self.init_linear_weights()

    def rope(self, h: int, w: int, step: float, device: torch.device) -> Tensor:
        """Concatenated (sin, cos) rotary table (h*w, 2*head_dim) for a grid with token spacing `step`."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or not (isinstance(h, int) and isinstance(w, int)):
            # ONNX export, torch.compile / torch.export: h, w are traced or symbolic sizes; the table follows them
            return rope_table(h, w, step, self.head_dim, device)
        key = (h, w, step, str(device))
        table = self._rope_cache.get(key)
        if table is None:
            from timm.layers import build_rotary_pos_embed
            sin, cos = build_rotary_pos_embed([h, w], dim=self.head_dim, in_pixels=False,
                                              ref_feat_shape=[h * step, w * step], device=device)
            table = torch.cat([sin, cos], -1)
            if len(self._rope_cache) > 32:
                self._rope_cache.clear()
            self._rope_cache[key] = table
        return table

    def _run_block(self, index: int, block: nn.Module, x: Tensor) -> Tensor:
        from timm.models.vision_transformer_sam import window_partition, window_unpartition
        B, H, W, C = x.shape
        window = self.window_sizes[index]
        y = block.norm1(x)
        if window:
            y, padded_hw = window_partition(y, window)
            rope = self.rope(window, window, self.rope_pt_grid / window, y.device)
        else:
            rope = self.rope(H, W, self.rope_pt_grid / self.ref_grid, y.device)
        b, h, w, _ = y.shape
        y = block.attn(y.reshape(b, h * w, C), rope=rope).reshape(b, h, w, C)
        if window:
            y = window_unpartition(y, window, (H, W), padded_hw)
        if block.gamma_1 is not None:
            y = block.gamma_1 * y
        x = x + block.drop_path1(y)
        y = block.mlp(block.norm2(x))
        if block.gamma_2 is not None:
            y = block.gamma_2 * y
        return x + block.drop_path2(y)


# name -> trunk shape, published pretrained file (for backbone_dir), DINO-EVA defaults
EVA02_SPECS: Dict[str, dict] = {
    "eva02_tiny": dict(embed_dim=192, depth=12, num_heads=3, qkv_fused=True, scale_mlp=False,
                       file="eva02_Ti_pt_in21k_p14.pt", global_attn=(2, 5, 8, 11), drop_path=0.1),
    "eva02_small": dict(embed_dim=384, depth=12, num_heads=6, qkv_fused=True, scale_mlp=False,
                        file="eva02_S_pt_in21k_p14.pt", global_attn=(2, 5, 8, 11), drop_path=0.1),
    "eva02_base": dict(embed_dim=768, depth=12, num_heads=12, qkv_fused=False, scale_mlp=True,
                       file="eva02_B_pt_in21k_p14to16.pt", global_attn=(2, 5, 8, 11), drop_path=0.1),
    "eva02_large": dict(embed_dim=1024, depth=24, num_heads=16, qkv_fused=False, scale_mlp=True,
                        file="eva02_L_pt_m38m_p14to16.pt", global_attn=(5, 11, 17, 23), drop_path=0.4),
}
EVA01_SPEC = dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=6144 / 1408, file="eva_o365.pth",
                  global_attn=tuple(range(3, 40, 4)), drop_path=0.6)


def _patch_and_grids(args, default_pretrain_img: int = 224):
    patch = int(vit_option(args, "vit_patch_size", 16))
    img_size = int(vit_option(args, "vit_img_size", 1024))
    pretrain_img = int(vit_option(args, "vit_pretrain_img_size", default_pretrain_img))
    return patch, img_size // patch, pretrain_img // patch


@register_backbone(*EVA02_SPECS)
def build_eva02(args) -> nn.Module:
    spec = EVA02_SPECS[args.backbone]
    depth = int(vit_option(args, "vit_depth", spec["depth"]))
    patch, ref_grid, pretrain_grid = _patch_and_grids(args)
    net = EVA02ViT(
        embed_dim=spec["embed_dim"], depth=depth, num_heads=spec["num_heads"], qkv_fused=spec["qkv_fused"],
        scale_mlp=spec["scale_mlp"], patch_size=patch, pretrain_grid=pretrain_grid, ref_grid=ref_grid,
        rope_pt_grid=int(vit_option(args, "vit_rope_pt_grid", 16)),
        window_sizes=window_sizes_from_args(args, depth, spec["depth"], 16, spec["global_attn"]),
        drop_path_rate=float(vit_option(args, "vit_drop_path_rate", spec["drop_path"])),
        use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    body = PyramidBody(net, list(args.return_interm_indices), int(vit_option(args, "vit_out_channels", 256)))
    load_and_freeze(body, net, args, {k: v["file"] for k, v in EVA02_SPECS.items()}, patch_resample="bicubic",
                    swiglu_packed=not spec["scale_mlp"])
    return body


@register_backbone("eva01_giant")
def build_eva01(args) -> nn.Module:
    spec = EVA01_SPEC
    depth = int(vit_option(args, "vit_depth", spec["depth"]))
    patch, ref_grid, pretrain_grid = _patch_and_grids(args)
    net = WindowedViT(
        embed_dim=spec["embed_dim"], depth=depth, num_heads=spec["num_heads"], mlp_ratio=spec["mlp_ratio"],
        qkv_bias=True, patch_size=patch, pretrain_grid=pretrain_grid,
        window_sizes=window_sizes_from_args(args, depth, spec["depth"], 16, spec["global_attn"]),
        use_rel_pos=bool(vit_option(args, "vit_use_rel_pos", True)), rel_pos_grid=ref_grid,
        rel_pos_interp=str(vit_option(args, "vit_rel_pos_interp", "vitdet")),
        drop_path_rate=float(vit_option(args, "vit_drop_path_rate", spec["drop_path"])),
        use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    body = PyramidBody(net, list(args.return_interm_indices), int(vit_option(args, "vit_out_channels", 256)),
                       pad_input=bool(vit_option(args, "vit_pad_input", True)))
    load_and_freeze(body, net, args, {"eva01_giant": spec["file"]}, patch_resample="bicubic",
                    freeze_patch_embed=True)
    return body


# --- detrex checkpoint layout (projects/dino_eva: EVA02_ViT + SimpleFeaturePyramid) ----------------
# detrex's Attention keeps q/k/v projections without bias plus BEiT-style q_bias / v_bias, its SwiGLU
# is w1 (gated) / w2 / ffn_ln / w3; timm's EvaBlock holds the same tensors under other names. The
# RoPE tables (rope_win / rope_glb, repeated in every block) are constants of the config that the
# trunk recomputes (identical values: tests/test_detrex_backbones.py compares the outputs).
_EVA02_DETREX_RULES = [
    (r"net\.(patch_embed\.proj\.(?:weight|bias)|pos_embed)", r"net.\1"),
    (r"net\.blocks\.(\d+)\.(norm[12]|attn\.proj)\.(weight|bias)", r"net.blocks.\1.\2.\3"),
    (r"net\.blocks\.(\d+)\.attn\.([qkv])_proj\.weight", r"net.blocks.\1.attn.\2_proj.weight"),
    (r"net\.blocks\.(\d+)\.attn\.([qv])_bias", r"net.blocks.\1.attn.\2_proj.bias"),
    (r"net\.blocks\.(\d+)\.mlp\.w1\.(weight|bias)", r"net.blocks.\1.mlp.fc1_g.\2"),
    (r"net\.blocks\.(\d+)\.mlp\.w2\.(weight|bias)", r"net.blocks.\1.mlp.fc1_x.\2"),
    (r"net\.blocks\.(\d+)\.mlp\.ffn_ln\.(weight|bias)", r"net.blocks.\1.mlp.norm.\2"),
    (r"net\.blocks\.(\d+)\.mlp\.w3\.(weight|bias)", r"net.blocks.\1.mlp.fc2.\2"),
    (r"(simfp_\d\.\d\.(?:norm\.)?(?:weight|bias))", r"\1"),
]
_EVA02_DETREX_DROP = [r"net\.rope_(?:win|glb)\.freqs_(?:cos|sin)", r"net\.blocks\.\d+\.attn\.rope\.freqs_(?:cos|sin)"]


def drop_class_token_slot(state: Dict[str, Tensor], key: str = "net.pos_embed") -> Dict[str, Tensor]:
    """detrex stores the position embedding with the pre-training class-token slot (1, 1 + g*g, C)."""
    pos = state.get(key)
    if pos is not None and pos.ndim == 3:
        n = pos.shape[1]
        if int(n ** 0.5) ** 2 != n and int((n - 1) ** 0.5) ** 2 == n - 1:
            state[key] = pos[:, 1:]
    return state


@register_layout_remap("detrex", "eva02_base", "eva02_large")
def remap_detrex_eva02(state: Dict[str, Tensor], args) -> Dict[str, Tensor]:
    """detrex DINO-EVA-02 backbone keys (`net.*`, `simfp_*`) -> this body's keys.

    Only B and L: detrex's EVA02_ViT always has the sub-LN SwiGLU and separate
    q/k/v, which the T/S trunks here (fused qkv, packed SwiGLU) do not.
    """
    out = rename_keys(state, _EVA02_DETREX_RULES, _EVA02_DETREX_DROP, what=f"detrex {args.backbone}")
    return drop_class_token_slot(out)


# detrex's EVAViT (DINO-EVA-01) is ViTDet's block with BEiT-style biases: q_bias and v_bias are
# used with a zero k bias, and the qkv layer's own bias (qkv_bias=True in its config) is never read.
_EVA01_DETREX_RULES = [
    (r"net\.(patch_embed\.proj\.(?:weight|bias)|pos_embed)", r"net.\1"),
    (r"net\.blocks\.(\d+)\.((?:norm[12]|attn\.proj|mlp\.fc[12])\.(?:weight|bias)|attn\.qkv\.weight)",
     r"net.blocks.\1.\2"),
    (r"net\.blocks\.(\d+)\.attn\.(rel_pos_[hw]|[qv]_bias)", r"net.blocks.\1.attn.\2"),
    (r"(simfp_\d\.\d\.(?:norm\.)?(?:weight|bias))", r"\1"),
]


@register_layout_remap("detrex", "eva01_giant")
def remap_detrex_eva01(state: Dict[str, Tensor], args) -> Dict[str, Tensor]:
    """detrex DINO-EVA-01 backbone keys -> this body's keys (q_bias, 0, v_bias -> attn.qkv.bias)."""
    has_beit_bias = any(k.endswith(".attn.q_bias") for k in state)
    rules = _EVA01_DETREX_RULES
    if not has_beit_bias:  # a plain qkv bias is the one the forward uses
        rules = rules + [(r"net\.blocks\.(\d+)\.attn\.qkv\.bias", r"net.blocks.\1.attn.qkv.bias")]
    drop = [r"net\.blocks\.\d+\.attn\.qkv\.bias"] if has_beit_bias else []
    out = rename_keys(state, rules, drop, what=f"detrex {args.backbone}")
    for key in [k for k in out if k.endswith(".attn.q_bias")]:
        prefix = key[:-len("q_bias")]
        q, v = out.pop(key), out.pop(prefix + "v_bias")
        out[prefix + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return drop_class_token_slot(out)
