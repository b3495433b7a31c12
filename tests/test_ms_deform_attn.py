"""Tests of the multi-scale deformable attention op (models/dino/ops).

Tests of the compiled op skip if the extension is not built; build it with

    pip install --no-build-isolation ./models/dino/ops
"""

import logging
import math

import pytest
import torch

from models.dino.ops import _ext
from models.dino.ops import backend
from models.dino.ops.functions import MSDeformAttnFunction, ms_deform_attn, ms_deform_attn_core_pytorch
from models.dino.ops.functions import ms_deform_attn_func
from models.dino.ops.modules import MSDeformAttn

EXT = _ext.get_extension()
needs_ext = pytest.mark.skipif(
    EXT is None,
    reason="MultiScaleDeformableAttention extension not built "
           "(pip install --no-build-isolation ./models/dino/ops): " + str(_ext.extension_error()))
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not _ext.compiled_with_cuda(),
    reason="needs a CUDA device and the extension built with CUDA")

CPU_ISAS = ["default"]
if EXT is not None and hasattr(EXT, "set_cpu_isa"):
    try:
        _saved = EXT.cpu_isa()
        EXT.set_cpu_isa("avx2")
        CPU_ISAS.append("avx2")
        EXT.set_cpu_isa(_saved)
    except RuntimeError:
        pass


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    """Run a test with each CPU kernel variant the machine supports."""
    if EXT is None:
        pytest.skip("extension not built")
    saved = EXT.cpu_isa()
    EXT.set_cpu_isa(request.param)
    yield request.param
    EXT.set_cpu_isa(saved)


@pytest.fixture(autouse=True)
def _auto_backend(monkeypatch):
    monkeypatch.delenv(_ext.ENV_VAR, raising=False)


def make_inputs(N=2, Lq=5, M=2, D=4, shapes=((6, 4), (3, 2)), P=2, dtype=torch.float64,
                lo=0.0, hi=1.0, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.as_tensor(shapes, dtype=torch.long)
    level_start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    S = int(shapes.prod(1).sum())
    L = shapes.shape[0]
    value = torch.rand(N, S, M, D, generator=g, dtype=dtype)
    loc = torch.rand(N, Lq, M, L, P, 2, generator=g, dtype=dtype) * (hi - lo) + lo
    attn = torch.rand(N, Lq, M, L, P, generator=g, dtype=dtype) + 1e-5
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return [t.to(device) for t in (value, shapes, level_start, loc, attn)]


def naive_reference(value, shapes, loc, attn):
    """Bilinear sampling written out corner by corner (independent of grid_sample)."""
    N, S, M, D = value.shape
    _, Lq, _, L, P, _ = loc.shape
    out = value.new_zeros(N, Lq, M, D)
    start = 0
    for lvl, (H, W) in enumerate(shapes.tolist()):
        v = value[:, start:start + H * W].view(N, H, W, M, D)
        start += H * W
        x = loc[:, :, :, lvl, :, 0] * W - 0.5  # (N, Lq, M, P)
        y = loc[:, :, :, lvl, :, 1] * H - 0.5
        x0, y0 = x.floor(), y.floor()
        for dy in (0, 1):
            for dx in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                wgt = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
                ok = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)
                xc, yc = xi.clamp(0, W - 1).long(), yi.clamp(0, H - 1).long()
                n_idx = torch.arange(N).view(N, 1, 1, 1).expand_as(xc)
                m_idx = torch.arange(M).view(1, 1, M, 1).expand_as(xc)
                corner = v[n_idx, yc, xc, m_idx]  # (N, Lq, M, P, D)
                coef = (wgt * ok * attn[:, :, :, lvl]).unsqueeze(-1)
                out += (coef * corner).sum(3)
    return out.view(N, Lq, M * D)


def run_both(inputs, im2col_step=64, grad=True, seed=1):
    """Compiled op and PyTorch path on the same inputs: outputs and grads."""
    value, shapes, level_start, loc, attn = inputs
    results = []
    for path in ("compiled", "pytorch"):
        leaves = [t.detach().clone().requires_grad_(grad) for t in (value, loc, attn)]
        if path == "compiled":
            out = MSDeformAttnFunction.apply(leaves[0], shapes, level_start, leaves[1], leaves[2], im2col_step)
        else:
            out = ms_deform_attn_core_pytorch(leaves[0], shapes, leaves[1], leaves[2])
        grads = None
        if grad:
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
            grads = torch.autograd.grad(out, leaves, g.to(out.device))
        results.append((out.detach(), grads))
    return results


