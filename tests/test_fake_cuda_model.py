"""GPU readiness without a GPU: DINO-R50-4scale with every parameter, buffer and input on a
*fake* CUDA device (torch._subclasses.fake_tensor.FakeTensorMode: tensors with shapes,
dtypes and devices but no data; the installed torch is a CUDA build, so fake CUDA tensors
need no GPU).

Inference (model + PostProcess) and the training forward with its loss run under the
mode. A tensor made on the wrong device (e.g. a `torch.zeros(...)` without `device=`
meeting a CUDA tensor) raises there as it would on a GPU, every output and loss must be
on CUDA, and every output must have the shape and dtype of a real run of the same model
on the CPU. Reading tensor values on the host (`.item()`, `.tolist()`, `bool(t)`) raises
too, which is how the model's avoidable device syncs were found.

The one host-side step the loss needs is the Hungarian matcher's scipy call. The matcher
still computes its cost matrix on the (fake) GPU and moves it to the CPU as on a GPU; for
this test only, a fixed assignment (target j <-> query j of each image) replaces scipy's
solution, which needs real values.

The deformable attention runs as torch.ops.dino.ms_deform_attn (its fake kernel; the
dispatcher picks it for fake CUDA tensors whether or not a CUDA kernel was built) and as
the grid_sample and gather PyTorch paths.
"""
import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from helpers import build_args, make_targets
from models.dino.ops import _ext
from models.dino.ops.functions import ms_deform_attn_func

# R50 4-scale as configured, fewer layers for time; 2 images of different sizes (padding)
OPTIONS = ["backbone_pretrained=False", "enc_layers=2", "dec_layers=2"]
SIZES = [(256, 320), (224, 288)]
TARGET_COUNTS = [3, 2]


class FixedAssignment(nn.Module):
    """The matcher with scipy's assignment replaced (test only): the cost matrix is still
    computed where the predictions are and moved to the CPU, as HungarianMatcher does."""

    def __init__(self, matcher):
        super().__init__()
        self.matcher = matcher
        self.cost_devices = []

    def forward(self, outputs, targets):
        cost = self.matcher.cost_matrix(outputs, targets).cpu()
        self.cost_devices.append(cost.device.type)
        return [(torch.arange(len(t["labels"]), dtype=torch.int64),
                 torch.arange(len(t["labels"]), dtype=torch.int64)) for t in targets]


def _build():
    from main import build_model_main

    torch.manual_seed(0)
    return build_model_main(build_args("config/DINO/DINO_4scale.py", OPTIONS))


