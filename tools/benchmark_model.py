#!/usr/bin/env python
"""Benchmark the whole detector: images/s, peak memory, parameters and FLOPs.

    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --image_size 800 1333
    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --images 2 --train --iters 3
    python tools/benchmark_model.py -c config/DINO/DINO_4scale.py --options enc_layers=3 --device cpu

Inference mode (default) times model.eval() forward passes under torch.no_grad;
--train times a training step (forward with denoising queries, loss, backward)
on random boxes. Images are random CHW tensors of --image_size; the model
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
    from main import get_args_parser

    parser = argparse.ArgumentParser("DINO model benchmark", parents=[get_args_parser()])
    parser.add_argument("--image_size", nargs=2, type=int, default=[800, 1333], metavar=("H", "W"))
    parser.add_argument("--images", type=int, default=1, help="images per batch")
    parser.add_argument("--iters", type=int, default=3, help="timed runs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--train", action="store_true", help="time training steps instead of inference")
    parser.add_argument("--boxes", type=int, default=10, help="objects per image for --train")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--skip_flops", action="store_true", help="do not count FLOPs")
    return parser.parse_args(argv)


def merge_config(args):
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


def main(argv=None):
    args = merge_config(parse_args(argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    from main import build_model_main
    from models.dino.ops import backend

    model, criterion, _ = build_model_main(args)
    model.to(device)
    criterion.to(device) if hasattr(criterion, "to") else None
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    H, W = args.image_size
    g = torch.Generator().manual_seed(args.seed)
    images = [torch.randn(3, H, W, generator=g).to(device) for _ in range(args.images)]
    targets = make_targets(args.images, args.boxes, args.num_classes, device)

    def step():
        if args.train:
            model.train()
            out = model(images, targets)
            losses = criterion(out, targets)
            weights = criterion.weight_dict
            loss = sum(losses[k] * weights[k] for k in losses if k in weights)
            model.zero_grad(set_to_none=True)
            loss.backward()
        else:
            model.eval()
            with torch.no_grad():
                model(images)
        if device.type == "cuda":
            torch.cuda.synchronize()

    # FLOPs (one run, before timing)
    flops = msda = None
    if not args.skip_flops:
        from torch.utils.flop_counter import FlopCounterMode

        msda_total, handles = msda_flops(model)
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        for h in handles:
            h.remove()
        flops, msda = counter.get_total_flops(), msda_total[0]

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with PeakRSS() as rss:
        for _ in range(args.iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)

    mode = "train step (forward + loss + backward)" if args.train else "inference (eval, no_grad)"
    print(f"config        {args.config_file} {' '.join(f'{k}={v}' for k, v in (args.options or {}).items())}")
    print(f"device        {device} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"deform. attn  {backend(device)}")
    print(f"mode          {mode}")
    print(f"input         {args.images} x 3 x {H} x {W}")
    print(f"parameters    {n_params / 1e6:.2f} M ({n_trainable / 1e6:.2f} M trainable)")
    if flops is not None:
        print(f"FLOPs         {flops / 1e9:.1f} GFLOPs per batch (FlopCounterMode) "
              f"+ {msda / 1e9:.2f} GFLOPs deformable sampling (analytic, forward)")
    print(f"time          {t * 1e3:.0f} ms per batch (median of {args.iters}: "
          f"{', '.join(f'{x * 1e3:.0f}' for x in times)} ms)")
    print(f"throughput    {args.images / t:.2f} images/s")
    if device.type == "cuda":
        print(f"peak memory   {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB allocated (CUDA)")
    else:
        print(f"peak memory   {rss.peak / 2**20:.0f} MiB RSS (+{(rss.peak - rss.start) / 2**20:.0f} MiB "
              f"during the timed runs)")


if __name__ == "__main__":
    main()
