"""build_optimizer: the fused AdamW gives the same update as the plain torch.optim.AdamW."""
import argparse
import copy

import pytest
import torch
from torch import nn

from util.get_param_dicts import build_optimizer, get_param_dict


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 5)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _args(kind="default"):
    return argparse.Namespace(lr=1e-3, lr_backbone=1e-4, weight_decay=0.05, param_dict_type=kind,
                              lr_backbone_names=["backbone"], lr_linear_proj_names=["head.bias"],
                              lr_linear_proj_mult=0.1)


def _set_grads(model, step):
    g = torch.Generator().manual_seed(100 + step)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g) * (10.0 ** (step % 3 - 2))


def _max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kind", ["default", "ddetr_in_mmdet", "large_wd"])
def test_fused_adamw_matches_plain_adamw(kind):
    ours, ref = Tiny(), Tiny()
    args = _args(kind)
    opt = build_optimizer(args, ours)
    plain = torch.optim.AdamW(get_param_dict(args, ref), lr=args.lr, weight_decay=args.weight_decay)
    assert all(g["fused"] for g in opt.param_groups)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in plain.param_groups]
    for step in range(5):
        _set_grads(ours, step)
        _set_grads(ref, step)
        opt.step()
        plain.step()
    assert _max_diff(ours, Tiny()) > 1e-4  # the parameters did move
    assert _max_diff(ours, ref) < 1e-6


def test_loading_plain_state_keeps_fused_and_continues_identically():
    ours, ref = Tiny(), Tiny()
    args = _args()
    plain = torch.optim.AdamW(get_param_dict(args, ref), lr=args.lr, weight_decay=args.weight_decay)
    for step in range(2):
        _set_grads(ref, step)
        plain.step()
    ours.load_state_dict(ref.state_dict())
    opt = build_optimizer(args, ours)
    opt.load_state_dict(copy.deepcopy(plain.state_dict()))
    assert all(g["fused"] is True and g["foreach"] is None for g in opt.param_groups)
    for step in range(2, 4):
        _set_grads(ours, step)
        _set_grads(ref, step)
        opt.step()
        plain.step()
    assert _max_diff(ours, ref) < 1e-6
    assert opt.state_dict()["state"][0]["step"].item() == 4
