"""The command line of main.py and how a config file becomes the run's settings.

`get_args_parser()` is the original DINO's command line (model settings live in
the config file); `load_config(args)` reads `-c CONFIG` and merges the checked
`--options`; `apply_config(cfg, args)` copies every config key onto `args`,
which is what the rest of the code reads. `args_from_config(path, options)`
does all three for callers without a command line (Detector, the tools).
main.py, run_with_submitit.py, detector.py and the tools all take the settings
from here.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping, Optional

import torch

from util.slconfig import LEGACY_IGNORED_KEYS, ConfigError, DictAction, SLConfig, check_options


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def get_args_parser() -> argparse.ArgumentParser:
    """The original DINO command line (model settings live in the config file)."""
    parser = argparse.ArgumentParser("DINO training and evaluation", add_help=False)
    parser.add_argument("--config_file", "-c", type=str, default=None,
                        help="Python config file (optional when --resume or --pretrain_model_path names a released "
                             "model: its config is used)")
    parser.add_argument("--options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. --options epochs=24 lr_drop=20 data_aug_scales=[512,608]")

    # dataset
    parser.add_argument("--dataset_file", default="coco")
    parser.add_argument("--coco_path", type=str, default=None,
                        help="COCO-format root with train2017/, val2017/ and annotations/")
    parser.add_argument("--data", type=str, default=None, metavar="PATH",
                        help="your dataset as exported, format recognised: COCO json (COCO 2017, Roboflow or CVAT "
                             "layout), YOLO (data.yaml), Pascal VOC or LabelMe (README, 'Your own data')")
    parser.add_argument("--val_split", type=float, default=None, metavar="FRACTION",
                        help="for data without a validation split: hold out this fraction of the training images "
                             "(e.g. 0.1; chosen by --seed, written to OUTPUT_DIR/val_split.json)")
    parser.add_argument("--fix_size", action="store_true", help="train at a single fixed size")

    # run
    parser.add_argument("--output_dir", default="", help="where checkpoints and logs go (empty: nothing saved)")
    parser.add_argument("--note", default="", help="free text stored with the run")
    parser.add_argument("--device", default=default_device(), help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--seed", default=42, type=int)
    parser.add_argument("--resume", default="", help="checkpoint to resume training from (or to evaluate)")
    parser.add_argument("--pretrain_model_path", help="checkpoint to initialise the model from (fine-tuning)")
    parser.add_argument("--finetune_ignore", type=str, nargs="+",
                        help="with --pretrain_model_path: drop keys containing any of these, "
                             "e.g. label_enc.weight class_embed")
    parser.add_argument("--finetune_class_map", default=None, metavar="auto|FILE.json",
                        help="with --pretrain_model_path: copy the classifier and label-embedding rows of the "
                             "classes this dataset shares with the checkpoint ('auto': matched by name; or a "
                             "json {\"new class\": \"checkpoint class\"}); the others start as new")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="load pickled checkpoints that hold Python objects outside the allow-list; this "
                             "RUNS CODE FROM THE FILE: only for files you trust (docs/CHECKPOINTS.md)")
    parser.add_argument("--start_epoch", default=0, type=int, metavar="N")
    parser.add_argument("--eval", action="store_true", help="evaluate on val2017 and exit")
    parser.add_argument("--num_workers", default=10, type=int)
    parser.add_argument("--test", action="store_true", help="write detections of the val/test images and exit")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    parser.add_argument("--find_unused_params", action="store_true")
    parser.add_argument("--save_results", action="store_true", help="save detections as COCO results json")
    parser.add_argument("--save_log", action="store_true")

    # distributed
    parser.add_argument("--world_size", default=1, type=int, help="number of processes")
    parser.add_argument("--dist_url", default="env://", help="url used to set up distributed training")
    parser.add_argument("--rank", default=0, type=int, help="global rank of this process")
    parser.add_argument("--local_rank", "--local-rank", type=int, help="local rank (set by the launcher)")
    parser.add_argument("--amp", action="store_true", help="mixed precision where the device supports it")
    parser.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="torch.compile the model, dynamic shapes (BACKEND: inductor, the default, or "
                             "aot_eager to check quickly that it compiles); see docs/OPS.md for what it gains")

    # additions of this implementation
    parser.add_argument("--print_freq", default=10, type=int,
                        help="iterations between two progress lines (when stdout is not a terminal) and two "
                             "TensorBoard / W&B points")
    parser.add_argument("--evaluator", default="pycocotools", choices=("pycocotools", "faster"),
                        help="COCO evaluation: pycocotools, or faster-coco-eval (same numbers, faster on large "
                             "val sets; `pip install faster-coco-eval`)")
    parser.add_argument("--wandb_project", default=None,
                        help="also log to this Weights & Biases project (needs `pip install wandb`)")
    parser.add_argument("--weights_dir", default=None, metavar="DIR",
                        help="folder of weight files looked in before any download (default: $DINO_WEIGHTS_DIR; "
                             "tools/fetch_weights.py --dir fills one for machines without network)")
    return parser


def load_config(args):
    """The config file merged with the checked --options (ConfigError naming the key otherwise).
    Without -c, the config of the released model --resume / --pretrain_model_path names."""
    from util.zoo import settings_for_names, use_weights_dir

    use_weights_dir(getattr(args, "weights_dir", None))
    if not args.config_file:
        args.config_file, preset = settings_for_names(getattr(args, "resume", None),
                                                      getattr(args, "pretrain_model_path", None))
        args.options = {**preset, **(args.options or {})}
    cfg = SLConfig.fromfile(args.config_file)
    options = dict(args.options or {})
    flags = set(vars(args))
    for key, value in options.items():
        top = key.split(".")[0]
        if top in flags and top not in cfg:
            raise ConfigError(f"--options {key}={value!r}: '{top}' is a command-line flag, not a config key; "
                              f"pass --{top} instead.")
    checked = check_options(cfg, options)
    ignored = sorted(k for k in options if k.split(".")[0] in LEGACY_IGNORED_KEYS)
    cfg.merge_from_dict(checked)
    return cfg, ignored


def apply_config(cfg, args) -> None:
    """Copy every config key onto args; a key that is also a command-line flag is an error."""
    flags = vars(args)
    for key, value in cfg.to_dict().items():
        if key in flags:
            raise ConfigError(f"config key '{key}' (in {cfg.filename} or --options) is also a command-line "
                              f"flag; remove it from the config and pass --{key} instead.")
        setattr(args, key, value)
    if not getattr(args, "use_ema", None):
        args.use_ema = False
    if not getattr(args, "debug", None):
        args.debug = False


def args_from_config(config_file: str, options: Optional[Mapping[str, Any]] = None) -> argparse.Namespace:
    """main.py's args for `config_file` plus checked `options` (ConfigError naming the problem)."""
    if not os.path.isfile(config_file):
        raise ConfigError(f"config file {config_file} does not exist; pass the config the model was trained "
                          f"with (config/DINO/*.py or the run's config_cfg.py).")
    args = get_args_parser().parse_args(["-c", config_file])
    args.options = dict(options or {})
    cfg, _ignored = load_config(args)
    apply_config(cfg, args)
    return args


COCO_CLASS_COUNT = 91  # what 'auto' gives on COCO 2017: largest category id 90 + 1


def fill_auto_class_counts(args: argparse.Namespace, value: int = COCO_CLASS_COUNT) -> None:
    """num_classes / dn_labelbook_size left 'auto' (main.py sets them from the data) set to `value`,
    for models built with neither data nor a checkpoint: the benchmarks and tests of the COCO model."""
    for key in ("num_classes", "dn_labelbook_size"):
        if getattr(args, key, None) == "auto":
            setattr(args, key, value)


def resolve_output_dir(output_dir: str) -> str:
    """`%j` (the original scripts' Slurm job id placeholder) becomes $SLURM_JOB_ID when set."""
    if output_dir and "%j" in output_dir and os.environ.get("SLURM_JOB_ID"):
        output_dir = output_dir.replace("%j", os.environ["SLURM_JOB_ID"])
    return output_dir
