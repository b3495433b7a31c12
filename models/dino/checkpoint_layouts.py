"""Checkpoint layouts: recognise whose code wrote a DINO state dict and convert
detrex's into this project's.

Layouts
    'dino'     the original DINO code's keys (`backbone.0.body...`, `input_proj.N`,
               `transformer.level_embed`, `...layers.N.self_attn...`); this
               project uses the same keys, so nothing is converted.
    'project'  the same keys, in a checkpoint written by this project (it holds
               entries the original never wrote, e.g. `rng_state`).
    'detrex'   detrex / detectron2 (`backbone.res2...`, `backbone.net.blocks...`,
               `neck.convs.N` / `neck.extra_convs.N`, `transformer.level_embeds`,
               `transformer.{encoder,decoder}.layers.N.{attentions,ffns,norms}`).

`detrex_to_project(state, args)` maps a detrex state dict onto the model that
`args` builds (a config of config/detrex/): the backbone through the remap its
family file registers (`registry.get_layout_remap('detrex', args.backbone)`),
the ChannelMapper neck onto `input_proj`, the transformer layers onto our
module names, and detrex's 7 heads (6 decoder layers + the encoder proposals)
onto `class_embed.N` / `bbox_embed.N`, the last one also being
`transformer.enc_out_*` (option `enc_heads_in_decoder_list`). It checks no
shapes: `util.checkpoint.load_model_weights` and `tools/convert_checkpoint.py`
compare the result with the model.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from collections import Counter
from typing import Dict, List, Mapping, Optional, Tuple

from torch import Tensor

_logger = logging.getLogger("dino.checkpoint")
StateDict = Dict[str, Tensor]
BODY_PREFIX = "backbone.0."  # the body inside the detector (backbone.1 is the position encoding)
# container entries only this project writes (the original DINO wrote model/optimizer/lr_scheduler/epoch/args)
_PROJECT_ENTRIES = ("rng_state", "best_metric", "scaler", "log_stats")

_ENCODER_LAYER = {
    "attentions.0.": "self_attn.",
    "ffns.0.layers.0.0.": "linear1.",
    "ffns.0.layers.1.": "linear2.",
    "norms.0.": "norm1.",
    "norms.1.": "norm2.",
}
# detrex's decoder layer: self_attn, norm, cross_attn, norm, ffn, norm
_DECODER_LAYER = {
    "attentions.0.attn.": "self_attn.",
    "attentions.1.": "cross_attn.",
    "ffns.0.layers.0.0.": "linear1.",
    "ffns.0.layers.1.": "linear2.",
    "norms.0.": "norm2.",
    "norms.1.": "norm1.",
    "norms.2.": "norm3.",
}
_LAYER_RE = re.compile(r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(.*)$")
_NECK_RE = re.compile(r"^neck\.(convs|extra_convs)\.(\d+)\.(conv|norm)\.(weight|bias)$")
_SAME_NAME = re.compile(r"^(class_embed\.\d+\.|bbox_embed\.\d+\.|label_enc\.|transformer\.(tgt_embed|enc_output|"
                        r"enc_output_norm|decoder\.norm|decoder\.ref_point_head|decoder\.class_embed\.\d+|"
                        r"decoder\.bbox_embed\.\d+)\.)")


class LayoutError(ValueError):
    """A state dict whose layout is not understood, or that cannot be mapped; one line for people."""


def detect_layout(state: Mapping[str, Tensor], container: Optional[Mapping] = None) -> str:
    """'detrex', 'dino' or 'project' (see module doc); LayoutError for anything else."""
    keys = list(state)
    if any(k.startswith("neck.") for k in keys) or "transformer.level_embeds" in state or any(
            ".attentions." in k and k.startswith("transformer.") for k in keys):
        return "detrex"
    if "transformer.level_embed" in state or any(k.startswith(("input_proj.", "backbone.0.")) for k in keys):
        if container is not None and any(k in container for k in _PROJECT_ENTRIES):
            return "project"
        return "dino"
    example = ", ".join(keys[:3]) or "no keys"
    raise LayoutError(f"not a DINO checkpoint of a known layout (detrex, original DINO, this project): "
                      f"its keys start {example}")


# --------------------------------------------------------------------------- #
# detrex -> project
# --------------------------------------------------------------------------- #
def _neck(state: StateDict) -> Tuple[StateDict, int]:
    """neck.convs.i / neck.extra_convs.j (conv + GroupNorm) -> input_proj.k.{0,1}; returns (mapped, levels)."""
    n_convs = 1 + max((int(m.group(2)) for m in map(_NECK_RE.match, state) if m and m.group(1) == "convs"),
                      default=-1)
    out, levels = {}, set()
    for key, value in state.items():
        m = _NECK_RE.match(key)
        if m is None:
            continue
        level = int(m.group(2)) + (n_convs if m.group(1) == "extra_convs" else 0)
        levels.add(level)
        out[f"input_proj.{level}.{0 if m.group(3) == 'conv' else 1}.{m.group(4)}"] = value
    return out, len(levels)


def _transformer_layer(kind: str, index: str, rest: str) -> Optional[str]:
    table = _ENCODER_LAYER if kind == "encoder" else _DECODER_LAYER
    for src, dst in table.items():
        if rest.startswith(src):
            return f"transformer.{kind}.layers.{index}.{dst}{rest[len(src):]}"
    return None


def detrex_backbone(state: StateDict) -> StateDict:
    """The detrex backbone tensors with the `backbone.` prefix removed."""
    return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}


def num_decoder_layers(state: Mapping[str, Tensor]) -> int:
    return 1 + max((int(m.group(2)) for m in map(_LAYER_RE.match, state) if m and m.group(1) == "decoder"),
                   default=-1)


def detrex_to_project(state: StateDict, args) -> Tuple[StateDict, List[str]]:
    """(this project's state dict, lines saying what was mapped) for a detrex state dict.

    `args` are the config's (backbone name and its options). LayoutError names
    a key nothing maps, or a backbone whose detrex layout is not known.
    """
    from .backbones.registry import get_layout_remap

    try:
        remap = get_layout_remap("detrex", args.backbone)
    except ValueError as exc:
        raise LayoutError(str(exc)) from None
    source = detrex_backbone(state)
    try:
        body = remap(dict(source), args)
    except ValueError as exc:  # a backbone key the family's remap cannot place
        raise LayoutError(str(exc).splitlines()[0]) from None
    out: StateDict = {BODY_PREFIX + k: v for k, v in body.items()}
    notes = [f"backbone ({args.backbone}): {len(source)} detrex tensors -> {len(body)} tensors under {BODY_PREFIX}*"]

    neck, levels = _neck(state)
    out.update(neck)
    notes.append(f"neck (ChannelMapper + GroupNorm): {levels} levels -> input_proj.0-{levels - 1}")

    counts: Counter = Counter()
    unmapped = []
    for key, value in state.items():
        if key.startswith(("backbone.", "neck.")):
            if key.startswith("neck.") and not _NECK_RE.match(key):
                unmapped.append(key)
            continue
        m = _LAYER_RE.match(key)
        if m:
            new = _transformer_layer(*m.groups())
            counts[f"transformer.{m.group(1)} layers"] += 1
        elif key == "transformer.level_embeds":
            new = "transformer.level_embed"
            counts["level embeddings"] += 1
        elif _SAME_NAME.match(key):
            new = key
            counts["heads, queries, label embedding (same names)"] += 1
        else:
            new = None
        if new is None:
            unmapped.append(key)
        else:
            out[new] = value
    if unmapped:
        raise LayoutError(f"detrex checkpoint: {len(unmapped)} keys have no place in this project's DINO "
                          f"(e.g. {', '.join(unmapped[:3])})")
    notes += [f"{name}: {n} tensors" for name, n in counts.items()]

    last = num_decoder_layers(state)
    _both_head_names(out)
    for head in ("class_embed", "bbox_embed"):
        enc = {k: v for k, v in out.items() if k.startswith(f"{head}.{last}.")}
        for k, v in enc.items():
            out[f"transformer.enc_out_{head}." + k[len(f"{head}.{last}."):]] = v
    if any(k.startswith(f"class_embed.{last}.") for k in out):
        notes.append(f"heads: class_embed/bbox_embed 0-{last - 1} for the decoder layers, {last} for the "
                     f"encoder proposals (also transformer.enc_out_class_embed / enc_out_bbox_embed)")
    return out, notes


def _both_head_names(out: StateDict) -> None:
    """detrex's heads are one module under two names (`class_embed.N`, `transformer.decoder.class_embed.N`);
    a state dict that kept one name only (e.g. detrex's EMA state, built from named_parameters) gets the other."""
    for key in list(out):
        for short in ("class_embed.", "bbox_embed."):
            long = "transformer.decoder." + short
            if key.startswith(short) and long + key[len(short):] not in out:
                out[long + key[len(short):]] = out[key]
            elif key.startswith(long) and key[len("transformer.decoder."):] not in out:
                out[key[len("transformer.decoder."):]] = out[key]


# --------------------------------------------------------------------------- #
# which backbone a detrex checkpoint holds
# --------------------------------------------------------------------------- #
def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for m in map(rx.match, state) if m})


