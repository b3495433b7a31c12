"""Layer-wise lr decay param groups (util/layer_decay.py) on the real DINO model and on a toy model."""
import argparse
import re

import pytest
import torch
from torch import nn

from util.layer_decay import (build_layer_decay_param_groups, layer_decay_assignments, layer_decay_rate,
                              vit_layer_id)

CONFIG = "config/detrex/dino_eva_02_vitdet_b_4attn_1024_lrd0p7_4scale_12ep.py"
TINY = ["hidden_dim=32", "dim_feedforward=32", "enc_layers=1", "dec_layers=1", "num_queries=10", "dn_number=2",
        "nheads=2", "enc_n_points=1", "dec_n_points=1", "backbone=eva02_tiny", "vit_depth=3"]


def expected_layer_id(name: str, depth: int) -> int:
    """The rule written out independently: embeddings 0, block i -> i + 1, rest of the backbone L + 1."""
    local = name[len("backbone.0."):]
    m = re.match(r"net\.blocks\.(\d+)\.", local)
    if m:
        return int(m.group(1)) + 1
    if local.startswith(("net.patch_embed.", "net.pos_embed")):
        return 0
    return depth + 1


@pytest.fixture(scope="module")
def dino():
    try:
        from helpers import build_args
        from main import build_model_main
    except ImportError as exc:
        pytest.skip(f"main / test helpers not importable yet: {exc}")

    def make(*options):
        args = build_args(CONFIG, TINY + list(options))
        torch.manual_seed(0)
        return build_model_main(args)[0], args
    return make


def _group_of(groups):
    out = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in out, "a parameter is in two groups"
            out[id(p)] = g
    return out


def test_every_parameter_once_with_the_formula(dino):
    model, args = dino()
    assert layer_decay_rate(args) == 0.7 and args.lr_layer_decay_wd_policy == "none"
    groups = build_layer_decay_param_groups(model, args)
    where = _group_of(groups)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert set(where) == {id(p) for _, p in trainable}
    depth = 3
    for name, p in trainable:
        g = where[id(p)]
        if name.startswith("backbone."):
            lid = expected_layer_id(name, depth)
            assert g["lr"] == pytest.approx(args.lr * 0.7 ** (depth + 1 - lid)), name
        else:
            assert g["lr"] == args.lr, name
        assert g["weight_decay"] == args.weight_decay, name
    lrs = {n: where[id(p)]["lr"] for n, p in trainable}
    assert lrs["backbone.0.net.pos_embed"] == pytest.approx(1e-4 * 0.7 ** 4)
    assert lrs["backbone.0.net.blocks.2.attn.proj.weight"] == pytest.approx(1e-4 * 0.7)
    assert lrs["backbone.0.simfp_3.1.weight"] == pytest.approx(1e-4)
    assert lrs["transformer.level_embed"] == pytest.approx(1e-4)
    # usable by an optimizer
    torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)


@pytest.mark.parametrize("policy", ["none", "vitdet", "beit"])
def test_weight_decay_policies(dino, policy):
    model, args = dino(f"lr_layer_decay_wd_policy={policy}", "lr_layer_decay_backbone_lr=0.0002",
                       "param_dict_type=ddetr_in_mmdet")
    by_name = {a.name: a for a in layer_decay_assignments(model, args)}
    wd = args.weight_decay
    decays = lambda n: by_name[n].weight_decay == wd   # noqa: E731
    norm, bias = "backbone.0.net.blocks.0.norm1.weight", "backbone.0.net.blocks.0.attn.proj.bias"
    weight, pos = "backbone.0.net.blocks.0.attn.proj.weight", "backbone.0.net.pos_embed"
    fpn_norm = "backbone.0.simfp_4.0.norm.weight"
    if policy == "none":
        assert all(decays(n) for n in (norm, bias, weight, pos, fpn_norm))
    elif policy == "vitdet":
        assert not decays(norm) and not decays(pos) and not decays(fpn_norm) and decays(bias) and decays(weight)
    else:
        assert not decays(norm) and not decays(bias) and not decays(pos) and decays(weight)
    # backbone base lr, and the detector's own groups (ddetr_in_mmdet: sampling offsets at 0.1x)
    assert by_name[weight].lr == pytest.approx(2e-4 * 0.7 ** 3)     # block 0 of 3: layer id 1
    offsets = next(n for n in by_name if "sampling_offsets" in n)
    assert by_name[offsets].lr == pytest.approx(args.lr * args.lr_linear_proj_mult)
    assert by_name["transformer.level_embed"].weight_decay == wd     # detector params keep DINO's rules


def test_alias_and_frozen_parameters(dino):
    model, args = dino("backbone_freeze_keywords=[patch_embed]")
    args.lr_layer_decay = None
    args.layer_decay_rate = 0.5
    assert layer_decay_rate(args) == 0.5
    assignments = layer_decay_assignments(model, args)
    names = {a.name for a in assignments}
    assert "backbone.0.net.patch_embed.proj.weight" not in names     # frozen -> in no group
    assert {a.layer_id for a in assignments if a.group == "backbone"} == {0, 1, 2, 3, 4}


def test_toy_model_and_errors():
    class Body(nn.Module):
        num_layers = 2

        def __init__(self):
            super().__init__()
            self.net = nn.Module()
            self.net.patch_embed = nn.Linear(3, 4)
            self.net.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
            self.neck = nn.Linear(4, 4)

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(Body(), nn.Identity())
            self.head = nn.Linear(4, 2)

    args = argparse.Namespace(lr=1.0, weight_decay=0.1, lr_layer_decay=0.5)
    groups = build_layer_decay_param_groups(Toy(), args)
    lrs = sorted({g["lr"] for g in groups})
    assert lrs == [0.125, 0.25, 0.5, 1.0]        # embed 0.5**3, block0 0.5**2, block1 0.5, neck/head 1
    assert sum(len(g["params"]) for g in groups) == 10
    assert vit_layer_id("net.blocks.11.mlp.fc1.weight", 12) == 12 and vit_layer_id("interactions.0.x", 12) == 13

    class NoDepth(Toy):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(2, 2), nn.Identity())
    with pytest.raises(ValueError, match="lr_layer_decay_num_layers"):
        build_layer_decay_param_groups(NoDepth(), args)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        layer_decay_rate(argparse.Namespace(lr_layer_decay=1.5))
    with pytest.raises(ValueError, match="wd_policy"):
        layer_decay_assignments(Toy(), argparse.Namespace(lr=1.0, weight_decay=0.1, lr_layer_decay=0.5,
                                                          lr_layer_decay_wd_policy="odd"))
