"""Layer-wise learning-rate decay for plain-ViT backbones (ViTDet / EVA / BEiT / ViT-Adapter rule).

For a backbone whose trunk has L blocks, every backbone parameter gets a
layer id:

    patch embedding, position embedding (and class/mask tokens)  -> 0
    block i (`...blocks.<i>....`)                                 -> i + 1
    everything else in the backbone (pyramid, adapter, norms)     -> L + 1

and the learning rate  base * decay ** (L + 1 - layer_id), so the last block
trains at base * decay and the pyramid / adapter at the full base rate.
`base` is `lr_layer_decay_backbone_lr` when set, else `lr` (detrex's DINO-EVA
scales the detector lr; `lr_backbone` is not used when layer decay is on).

Weight decay inside the backbone follows `lr_layer_decay_wd_policy`:

* 'none'   every parameter decays (detrex DINO-EVA: overrides={}, weight_decay_norm=None);
* 'vitdet' parameters of normalization layers and the position embedding do not
           decay (detectron2 ViTDet: weight_decay_norm=0, pos_embed override);
* 'beit'   1-D parameters (norm weights, biases, layer scales), position
           embedding, tokens and relative-position tables do not decay
           (BEiT / EVA fine-tuning and ViT-Adapter's LayerDecayOptimizerConstructor).

Parameters outside the backbone follow the default DINO groups of
`param_dict_type` ('default': lr, weight_decay; 'ddetr_in_mmdet': names in
`lr_linear_proj_names` at lr * lr_linear_proj_mult; 'large_wd': norms and
biases without weight decay).

Config keys: `lr_layer_decay` (the decay rate; the ViT-Adapter / mmdet name
`layer_decay_rate` is accepted too), `lr_layer_decay_num_layers` (L; default:
the backbone's `num_layers`), `lr_layer_decay_backbone_lr`,
`lr_layer_decay_wd_policy`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from torch import nn

__all__ = ["layer_decay_rate", "vit_layer_id", "ParamAssignment", "layer_decay_assignments",
           "build_layer_decay_param_groups", "WD_POLICIES"]

WD_POLICIES = ("none", "vitdet", "beit")
_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBED = re.compile(r"(?:^|\.)(patch_embed|pos_embed|cls_token|mask_token)(?:\.|$)")
_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.LocalResponseNorm)


def layer_decay_rate(args) -> Optional[float]:
    """The configured decay rate (`lr_layer_decay`, else `layer_decay_rate`), None when off."""
    for key in ("lr_layer_decay", "layer_decay_rate"):
        value = getattr(args, key, None)
        if value is not None:
            value = float(value)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{key}={value} must be in (0, 1]")
            return value
    return None


def vit_layer_id(name: str, num_layers: int) -> int:
    """Layer id of a backbone parameter `name` (relative to the backbone body), see module doc."""
    block = _BLOCK.search(name)
    if block:
        return int(block.group(1)) + 1
    if _EMBED.search(name):
        return 0
    return num_layers + 1


@dataclass
class ParamAssignment:
    name: str
    param: nn.Parameter
    lr: float
    weight_decay: float
    group: str          # "backbone" or "detector"
    layer_id: Optional[int] = None


def _backbone_body(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError("layer decay needs a model with a `backbone` (Joiner) attribute")
    return backbone[0] if isinstance(backbone, nn.Sequential) else backbone


def _norm_param_names(module: nn.Module) -> set:
    names = set()
    for mod_name, mod in module.named_modules():
        if isinstance(mod, _NORM_TYPES):
            for p_name, _ in mod.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def _backbone_no_wd(policy: str, name: str, param: nn.Parameter, norm_names: set) -> bool:
    if policy == "none":
        return False
    if policy == "vitdet":
        return name in norm_names or bool(re.search(r"(?:^|\.)pos_embed$", name))
    # beit
    return (param.ndim == 1 or name.endswith(".bias") or bool(_EMBED.search(name) and "patch_embed" not in name)
            or "rel_pos" in name or "relative_position_bias_table" in name)


def _match(name: str, keywords) -> bool:
    return any(k in name for k in (keywords or ()))


def layer_decay_assignments(model: nn.Module, args) -> List[ParamAssignment]:
    """(name, lr, weight decay, layer id) of every trainable parameter of `model`, in named_parameters order."""
    decay = layer_decay_rate(args)
    if decay is None:
        raise ValueError("lr_layer_decay (or layer_decay_rate) is not set")
    policy = getattr(args, "lr_layer_decay_wd_policy", None) or "none"
    if policy not in WD_POLICIES:
        raise ValueError(f"lr_layer_decay_wd_policy={policy!r}; use one of {', '.join(WD_POLICIES)}")
    lr = float(args.lr)
    weight_decay = float(args.weight_decay)
    backbone_lr = getattr(args, "lr_layer_decay_backbone_lr", None)
    backbone_lr = lr if backbone_lr is None else float(backbone_lr)

    body = _backbone_body(model)
    num_layers = getattr(args, "lr_layer_decay_num_layers", None) or getattr(body, "num_layers", None)
    if not num_layers:
        raise ValueError(f"layer decay needs the number of ViT blocks: backbone {getattr(args, 'backbone', '?')} "
                         f"has no `num_layers`; set lr_layer_decay_num_layers")
    num_layers = int(num_layers)
    body_prefix = next((n + "." for n, m in model.named_modules() if m is body), "backbone.0.")
    norm_names = _norm_param_names(body)

    param_dict_type = getattr(args, "param_dict_type", None) or "default"
    proj_names = getattr(args, "lr_linear_proj_names", None) or []
    proj_mult = float(getattr(args, "lr_linear_proj_mult", 1.0) or 1.0)

    out: List[ParamAssignment] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(body_prefix):
            local = name[len(body_prefix):]
            layer_id = body.layer_id(local) if hasattr(body, "layer_id") else vit_layer_id(local, num_layers)
            if not 0 <= layer_id <= num_layers + 1:
                raise ValueError(f"{name}: layer id {layer_id} outside 0..{num_layers + 1}")
            wd = 0.0 if _backbone_no_wd(policy, local, param, norm_names) else weight_decay
            out.append(ParamAssignment(name, param, backbone_lr * decay ** (num_layers + 1 - layer_id), wd,
                                       "backbone", layer_id))
            continue
        p_lr, p_wd = lr, weight_decay
        if param_dict_type == "ddetr_in_mmdet" and _match(name, proj_names):
            p_lr = lr * proj_mult
        elif param_dict_type == "large_wd" and _match(name, ("norm", "bias")):
            p_wd = 0.0
        out.append(ParamAssignment(name, param, p_lr, p_wd, "detector"))
    return out


def build_layer_decay_param_groups(model: nn.Module, args) -> List[Dict]:
    """Optimizer param groups ('params', 'lr', 'weight_decay', 'group_name') with layer-wise lr decay.

    Every trainable parameter of `model` is in exactly one group; parameters
    with the same (lr, weight decay) share a group. Groups are ordered by
    first appearance in `model.named_parameters()`, so the layout is the same
    on every run (optimizer checkpoints resume).
    """
    groups: Dict[Tuple, Dict] = {}
    for a in layer_decay_assignments(model, args):
        key = (a.group, a.layer_id, a.lr, a.weight_decay)
        if key not in groups:
            label = f"backbone_layer{a.layer_id}" if a.group == "backbone" else "detector"
            groups[key] = {"params": [], "lr": a.lr, "weight_decay": a.weight_decay,
                           "group_name": f"{label}_{'decay' if a.weight_decay else 'no_decay'}_lr{a.lr:.3g}"}
        groups[key]["params"].append(a.param)
    return list(groups.values())
