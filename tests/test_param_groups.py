"""Optimizer parameter groups and learning-rate schedules, as the original builds them."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from helpers import build_tiny_model, tiny_args
from util.get_param_dicts import get_param_dict


@pytest.fixture(scope="module")
def model():
    m, _, _ = build_tiny_model()
    return m


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def _adamw(args, model):
    return torch.optim.AdamW(get_param_dict(args, model), lr=args.lr, weight_decay=args.weight_decay)


def test_default_groups_backbone_and_the_rest(model):
    args = tiny_args("lr=2e-4", "lr_backbone=3e-5", "weight_decay=1e-4")
    assert args.param_dict_type == "default"
    opt = _adamw(args, model)
    assert len(opt.param_groups) == 2
    rest, backbone = opt.param_groups
    assert rest["lr"] == 2e-4 and backbone["lr"] == 3e-5
    assert rest["weight_decay"] == backbone["weight_decay"] == 1e-4
    assert all(n.startswith("backbone.0.") for n in _names(model, backbone))
    assert not any("backbone" in n for n in _names(model, rest))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == trainable
    # the stem and layer1 of the ResNet are frozen, as in the original: in no group
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("backbone.0.body.") and "layer2" not in n for n in frozen)
    # as in the original 'default': the linear projections keep lr (lr_linear_proj_mult is not used)
    offsets = [n for n in _names(model, rest) if "sampling_offsets" in n]
    assert offsets


def test_ddetr_in_mmdet_groups(model):
    args = tiny_args("param_dict_type=ddetr_in_mmdet", "lr=1e-4", "lr_backbone=1e-5", "lr_linear_proj_mult=0.1")
    opt = _adamw(args, model)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-5, 1e-5])
    rest, backbone, proj = (_names(model, g) for g in opt.param_groups)
    assert all(n.startswith("backbone.0.") for n in backbone) and backbone
    assert proj and all("sampling_offsets" in n or "reference_points" in n for n in proj)
    expected_proj = [n for n, p in model.named_parameters() if p.requires_grad and
                     ("sampling_offsets" in n or "reference_points" in n)]
    assert sorted(proj) == sorted(expected_proj)
    assert not any("backbone.0" in n or "sampling_offsets" in n for n in rest)


def test_large_wd_groups(model):
    args = tiny_args("param_dict_type=large_wd", "weight_decay=0.05")
    opt = _adamw(args, model)
    assert len(opt.param_groups) == 4
    decay, bb_nodecay, bb_decay, nodecay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and nodecay["weight_decay"] == 0.0
    assert bb_nodecay["weight_decay"] == 0.0 and bb_decay["weight_decay"] == 0.05
    assert bb_decay["lr"] == args.lr_backbone and nodecay["lr"] == args.lr
    assert all(("norm" in n or "bias" in n) for n in _names(model, nodecay))


def test_layer_decay_is_built_by_its_module_when_configured(model, monkeypatch):
    sys.modules.pop("util.layer_decay", None)
    args = tiny_args()
    get_param_dict(args, model)
    assert "util.layer_decay" not in sys.modules  # imported only when lr_layer_decay is set

    calls = []
    fake = types.ModuleType("util.layer_decay")
    fake.build_layer_decay_param_groups = lambda m, a: calls.append((m, a)) or [{"params": list(m.parameters())}]
    monkeypatch.setitem(sys.modules, "util.layer_decay", fake)
    args.lr_layer_decay = 0.8
    groups = get_param_dict(args, model)
    assert calls == [(model, args)] and len(groups) == 1


def test_unknown_param_dict_type(model):
    args = tiny_args()
    args.param_dict_type = "fancy"
    with pytest.raises(ValueError, match="param_dict_type='fancy' is not supported"):
        get_param_dict(args, model)


def _lrs(scheduler, optimizer, epochs):
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check quiet
        scheduler.step()
    return out


def test_step_and_multistep_schedules(model):
    from util.lr_scheduler import build_lr_scheduler

    args = tiny_args("lr=1e-4", "lr_backbone=1e-5", "lr_drop=2")
    opt = _adamw(args, model)
    lrs = _lrs(build_lr_scheduler(args, opt, steps_per_epoch=5), opt, 5)
    expected = [[1e-4, 1e-5]] * 2 + [[1e-5, 1e-6]] * 2 + [[1e-6, 1e-7]]
    assert [v for e in lrs for v in e] == pytest.approx([v for e in expected for v in e])

    args = tiny_args("lr=1e-4", "lr_backbone=1e-5", "multi_step_lr=TRUE", "lr_drop_list=[1,3]")
    opt = _adamw(args, model)
    lrs = _lrs(build_lr_scheduler(args, opt, steps_per_epoch=5), opt, 4)
    assert [g[0] for g in lrs] == pytest.approx([1e-4, 1e-5, 1e-5, 1e-6])


def test_onecycle_keeps_each_groups_own_peak(model):
    from util.lr_scheduler import build_lr_scheduler

    args = tiny_args("lr=1e-4", "lr_backbone=1e-5", "onecyclelr=TRUE", "epochs=2")
    opt = _adamw(args, model)
    steps = 10
    lrs = _lrs(build_lr_scheduler(args, opt, steps_per_epoch=steps), opt, 2 * steps)
    peaks = [max(step[i] for step in lrs) for i in range(2)]
    assert peaks == pytest.approx([1e-4, 1e-5], rel=0.05)  # warm-up to each group's own lr
    assert lrs[0][0] < 1e-5 and lrs[-1][0] < 1e-6  # starts low, anneals to near zero
