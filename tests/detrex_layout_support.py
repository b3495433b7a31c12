"""Test helpers for detrex-layout checkpoints.

`to_detrex_layout` writes a state dict of this project's detrex-compatible
model (config/detrex/*, ResNet backbone) under detrex's / detectron2's key
names. It is written independently of models/dino/checkpoint_layouts.py (the
reverse direction, rule by rule from detrex's module names), so converting its
output back and comparing with the original checks the converter.
"""
from __future__ import annotations

import re
from typing import Dict

from torch import Tensor

_RESNET = [  # torchvision (inside backbone.0.body.) -> detectron2 (inside backbone.)
    (r"^conv1\.", "stem.conv1."),
    (r"^bn1\.", "stem.conv1.norm."),
    (r"^layer(\d)\.(\d+)\.downsample\.0\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut."),
    (r"^layer(\d)\.(\d+)\.downsample\.1\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm."),
    (r"^layer(\d)\.(\d+)\.conv(\d)\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}."),
    (r"^layer(\d)\.(\d+)\.bn(\d)\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm."),
]
_ENCODER = {"self_attn.": "attentions.0.", "linear1.": "ffns.0.layers.0.0.", "linear2.": "ffns.0.layers.1.",
            "norm1.": "norms.0.", "norm2.": "norms.1."}
_DECODER = {"self_attn.": "attentions.0.attn.", "cross_attn.": "attentions.1.", "linear1.": "ffns.0.layers.0.0.",
            "linear2.": "ffns.0.layers.1.", "norm2.": "norms.0.", "norm1.": "norms.1.", "norm3.": "norms.2."}


def _sub(rules, key: str) -> str:
    for pattern, target in rules:
        m = re.match(pattern, key)
        if m:
            return (target if isinstance(target, str) else target(m)) + key[m.end():]
    raise KeyError(key)


def to_detrex_layout(state: Dict[str, Tensor], num_backbone_levels: int) -> Dict[str, Tensor]:
    """This project's detrex-compatible state dict (ResNet body) -> detrex's key names."""
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("backbone.0.body."):
            out["backbone." + _sub(_RESNET, key[len("backbone.0.body."):])] = value
        elif key.startswith("input_proj."):
            level, part, rest = key.split(".", 3)[1:]
            level = int(level)
            kind = ("convs", level) if level < num_backbone_levels else ("extra_convs", level - num_backbone_levels)
            out[f"neck.{kind[0]}.{kind[1]}.{'conv' if part == '0' else 'norm'}.{rest}"] = value
        elif key == "transformer.level_embed":
            out["transformer.level_embeds"] = value
        elif key.startswith("transformer.enc_out_"):
            continue  # detrex holds it once, as the last class_embed / bbox_embed
        else:
            m = re.match(r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(.*)$", key)
            if m:
                table = _ENCODER if m[1] == "encoder" else _DECODER
                src = next(s for s in table if m[3].startswith(s))
                out[f"transformer.{m[1]}.layers.{m[2]}.{table[src]}{m[3][len(src):]}"] = value
            else:
                out[key] = value
    return out
