"""torch.ops.dino.ms_deform_attn and ms_deform_attn_backward as PyTorch operators, on the CPU:

* ``torch.library.opcheck`` (schema, fake kernel against the real kernel, autograd
  registration, AOTAutograd with dynamic shapes: its default set of checks) for the forward
  and the backward operator, at shapes including an empty batch, one-pixel levels, zeroed
  (padded) value rows, float32 and float64;
* the operator's output and gradients equal the PyTorch (grid_sample) path; gradcheck in
  float64;
* the dispatcher traces to one graph with the operator in it (torch.compile, fullgraph);
* the fallback to the PyTorch path when the extension is missing or unusable.
The same opcheck of the CUDA kernel (``test_cuda_opcheck``) runs where a GPU is (scripts/check_gpu.sh).
"""
import os
import subprocess
import sys
import types

import pytest
import torch

from models.dino.ops import _ext
from models.dino.ops.functions import ms_deform_attn, ms_deform_attn_core_pytorch
from helpers import REPO as REPO_ROOT
from test_ms_deform_attn import make_inputs, needs_cuda, needs_ext

# name -> make_inputs arguments
CASES = {
    "two levels": dict(N=2, Lq=5, M=2, D=4, shapes=((6, 4), (3, 2)), P=2),
    "empty batch": dict(N=0, Lq=4, M=2, D=4, shapes=((3, 5), (2, 2)), P=2),
    "one-pixel levels": dict(N=2, Lq=6, M=3, D=5, shapes=((1, 1), (1, 7), (6, 1)), P=3, lo=-0.2, hi=1.2),
    "padded value rows": dict(N=2, Lq=5, M=2, D=8, shapes=((5, 6), (3, 3)), P=2, zero_rows=7),
    "locations outside": dict(N=1, Lq=7, M=2, D=3, shapes=((4, 4),), P=4, lo=-1.0, hi=2.0),
}
DTYPES = [torch.float32, torch.float64]


def _inputs(case, dtype, device="cpu", seed=0):
    kwargs = dict(CASES[case])
    zero_rows = kwargs.pop("zero_rows", 0)
    value, shapes, start, loc, attn = make_inputs(dtype=dtype, seed=seed, device=device, **kwargs)
    if zero_rows:
        value[:, -zero_rows:] = 0  # the padding of a smaller image after masked_fill
    return value, shapes, start, loc, attn


