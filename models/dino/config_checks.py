"""Checks that a config asks for something this implementation computes.

The original DINO configs carry many keys for experiments DINO itself does not
use. They are accepted at the values DINO uses (so the original configs and
checkpoints work unchanged); any other value raises an error naming the key,
instead of being silently ignored.
"""
from typing import Any, Dict, Tuple

# key -> values we implement (the first is the original DINO value)
FIXED_VALUES: Dict[str, Tuple[Any, ...]] = {
    "frozen_weights": (None,),
    "unic_layers": (0,),
    "pre_norm": (False,),
    "query_dim": (4,),
    "num_patterns": (0,),
    "pdetr3_bbox_embed_diff_each_layer": (False,),
    "pdetr3_refHW": (-1,),
    "random_refpoints_xy": (False,),
    "fix_refpoints_hw": (-1,),
    "dabdetr_yolo_like_anchor_update": (False,),
    "dabdetr_deformable_encoder": (False,),
    "dabdetr_deformable_decoder": (False,),
    "use_deformable_box_attn": (False,),
    "dec_layer_number": (None,),
    "decoder_layer_noise": (False,),
    "add_channel_attention": (False,),
    "add_pos_value": (False,),
    "two_stage_type": ("standard",),
    "two_stage_pat_embed": (0,),
    "two_stage_add_query_num": (0,),
    "two_stage_keep_all_tokens": (False,),
    "masks": (False,),
    "decoder_sa_type": ("sa",),
    "matcher_type": ("HungarianMatcher",),
    "decoder_module_seq": (["sa", "ca", "ffn"],),
    "position_embedding": ("sine",),
    "param_dict_type": ("default", "ddetr_in_mmdet", "large_wd"),
    "modelname": ("dino",),
}

# options of this project (keys the original DINO does not have): key -> accepted values
OPTION_VALUES: Dict[str, Tuple[Any, ...]] = {
    "vit_rel_pos_interp": (None, "vitdet", "beit"),  # how global blocks resize rel-pos tables (vit_common.py)
}

REQUIRED_KEYS = (
    "num_classes", "hidden_dim", "nheads", "num_queries", "enc_layers", "dec_layers", "dim_feedforward",
    "dropout", "num_feature_levels", "enc_n_points", "dec_n_points", "return_interm_indices", "backbone",
    "use_dn", "dn_number", "dn_box_noise_scale", "dn_label_noise_ratio", "dn_labelbook_size",
)


class UnsupportedConfigError(ValueError):
    """A config value this implementation does not compute."""


def check_model_config(args) -> None:
    """Raise UnsupportedConfigError naming the first key whose value we do not support."""
    missing = [k for k in REQUIRED_KEYS if not hasattr(args, k)]
    if missing:
        raise UnsupportedConfigError(f"config is missing required key(s): {', '.join(missing)}")
    for key, allowed in list(FIXED_VALUES.items()) + list(OPTION_VALUES.items()):
        if hasattr(args, key) and getattr(args, key) not in allowed:
            raise UnsupportedConfigError(
                f"config key {key}={getattr(args, key)!r} is not supported; supported: "
                + ", ".join(repr(v) for v in allowed))
    for key in ("num_classes", "dn_labelbook_size"):
        if not isinstance(getattr(args, key), int) or isinstance(getattr(args, key), bool):
            raise UnsupportedConfigError(
                f"{key}={getattr(args, key)!r}: 'auto' is settled from a dataset (main.py --data) or a checkpoint; "
                f"building a model without either needs numbers, e.g. --options num_classes=91 dn_labelbook_size=91")
    dn_cls = getattr(args, "dn_cls_loss_coef", None)
    if dn_cls is not None and (isinstance(dn_cls, bool) or not isinstance(dn_cls, (int, float)) or dn_cls < 0):
        raise UnsupportedConfigError(f"dn_cls_loss_coef={dn_cls!r} must be None (the same as cls_loss_coef) or a "
                                     "number >= 0")
    if args.hidden_dim % 32:
        raise UnsupportedConfigError(f"hidden_dim={args.hidden_dim} must be a multiple of 32 (GroupNorm(32) "
                                     "in the input projections)")
    if args.hidden_dim % args.nheads:
        raise UnsupportedConfigError(f"hidden_dim={args.hidden_dim} must be divisible by nheads={args.nheads}")
    n_backbone = len(args.return_interm_indices)
    if args.num_feature_levels < n_backbone:
        raise UnsupportedConfigError(
            f"num_feature_levels={args.num_feature_levels} is smaller than the {n_backbone} backbone levels of "
            f"return_interm_indices={args.return_interm_indices}")
    if args.num_classes < 1:
        raise UnsupportedConfigError(f"num_classes={args.num_classes} must be at least 1 (max category id + 1)")
    if args.use_dn and args.dn_labelbook_size < args.num_classes:
        raise UnsupportedConfigError(
            f"dn_labelbook_size={args.dn_labelbook_size} is smaller than num_classes={args.num_classes}: the "
            f"denoising label embedding needs a row per class. Set dn_labelbook_size={args.num_classes} "
            f"(or larger), e.g. --options dn_labelbook_size={args.num_classes}")
    if args.num_queries < 1 or args.dec_layers < 1:
        raise UnsupportedConfigError("num_queries and dec_layers must be at least 1")
