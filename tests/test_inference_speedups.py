"""What main.py --eval, tools/inference.py and the Detector do to make an inference-only model
faster (models/dino/inference_prep.prepare_for_inference, models/dino/fused_linear.py) computes what the
plain model computes."""
import copy

import pytest
import torch
from torch import nn

from helpers import TINY_OPTIONS, build_args
from models.dino import fused_linear
from models.dino.backbones.resnet import ResNetBody, fold_frozen_batch_norm
from models.dino.inference_prep import prepare_for_inference
from util.precision import cpu_bf16_support

needs_kernel = pytest.mark.skipif(fused_linear._pointwise_kernel() is None,
                                  reason="this PyTorch build has no oneDNN fused linear")


def _layer(n_in=24, n_out=40, seed=0):
    torch.manual_seed(seed)
    layer = nn.Linear(n_in, n_out)
    return layer, torch.randn(3, 17, n_in)


@needs_kernel
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
def test_fused_linear_equals_linear_in_float32(activation):
    layer, x = _layer()
    expected = layer(x)
    if activation:
        expected = getattr(torch.nn.functional, activation)(expected)
    with torch.no_grad():
        got = fused_linear.linear(x, layer, activation)
    assert fused_linear._fused_dtype(x, layer) is None  # grad mode on: the layer's own path
    with torch.no_grad():
        assert fused_linear._fused_dtype(x, layer) is torch.float32  # ... and the fused one here
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)


@needs_kernel
@pytest.mark.skipif(not cpu_bf16_support().supported, reason="no native bfloat16 on this CPU")
def test_fused_linear_under_bfloat16_autocast_matches_autocast_linear():
    layer, x = _layer()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = torch.relu(layer(x))
        got = fused_linear.linear(x, layer, "relu")
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_fused_linear_keeps_gradients_and_can_be_turned_off():
    layer, x = _layer()
    x.requires_grad_(True)
    fused_linear.linear(x, layer, "relu").sum().backward()  # training: autograd through nn.Linear
    assert x.grad is not None and layer.weight.grad is not None
    previous = fused_linear.set_enabled(False)
    try:
        with torch.no_grad():
            assert fused_linear._fused_dtype(x, layer) is None
    finally:
        fused_linear.set_enabled(previous)


def test_folded_frozen_batch_norm_gives_the_same_features():
    torch.manual_seed(0)
    body = ResNetBody("resnet18", [1, 2, 3]).eval()
    for module in body.modules():  # non-trivial statistics, as in a pretrained file
        if hasattr(module, "running_var") and module.running_var is not None:
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.normal_(0, 0.3)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.2)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = body(x)
        folded_body = copy.deepcopy(body)
        assert fold_frozen_batch_norm(folded_body) == 20  # stem + 2 per block (8 blocks) + 3 downsamples
        got = folded_body(x)
    assert not any("bn" in k for k in folded_body.state_dict())
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_prepare_for_inference_keeps_the_detections():
    from main import build_model_main

    torch.manual_seed(0)
    model, _, post = build_model_main(build_args(options=TINY_OPTIONS))
    model.eval()
    images = [torch.randn(3, 96, 128), torch.randn(3, 80, 112)]  # padded batch: the mask matters
    with torch.no_grad():
        expected = model(images)
        changes = prepare_for_inference(model, torch.device("cpu"), amp=False)
        got = model(images)
    assert any("folded" in c for c in changes)
    torch.testing.assert_close(got["pred_logits"], expected["pred_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["pred_boxes"], expected["pred_boxes"], rtol=1e-4, atol=1e-4)