def _shape(state: Mapping[str, Tensor], key: str, dim: int = 0) -> Optional[int]:
    value = state.get(key)
    return None if value is None else int(value.shape[dim])


def infer_detrex_backbone(state: Mapping[str, Tensor]) -> Optional[str]:
    """This project's backbone name for the backbone tensors of a detrex checkpoint, or None.

    Decided from names and shapes only (depth, width, window, focal levels),
    for the backbones of detrex's DINO / DINO-EVA model zoo.
    """
    b = detrex_backbone(dict(state))
    if "stem.conv1.weight" in b:
        bottleneck = "res2.0.conv3.weight" in b
        return {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50",
                (True, 23): "resnet101"}.get((bottleneck, _count(b, r"^res4\.(\d+)\.")))
    if "net.blocks.0.attn.q_proj.weight" in b:  # EVA-02: separate q/k/v, SwiGLU
        return {192: "eva02_tiny", 384: "eva02_small", 768: "eva02_base", 1024: "eva02_large"}.get(
            _shape(b, "net.patch_embed.proj.weight"))
    if "net.blocks.0.attn.qkv.weight" in b:
        width = _shape(b, "net.patch_embed.proj.weight")
        return {768: "vitdet_base", 1024: "vitdet_large", 1280: "vitdet_huge", 1408: "eva01_giant"}.get(width)
    if "layers.0.blocks.0.modulation.f.weight" in b:  # FocalNet
        levels = _count(b, r"^layers\.0\.blocks\.0\.modulation\.focal_layers\.(\d+)\.")
        width = _shape(b, "patch_embed.proj.weight")
        if width == 192:
            return {3: "focalnet_L_384_22k", 4: "focalnet_L_384_22k_fl4"}.get(levels)
        return {96: "focalnet_T_224_1k_fl3", 128: "focalnet_B_224_1k_fl3"}.get(width) if levels == 3 else None
    if "layers.0.blocks.0.attn.relative_position_bias_table" in b:  # Swin
        width = _shape(b, "patch_embed.proj.weight")
        window = int(round(_shape(b, "layers.0.blocks.0.attn.relative_position_bias_table") ** 0.5) + 1) // 2
        depth3 = _count(b, r"^layers\.2\.blocks\.(\d+)\.")
        if width == 96:
            return "swin_T_224_1k" if depth3 == 6 else "swin_S_224_1k"
        return {(128, 12): "swin_B_384_22k", (128, 7): "swin_B_224_22k", (192, 7): "swin_L_224_22k",
                (192, 12): "swin_L_384_22k"}.get((width, window))
    if "downsample_layers.0.0.weight" in b:  # ConvNeXt
        return {96: "convnext_tiny_22k_384" if _count(b, r"^stages\.2\.(\d+)\.") == 9 else "convnext_small_22k_384",
                128: "convnext_base_22k_384", 192: "convnext_large_22k_384"}.get(
            _shape(b, "downsample_layers.0.0.weight"))
    if "patch_embed.conv1.weight" in b:  # InternImage
        return {32: "internimage_T_1k", 40: "internimage_S_1k", 56: "internimage_B_1k", 80: "internimage_L_22k"}.get(
            _shape(b, "patch_embed.conv1.weight"))
    return None