def _grad_output(value, loc, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (value.shape[0], loc.shape[1], value.shape[2] * value.shape[3])
    return torch.randn(shape, generator=g, dtype=value.dtype).to(value.device)


def opcheck_forward_and_backward(case, dtype, device="cpu"):
    value, shapes, start, loc, attn = _inputs(case, dtype, device)
    leaves = [t.requires_grad_() for t in (value, loc, attn)]
    torch.library.opcheck(torch.ops.dino.ms_deform_attn.default, (leaves[0], shapes, start, leaves[1], leaves[2]))
    # only value needs a gradient: the formula still returns all three
    torch.library.opcheck(torch.ops.dino.ms_deform_attn.default,
                          (value.detach().requires_grad_(), shapes, start, loc.detach(), attn.detach()))
    torch.library.opcheck(torch.ops.dino.ms_deform_attn_backward.default,
                          (value.detach(), shapes, start, loc.detach(), attn.detach(), _grad_output(value, loc)))


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_opcheck(case, dtype):
    opcheck_forward_and_backward(case, dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_opcheck(case, dtype):
    opcheck_forward_and_backward(case, dtype, device="cuda")


@needs_ext
@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_equals_pytorch_path(case):
    """Forward and all three gradients of the operator against the grid_sample path, float64."""
    value, shapes, start, loc, attn = _inputs(case, torch.float64)
    results = []
    for op in (lambda v, l, a: torch.ops.dino.ms_deform_attn(v, shapes, start, l, a),
               lambda v, l, a: ms_deform_attn_core_pytorch(v, shapes, l, a)):
        leaves = [t.detach().clone().requires_grad_() for t in (value, loc, attn)]
        out = op(*leaves)
        results.append((out, torch.autograd.grad(out, leaves, _grad_output(value, loc))))
    (out, grads), (ref, ref_grads) = results
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for name, a, b in zip(("value", "sampling_loc", "attn_weight"), grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"grad {name}: {m}")


@needs_ext
def test_gradcheck_float64():
    value, shapes, start, loc, attn = make_inputs(N=2, Lq=3, M=2, D=3, shapes=((3, 4), (1, 2)), P=2,
                                                  lo=-0.2, hi=1.2)
    leaves = [t.requires_grad_() for t in (value, loc, attn)]
    assert torch.autograd.gradcheck(lambda v, l, a: torch.ops.dino.ms_deform_attn(v, shapes, start, l, a),
                                    leaves, eps=1e-6, atol=1e-5, rtol=1e-4)


@needs_ext
def test_dispatcher_traces_to_one_graph_with_the_operator(monkeypatch):
    """torch.compile of the dispatcher: no graph break, the operator in the graph, the result
    (and float16 / float32 handling) as eager, two batch sizes with one dynamic graph."""
    monkeypatch.delenv(_ext.ENV_VAR, raising=False)
    torch._dynamo.reset()
    ops_seen = []

    def backend(gm, example_inputs):
        ops_seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm

    compiled = torch.compile(ms_deform_attn, backend=backend, fullgraph=True, dynamic=True)
    # batch sizes unlike the other sizes (2): dynamo gives equal sizes one symbol ("duck sizing")
    for N in (3, 5):
        value, shapes, start, loc, attn = make_inputs(N=N, dtype=torch.float32, seed=N)
        torch.testing.assert_close(compiled(value.half(), shapes, start, loc, attn),
                                   ms_deform_attn(value.half(), shapes, start, loc, attn))
    assert ops_seen.count("dino.ms_deform_attn") == 1  # one graph for both batch sizes, the operator in it


def test_check_loaded_refuses_other_torch_and_old_builds():
    other = types.SimpleNamespace(__file__="x.so", torch_version=lambda: "2.3.0")
    assert "built against torch 2.3.0" in _ext._check_loaded(other)
    old = types.SimpleNamespace(__file__="x.so")  # a build from before the operators
    assert "older build" in _ext._check_loaded(old)
    assert _ext._version_tuple("2.14.1+cu130") == (2, 14)


_MISSING_EXTENSION = r"""
import logging, sys, tempfile, torch
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
from models.dino.ops import _ext
_ext._HERE = tempfile.mkdtemp()                     # no in-place build there
sys.modules[_ext.EXT_NAME] = None                    # and no installed one: import fails
from models.dino.ops.modules import MSDeformAttn
assert _ext.get_extension() is None and _ext.backend("cpu") == "pytorch", _ext.extension_error()
assert not hasattr(torch.ops.dino, "ms_deform_attn")
sys.path.insert(0, "tests")
from test_ms_deform_attn import _make_module, _module_inputs
out = _make_module()(*_module_inputs())
out.sum().backward()
print("fallback ok", tuple(out.shape))
"""


def test_fallback_when_the_extension_is_missing():
    """In a fresh process (no operator registered): no in-place build and no installed module."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(_ext.ENV_VAR, None)
    run = subprocess.run([sys.executable, "-c", _MISSING_EXTENSION], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fallback ok (2, 11, 64)" in run.stdout
    assert "using the PyTorch (grid_sample) path (compiled extension unavailable: no in-place build" in run.stderr


def test_forced_pytorch_path_does_not_call_the_operator(monkeypatch):
    monkeypatch.setenv(_ext.ENV_VAR, "pytorch")
    from models.dino.ops.functions import ms_deform_attn_func

    def fail(*args):
        raise AssertionError("operator called although DINO_MSDA_BACKEND=pytorch")

    monkeypatch.setattr(ms_deform_attn_func, "ms_deform_attn_compiled", fail)
    value, shapes, start, loc, attn = make_inputs()
    torch.testing.assert_close(ms_deform_attn(value, shapes, start, loc, attn),
                               ms_deform_attn_core_pytorch(value, shapes, loc, attn))
