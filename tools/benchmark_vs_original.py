#!/usr/bin/env python
"""This project's DINO against the original IDEA-Research/DINO code, same machine, one process.

    python tools/benchmark_vs_original.py --original /path/to/IDEA-Research/DINO
    python tools/benchmark_vs_original.py --original ../DINO --repeats 3 --train_size 800 1216

The original repository is imported from --original at run time (a clone of
github.com/IDEA-Research/DINO; nothing of it is part of this project). Its
deformable attention op is CUDA-only, so on the CPU the original runs its own
PyTorch path (`ms_deform_attn_core_pytorch`, grid_sample): that is "the
original's code path" here. Both models are DINO-R50-4scale built from their
own config files, with the same weights (ours copied into the original: the
state-dict layout is the original's) and the same random image; the script
checks that they give the same detections before timing.

Timed, interleaved run by run so that both see the same machine load (median
of --repeats after --warmup):
  * inference (eval, no_grad) at --image_size: the original in float32; ours in
    float32 and with bfloat16 autocast (util/precision.py: only on a CPU with
    AMX-BF16 / AVX512-BF16; the original has no CPU bfloat16 path);
  * a training step at --train_size (forward with denoising queries, loss,
    backward, gradient clipping, AdamW step: the original's torch.optim.AdamW,
    ours the fused one of main.py), float32 both, and ours with bfloat16 autocast as
    main.py --amp runs it where the CPU has bfloat16.
With --compile, ours also runs torch.compile'd (models/dino/compiling.py; BACKEND inductor by
default) for inference and for the training step, timed after compiling (the compile time is
printed on its own). After the timed runs, one more untimed run of each step records its peak
resident memory above what the process held before it (Linux: VmHWM of /proc/self/status, reset
through /proc/self/clear_refs), the process's freed memory handed back first (malloc_trim: with
--malloc reuse, the default as the CLIs run, util/cpu_memory.py, all freed memory stays in the
process, and without it some does), so the same work is compared in memory too.
Prints the times, the peak memory and the ratios original / ours.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
import types
from typing import Callable, Dict, Iterator, List

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
from util import cpu_memory  # noqa: E402

# top-level modules that both code bases define: swapped in sys.modules while the original runs
SHARED_NAMES = ("models", "util", "datasets", "engine", "main", "MultiScaleDeformableAttention")
CONFIG = "config/DINO/DINO_4scale.py"


def _shared(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in SHARED_NAMES)


def _is_cuda(device) -> bool:
    return (isinstance(device, str) and device.startswith("cuda")) or \
        (isinstance(device, torch.device) and device.type == "cuda")


class OriginalCode:
    """The original repository's modules, kept in their own sys.modules namespace that
    `active()` swaps in (so its `models`, `util`... never mix with ours)."""

    def __init__(self, root: str):
        if not os.path.isfile(os.path.join(root, "models", "dino", "dino.py")):
            raise FileNotFoundError(f"--original {root}: not a clone of IDEA-Research/DINO "
                                    f"(models/dino/dino.py missing)")
        self.root = os.path.abspath(root)
        self.modules: Dict[str, types.ModuleType] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The original's modules in sys.modules, and its hard-coded moves to CUDA (its cuda calls
        and moves to the GPU, in its denoising-query and loss code) kept on the CPU."""
        ours = {k: sys.modules.pop(k) for k in list(sys.modules) if _shared(k)}
        sys.modules.update(self.modules)
        sys.path.insert(0, self.root)
        tensor_cuda, tensor_to = torch.Tensor.cuda, torch.Tensor.to

        def stay_on_cpu(tensor, *args, **kwargs):
            args = tuple("cpu" if _is_cuda(a) else a for a in args)
            if _is_cuda(kwargs.get("device")):
                kwargs["device"] = "cpu"
            return tensor_to(tensor, *args, **kwargs)

        torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor
        torch.Tensor.to = stay_on_cpu
        try:
            yield
        finally:
            torch.Tensor.cuda, torch.Tensor.to = tensor_cuda, tensor_to
            sys.path.remove(self.root)
            self.modules = {k: sys.modules.pop(k) for k in list(sys.modules) if _shared(k)}
            sys.modules.update(ours)

    def build(self, state_dict: Dict[str, torch.Tensor]):
        """The original DINO-R50-4scale (model, criterion) with `state_dict` loaded, its
        deformable attention on the original's own PyTorch path."""
        from util.slconfig import SLConfig  # ours reads the original's config files (its own needs yapf)

        config = SLConfig.fromfile(os.path.join(self.root, CONFIG)).to_dict()
        with self.active():
            # the original's CUDA-only extension is not built: an empty stand-in satisfies its import
            sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")
            from models.dino import backbone as original_backbone
            from models.dino.ops.functions import ms_deform_attn_func
            from models.dino.ops.modules import ms_deform_attn
            from models.registry import MODULE_BUILD_FUNCS

            class PyTorchPath:  # what MSDeformAttn calls, routed to the original's PyTorch function
                @staticmethod
                def apply(value, shapes, level_start, locations, weights, im2col_step):
                    return ms_deform_attn_func.ms_deform_attn_core_pytorch(value, shapes, locations, weights)

            ms_deform_attn.MSDeformAttnFunction = PyTorchPath
            original_backbone.is_main_process = lambda: False  # no ImageNet download (weights come below)
            args = argparse.Namespace(**config)
            for key, value in dict(device="cpu", masks=False, frozen_weights=None, debug=False, eval=False,
                                   dataset_file="coco", amp=False, fix_size=False).items():
                setattr(args, key, value)
            model, criterion, _ = MODULE_BUILD_FUNCS.get(args.modelname)(args)
            model.load_state_dict(state_dict, strict=True)
        return model, criterion, args