def detrex_facts(state: Mapping[str, Tensor]) -> Dict[str, object]:
    """What a detrex state dict says about the model: backbone, feature levels, classes, decoder layers."""
    _, levels = _neck(dict(state))
    classes = _shape(state, "class_embed.0.weight")
    return {"backbone": infer_detrex_backbone(state), "num_feature_levels": levels, "num_classes": classes,
            "dec_layers": num_decoder_layers(state)}


DETREX_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "config", "detrex")


def _config_facts(path: str) -> Tuple[object, object, object]:
    from util.slconfig import SLConfig
    cfg = SLConfig.fromfile(path).to_dict()
    return cfg.get("backbone"), cfg.get("num_feature_levels"), cfg.get("num_classes")


def find_detrex_config(facts: Mapping[str, object]) -> str:
    """The config/detrex/ config whose backbone, feature levels and classes match `facts`
    (detrex_facts of a checkpoint); LayoutError when none does."""
    if facts.get("backbone") is None:
        raise LayoutError("cannot tell which backbone this detrex checkpoint holds; name its config with -c")
    wanted = (facts["backbone"], facts["num_feature_levels"], facts["num_classes"])
    for path in sorted(glob.glob(os.path.join(DETREX_CONFIGS, "dino_*.py"))):
        if _config_facts(path) == wanted:
            return path
    raise LayoutError(f"no config under {os.path.relpath(DETREX_CONFIGS)} has backbone={wanted[0]}, "
                      f"num_feature_levels={wanted[1]}, num_classes={wanted[2]}; name a config with -c")


