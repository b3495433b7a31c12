"""Class-name transfer for fine-tuning (`--finetune_class_map auto|FILE.json`).

DINO's classifier rows (`class_embed.*`, `transformer.enc_out_class_embed`,
`transformer.decoder.class_embed.*`: one row per label) and the denoising label
embedding (`label_enc.weight`: one row per label) are what a checkpoint knows
about each class. When the new dataset shares classes with the checkpoint's
(by name, at any id), those rows are copied to the new dataset's labels; the
rows of the other classes keep the model's fresh initialisation. Everything
else is loaded as `--pretrain_model_path` loads it.

A label is a row index: the category id, or its position among the sorted ids
with `contiguous_category_ids`. The checkpoint's names come from its `args`
(`category_names`, recorded by main.py since this feature); a checkpoint that
records none is taken for a COCO one when it has 91 rows (ids 1..90, the
original DINO) or 80 rows (contiguous, detrex). A json map gives
`{"new class": "checkpoint class"}` by name or id and overrides matching by name.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from util.checkpoint import CheckpointError
from util.slconfig import ConfigError

logger = logging.getLogger("dino.class_transfer")

COCO_CATEGORIES: Tuple[Tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
)
CLASS_KEY_WORDS = ("class_embed", "label_enc")


def normalize_name(name: str) -> str:
    """Names compare case-, space-, '_' and '-'-insensitively ('Traffic_Light' == 'traffic light')."""
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


def label_names(category_names: Mapping[Any, str], contiguous: bool = False) -> Dict[int, str]:
    """{label (row index): name} of a dataset's {category id: name}."""
    by_id = {int(k): str(v) for k, v in category_names.items()}
    if contiguous:
        return {i: by_id[cid] for i, cid in enumerate(sorted(by_id))}
    return by_id


def checkpoint_label_names(checkpoint: Mapping[str, Any], path: str) -> Dict[int, str]:
    """{label: name} the checkpoint was trained with (see module doc)."""
    args = checkpoint.get("args")
    names = getattr(args, "category_names", None) if args is not None else None
    if isinstance(names, Mapping) and names:
        return label_names(names, bool(getattr(args, "contiguous_category_ids", False)))
    weight = checkpoint["model"].get("class_embed.0.weight")
    rows = int(weight.shape[0]) if weight is not None else None
    if rows == 91:
        return dict(COCO_CATEGORIES)
    if rows == 80:
        return {i: name for i, (_, name) in enumerate(COCO_CATEGORIES)}
    raise CheckpointError(
        f"--finetune_class_map: {path} records no class names and its classifier has {rows} rows (not COCO's 91 "
        f"or 80); give a json file mapping this dataset's classes to the checkpoint's label ids, e.g. "
        f'{{"cat": 17}}.')


def _resolve(key: Any, names: Mapping[int, str], what: str, source: str) -> int:
    """A label of `names` given by name or id (an int or a string of digits)."""
    text = str(key).strip()
    wanted = normalize_name(text)
    found = [label for label, name in names.items() if normalize_name(name) == wanted]
    if len(found) == 1:
        return found[0]
    if text.lstrip("-").isdigit() and int(text) in names:
        return int(text)
    known = ", ".join(f"{n!r}" for n in list(names.values())[:12])
    raise ConfigError(f"--finetune_class_map {source}: {what} class {key!r} is not one of its classes "
                      f"({known}{', ...' if len(names) > 12 else ''}).")


def read_map_file(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"--finetune_class_map {path}: no such file; give 'auto' or a json file "
                          f"{{\"new class\": \"checkpoint class\", ...}}.")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as exc:
        raise ConfigError(f"--finetune_class_map {path} is not valid json ({exc}).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--finetune_class_map {path} must hold a json object {{\"new class\": "
                          f"\"checkpoint class\", ...}}, not a {type(data).__name__}.")
    return data


def build_class_map(new: Mapping[int, str], old: Mapping[int, str], spec: str) -> Dict[int, int]:
    """{new label: checkpoint label}: the classes with the same name ('auto'), then the json's entries."""
    old_by_name: Dict[str, List[int]] = {}
    for label, name in old.items():
        old_by_name.setdefault(normalize_name(name), []).append(label)
    mapping = {label: old_by_name[normalize_name(name)][0] for label, name in new.items()
               if len(old_by_name.get(normalize_name(name), [])) == 1}
    if spec != "auto":
        for new_key, old_key in read_map_file(spec).items():
            new_label = _resolve(new_key, new, "new dataset", spec)
            if old_key is None:  # explicitly a new class
                mapping.pop(new_label, None)
                continue
            mapping[new_label] = _resolve(old_key, old, "checkpoint", spec)
    return dict(sorted(mapping.items()))


@torch.no_grad()
def copy_class_rows(model: torch.nn.Module, state: Mapping[str, torch.Tensor], mapping: Mapping[int, int]) -> List[str]:
    """Copy the checkpoint's rows `mapping[new] -> new` into every class_embed / label_enc tensor of
    `model` that the checkpoint has; returns the keys written."""
    written = []
    for key, target in model.state_dict().items():
        if not any(word in key for word in CLASS_KEY_WORDS) or key not in state:
            continue
        source = state[key]
        if source.dim() != target.dim() or source.shape[1:] != target.shape[1:]:
            raise CheckpointError(f"--finetune_class_map: {key} has shape {list(source.shape)} in the checkpoint "
                                  f"and {list(target.shape)} in the model; only the class count may differ "
                                  f"(hidden_dim must be the same).")
        for new_label, old_label in mapping.items():
            if new_label < target.shape[0] and old_label < source.shape[0]:
                target[new_label].copy_(source[old_label])
        written.append(key)
    return written


def transfer_classes(model: torch.nn.Module, checkpoint: Mapping[str, Any], path: str, spec: str,
                     new_category_names: Mapping[Any, str], contiguous: bool = False,
                     log: Optional[logging.Logger] = None) -> Dict[int, int]:
    """Copy the rows of the classes the new dataset shares with the checkpoint (see module doc);
    returns {new label: checkpoint label}."""
    log = log or logger
    if not new_category_names:
        raise ConfigError("--finetune_class_map: the training set's categories have no names to match.")
    new = label_names(new_category_names, contiguous)
    old = checkpoint_label_names(checkpoint, path)
    mapping = build_class_map(new, old, spec)
    written = copy_class_rows(model, checkpoint["model"], mapping)
    kept = [f"{new[n]}<-{old[o]}" for n, o in mapping.items()]
    fresh = [new[n] for n in new if n not in mapping]
    log.info("--finetune_class_map %s: %d of %d classes taken from %s (%s); new: %s; %d tensors", spec,
             len(mapping), len(new), path, ", ".join(kept) or "none", ", ".join(fresh) or "none", len(written))
    return mapping