def assert_close_pair(results, rtol, atol):
    (o1, g1), (o2, g2) = results
    torch.testing.assert_close(o1, o2, rtol=rtol, atol=atol)
    if g1 is not None:
        for name, a, b in zip(("value", "sampling_locations", "attention_weights"), g1, g2):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"grad {name}: {m}")


# --------------------------------------------------------------------------- PyTorch path


def test_pytorch_path_matches_naive_bilinear():
    inputs = make_inputs(N=2, Lq=4, M=3, D=5, shapes=((5, 7), (2, 3), (1, 1)), P=3, lo=-0.3, hi=1.3)
    value, shapes, _, loc, attn = inputs
    torch.testing.assert_close(ms_deform_attn_core_pytorch(value, shapes, loc, attn),
                               naive_reference(value, shapes, loc, attn))


def test_pytorch_path_accepts_list_shapes():
    value, shapes, _, loc, attn = make_inputs()
    torch.testing.assert_close(ms_deform_attn_core_pytorch(value, shapes.tolist(), loc, attn),
                               ms_deform_attn_core_pytorch(value, shapes, loc, attn))


# --------------------------------------------------------------------------- compiled CPU op


@needs_ext
@pytest.mark.parametrize("D", [3, 16])
def test_gradcheck_float64(cpu_isa, D):
    value, shapes, level_start, loc, attn = make_inputs(N=2, Lq=3, M=2, D=D, P=2, lo=-0.2, hi=1.2)
    value.requires_grad_()
    loc.requires_grad_()
    attn.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, l, a: MSDeformAttnFunction.apply(v, shapes, level_start, l, a, 2),
        (value, loc, attn), eps=1e-6, atol=1e-5, rtol=1e-4)


@needs_ext
def test_forward_matches_naive_float64(cpu_isa):
    inputs = make_inputs(N=2, Lq=6, M=3, D=32, shapes=((5, 7), (2, 3), (1, 1)), P=3, lo=-0.3, hi=1.3)
    value, shapes, level_start, loc, attn = inputs
    out = MSDeformAttnFunction.apply(value, shapes, level_start, loc, attn, 64)
    torch.testing.assert_close(out, naive_reference(value, shapes, loc, attn), rtol=1e-12, atol=1e-12)


@needs_ext
@pytest.mark.parametrize("D", [7, 16, 32, 64])
def test_forward_backward_match_pytorch_float32(cpu_isa, D):
    inputs = make_inputs(N=2, Lq=37, M=4, D=D, shapes=((12, 17), (6, 9), (3, 5), (2, 2)), P=4,
                         dtype=torch.float32, seed=D)
    assert_close_pair(run_both(inputs), rtol=1e-4, atol=1e-5)


@needs_ext
def test_forward_backward_match_pytorch_float64(cpu_isa):
    inputs = make_inputs(N=2, Lq=9, M=3, D=32, shapes=((7, 5), (4, 3)), P=3, lo=-0.2, hi=1.2)
    assert_close_pair(run_both(inputs), rtol=1e-10, atol=1e-12)


@needs_ext
def test_sampling_locations_outside_unit_square(cpu_isa):
    inputs = make_inputs(N=2, Lq=40, M=2, D=8, shapes=((6, 5), (3, 4)), P=4, dtype=torch.float32,
                         lo=-1.0, hi=2.0)
    value, shapes, level_start, loc, attn = inputs
    # exact edges: 0, 1, half a pixel outside (pixel coordinate -1 / size) and far away
    loc[0, 0, 0, 0, :, 0] = torch.tensor([0.0, 1.0, -0.5 / 5, 1.0 + 0.5 / 5])
    loc[0, 0, 0, 0, :, 1] = torch.tensor([0.0, 1.0, -0.5 / 6, 50.0])
    loc[0, 1, 0, 1, :, :] = -1e4
    assert_close_pair(run_both(inputs), rtol=1e-4, atol=1e-5)
    # fully outside points get zero gradient w.r.t. location and attention
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, attn)]
    out = MSDeformAttnFunction.apply(leaves[0], shapes, level_start, leaves[1], leaves[2], 64)
    out.sum().backward()
    assert leaves[1].grad[0, 1, 0, 1].abs().max() == 0
    assert leaves[2].grad[0, 1, 0, 1].abs().max() == 0


