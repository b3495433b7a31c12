"""Float32 training through oneDNN's linear kernel (models/dino/fused_linear.py, `_OneDnnLinear`): the
forward and every gradient equal what nn.Linear (+ activation) gives, and a whole training step of a
small DINO gives the same loss and parameter gradients with the path on and off. The path is forced on
here, so these run on any CPU, not only on the ones where it is the default."""
import contextlib

import pytest
import torch
from torch import nn

from helpers import build_tiny_model, make_targets, random_images
from models.dino import fused_linear

pytestmark = pytest.mark.skipif(fused_linear._pointwise_kernel() is None,
                                reason="this PyTorch build has no oneDNN linear kernel")


@contextlib.contextmanager
def training_path(on: bool):
    previous = fused_linear.set_training_path(on)
    try:
        yield
    finally:
        fused_linear.set_training_path(previous)


def _grads(x, layer, activation, grad_out, on: bool):
    x = x.detach().clone().requires_grad_(x.requires_grad)
    layer.zero_grad()
    with training_path(on):
        y = fused_linear.linear(x, layer, activation)
    y.backward(grad_out)
    params = [p.grad.clone() if p.grad is not None else None for p in layer.parameters()]
    return y.detach(), x.grad, params, y.grad_fn


@pytest.mark.parametrize("shape", [(5, 24), (2, 37, 24), (1, 1, 3, 24)])
@pytest.mark.parametrize("activation", [None, "relu", "gelu"])
@pytest.mark.parametrize("n_out", [8, 96])  # weight gradient: either operand is the narrower
def test_forward_and_gradients_equal_nn_linear(shape, activation, n_out):
    torch.manual_seed(0)
    layer = nn.Linear(24, n_out)
    x = torch.randn(*shape, requires_grad=True)
    grad_out = torch.randn(*shape[:-1], n_out)
    y_ref, gx_ref, gp_ref, fn_ref = _grads(x, layer, activation, grad_out, on=False)
    y, gx, gp, fn = _grads(x, layer, activation, grad_out, on=True)
    assert "OneDnnLinear" not in type(fn_ref).__name__
    assert "OneDnnLinear" in type(fn).__name__ or activation == "gelu"  # gelu runs after the oneDNN product
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(gp, gp_ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_frozen_weight_or_input_gets_only_the_gradients_asked_for():
    torch.manual_seed(0)
    layer = nn.Linear(16, 32)
    layer.weight.requires_grad_(False)
    x = torch.randn(4, 16, requires_grad=True)
    with training_path(True):
        y = fused_linear.linear(x, layer, "relu")
    assert "OneDnnLinear" in type(y.grad_fn).__name__
    y.sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is not None and x.grad is not None
    layer.requires_grad_(False)
    with training_path(True):  # nothing to record: the inference path, no graph
        assert fused_linear.linear(torch.randn(4, 16), layer).grad_fn is None


def test_empty_batch_and_autocast_take_nn_linear():
    layer = nn.Linear(16, 32)
    with training_path(True):
        empty = fused_linear.linear(torch.zeros(0, 16, requires_grad=True), layer, "relu")
        assert empty.shape == (0, 32) and "OneDnnLinear" not in type(empty.grad_fn).__name__
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = fused_linear.linear(torch.randn(3, 16), layer)
        assert auto.dtype == torch.bfloat16 and "OneDnnLinear" not in type(auto.grad_fn).__name__


def test_the_choice_is_reported_and_can_be_turned_off():
    with training_path(True):
        on, why = fused_linear.training_path()
        assert on and why.startswith("oneDNN")
    previous = fused_linear.set_enabled(False)
    try:
        with training_path(True):
            on, why = fused_linear.training_path()
            assert not on and "DINO_FUSED_LINEAR=0" in why
    finally:
        fused_linear.set_enabled(previous)


def _training_step(on: bool, monkeypatch):
    calls = []
    apply = fused_linear._OneDnnLinear.apply
    monkeypatch.setattr(fused_linear._OneDnnLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    model, criterion, _ = build_tiny_model()
    model.train(), criterion.train()
    images = random_images([(64, 80), (48, 64)], seed=1)
    targets = make_targets([3, 2], seed=2)
    with training_path(on):
        torch.manual_seed(3)  # the denoising queries' noise
        losses = criterion(model(images, targets), targets)
        loss = sum(losses[k] * criterion.weight_dict[k] for k in losses if k in criterion.weight_dict)
        loss.backward()
    return float(loss.detach()), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, len(calls)


def test_a_training_step_of_dino_gives_the_same_loss_and_gradients(monkeypatch):
    loss_ref, grads_ref, calls_off = _training_step(False, monkeypatch)
    loss, grads, calls_on = _training_step(True, monkeypatch)
    assert calls_off == 0 and calls_on > 20  # FFNs, deformable attention's projections, MLP heads
    assert grads.keys() == grads_ref.keys() and len(grads) > 50
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    # float32 rounding of other products, carried back through the layers: ~1e-4 of a gradient's norm;
    # the norm is floored at 1% of the largest one (conv biases before a GroupNorm get ~0 gradient)
    floor = 1e-2 * max(float(g.norm()) for g in grads_ref.values())
    for name, want in grads_ref.items():
        error = float((grads[name] - want).norm()) / max(float(want.norm()), floor)
        assert error < 1e-3, f"{name}: gradient differs by {error:.1e} of its norm"


def test_a_weight_updated_in_place_is_read_again():
    """The optimizer changes weights in place (same storage): nothing of the previous values may be kept."""
    torch.manual_seed(0)
    layer = nn.Linear(32, 64)
    x = torch.randn(10, 32, requires_grad=True)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    with training_path(True):
        for _ in range(3):
            y = fused_linear.linear(x, layer, "relu")
            torch.testing.assert_close(y, torch.relu(x @ layer.weight.t() + layer.bias), rtol=1e-5, atol=1e-5)
            optimizer.zero_grad()
            (y * torch.arange(64.0)).sum().backward()
            optimizer.step()