def _to_fake_cuda(model: nn.Module, mode: FakeTensorMode) -> None:
    """Replace every parameter and buffer by a fake CUDA copy (shared ones stay shared)."""
    memo = {}

    def convert(t):
        if id(t) not in memo:
            fake = mode.from_tensor(t).to("cuda")
            memo[id(t)] = nn.Parameter(fake, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else fake
        return memo[id(t)]

    with mode:
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None:
                    module._parameters[name] = convert(p)
            for name, b in list(module._buffers.items()):
                if b is not None:
                    module._buffers[name] = convert(b)


def _inputs(convert):
    """Images, their sizes and targets, each tensor passed through `convert`."""
    g = torch.Generator().manual_seed(0)
    images = [convert(torch.randn(3, h, w, generator=g)) for h, w in SIZES]
    sizes = convert(torch.tensor(SIZES))
    targets = [{k: convert(v) for k, v in t.items()} for t in make_targets(TARGET_COUNTS, num_classes=91)]
    return images, sizes, targets


def _run(model, criterion, postprocess, convert):
    """Inference outputs, post-processed detections, training outputs and losses."""
    images, sizes, targets = _inputs(convert)
    model.eval()
    with torch.no_grad():
        eval_out = model(images)
        detections = postprocess(eval_out, sizes)
    model.train()
    criterion.train()
    train_out = model(images, targets)
    losses = criterion(train_out, targets)
    return eval_out, detections, train_out, losses


def _tensors(obj, prefix=""):
    """(name, tensor) of every tensor in nested dicts / lists."""
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


@pytest.fixture(scope="module")
def cpu_reference():
    """Shapes and dtypes of a real CPU run (the compiled op if built, else the PyTorch path)."""
    model, criterion, post = _build()
    criterion.matcher = FixedAssignment(criterion.matcher)
    results = _run(model, criterion, post["bbox"], lambda t: t)
    return {name: (tuple(t.shape), t.dtype) for name, t in _tensors(results)}


@pytest.mark.parametrize("path", ["op", "pytorch", "gather"])
def test_r50_inference_and_training_loss_on_fake_cuda(path, monkeypatch, cpu_reference):
    calls = []
    if path == "op":
        monkeypatch.delenv(_ext.ENV_VAR, raising=False)
        if _ext.get_extension() is None:
            pytest.skip(f"the compiled op is not built: {_ext.extension_error()}")
        if not _ext.compiled_with_cuda():
            # built without CUDA kernels: MSDeformAttn would take the PyTorch path on CUDA. Under
            # FakeTensorMode no kernel runs (the dispatcher calls the operator's fake kernel for
            # any device), so route CUDA to the operator as a CUDA build does.
            real_backend = _ext.backend
            monkeypatch.setattr(_ext, "backend", lambda device="cpu": "compiled-cuda"
                                if torch.device(device).type == "cuda" else real_backend(device))
        real_op = ms_deform_attn_func.ms_deform_attn_compiled

        def counted(*args):
            calls.append(args[0].device.type)
            return real_op(*args)

        monkeypatch.setattr(ms_deform_attn_func, "ms_deform_attn_compiled", counted)
    else:
        monkeypatch.setenv(_ext.ENV_VAR, path)

    model, criterion, post = _build()
    matcher = FixedAssignment(criterion.matcher)
    criterion.matcher = matcher
    # static shapes: concrete sizes as on a real GPU. The ShapeEnv lets data-dependent sizes
    # (torch.nonzero in the denoising label noise, boolean masks) become symbols, but not values
    # read on the host (.item(), .tolist(): device syncs on a GPU), which raise.
    mode = FakeTensorMode(shape_env=ShapeEnv(allow_scalar_outputs=False, allow_dynamic_output_shape_ops=True),
                          static_shapes=True)
    _to_fake_cuda(model, mode)
    _to_fake_cuda(criterion, mode)
    with mode:
        # fake copies of the inputs (not tensors made from Python data under the mode, which keep
        # their values as constants, so that reading them on the host would go unnoticed)
        results = _run(model, criterion, post["bbox"], lambda t: mode.from_tensor(t).to("cuda"))

    tensors = dict(_tensors(results))
    assert tensors.keys() == cpu_reference.keys()
    for name, t in tensors.items():
        assert isinstance(t, FakeTensor), name
        assert t.device.type == "cuda", f"{name} is on {t.device}"
        shape, dtype = cpu_reference[name]
        assert (tuple(t.shape), t.dtype) == (shape, dtype), f"{name}: {tuple(t.shape)} {t.dtype}, CPU run: {shape} {dtype}"
    losses = results[3]
    assert "loss_ce" in losses and "loss_bbox_dn" in losses
    assert matcher.cost_devices and set(matcher.cost_devices) == {"cpu"}
    if path == "op":
        # 2 encoder + 2 decoder layers, eval and train forward
        assert calls == ["cuda"] * 8


def test_ms_deform_attn_fake_kernels_on_cuda():
    """The operator's fake kernels on fake CUDA tensors: shapes, dtypes and devices, and the
    kernels' input checks (a shape or device the real kernel refuses raises here too)."""
    if _ext.get_extension() is None:
        pytest.skip(f"the compiled op is not built: {_ext.extension_error()}")
    N, Lq, M, D, L, P = 2, 7, 3, 5, 2, 4
    with FakeTensorMode():
        value = torch.empty(N, 30, M, D, device="cuda")
        shapes = torch.empty(L, 2, dtype=torch.long, device="cuda")
        start = torch.empty(L, dtype=torch.long, device="cuda")
        loc = torch.empty(N, Lq, M, L, P, 2, device="cuda")
        attn = torch.empty(N, Lq, M, L, P, device="cuda")
        out = torch.ops.dino.ms_deform_attn(value, shapes, start, loc, attn)
        assert (out.shape, out.dtype, out.device.type) == ((N, Lq, M * D), torch.float32, "cuda")
        grads = torch.ops.dino.ms_deform_attn_backward(value, shapes, start, loc, attn, out)
        for g, t in zip(grads, (value, loc, attn)):
            assert (g.shape, g.dtype, g.device, g.is_contiguous()) == (t.shape, t.dtype, t.device, True)
        with pytest.raises(RuntimeError, match="does not match"):
            torch.ops.dino.ms_deform_attn(value, shapes, start, loc[:, :, :2], attn)
        with pytest.raises(RuntimeError, match="same device"):
            torch.ops.dino.ms_deform_attn(value, shapes.cpu(), start, loc, attn)
        with pytest.raises(RuntimeError, match="same dtype"):
            torch.ops.dino.ms_deform_attn(value, shapes, start, loc.double(), attn)
        with pytest.raises(RuntimeError, match="grad_output"):
            torch.ops.dino.ms_deform_attn_backward(value, shapes, start, loc, attn, out[:, :3])