@needs_ext
@pytest.mark.parametrize("N,step", [(3, 2), (5, 64), (5, 4), (1, 1)])
def test_batch_not_divisible_by_im2col_step(N, step):
    inputs = make_inputs(N=N, Lq=6, M=2, D=8, dtype=torch.float32, seed=N)
    assert_close_pair(run_both(inputs, im2col_step=step), rtol=1e-4, atol=1e-5)


@needs_ext
def test_non_contiguous_inputs():
    value, shapes, level_start, loc, attn = make_inputs(N=2, Lq=7, M=3, D=6, P=2, dtype=torch.float32)
    # same values, non-contiguous storage
    value_nc = value.transpose(0, 1).contiguous().transpose(0, 1)
    loc_nc = loc.permute(5, 0, 1, 2, 3, 4).contiguous().permute(1, 2, 3, 4, 5, 0)
    attn_nc = torch.cat([attn, attn], dim=-1)[..., ::2]
    shapes_nc = torch.stack([shapes[:, 0], shapes[:, 1]], 0).t()
    assert not (value_nc.is_contiguous() or loc_nc.is_contiguous() or attn_nc.is_contiguous()
                or shapes_nc.is_contiguous())
    attn_nc.copy_(attn)
    expected = ms_deform_attn_core_pytorch(value, shapes, loc, attn)
    out = MSDeformAttnFunction.apply(value_nc, shapes_nc, level_start, loc_nc, attn_nc, 64)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    # non-contiguous grad_output
    leaves = [t.detach().clone().requires_grad_() for t in (value_nc, loc_nc, attn_nc)]
    out = MSDeformAttnFunction.apply(leaves[0], shapes_nc, level_start, leaves[1], leaves[2], 64)
    g = torch.randn(out.shape[::-1]).t() if out.dim() == 2 else torch.randn(out.shape[::-1]).permute(2, 1, 0)
    grads = torch.autograd.grad(out, leaves, g)
    ref_leaves = [t.detach().clone().requires_grad_() for t in (value, loc, attn)]
    ref = ms_deform_attn_core_pytorch(ref_leaves[0], shapes, ref_leaves[1], ref_leaves[2])
    ref_grads = torch.autograd.grad(ref, ref_leaves, g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_ext
def test_levels_of_very_different_sizes(cpu_isa):
    shapes = ((48, 61), (1, 1), (3, 17), (17, 3), (1, 40), (2, 2))
    inputs = make_inputs(N=2, Lq=25, M=2, D=32, shapes=shapes, P=3, dtype=torch.float32,
                         lo=-0.1, hi=1.1, seed=7)
    assert_close_pair(run_both(inputs), rtol=1e-4, atol=1e-5)


@needs_ext
@pytest.mark.parametrize("threads,N,M", [(1, 2, 8), (2, 1, 1), (3, 1, 8), (4, 1, 2), (2, 2, 8)])
def test_backward_work_split(threads, N, M):
    """Every task decomposition of the CPU backward (head groups, query chunks) is exact."""
    inputs = make_inputs(N=N, Lq=33, M=M, D=32, shapes=((9, 11), (5, 6)), P=4, seed=threads)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = run_both(inputs)
    finally:
        torch.set_num_threads(saved)
    assert_close_pair(results, rtol=1e-10, atol=1e-12)


@needs_ext
def test_empty_queries():
    value, shapes, level_start, loc, attn = make_inputs(Lq=0, dtype=torch.float32)
    out = MSDeformAttnFunction.apply(value, shapes, level_start, loc, attn, 64)
    assert out.shape == (2, 0, 2 * 4)


@needs_ext
def test_invalid_inputs_raise():
    value, shapes, level_start, loc, attn = make_inputs(dtype=torch.float32)
    op = torch.ops.dino.ms_deform_attn
    with pytest.raises(RuntimeError, match="same dtype"):
        op(value, shapes, level_start, loc.double(), attn)
    with pytest.raises(RuntimeError, match="does not fit"):
        op(value[:, :5].contiguous(), shapes, level_start, loc, attn)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(value.half(), shapes, level_start, loc.half(), attn.half())
    grad_out = torch.ones(2, 5, 8)
    with pytest.raises(RuntimeError, match="grad_output must be"):
        torch.ops.dino.ms_deform_attn_backward(value, shapes, level_start, loc, attn, grad_out[:, :4])
    for step in (0, -1, 2.5):
        with pytest.raises(ValueError, match="im2col_step"):
            MSDeformAttnFunction.apply(value, shapes, level_start, loc, attn, step)


# --------------------------------------------------------------------------- module


def _module_inputs(n_levels=3, N=2, Lq=11, d_model=64, dtype=torch.float32, ref_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([(8, 10), (4, 5), (2, 3)][:n_levels], dtype=torch.long)
    level_start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    S = int(shapes.prod(1).sum())
    query = torch.randn(N, Lq, d_model, generator=g)
    src = torch.randn(N, S, d_model, generator=g)
    if ref_dim == 2:
        ref = torch.rand(N, Lq, n_levels, 2, generator=g)
    else:
        ref = torch.cat([torch.rand(N, Lq, n_levels, 2, generator=g),
                         torch.rand(N, Lq, n_levels, 2, generator=g) * 0.5], -1)
    mask = torch.zeros(N, S, dtype=torch.bool)
    mask[1, -7:] = True
    return [t.to(dtype) if t.is_floating_point() else t for t in (query, ref, src)] + [shapes, level_start, mask]


def _make_module(d_model=64, n_levels=3, n_heads=4, n_points=3, seed=0):
    torch.manual_seed(seed)
    m = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
    # non-trivial offsets and attention so that both matter
    with torch.no_grad():
        m.sampling_offsets.weight.normal_(0, 0.05)
        m.attention_weights.weight.normal_(0, 0.1)
    return m


def test_module_parameters_and_init():
    m = MSDeformAttn(d_model=256, n_levels=4, n_heads=8, n_points=4)
    names = {name for name, _ in m.named_parameters()}
    assert names == {f"{a}.{b}" for a in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
                     for b in ("weight", "bias")}
    assert m.sampling_offsets.weight.shape == (8 * 4 * 4 * 2, 256)
    assert m.attention_weights.weight.shape == (8 * 4 * 4, 256)
    assert m.value_proj.weight.shape == m.output_proj.weight.shape == (256, 256)
    assert m.sampling_offsets.weight.abs().max() == 0
    assert m.attention_weights.weight.abs().max() == 0 and m.attention_weights.bias.abs().max() == 0
    assert m.value_proj.bias.abs().max() == 0 and m.output_proj.bias.abs().max() == 0
    bias = m.sampling_offsets.bias.view(8, 4, 4, 2)
    for h in range(8):
        angle = 2 * math.pi * h / 8
        direction = torch.tensor([math.cos(angle), math.sin(angle)])
        direction = direction / direction.abs().max()
        for p in range(4):
            for lvl in range(4):
                torch.testing.assert_close(bias[h, lvl, p], direction * (p + 1))


def test_module_reference_points_last_dim_checked():
    m = _make_module()
    query, ref, src, shapes, level_start, _ = _module_inputs()
    with pytest.raises(ValueError, match="2 or 4"):
        m(query, torch.cat([ref, ref[..., :1]], -1), src, shapes, level_start)


@needs_ext
@pytest.mark.parametrize("ref_dim", [2, 4])
def test_module_compiled_matches_pytorch_path(monkeypatch, ref_dim):
    m = _make_module()
    inputs = _module_inputs(ref_dim=ref_dim)
    results = []
    for mode in ("auto", "pytorch"):
        monkeypatch.setenv(_ext.ENV_VAR, mode)
        m.zero_grad()
        out = m(*inputs)
        out.square().sum().backward()
        results.append((out.detach(), {k: p.grad.clone() for k, p in m.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    for k in results[0][1]:
        torch.testing.assert_close(results[0][1][k], results[1][1][k], rtol=1e-3, atol=1e-4)


@needs_ext
def test_module_uses_compiled_op_by_default(monkeypatch):
    assert backend("cpu") == "compiled-cpu"
    calls = []
    original = ms_deform_attn_func.ms_deform_attn_compiled
    monkeypatch.setattr(ms_deform_attn_func, "ms_deform_attn_compiled", lambda *a: calls.append(1) or original(*a))
    _make_module()(*_module_inputs()[:5])
    assert calls


def test_module_falls_back_to_pytorch_when_forced(monkeypatch):
    monkeypatch.setenv(_ext.ENV_VAR, "pytorch")
    assert backend("cpu") == "pytorch"

    def fail(*args):
        raise AssertionError("compiled op used although DINO_MSDA_BACKEND=pytorch")

    monkeypatch.setattr(ms_deform_attn_func, "ms_deform_attn_compiled", fail)
    out = _make_module()(*_module_inputs())
    assert out.shape == (2, 11, 64)


def test_module_falls_back_when_extension_missing(monkeypatch, caplog):
    monkeypatch.setattr(_ext, "_state", {"loaded": True, "ext": None, "error": "simulated", "origin": None})
    monkeypatch.setattr(_ext, "_announced", set())
    assert backend("cpu") == "pytorch" and backend("cuda") == "pytorch"
    with caplog.at_level(logging.INFO, logger="dino.ops"):
        out = _make_module()(*_module_inputs())
    assert out.shape == (2, 11, 64)
    assert any("unavailable: simulated" in r.getMessage() for r in caplog.records)
    with pytest.raises(RuntimeError, match="not built"):
        MSDeformAttnFunction.apply(*make_inputs(), 64)


def test_cuda_tensors_use_compiled_op_only_if_built_with_cuda(monkeypatch):
    expected = "compiled-cuda" if _ext.compiled_with_cuda() else "pytorch"
    assert backend("cuda") == expected
    if expected == "pytorch":
        monkeypatch.setenv(_ext.ENV_VAR, "compiled")
        with pytest.raises(RuntimeError):
            backend("cuda")


def test_forced_compiled_without_extension_raises(monkeypatch):
    monkeypatch.setenv(_ext.ENV_VAR, "compiled")
    if EXT is None:
        with pytest.raises(RuntimeError, match="not available"):
            backend("cpu")
    else:
        assert backend("cpu") == "compiled-cpu"
    monkeypatch.setenv(_ext.ENV_VAR, "bogus")
    with pytest.raises(ValueError):
        backend("cpu")


def test_backend_is_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(_ext, "_announced", set())
    m = _make_module()
    inputs = _module_inputs()
    with caplog.at_level(logging.INFO, logger="dino.ops"):
        m(*inputs)
        m(*inputs)
    records = [r for r in caplog.records if r.name == "dino.ops"]
    assert len(records) == 1
    expected = "compiled" if EXT is not None else "PyTorch"
    assert expected in records[0].getMessage()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["auto", "pytorch"])
def test_module_low_precision_inputs(monkeypatch, dtype, mode):
    monkeypatch.setenv(_ext.ENV_VAR, mode)
    m32 = _make_module()
    inputs32 = _module_inputs()
    expected = m32(*inputs32)
    m = _make_module().to(dtype)
    inputs = _module_inputs(dtype=dtype)
    out = m(*inputs)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert m.value_proj.weight.grad.dtype == dtype
    assert torch.isfinite(m.value_proj.weight.grad.float()).all()


def test_dispatcher_mixed_dtypes_return_value_dtype():
    value, shapes, level_start, loc, attn = make_inputs(dtype=torch.float32)
    out = ms_deform_attn(value.half(), shapes, level_start, loc, attn.bfloat16())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ms_deform_attn_core_pytorch(value, shapes, loc, attn),
                               rtol=0.02, atol=0.02)


# --------------------------------------------------------------------------- CUDA


@needs_cuda
def test_cuda_forward_backward_match_pytorch():
    inputs = make_inputs(N=3, Lq=50, M=4, D=32, shapes=((12, 17), (6, 9), (1, 1)), P=4,
                         dtype=torch.float32, lo=-0.2, hi=1.2, device="cuda")
    assert_close_pair(run_both(inputs, im2col_step=2), rtol=1e-4, atol=1e-5)
    inputs = make_inputs(N=2, Lq=20, M=3, D=40, dtype=torch.float64, lo=-0.2, hi=1.2, device="cuda")
    assert_close_pair(run_both(inputs), rtol=1e-10, atol=1e-12)


@needs_cuda
def test_cuda_gradcheck_float64():
    value, shapes, level_start, loc, attn = make_inputs(N=2, Lq=3, M=2, D=5, device="cuda")
    for t in (value, loc, attn):
        t.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v, l, a: MSDeformAttnFunction.apply(v, shapes, level_start, l, a, 2),
        (value, loc, attn), eps=1e-6, atol=1e-5, rtol=1e-4)


@needs_cuda
def test_cuda_module_matches_cpu():
    m = _make_module()
    inputs = _module_inputs()
    expected = m(*inputs)
    out = m.cuda()(*[t.cuda() for t in inputs])
    assert backend("cuda") == "compiled-cuda"
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
