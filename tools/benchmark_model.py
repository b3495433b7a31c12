#!/usr/bin/env python
"""Benchmark the whole detector: images/s, peak memory, parameters and FLOPs.

    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --image_size 800 1333
    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --images 2 --train --iters 3
    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --options enc_layers=3 --device cpu

    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --device cpu --amp --image_size 800 1216
    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --device cuda --train --amp --amp_dtype bfloat16
    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --compare_pytorch_path --skip_flops
    python tools/benchmark_model.py -c config/DINO/DINO_demo.py --train --images 4 --image_size 128 160 \
        --compare_precision --skip_flops --iters 10

Inference mode (default) times model.eval() forward passes under torch.no_grad;
--train times a training step (forward with denoising queries, loss, backward,
gradient clipping and the fused AdamW step of main.py) on random boxes and
fails (exit 1) if the loss is not finite. --amp runs as main.py --amp does
(util/precision.py): float16 autocast on CUDA (with a GradScaler when training;
--amp_dtype bfloat16 for bfloat16), bfloat16 autocast on a CPU with AMX-BF16 /
AVX512-BF16, float32 on other CPUs (said so). Under bfloat16 on the CPU a
ResNet backbone runs in channels_last for inference as in main.py --eval
(--channels_last off to compare); training steps run contiguous, as main.py
trains (--compare_precision measures channels_last training too).
--compare_pytorch_path times the PyTorch path of the deformable attention too,
interleaved run by run with the compiled op, and prints the ratio.
--compare_precision times float32, float32 + channels_last backbone, bfloat16
autocast and bfloat16 + channels_last (the bfloat16 ones only on a CPU with
native bfloat16), each on its own copy of the model with the same weights,
interleaved run by run in this one process, and prints each one's ratio to
float32 (with --train: and each one's loss at the first step, which should
agree). Images are random CHW tensors of --image_size; the model
pads them into a batch as it does real images. Timings are the median of
--iters runs after --warmup runs.

FLOPs are counted with torch.utils.flop_counter.FlopCounterMode on one run
(2 FLOPs per multiply-add). FlopCounterMode does not see the deformable
sampling itself (the compiled op and grid_sample have no FLOP formula), so it
is estimated separately: 10 * head_dim FLOPs per (query, head, level, point)
(4 bilinear multiply-adds and 1 attention multiply-add per channel), forward
only. Peak memory: torch.cuda.max_memory_allocated on CUDA; on CPU the peak
resident set size of the process sampled during the timed runs (and its rise
above the level before them).
"""

import argparse
import math
import os
import statistics
import sys
import threading
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None):
    from util.args import get_args_parser

    parser = argparse.ArgumentParser("DINO model benchmark", parents=[get_args_parser()])
    parser.add_argument("--image_size", nargs=2, type=int, default=[800, 1333], metavar=("H", "W"))
    parser.add_argument("--images", type=int, default=1, help="images per batch")
    parser.add_argument("--iters", type=int, default=3, help="timed runs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--train", action="store_true", help="time training steps instead of inference")
    parser.add_argument("--boxes", type=int, default=10, help="objects per image for --train")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--skip_flops", action="store_true", help="do not count FLOPs")
    parser.add_argument("--amp_dtype", choices=["float16", "bfloat16"], default=None,
                        help="with --amp on CUDA: the autocast dtype (default float16)")
    parser.add_argument("--channels_last", choices=["auto", "off"], default="auto",
                        help="auto: channels_last for a ResNet backbone under bfloat16 on the CPU, as main.py --eval "
                             "(training runs contiguous, as main.py: channels_last did not pay there); off: never")
    parser.add_argument("--compare_precision", action="store_true",
                        help="time float32 / bfloat16 autocast, each contiguous and with a channels_last ResNet "
                             "backbone, interleaved in this process, and print the ratios to float32")
    parser.add_argument("--compare_pytorch_path", action="store_true",
                        help="also time the PyTorch path of the deformable attention (interleaved) and print the ratio")
    args = parser.parse_args(argv)
    if not args.config_file:  # (main.py can take a released model's config instead; a benchmark needs one)
        parser.error("the following arguments are required: -c/--config_file")
    return args


def merge_config(args):
    from util.args import fill_auto_class_counts
    from util.slconfig import SLConfig

    cfg = SLConfig.fromfile(args.config_file)
    if args.options:
        cfg.merge_from_dict(args.options)
    for key, value in cfg.to_dict().items():
        if key not in vars(args):
            setattr(args, key, value)
    if not getattr(args, "use_ema", None):
        args.use_ema = False
    if not getattr(args, "debug", None):
        args.debug = False
    fill_auto_class_counts(args)  # 'auto' (set from the data when training): the COCO model's 91
    return args


