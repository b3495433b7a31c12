#!/usr/bin/env python
"""Benchmark the multi-scale deformable attention op: compiled kernel (CPU, or
CUDA with --device cuda) vs the PyTorch (grid_sample) path, forward and
backward, at DINO-R50 4-scale sizes for an 800x1333 image.

    python tools/benchmark_msda.py                 # encoder + decoder, batch 1 and 2
    python tools/benchmark_msda.py --batch 1 --cases encoder --repeats 5
    python tools/benchmark_msda.py --device cuda --repeats 20

Both paths run in the same process on the same inputs, interleaved run by run
(so that both see the same machine load); each timing is the median of
--repeats runs after --warmup runs. Backward times exclude the forward
(torch.autograd.grad on a retained graph).
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.dino.ops import _ext  # noqa: E402
from models.dino.ops.functions import MSDeformAttnFunction, ms_deform_attn_core_pytorch  # noqa: E402

# DINO-R50 4-scale, 800x1333 input: strides 8, 16, 32, 64
LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]
HEADS, HEAD_DIM, POINTS = 8, 32, 4
DECODER_QUERIES = 900 + 200  # queries + denoising queries


def make_inputs(case, batch, dtype, uniform, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(LEVELS, dtype=torch.long)
    level_start = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    S = int(shapes.prod(1).sum())
    L = len(LEVELS)
    size = torch.stack([shapes[:, 1], shapes[:, 0]], -1).to(dtype)  # (W, H) per level
    if case == "encoder":
        # queries are the pixels of every level: reference points at pixel centres
        refs = []
        for H, W in LEVELS:
            ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
            refs.append(torch.stack([(xs.reshape(-1) + 0.5) / W, (ys.reshape(-1) + 0.5) / H], -1))
        ref = torch.cat(refs).expand(batch, -1, -1)
        Lq = S
    else:
        Lq = DECODER_QUERIES
        ref = torch.rand(batch, Lq, 2, generator=g, dtype=dtype)
    if uniform:
        loc = torch.rand(batch, Lq, HEADS, L, POINTS, 2, generator=g, dtype=dtype)
    else:
        # reference point plus offsets of a few pixels of each level
        offsets = torch.randn(batch, Lq, HEADS, L, POINTS, 2, generator=g, dtype=dtype) * 2.0
        loc = ref[:, :, None, None, None, :] + offsets / size[None, None, None, :, None, :]
    value = torch.randn(batch, S, HEADS, HEAD_DIM, generator=g, dtype=dtype)
    attn = torch.randn(batch, Lq, HEADS, L * POINTS, generator=g, dtype=dtype).softmax(-1)
    attn = attn.view(batch, Lq, HEADS, L, POINTS)
    return value, shapes, level_start, loc.contiguous(), attn


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    if isinstance(out, torch.Tensor) and out.is_cuda or isinstance(out, tuple) and out[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def make_runners(path, inputs):
    """(forward, backward) callables of one path; backward reuses one retained graph."""
    value, shapes, level_start, loc, attn = inputs
    if path == "compiled":
        def run(v, l, a):
            return MSDeformAttnFunction.apply(v, shapes, level_start, l, a, 64)
    else:
        def run(v, l, a):
            return ms_deform_attn_core_pytorch(v, shapes, l, a)

    def forward():
        with torch.no_grad():
            return run(value, loc, attn)

    leaves = [t.detach().requires_grad_() for t in (value, loc, attn)]
    out = run(*leaves)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype).to(out.device)

    def backward():
        return torch.autograd.grad(out, leaves, grad_out, retain_graph=True)

    return forward, backward


def bench(inputs, paths, warmup, repeats):
    """Median times {path: (forward, backward)}. The paths are interleaved run by
    run so that both see the same machine load."""
    runners = {p: make_runners(p, inputs) for p in paths}
    for _ in range(warmup):
        for fwd, bwd in runners.values():
            fwd()
            bwd()
    times = {p: ([], []) for p in paths}
    for _ in range(repeats):
        for p, (fwd, bwd) in runners.items():
            times[p][0].append(timed(fwd))
        for p, (fwd, bwd) in runners.items():
            times[p][1].append(timed(bwd))
    outputs = {p: runners[p][0]() for p in paths}
    return {p: (statistics.median(f), statistics.median(b)) for p, (f, b) in times.items()}, outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["encoder", "decoder"], choices=["encoder", "decoder"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: the CUDA kernel (extension built with CUDA) vs the PyTorch path on the GPU")
    parser.add_argument("--uniform", action="store_true",
                        help="uniformly random sampling locations (worst-case memory access)")
    parser.add_argument("--compiled-only", action="store_true", help="skip the PyTorch path")
    parser.add_argument("--isa", default=None, choices=["auto", "default", "avx2"],
                        help="CPU kernel variant (default: MSDA_CPU_ISA or auto)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if _ext.get_extension() is None:
        sys.exit("compiled extension not available: " + str(_ext.extension_error())
                 + "\nbuild it with: pip install --no-build-isolation ./models/dino/ops")
    dtype = getattr(torch, args.dtype)
    ext = _ext.get_extension()
    if args.device == "cuda" and not (torch.cuda.is_available() and ext.with_cuda()):
        sys.exit("--device cuda needs a visible GPU and the extension built with CUDA "
                 "(cd models/dino/ops && FORCE_CUDA=1 python setup.py build_ext --inplace)")
    if args.isa:
        ext.set_cpu_isa(args.isa)

    where = (f"GPU {torch.cuda.get_device_name()}" if args.device == "cuda"
             else f"{torch.get_num_threads()} threads, CPU kernels: {ext.cpu_isa()}")
    print(f"torch {torch.__version__}, {args.dtype}, extension {ext.__file__} ({where})")
    print(f"levels {LEVELS}, heads {HEADS}, head dim {HEAD_DIM}, points {POINTS}, "
          f"locations {'uniform' if args.uniform else 'reference + few-pixel offsets'}, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    header = (f"{'case':<8} {'batch':>5} {'queries':>7} | {'fwd torch':>10} {'fwd ext':>9} {'ratio':>6} | "
              f"{'bwd torch':>10} {'bwd ext':>9} {'ratio':>6} | {'max|diff|':>9}")
    print(header)
    print("-" * len(header))
    for case in args.cases:
        for batch in args.batch:
            inputs = [t.to(args.device) for t in make_inputs(case, batch, dtype, args.uniform)]
            Lq = inputs[3].shape[1]
            paths = ["compiled"] if args.compiled_only else ["compiled", "pytorch"]
            times, outs = bench(inputs, paths, args.warmup, args.repeats)
            f_ext, b_ext = times["compiled"]
            if args.compiled_only:
                print(f"{case:<8} {batch:>5} {Lq:>7} | {'-':>10} {f_ext * 1e3:>7.1f}ms {'-':>6} | "
                      f"{'-':>10} {b_ext * 1e3:>7.1f}ms {'-':>6} | {'-':>9}", flush=True)
                continue
            f_pt, b_pt = times["pytorch"]
            diff = (outs["compiled"] - outs["pytorch"]).abs().max().item()
            print(f"{case:<8} {batch:>5} {Lq:>7} | {f_pt * 1e3:>8.1f}ms {f_ext * 1e3:>7.1f}ms {f_pt / f_ext:>5.1f}x | "
                  f"{b_pt * 1e3:>8.1f}ms {b_ext * 1e3:>7.1f}ms {b_pt / b_ext:>5.1f}x | {diff:>9.1e}", flush=True)


if __name__ == "__main__":
    main()
