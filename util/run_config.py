"""The settings a trained model needs, read from what its run recorded.

A checkpoint written by `main.py` carries the run's full `args` (every config
key, `category_names` included), and its run folder holds `config_cfg.py`.
`args_for_checkpoint` rebuilds the args from those, so a user runs a
fine-tuned checkpoint without repeating `-c` and `--options`; an explicit
config still wins, and `--options` apply on top of either.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from util.args import args_from_config, get_args_parser
from util.slconfig import ConfigError

# Flags of a run that say nothing about the model and must not leak into a new use of it.
RUN_ONLY_KEYS = ("resume", "pretrain_model_path", "output_dir", "eval", "test", "device",
             "distributed", "rank", "world_size", "gpu", "local_rank", "dist_url", "options",
             "start_epoch", "finetune_ignore", "trust_checkpoint", "weights_dir", "compile")


def recorded_settings(checkpoint: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The settings a checkpoint records ('args': main.py's Namespace, or a dict in converted and
    safetensors files), as a dict; None when it records none."""
    saved = checkpoint.get("args")
    if isinstance(saved, argparse.Namespace):
        return dict(vars(saved))
    if isinstance(saved, Mapping):
        return dict(saved)
    return None


def args_for_checkpoint(checkpoint: Mapping[str, Any], checkpoint_path: str, config_file: Optional[str] = None,
                        options: Optional[Mapping[str, Any]] = None) -> Tuple[argparse.Namespace, str]:
    """(args, where they came from) for a loaded checkpoint.

    Order: an explicit `config_file`; else the args stored in the checkpoint;
    else `config_cfg.py` beside the checkpoint. `options` apply last.
    """
    if config_file:
        args = args_from_config(config_file, options)
        class_counts_from_checkpoint(args, checkpoint)
        return args, f"config {config_file}"
    recorded = recorded_settings(checkpoint)
    if recorded is not None:
        from util.slconfig import SLConfig, check_options

        recorded_config = recorded.get("config_file") or checkpoint_path
        args = get_args_parser().parse_args(["-c", str(recorded_config)])
        for key, value in recorded.items():
            if key not in RUN_ONLY_KEYS:
                setattr(args, key, value)
        if options:
            stored = SLConfig({k: v for k, v in recorded.items() if k not in RUN_ONLY_KEYS},
                              filename=f"the settings stored in {checkpoint_path}")
            checked = check_options(stored, dict(options))
            for key, value in checked.items():
                setattr(args, key, value)
        return args, f"the settings stored in {checkpoint_path}"
    beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "config_cfg.py")
    if os.path.isfile(beside):
        args = args_from_config(beside, options)
        class_counts_from_checkpoint(args, checkpoint)
        return args, f"{beside} (beside the checkpoint)"
    raise ConfigError(f"{checkpoint_path} records no settings (no 'args' inside, no config_cfg.py beside it); "
                      f"pass the config it was trained with: -c config/DINO/<name>.py [--options ...]")


def class_counts_from_checkpoint(args: argparse.Namespace, checkpoint: Mapping[str, Any]) -> None:
    """num_classes / dn_labelbook_size left 'auto' by a config (they are set from the data when
    training) taken from the checkpoint: the settings it records, else the rows of its class head
    and label embedding. What cannot be found stays 'auto' (building the model then says so)."""
    keys = [k for k in ("num_classes", "dn_labelbook_size") if getattr(args, k, None) == "auto"]
    if not keys:
        return
    recorded = recorded_settings(checkpoint) or {}
    state = checkpoint.get("model") if isinstance(checkpoint.get("model"), Mapping) else checkpoint
    rows = {}
    for key, name, extra in (("num_classes", "class_embed.0.weight", 0),
                             ("dn_labelbook_size", "label_enc.weight", int(bool(getattr(args, "label_enc_extra_row",
                                                                                        True))))):
        shape = getattr(state.get(name), "shape", None)
        if shape is not None and len(shape) == 2:
            rows[key] = int(shape[0]) - extra
    for key in keys:
        value = recorded.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(args, key, value)
        elif key in rows:
            setattr(args, key, rows[key])