def in_project_layout(checkpoint: Dict[str, object], path: str, what: str, args) -> Dict[str, object]:
    """`checkpoint` (as util.checkpoint.load_checkpoint returns it) with detrex's keys mapped onto
    the model `args` build (only the weights are kept, logged); other layouts come back as they are.
    For callers that learn the config only after reading the file (e.g. from its 'args')."""
    from util.checkpoint import CheckpointError

    try:
        layout = detect_layout(checkpoint["model"], checkpoint)
    except LayoutError:
        return checkpoint  # load_model_weights says which keys do not fit
    if layout != "detrex":
        return checkpoint
    try:
        state, notes = detrex_to_project(checkpoint["model"], args)
    except LayoutError as exc:
        raise CheckpointError(f"{what} {path}: {exc}") from None
    _logger.info("%s %s: detrex checkpoint, converted on load to this project's keys (%d tensors; "
                 "tools/convert_checkpoint.py writes the converted file): %s", what, path, len(state),
                 "; ".join(notes))
    return {"model": state}


def load_checkpoint_for(args, path: str, what: str, *, trust: bool = False) -> Dict[str, object]:
    """util.checkpoint.load_checkpoint, then in_project_layout for the model of `args` (what
    main.py's --resume and --pretrain_model_path read)."""
    from util.checkpoint import load_checkpoint

    return in_project_layout(load_checkpoint(path, what, trust=trust), path, what, args)
