"""Shared helpers for tests: building args/models the way main.py does."""
import argparse
import os
from typing import Dict, List, Optional, Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A DINO small enough for unit tests on 2 CPU cores: every code path of the
# real model (multi-scale deformable attention, two-stage, denoising), tiny sizes.
TINY_OPTIONS = [
    "backbone=resnet18", "hidden_dim=32", "dim_feedforward=64", "enc_layers=1", "dec_layers=2",
    "num_queries=20", "dn_number=3", "nheads=2", "enc_n_points=2", "dec_n_points=2",
    "num_classes=5", "dn_labelbook_size=5", "backbone_pretrained=False",
]


def build_args(config: str = "config/DINO/DINO_4scale.py", options: Sequence[str] = (), extra_argv: Sequence[str] = ()):
    """Parse a command line like main.py and merge the config into the namespace."""
    from main import get_args_parser
    from util.slconfig import SLConfig

    parser = argparse.ArgumentParser(parents=[get_args_parser()])
    argv = ["-c", os.path.join(REPO, config), "--device", "cpu", *extra_argv]
    if options:
        argv += ["--options", *options]
    args = parser.parse_args(argv)
    cfg = SLConfig.fromfile(args.config_file)
    if args.options:
        cfg.merge_from_dict(args.options)
    for key, value in cfg.to_dict().items():
        if key not in vars(args):
            setattr(args, key, value)
    from util.args import fill_auto_class_counts
    fill_auto_class_counts(args)  # no data here: 'auto' class counts are the COCO model's (91)
    return args


def tiny_args(*options: str, config: str = "config/DINO/DINO_4scale.py"):
    """Args of the tiny DINO, with `options` (k=v strings) applied last."""
    return build_args(config, TINY_OPTIONS + list(options))


def build_tiny_model(*options: str, config: str = "config/DINO/DINO_4scale.py"):
    from main import build_model_main
    torch.manual_seed(0)
    return build_model_main(tiny_args(*options, config=config))


def make_targets(boxes_per_image: Sequence[int], num_classes: int = 5, seed: int = 0) -> List[Dict[str, torch.Tensor]]:
    """Random normalized cxcywh targets with the given object counts."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for n in boxes_per_image:
        centers = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        sizes = torch.rand(n, 2, generator=g) * 0.2 + 0.1
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=g),
                        "boxes": torch.cat([centers, sizes], 1)})
    return targets


def random_images(sizes: Sequence[Sequence[int]], seed: int = 0) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, h, w, generator=g) for h, w in sizes]