def build_ours(seed: int):
    from util.args import get_args_parser
    from tools.benchmark_model import merge_config

    args = merge_config(argparse.ArgumentParser(parents=[get_args_parser()]).parse_args(
        ["-c", os.path.join(REPO, CONFIG), "--device", "cpu", "--options", "backbone_pretrained=False"]))
    from models import build_model as build_model_main

    torch.manual_seed(seed)
    model, criterion, _ = build_model_main(args)
    return model, criterion, args


def inference_step(model, images, context: Callable[[], contextlib.AbstractContextManager]):
    def step():
        model.eval()
        with torch.no_grad(), context():
            return model(images)
    return step


def train_step(model, criterion, optimizer, images, targets, max_norm: float,
               context: Callable = contextlib.nullcontext):
    """One training step; forward and loss run under `context()` (autocast for bfloat16, as main.py --amp)."""
    def step():
        model.train()
        criterion.train()
        with context():
            out = model(images, targets)
            losses = criterion(out, targets)
            loss = sum(losses[k] * criterion.weight_dict[k] for k in losses if k in criterion.weight_dict)
        optimizer.zero_grad()
        loss.backward()
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        return float(loss.detach())
    return step


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_rss_of(step: Callable) -> int:
    """Bytes of resident memory the step added at its peak, over what the process held before it
    (0 where /proc is not Linux's)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current resident size
        before = _status_kib("VmRSS")
    except OSError:
        step()
        return 0
    step()
    return max(0, _status_kib("VmHWM") - before) * 1024


def interleaved(steps: Dict[str, Callable], warmup: int, repeats: int, original: OriginalCode,
                log: Callable[[str], None]) -> Dict[str, Dict[str, float]]:
    """{step: {"seconds": median of the timed runs, "peak_mib": its memory run}}; names starting with
    'original' run with its modules active."""
    times: Dict[str, List[float]] = {k: [] for k in steps}
    peaks: Dict[str, int] = {}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            with original.active() if name.startswith("original") else contextlib.nullcontext():
                t0 = time.perf_counter()
                step()
                dt = time.perf_counter() - t0
            if i >= warmup:
                times[name].append(dt)
            log(f"  {'warm-up' if i < warmup else 'run'} {i + 1 - warmup if i >= warmup else i + 1}: "
                f"{name} {dt:.2f} s")
    # peak memory from one more untimed run of each step, the process's freed memory handed back first
    # (malloc_trim): freed blocks that malloc keeps (all of them with --malloc reuse, the smaller ones
    # without) would otherwise count as "before" and hide part of the next step's peak
    for name, step in steps.items():
        cpu_memory.hand_back()
        with original.active() if name.startswith("original") else contextlib.nullcontext():
            peaks[name] = peak_rss_of(step)
        log(f"  memory run: {name} peak +{peaks[name] / 2**20:.0f} MiB (freed memory handed back first)")
    return {k: {"seconds": statistics.median(times[k]), "peak_mib": peaks[k] / 2**20} for k in steps}


def matched_fraction(ours_out, original_out, top: int = 100, tol: float = 1e-3) -> float:
    """Fraction of the original's `top` highest-scoring queries (class probabilities and box)
    that have a one-to-one partner among all of ours within `tol`. Queries are compared as sets:
    near-tied scores may come out in another order from the two-stage query selection."""
    from scipy.optimize import linear_sum_assignment

    def rows(out):
        return torch.cat([out["pred_logits"].sigmoid()[0], out["pred_boxes"][0]], 1).float()

    ref, got = rows(original_out), rows(ours_out)
    ref = ref[ref[:, :-4].amax(1).topk(top).indices]  # partners are looked for among all of ours
    cost = torch.cdist(ref, got, p=float("inf"))
    r, c = linear_sum_assignment(cost.numpy())
    return float((cost[r, c] <= tol).float().mean())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", required=True, help="a clone of github.com/IDEA-Research/DINO")
    parser.add_argument("--image_size", nargs=2, type=int, default=[800, 1216], metavar=("H", "W"))
    parser.add_argument("--train_size", nargs=2, type=int, default=[512, 768], metavar=("H", "W"),
                        help="image size of the training step")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--skip_train", action="store_true", help="inference only")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="also time ours torch.compile'd (inductor by default)")
    parser.add_argument("--malloc", choices=["reuse", "system"], default="reuse",
                        help="reuse: freed memory stays in the process for the next step, as main.py and "
                             "tools/inference.py run (util/cpu_memory.py); system: malloc's own behaviour. "
                             "Process-wide: both models run under the same setting")
    return parser.parse_args(argv)


def compiled_copy(model, backend: str, log: Callable[[str], None], first_call: Callable[[torch.nn.Module], None]):
    """A deep copy of `model` compiled with `backend`; `first_call` runs once to compile it (timed)."""
    from models.dino.compiling import compile_model

    twin = copy.deepcopy(model)
    compile_model(twin, torch.device("cpu"), backend)
    t0 = time.perf_counter()
    first_call(twin)
    log(f"  compiled ({backend}) in {time.perf_counter() - t0:.0f} s")
    return twin


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.malloc == "reuse":  # (system: malloc left untouched)
        cpu_memory.reuse_freed_memory()
    from tools.benchmark_model import make_targets
    from util.get_param_dicts import build_optimizer, get_param_dict
    from models.dino.fused_linear import training_path
    from models.dino.inference_prep import prepare_for_inference
    from util.precision import autocast_dtype, cpu_bf16_support

    def log(msg):
        print(msg, flush=True)

    original = OriginalCode(args.original)
    ours, ours_criterion, ours_args = build_ours(args.seed)
    theirs, theirs_criterion, theirs_args = original.build(ours.state_dict())
    bf16 = autocast_dtype("cpu", True) is torch.bfloat16
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_bf16_support().describe()}; "
        f"memory: {cpu_memory.describe()} (--malloc {args.malloc}, both models); "
        f"our float32 training's linear layers: {training_path()[1]}")

    g = torch.Generator().manual_seed(args.seed)
    images = [torch.randn(3, *args.image_size, generator=g)]
    with torch.no_grad():
        ours.eval(), theirs.eval()
        ref = ours(images)
        with original.active():
            matched = matched_fraction(ref, theirs(images))
    log(f"same weights, same image: {matched:.0%} of the original's top-100 detections are ours within 1e-3")
    if matched < 0.95:
        log("the two models do not compute the same thing: timings would not be comparable")
        return 1
    # what main.py --eval / tools/inference.py do to an inference-only model (models/dino/inference_prep.py), on a
    # copy (the training step below needs the unfolded one); checked again against the original
    fast = copy.deepcopy(ours)
    changes = prepare_for_inference(fast, torch.device("cpu"), amp=True)
    with torch.no_grad():
        fast.eval()
        with original.active():
            matched = matched_fraction(fast(images), theirs(images))
    log(f"ours for inference: {', '.join(changes) or 'as built'}; "
        f"{'bfloat16 autocast available' if bf16 else 'no native bfloat16'}; "
        f"{matched:.0%} of the original's top-100 detections are its within 1e-3")

    bf16_context = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    steps = {"original fp32": inference_step(theirs, images, contextlib.nullcontext),
             "ours fp32": inference_step(fast, images, contextlib.nullcontext)}
    if bf16:
        steps["ours bf16"] = inference_step(fast, images, bf16_context)
    if args.compile:
        log(f"compiling ours for inference ({args.compile}) ...")
        fast_compiled = compiled_copy(fast, args.compile, log,
                                      lambda m: inference_step(m, images, contextlib.nullcontext)())
        steps["ours compiled fp32"] = inference_step(fast_compiled, images, contextlib.nullcontext)
        if bf16:
            inference_step(fast_compiled, images, bf16_context)()  # the bfloat16 graph compiles here
            steps["ours compiled bf16"] = inference_step(fast_compiled, images, bf16_context)
    log(f"inference at {args.image_size[0]}x{args.image_size[1]}, batch 1:")
    infer = interleaved(steps, args.warmup, args.repeats, original, log)

    train = {}
    if not args.skip_train:
        timgs = [torch.randn(3, *args.train_size, generator=g)]
        targets = make_targets(1, 10, ours_args.num_classes, "cpu", seed=args.seed)
        theirs_opt = torch.optim.AdamW(get_param_dict(theirs_args, theirs), lr=theirs_args.lr,
                                       weight_decay=theirs_args.weight_decay)
        steps = {"original train": train_step(theirs, theirs_criterion, theirs_opt, timgs, targets,
                                              theirs_args.clip_max_norm),
                 "ours train": train_step(ours, ours_criterion, build_optimizer(ours_args, ours), timgs, targets,
                                          ours_args.clip_max_norm)}
        if bf16:  # main.py --amp on this CPU: bfloat16 autocast for forward and loss, float32 weights and AdamW
            steps["ours train bf16"] = train_step(ours, ours_criterion, build_optimizer(ours_args, ours), timgs,
                                                  targets, ours_args.clip_max_norm, bf16_context)
        if args.compile:
            log(f"compiling ours for training ({args.compile}) ...")
            opt_holder = {}

            def first_train_step(m):
                opt_holder["opt"] = build_optimizer(ours_args, m)
                train_step(m, ours_criterion, opt_holder["opt"], timgs, targets, ours_args.clip_max_norm)()

            trained = compiled_copy(ours, args.compile, log, first_train_step)
            steps["ours compiled train"] = train_step(trained, ours_criterion, opt_holder["opt"], timgs, targets,
                                                      ours_args.clip_max_norm)
        log(f"training step at {args.train_size[0]}x{args.train_size[1]}, batch 1:")
        train = interleaved(steps, args.warmup, args.repeats, original, log)

    log("")
    log(f"{'':40} {'original':>10} {'ours':>10} {'original/ours':>14} {'peak MiB orig / ours':>22}")
    rows = [("inference fp32", infer["original fp32"], infer["ours fp32"])]
    if bf16:
        rows.append(("inference bf16 (original: fp32)", infer["original fp32"], infer["ours bf16"]))
    else:
        log("(no bfloat16 rows: this CPU has no AMX-BF16 / AVX512-BF16)")
    for key, label in (("ours compiled fp32", "inference compiled fp32"),
                       ("ours compiled bf16", "inference compiled bf16 (original: fp32)")):
        if key in infer:
            rows.append((label, infer["original fp32"], infer[key]))
    if train:
        rows.append(("training step fp32", train["original train"], train["ours train"]))
        if "ours train bf16" in train:
            rows.append(("training step bf16 (original: fp32)", train["original train"], train["ours train bf16"]))
        if "ours compiled train" in train:
            rows.append(("training step compiled fp32", train["original train"], train["ours compiled train"]))
    for name, orig, ours_ in rows:
        log(f"{name:40} {orig['seconds']:>9.2f}s {ours_['seconds']:>9.2f}s "
            f"{orig['seconds'] / ours_['seconds']:>13.2f}x {orig['peak_mib']:>10.0f} / {ours_['peak_mib']:<10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
