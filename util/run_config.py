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
        return args_from_config(config_file, options), f"config {config_file}"
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
        return args_from_config(beside, options), f"{beside} (beside the checkpoint)"
    raise ConfigError(f"{checkpoint_path} records no settings (no 'args' inside, no config_cfg.py beside it); "
                      f"pass the config it was trained with: -c config/DINO/<name>.py [--options ...]")
