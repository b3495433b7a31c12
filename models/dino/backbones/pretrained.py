"""Loading pretrained backbone weights from local files.

Published checkpoints come in many containers (`{'model': ...}`,
`{'state_dict': ...}`, `{'module': ...}`, a bare state dict) and key layouts.
`load_pretrained` unwraps the container, applies a family-specific key remap
(which also drops classification heads), loads non-strictly and reports what
did not match, so a user sees at once whether the file fits.
"""
import logging
import os
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import Tensor, nn

logger = logging.getLogger("dino.backbone")

StateDict = Dict[str, Tensor]
_CONTAINER_KEYS = ("model", "state_dict", "module", "model_ema", "teacher")


def read_checkpoint(path: str) -> StateDict:
    """The tensor dict inside a checkpoint file, whatever its container."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained backbone file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # older checkpoints pickle argparse Namespaces and the like
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ValueError(f"{path} is not a PyTorch checkpoint that can be read: {exc}") from exc
    for key in _CONTAINER_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def drop_keys(state: StateDict, prefixes: Iterable[str]) -> StateDict:
    prefixes = tuple(prefixes)
    return {k: v for k, v in state.items() if not k.startswith(prefixes)}


def load_pretrained(module: nn.Module, path: str,
                    remap: Optional[Callable[[StateDict, nn.Module], StateDict]] = None,
                    what: str = "backbone"):
    """Load `path` into `module` (non-strict) after `remap`; log and return the mismatches."""
    state = read_checkpoint(path)
    if remap is not None:
        state = remap(state, module)
    own = module.state_dict()
    wrong_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for k in wrong_shape:
        state.pop(k)
    result = module.load_state_dict(state, strict=False)
    logger.info("loaded %s weights from %s: %d tensors, %d missing, %d unexpected, %d wrong shape",
                what, path, len(state) - len(result.unexpected_keys), len(result.missing_keys),
                len(result.unexpected_keys), len(wrong_shape))
    for name, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys),
                       ("wrong shape (skipped)", wrong_shape)):
        if keys:
            logger.warning("%s keys in %s (%d): %s%s", name, path, len(keys), ", ".join(keys[:8]),
                           " ..." if len(keys) > 8 else "")
    return result


def pretrained_path(args, default_file_names: Dict[str, str]) -> Optional[str]:
    """The local pretrained file for `args.backbone`: `pretrained_backbone_path`, else
    `backbone_dir` joined with the file name the authors publish, else None."""
    explicit = getattr(args, "pretrained_backbone_path", None)
    if explicit:
        return explicit
    directory = getattr(args, "backbone_dir", None)
    if directory:
        name = default_file_names.get(args.backbone)
        if name is None:
            raise ValueError(f"no default pretrained file name for backbone {args.backbone}; "
                             f"set pretrained_backbone_path instead of backbone_dir")
        return os.path.join(directory, name)
    return None


def freeze_by_keywords(module: nn.Module, keywords: Optional[Iterable[str]]) -> None:
    """requires_grad=False for parameters whose name contains any keyword."""
    if not keywords:
        return
    for name, param in module.named_parameters():
        if any(k in name for k in keywords):
            param.requires_grad_(False)
