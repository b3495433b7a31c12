"""The learning-rate schedule of a run, from the config's keys (the original's choices)."""
from __future__ import annotations

import argparse

import torch


def build_lr_scheduler(args: argparse.Namespace, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """OneCycleLR stepped per iteration (`onecyclelr`), or MultiStepLR (`multi_step_lr`,
    `lr_drop_list`) / StepLR (`lr_drop`) stepped per epoch."""
    if getattr(args, "onecyclelr", False):
        # each group peaks at its own lr, so lr_backbone and lr_linear_proj_mult hold (the original's
        # max_lr=args.lr raised every group to args.lr)
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, steps_per_epoch=max(1, steps_per_epoch),
                                                   epochs=args.epochs, pct_start=0.2)
    if getattr(args, "multi_step_lr", False):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(args.lr_drop_list))
    return torch.optim.lr_scheduler.StepLR(optimizer, max(1, int(args.lr_drop)))
