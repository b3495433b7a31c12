"""CUDA op safety and the atomics of its backward (run by scripts/check_gpu.sh; skip without a GPU).

The CUDA path checks spatial_shapes / level_start_index against value as the CPU path does
(without the check an inconsistent input reads and writes out of bounds), and the grad_value
scatter (atomicAdd, a compare-and-swap loop for float64 below sm_60) gives the CPU kernel's sums.
"""
import pytest
import torch

from test_ms_deform_attn import make_inputs, needs_cuda, needs_ext

BAD_LEVELS = {
    "level larger than value": ((6, 4), (4, 2)),
    "empty level": ((6, 4), (0, 2)),
}


def _ops(inputs):
    value, shapes, level_start, loc, attn = inputs
    grad_out = torch.ones(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3],
                          dtype=value.dtype, device=value.device)
    yield lambda: torch.ops.dino.ms_deform_attn(value, shapes, level_start, loc, attn)
    yield lambda: torch.ops.dino.ms_deform_attn_backward(value, shapes, level_start, loc, attn, grad_out)


@needs_ext
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("case", sorted(BAD_LEVELS))
def test_levels_that_do_not_fit_value_raise(device, case):
    inputs = make_inputs(device=device)
    inputs[1] = torch.as_tensor(BAD_LEVELS[case], dtype=torch.long, device=device)
    for op in _ops(inputs):
        with pytest.raises(RuntimeError, match="level 0|level 1"):
            op()


@needs_ext
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_level_start_past_value_raises(device):
    inputs = make_inputs(device=device)
    inputs[2] = inputs[2] + 1
    for op in _ops(inputs):
        with pytest.raises(RuntimeError, match="does not fit in value"):
            op()


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_backward_scatter_matches_cpu_kernel(dtype):
    """Many queries sampling a 3x3 map: every grad_value element takes hundreds of atomic adds."""
    cpu = make_inputs(N=2, Lq=400, M=2, D=33, shapes=((3, 3), (1, 2)), P=4, dtype=dtype)
    cuda = [t.cuda() for t in cpu]
    g = torch.randn(2, 400, 66, generator=torch.Generator().manual_seed(3), dtype=dtype)
    ref = torch.ops.dino.ms_deform_attn_backward(*cpu, g)
    got = torch.ops.dino.ms_deform_attn_backward(*cuda, g.cuda())
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for name, a, b in zip(("value", "sampling_loc", "attn_weight"), ref, got):
        torch.testing.assert_close(b.cpu(), a, msg=lambda m: f"grad {name}: {m}", **tol)
    assert ref[0].abs().max() > 1.0  # the scatter did add up many terms