def make_targets(n_images, n_boxes, num_classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(n_images):
        centers = torch.rand(n_boxes, 2, generator=g) * 0.6 + 0.2
        sizes = torch.rand(n_boxes, 2, generator=g) * 0.2 + 0.05
        targets.append({"labels": torch.randint(0, num_classes, (n_boxes,), generator=g).to(device),
                        "boxes": torch.cat([centers, sizes], 1).to(device)})
    return targets


class PeakRSS:
    """Samples the resident set size of this process in a background thread (Linux)."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.peak = self.start = self.current()
        self._stop = threading.Event()
        self._thread = None

    def current(self):
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self.page
        except OSError:
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def msda_flops(model):
    """Forward hooks that add up the analytic FLOPs of deformable sampling."""
    from models.dino.ops.modules import MSDeformAttn

    total = [0]

    def hook(module, inputs, output):
        query = inputs[0]
        head_dim = module.d_model // module.n_heads
        total[0] += (query.shape[0] * query.shape[1] * module.n_heads * module.n_levels
                     * module.n_points * head_dim * 10)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, MSDeformAttn)]
    return total, handles


def autocast_for(args, device):
    """The autocast context of a run (see the module doc)."""
    from util.precision import autocast_context

    if args.amp and device.type == "cuda" and args.amp_dtype:
        return torch.autocast("cuda", dtype=getattr(torch, args.amp_dtype))
    return autocast_context(device, args.amp)


def precision_label(args, device) -> str:
    from util.precision import autocast_dtype

    dtype = (getattr(torch, args.amp_dtype) if args.amp and device.type == "cuda" and args.amp_dtype
             else autocast_dtype(device, args.amp))
    return f"{str(dtype).replace('torch.', '')} autocast" if dtype is not None else "float32"


class NonFiniteLoss(RuntimeError):
    pass


def make_step(args, model, criterion, images, targets, device):
    """One timed unit: inference (eval, no_grad) or a training step with the optimizer."""
    from engine import make_grad_scaler
    from util.get_param_dicts import build_optimizer

    optimizer = build_optimizer(args, model) if args.train else None
    use_fp16_scaler = args.amp and device.type == "cuda" and args.amp_dtype in (None, "float16")
    scaler = make_grad_scaler(device, use_fp16_scaler)
    losses_seen = []

    def step():
        if args.train:
            model.train()
            with autocast_for(args, device):
                out = model(images, targets)
                losses = criterion(out, targets)
            weights = criterion.weight_dict
            loss = sum(losses[k].float() * weights[k] for k in losses if k in weights)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLoss(f"the training loss is {value} at step {len(losses_seen) + 1}")
            losses_seen.append(value)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if args.clip_max_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_max_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            model.eval()
            with torch.no_grad(), autocast_for(args, device):
                model(images)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step, losses_seen


def count_flops(model, step):
    """(FlopCounterMode FLOPs, analytic deformable-sampling FLOPs) of one step."""
    from torch.utils.flop_counter import FlopCounterMode

    msda_total, handles = msda_flops(model)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    for h in handles:
        h.remove()
    return counter.get_total_flops(), msda_total[0]


def time_interleaved(steps, warmup, iters, seed=0):
    """Step times per named step, run by run in turn (the first one of each round rotates, so no
    step always follows the same one): {name: [seconds of each timed run]}. Every step of a
    round starts from the same random state (seed + round), so they draw the same denoising
    noise and their losses are comparable."""
    names = list(steps)
    times = {n: [] for n in names}
    for i in range(warmup + iters):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            torch.manual_seed(seed + i)
            t0 = time.perf_counter()
            steps[name]()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def precision_variants(args, model, device):
    """(name, args, model) of each --compare_precision variant: copies of `model` with the same
    weights, float32 and (on a CPU with native bfloat16, or CUDA) autocast, each contiguous and
    with a channels_last ResNet backbone where the model has one."""
    import copy

    from util.precision import autocast_dtype, channels_last

    amp_options = [False] + ([True] if autocast_dtype(device, True) is not None else [])
    backbone = getattr(model, "backbone", None)
    has_resnet = isinstance(backbone, torch.nn.Sequential) and type(backbone[0]).__name__ == "ResNetBody"
    variants = []
    for amp in amp_options:
        for layout in ["contiguous"] + (["channels_last"] if has_resnet else []):
            variant_args = copy.copy(args)
            variant_args.amp = amp
            variant_model = copy.deepcopy(model)
            if layout == "channels_last":
                channels_last(variant_model.backbone[0])
            variants.append((f"{precision_label(variant_args, device)}, {layout}", variant_args, variant_model))
    return variants


def compare_precision(args, model, criterion, images, targets, device):
    """--compare_precision: the variants of `precision_variants` timed interleaved; prints a table."""
    from util.precision import cpu_bf16_support

    variants = precision_variants(args, model, device)
    steps, losses = {}, {}
    for name, variant_args, variant_model in variants:
        steps[name], losses[name] = make_step(variant_args, variant_model, criterion, images, targets, device)
    times = time_interleaved(steps, args.warmup, args.iters, args.seed)
    H, W = args.image_size
    mode = "train step (forward + loss + backward + AdamW)" if args.train else "inference (eval, no_grad)"
    print(f"config        {args.config_file} {' '.join(f'{k}={v}' for k, v in (args.options or {}).items())}")
    print(f"device        {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    if device.type == "cpu":
        print(f"cpu bfloat16  {cpu_bf16_support().describe()}")
    print(f"mode          {mode}, {args.images} x 3 x {H} x {W}, interleaved, median of {args.iters}")
    base = statistics.median(times[variants[0][0]])
    for name, _, _ in variants:
        t = statistics.median(times[name])
        loss = f"  losses {losses[name][0]:.4f} (first), {losses[name][-1]:.4f} (last)" if args.train else ""
        print(f"  {name:<36} {t * 1e3:7.0f} ms  {base / t:5.2f}x{loss}")
    if len(variants) == 1 or (device.type == "cpu" and not cpu_bf16_support().supported):
        print("  (no bfloat16 variants: this CPU has no native bfloat16)")


def time_paths(step, paths, warmup, iters):
    """Median step time per deformable-attention path, the paths interleaved run by run."""
    from models.dino.ops._ext import ENV_VAR

    saved = os.environ.get(ENV_VAR)
    times = {p: [] for p in paths}
    try:
        for i in range(warmup + iters):
            for p in paths:
                os.environ[ENV_VAR] = p
                t0 = time.perf_counter()
                step()
                if i >= warmup:
                    times[p].append(time.perf_counter() - t0)
    finally:
        if saved is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = saved
    return times


def main(argv=None):
    args = merge_config(parse_args(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if device.type == "cpu":  # as main.py runs (DINO_MALLOC=system: malloc's own behaviour)
        from util.cpu_memory import describe, reuse_freed_memory
        reuse_freed_memory()
        print(f"CPU memory: {describe()}")

    from models import build_model as build_model_main
    from models.dino.ops import backend
    from models.dino.inference_prep import use_channels_last
    from util.precision import cpu_bf16_support

    model, criterion, _ = build_model_main(args)
    model.to(device)
    criterion.to(device) if hasattr(criterion, "to") else None
    layout = "contiguous"
    if not (args.compare_precision or args.train) and args.channels_last == "auto":
        if use_channels_last(model, device, args.amp):
            layout = "channels_last backbone"
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    H, W = args.image_size
    g = torch.Generator().manual_seed(args.seed)
    images = [torch.randn(3, H, W, generator=g).to(device) for _ in range(args.images)]
    targets = make_targets(args.images, args.boxes, args.num_classes, device)
    if args.compare_precision:
        compare_precision(args, model, criterion, images, targets, device)
        return
    step, losses = make_step(args, model, criterion, images, targets, device)

    flops = msda = None
    if not args.skip_flops:
        flops, msda = count_flops(model, step)
    paths = [backend(device)]
    if args.compare_pytorch_path and paths[0] != "pytorch":
        paths.append("pytorch")
    env_names = {"compiled-cpu": "compiled", "compiled-cuda": "compiled", "pytorch": "pytorch"}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as rss:
        times = time_paths(step, [env_names[p] for p in paths], args.warmup, args.iters)
    t = statistics.median(times[env_names[paths[0]]])

    mode = ("train step (forward + loss + backward + AdamW)" if args.train else "inference (eval, no_grad)")
    print(f"config        {args.config_file} {' '.join(f'{k}={v}' for k, v in (args.options or {}).items())}")
    print(f"device        {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    if device.type == "cpu":
        print(f"cpu bfloat16  {cpu_bf16_support().describe()}")
    print(f"precision     {precision_label(args, device)}, {layout}")
    print(f"deform. attn  {paths[0]}")
    print(f"mode          {mode}")
    print(f"input         {args.images} x 3 x {H} x {W}")
    print(f"parameters    {n_params / 1e6:.2f} M ({n_trainable / 1e6:.2f} M trainable)")
    if flops is not None:
        print(f"FLOPs         {flops / 1e9:.1f} GFLOPs per batch (FlopCounterMode) "
              f"+ {msda / 1e9:.2f} GFLOPs deformable sampling (analytic, forward)")
    own = times[env_names[paths[0]]]
    print(f"time          {t * 1e3:.0f} ms per batch (median of {args.iters}: "
          f"{', '.join(f'{x * 1e3:.0f}' for x in own)} ms)")
    print(f"throughput    {args.images / t:.2f} images/s")
    if args.train:
        print(f"loss          {', '.join(f'{x:.3f}' for x in losses[-args.iters:])} (last steps)")
    if len(paths) > 1:
        t_pt = statistics.median(times["pytorch"])
        print(f"pytorch path  {t_pt * 1e3:.0f} ms per batch: the {paths[0]} op is {t_pt / t:.2f}x faster end to end")
    if device.type == "cuda":
        print(f"peak memory   {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocated (CUDA)")
    else:
        print(f"peak memory   {rss.peak / 2**20:.0f} MiB RSS (+{(rss.peak - rss.start) / 2**20:.0f} MiB "
              f"during the timed runs)")


def cli(argv=None) -> int:
    try:
        main(argv)
    except NonFiniteLoss as exc:
        print(f"benchmark_model: {exc}: the model diverged under this precision", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
