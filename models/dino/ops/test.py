"""Compare the compiled MultiScaleDeformableAttention op with the PyTorch path.

    cd models/dino/ops && python test.py          (or: python models/dino/ops/test.py)

Prints one line per check, ``* True ...`` when it passes; exits 1 if any fails.
Runs on CPU, and on CUDA too when a GPU is present and the CUDA kernels are built.
"""

import os
import sys

import torch
from torch.autograd import gradcheck

# make `models.dino.ops` importable whether run from here or from the repository root
_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from models.dino.ops import _ext  # noqa: E402
from models.dino.ops.functions import MSDeformAttnFunction, ms_deform_attn_core_pytorch  # noqa: E402

N, M, D = 1, 2, 2
Lq, L, P = 2, 2, 2
SHAPES = torch.as_tensor([(6, 4), (3, 2)], dtype=torch.long)
LEVEL_START = torch.cat((SHAPES.new_zeros((1,)), SHAPES.prod(1).cumsum(0)[:-1]))
S = int(SHAPES.prod(1).sum())

torch.manual_seed(3)
results = []


def report(ok, text):
    results.append(bool(ok))
    print(f"* {bool(ok)} {text}")


def inputs(device, channels=D, dtype=torch.float32):
    value = torch.rand(N, S, M, channels, device=device, dtype=dtype) * 0.01
    loc = torch.rand(N, Lq, M, L, P, 2, device=device, dtype=dtype)
    attn = torch.rand(N, Lq, M, L, P, device=device, dtype=dtype) + 1e-5
    attn /= attn.sum(-1, keepdim=True).sum(-2, keepdim=True)
    return value, loc, attn


@torch.no_grad()
def check_forward(device, dtype, rtol, atol):
    shapes, start = SHAPES.to(device), LEVEL_START.to(device)
    value, loc, attn = inputs(device, dtype=dtype)
    ref = ms_deform_attn_core_pytorch(value, shapes, loc, attn).cpu()
    out = MSDeformAttnFunction.apply(value, shapes, start, loc, attn, 2).cpu()
    ok = torch.allclose(out, ref, rtol=rtol, atol=atol)
    abs_err = (out - ref).abs().max()
    rel_err = ((out - ref).abs() / ref.abs().clamp_min(1e-12)).max()
    report(ok, f"[{device}] forward equal to PyTorch ({dtype}): max_abs_err {abs_err:.2e} max_rel_err {rel_err:.2e}")


def check_backward(device, channels):
    shapes, start = SHAPES.to(device), LEVEL_START.to(device)
    value, loc, attn = (t.double() for t in inputs(device, channels))
    grads = []
    for use_ext in (True, False):
        leaves = [t.clone().requires_grad_() for t in (value, loc, attn)]
        if use_ext:
            out = MSDeformAttnFunction.apply(leaves[0], shapes, start, leaves[1], leaves[2], 2)
        else:
            out = ms_deform_attn_core_pytorch(leaves[0], shapes, leaves[1], leaves[2])
        grads.append(torch.autograd.grad(out, leaves, torch.ones_like(out)))
    errs = [(a - b).abs().max().item() for a, b in zip(*grads)]
    ok = all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(*grads))
    report(ok, f"[{device}] backward equal to PyTorch (D={channels}): max_abs_err value {errs[0]:.1e} "
               f"loc {errs[1]:.1e} attn {errs[2]:.1e}")


def check_gradient_numerical(device, channels):
    shapes, start = SHAPES.to(device), LEVEL_START.to(device)
    value, loc, attn = (t.double().requires_grad_() for t in inputs(device, channels))
    ok = gradcheck(lambda v, l, a: MSDeformAttnFunction.apply(v, shapes, start, l, a, 2),
                   (value, loc, attn), eps=1e-6, atol=1e-5, rtol=1e-4, raise_exception=False)
    report(ok, f"[{device}] gradcheck (D={channels})")


def main():
    ext = _ext.get_extension()
    if ext is None:
        print(f"compiled extension not available: {_ext.extension_error()}")
        print("build it with: pip install --no-build-isolation ./models/dino/ops")
        return 1
    print(f"extension: {ext.__file__}  (CUDA kernels: {ext.with_cuda()}, CPU variant: {ext.cpu_isa()})")
    devices = ["cpu"]
    if torch.cuda.is_available() and ext.with_cuda():
        devices.append("cuda")
    for device in devices:
        check_forward(device, torch.float64, rtol=1e-7, atol=1e-10)
        check_forward(device, torch.float32, rtol=1e-2, atol=1e-3)
        for channels in (30, 32, 64, 71):
            check_backward(device, channels)
        for channels in (1, 2, 7, 32):
            check_gradient_numerical(device, channels)
    print(f"{sum(results)}/{len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
