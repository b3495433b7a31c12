"""Train and evaluate DINO: `python main.py -c CONFIG --coco_path DIR [--options k=v ...]`."""
import argparse

import torch

from util.slconfig import DictAction


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def get_args_parser() -> argparse.ArgumentParser:
    """The original DINO command line (model settings live in the config file)."""
    parser = argparse.ArgumentParser("DINO training and evaluation", add_help=False)
    parser.add_argument("--config_file", "-c", type=str, required=True, help="Python config file")
    parser.add_argument("--options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. --options epochs=24 lr_drop=20 data_aug_scales=[512,608]")

    # dataset
    parser.add_argument("--dataset_file", default="coco")
    parser.add_argument("--coco_path", type=str, default=None,
                        help="COCO-format root with train2017/, val2017/ and annotations/")
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
    parser.add_argument("--start_epoch", default=0, type=int, metavar="N")
    parser.add_argument("--eval", action="store_true", help="evaluate on val2017 and exit")
    parser.add_argument("--num_workers", default=10, type=int)
    parser.add_argument("--test", action="store_true", help="write detections of the val/test images and exit")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--find_unused_params", action="store_true")
    parser.add_argument("--save_results", action="store_true", help="save detections as COCO results json")
    parser.add_argument("--save_log", action="store_true")

    # distributed
    parser.add_argument("--world_size", default=1, type=int, help="number of processes")
    parser.add_argument("--dist_url", default="env://", help="url used to set up distributed training")
    parser.add_argument("--rank", default=0, type=int, help="global rank of this process")
    parser.add_argument("--local_rank", "--local-rank", type=int, help="local rank (set by the launcher)")
    parser.add_argument("--amp", action="store_true", help="mixed precision where the device supports it")
    return parser


def build_model_main(args):
    """(model, criterion, postprocessors) for `args.modelname` (the original's name for this)."""
    from models import build_model
    return build_model(args)
