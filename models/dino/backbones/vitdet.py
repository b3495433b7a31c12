"""ViTDet backbones: MAE-pretrained plain ViT (B/L/H) + simple feature pyramid (DINO-ViTDet).

The trunk is a plain ViT with window attention in most blocks and global
attention in a few (`vit_global_attn_indexes`; 2, 5, 8, 11 for ViT-B),
ViTDet's decomposed relative position biases (zero-initialised, not in MAE
files) and the MAE absolute position embedding (224 px pre-training grid,
resampled to the input grid). Blocks are timm's windowed ViT block
(`timm.models.vision_transformer_sam.Block`, the ViTDet/SAM block), so the
state dict uses the MAE / timm key names (`net.blocks.N.attn.qkv.weight`, ...).

The pyramid is ViTDet's: levels 0..3 = x4 / x2 / x1 / x0.5 of the stride-16
map (two / one transposed convs, identity, max-pool), each followed by a 1x1
and a 3x3 conv with channel LayerNorm, and level 4 = stride-2 subsampling of
level 3. `return_interm_indices` picks the levels (DINO-ViTDet-4scale: strides
8, 16, 32, 64 -> [1, 2, 3, 4]).

Names: vitdet_base, vitdet_large, vitdet_huge.
Pretrained files: MAE (`mae_pretrain_vit_base.pth`, ...; `{'model': ...}`),
timm ViT state dicts, detectron2 ViTDet detector files (backbone part).
detrex checkpoints (DINO-ViTDet): `remap_detrex_vitdet`, the 'detrex' layout of the registry;
build with `vit_pad_input=False` to feed the image unpadded as detrex's detectron2 ViT.
"""
from __future__ import annotations

from typing import Dict

from torch import Tensor, nn

from ._common import rename_keys
from .eva import drop_class_token_slot
from .registry import register_backbone, register_layout_remap
from .vit_common import PyramidBody, WindowedViT, load_and_freeze, vit_option, window_sizes_from_args

__all__ = ["VITDET_SPECS", "build_vitdet"]

# shapes and ViTDet defaults (window 14, global blocks, drop path) per size
VITDET_SPECS: Dict[str, dict] = {
    "vitdet_base": dict(embed_dim=768, depth=12, num_heads=12, global_attn=(2, 5, 8, 11), drop_path=0.1,
                        file="mae_pretrain_vit_base.pth"),
    "vitdet_large": dict(embed_dim=1024, depth=24, num_heads=16, global_attn=(5, 11, 17, 23), drop_path=0.4,
                         file="mae_pretrain_vit_large.pth"),
    "vitdet_huge": dict(embed_dim=1280, depth=32, num_heads=16, global_attn=(7, 15, 23, 31), drop_path=0.5,
                        file="mae_pretrain_vit_huge_p14to16.pth"),
}


@register_backbone(*VITDET_SPECS)
def build_vitdet(args) -> nn.Module:
    spec = VITDET_SPECS[args.backbone]
    depth = int(vit_option(args, "vit_depth", spec["depth"]))
    patch = int(vit_option(args, "vit_patch_size", 16))
    img_size = int(vit_option(args, "vit_img_size", 1024))
    net = WindowedViT(
        embed_dim=spec["embed_dim"], depth=depth, num_heads=spec["num_heads"], mlp_ratio=4.0, qkv_bias=True,
        patch_size=patch, pretrain_grid=int(vit_option(args, "vit_pretrain_img_size", 224)) // patch,
        window_sizes=window_sizes_from_args(args, depth, spec["depth"], 14, spec["global_attn"]),
        use_rel_pos=bool(vit_option(args, "vit_use_rel_pos", True)), rel_pos_grid=img_size // patch,
        drop_path_rate=float(vit_option(args, "vit_drop_path_rate", spec["drop_path"])),
        use_checkpoint=bool(getattr(args, "use_checkpoint", False)))
    body = PyramidBody(net, list(args.return_interm_indices), int(vit_option(args, "vit_out_channels", 256)),
                       pad_input=bool(vit_option(args, "vit_pad_input", True)))
    load_and_freeze(body, net, args, {k: v["file"] for k, v in VITDET_SPECS.items()}, patch_resample="bicubic")
    return body


# detectron2's ViT + SimpleFeaturePyramid (detrex projects/dino, dino-vitdet) use the module names of
# timm's windowed block; only the class-token slot of the stored position embedding goes.
_DETREX_RULES = [
    (r"net\.(patch_embed\.proj\.(?:weight|bias)|pos_embed)", r"net.\1"),
    (r"net\.blocks\.(\d+)\.((?:norm[12]|attn\.qkv|attn\.proj|mlp\.fc[12])\.(?:weight|bias))",
     r"net.blocks.\1.\2"),
    (r"net\.blocks\.(\d+)\.attn\.(rel_pos_[hw])", r"net.blocks.\1.attn.\2"),
    (r"(simfp_\d\.\d\.(?:norm\.)?(?:weight|bias))", r"\1"),
]


@register_layout_remap("detrex", *VITDET_SPECS)
def remap_detrex_vitdet(state: Dict[str, Tensor], args) -> Dict[str, Tensor]:
    """detrex DINO-ViTDet backbone keys (`net.*`, `simfp_*`) -> this body's keys."""
    return drop_class_token_slot(rename_keys(state, _DETREX_RULES, what=f"detrex {args.backbone}"))
