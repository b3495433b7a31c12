"""The CPU training step: bfloat16 autocast training with --amp where the CPU has native bfloat16,
a channels_last ResNet backbone trains like the contiguous one (so --compare_precision in
tools/benchmark_model.py compares like with like), the paired GIoU of the criterion."""
import argparse
import copy

import pytest
import torch

from helpers import make_targets, random_images, tiny_args
from util.misc import nested_tensor_from_tensor_list
from util.precision import channels_last, cpu_bf16_support

# the demo's backbone set-up (ordinary batch norm, nothing frozen), tiny sizes
DEMO = "config/DINO/DINO_demo.py"
SIZES = [(64, 80), (72, 64)]


def _demo_tiny(seed: int = 0):
    from main import build_model_main

    args = tiny_args(config=DEMO)
    torch.manual_seed(seed)
    model, criterion, _ = build_model_main(args)
    return args, model, criterion


def _train(model, criterion, args, amp: bool, steps: int):
    """`steps` calls of engine.train_one_epoch on one fixed batch (the DN noise seeded per step);
    returns each step's loss."""
    from engine import train_one_epoch
    from util.get_param_dicts import build_optimizer

    run_args = argparse.Namespace(**{**vars(args), "amp": amp, "print_freq": 1000})
    optimizer = build_optimizer(run_args, model)
    batch = [(nested_tensor_from_tensor_list(random_images(SIZES)), make_targets([3, 2]))]
    losses = []
    for step in range(steps):
        torch.manual_seed(100 + step)
        stats = train_one_epoch(model, criterion, batch, optimizer, torch.device("cpu"), step,
                                max_norm=run_args.clip_max_norm, args=run_args)
        losses.append(stats["loss"])
    return losses


@pytest.mark.skipif(not cpu_bf16_support().supported, reason="this CPU has no native bfloat16 (--amp runs float32)")
def test_amp_training_step_runs_in_bfloat16_on_cpu():
    args, model, criterion = _demo_tiny()
    dtypes = {}

    def record(name):
        def hook(module, inputs, output):
            dtypes.setdefault(name, output.dtype)
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in [("conv", model.backbone[0].body.conv1),
                             ("linear", model.transformer.encoder.layers[0].linear1)]]
    before = model.transformer.encoder.layers[0].linear1.weight.detach().clone()
    losses = _train(model, criterion, args, amp=True, steps=1)
    for h in hooks:
        h.remove()
    assert dtypes == {"conv": torch.bfloat16, "linear": torch.bfloat16}
    assert torch.isfinite(torch.tensor(losses)).all()
    weight = model.transformer.encoder.layers[0].linear1.weight
    assert weight.dtype is torch.float32 and not torch.equal(weight.detach(), before)  # fp32 master weights, updated


def test_channels_last_training_matches_contiguous():
    args, model, criterion = _demo_tiny()
    reference = copy.deepcopy(model)
    channels_last(model.backbone[0])
    conv = model.backbone[0].body.layer2[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    got = _train(model, criterion, args, amp=False, steps=3)
    want = _train(reference, criterion, args, amp=False, steps=3)
    assert got[0] != got[2]  # the steps train
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-3, atol=1e-4)
    assert model.backbone[0].body.layer2[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_paired_giou_is_the_diagonal_of_the_pairwise_matrix_with_its_gradient():
    from util import box_ops

    g = torch.Generator().manual_seed(0)
    a = box_ops.box_cxcywh_to_xyxy(torch.rand(40, 4, generator=g, dtype=torch.float64) * 0.5 + 0.1)
    b = box_ops.box_cxcywh_to_xyxy(torch.rand(40, 4, generator=g, dtype=torch.float64) * 0.5 + 0.1)
    a.requires_grad_(True)
    want = torch.diag(box_ops.generalized_box_iou(a, b))
    got = box_ops.paired_generalized_box_iou(a, b)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    (grad_want,) = torch.autograd.grad(want.sum(), a)
    (grad_got,) = torch.autograd.grad(got.sum(), a)
    torch.testing.assert_close(grad_got, grad_want, rtol=0, atol=1e-4)
    assert box_ops.paired_generalized_box_iou(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0,)
