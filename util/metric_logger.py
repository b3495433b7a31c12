"""Running averages of training/eval metrics and the per-iteration progress display.

`MetricLogger.log_every(iterable, print_freq, header)` yields the items of
`iterable` and shows progress while doing so:

* on a terminal (stdout is a tty) and with tqdm installed: one tqdm bar with
  the loss, the learning rate and tqdm's own it/s and ETA (DINO_PROGRESS=plain
  or =tqdm forces one or the other);
* otherwise (CI logs, Slurm output files, `tee`): one plain line every
  `print_freq` iterations (and for the first and the last one) with the
  iteration, ETA, it/s, the smoothed meters and, on CUDA, the peak memory.

Only the main process displays anything. `synchronize_between_processes()`
sums counts and totals over all processes so `global_avg` is the average over
every sample seen by any rank.
"""
from __future__ import annotations

import datetime
import math
import os
import sys
import time
from collections import defaultdict, deque
from typing import Any, Dict, Iterable, Iterator, Optional

import torch
import torch.distributed as dist

# Names of the 12 numbers of pycocotools' COCOeval.stats, in order (evaluation reports them, the
# log and TensorBoard name them).
COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)

from util.misc import is_dist_avail_and_initialized, is_main_process


def _as_float(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().item())
    return float(value)


class SmoothedValue:
    """A window of recent values plus the running total/count of all values."""

    def __init__(self, window_size: int = 20, fmt: Optional[str] = None):
        self.deque: deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt or "{median:.4f} ({global_avg:.4f})"

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(value)
        self.count += n
        self.total += value * n

    def synchronize_between_processes(self) -> None:
        """Sum count and total over processes (the window stays local)."""
        if not is_dist_avail_and_initialized():
            return
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([self.count, self.total], dtype=torch.float64, device=device)
        dist.barrier()
        dist.all_reduce(t)
        self.count = int(t[0].item())
        self.total = float(t[1].item())

    @property
    def median(self) -> float:
        if not self.deque:
            return float("nan")
        return float(torch.tensor(list(self.deque)).median().item())

    @property
    def avg(self) -> float:
        if not self.deque:
            return float("nan")
        return float(sum(self.deque) / len(self.deque))

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else float("nan")

    @property
    def max(self) -> float:
        return max(self.deque) if self.deque else float("nan")

    @property
    def value(self) -> float:
        return self.deque[-1] if self.deque else float("nan")

    def __str__(self) -> str:
        return self.fmt.format(median=self.median, avg=self.avg, global_avg=self.global_avg,
                               max=self.max, value=self.value)


def _use_tqdm(stream) -> bool:
    """tqdm on a terminal; plain lines otherwise. DINO_PROGRESS=plain|tqdm overrides."""
    choice = os.environ.get("DINO_PROGRESS", "").lower()
    if choice in ("plain", "lines", "0", "off"):
        return False
    if choice not in ("tqdm", "bar") and not (hasattr(stream, "isatty") and stream.isatty()):
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=int(seconds)))


class MetricLogger:
    """A named set of SmoothedValues with a progress display (see module doc)."""

    def __init__(self, delimiter: str = "  ", stream=None):
        self.meters: Dict[str, SmoothedValue] = defaultdict(SmoothedValue)
        self.delimiter = delimiter
        self.stream = stream
        # meters shown on each progress line (all of them are in str(self))
        self.progress_keys = ("loss", "class_error", "loss_ce", "loss_bbox", "loss_giou", "lr")

    def update(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            if value is None:
                continue
            self.meters[name].update(_as_float(value))

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def __getattr__(self, attr: str):
        meters = self.__dict__.get("meters", {})
        if attr in meters:
            return meters[attr]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{attr}'")

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def summary(self, keys: Iterable[str] = ("loss", "lr", "class_error")) -> str:
        """A short line with the main meters (the full set is in `str(self)`)."""
        parts = []
        for name in keys:
            if name in self.meters and self.meters[name].count:
                parts.append(f"{name}: {self.meters[name]}")
        return self.delimiter.join(parts)

    def synchronize_between_processes(self) -> None:
        for name in sorted(self.meters):  # same order on every rank
            self.meters[name].synchronize_between_processes()

    def global_averages(self) -> Dict[str, float]:
        return {name: meter.global_avg for name, meter in self.meters.items() if meter.count > 0}

    # --------------------------------------------------------------- progress
    def log_every(self, iterable: Iterable, print_freq: int = 10, header: str = "",
                  logger=None) -> Iterator:
        stream = self.stream or sys.stdout
        show = is_main_process()
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
        print_freq = max(1, int(print_freq))
        bar = None
        if show and _use_tqdm(stream):
            from tqdm import tqdm
            bar = tqdm(total=total, desc=header.rstrip(":"), file=stream, dynamic_ncols=True, leave=True)

        start = time.time()
        last = start
        iter_time = SmoothedValue(window_size=max(print_freq, 10), fmt="{avg:.3f}")
        data_time = SmoothedValue(window_size=max(print_freq, 10), fmt="{avg:.3f}")
        i = 0
        try:
            for obj in iterable:
                data_time.update(time.time() - last)
                yield obj
                now = time.time()
                iter_time.update(now - last)
                last = now
                if show:
                    if bar is not None:
                        post = {}
                        for name in ("loss", "lr"):
                            if name in self.meters and self.meters[name].count:
                                v = self.meters[name].value
                                post[name] = f"{v:.2e}" if name == "lr" else f"{v:.4f}"
                        bar.set_postfix(post, refresh=False)
                        bar.update(1)
                    elif i % print_freq == 0 or (total is not None and i == total - 1):
                        self._print_line(stream, header, i, total, iter_time, data_time, logger)
                i += 1
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.time() - start
        if show and i:
            line = f"{header} Total time: {_fmt_seconds(elapsed)} ({elapsed / i:.4f} s / it)"
            print(line, file=stream, flush=True)
            if logger is not None:
                logger.info(line)

    def _print_line(self, stream, header, i, total, iter_time, data_time, logger) -> None:
        sec_per_it = iter_time.avg
        its = 1.0 / sec_per_it if sec_per_it > 0 else float("inf")
        width = len(str(total)) if total else 1
        pos = f"[{i:>{width}}/{total}]" if total else f"[{i}]"
        parts = [f"{header} {pos}".strip()]
        if total:
            parts.append(f"eta: {_fmt_seconds(sec_per_it * (total - i - 1))}")
        parts.append(f"{its:.2f} it/s")
        parts.append(self.summary(self.progress_keys))
        parts.append(f"time: {iter_time.avg:.3f}")
        parts.append(f"data: {data_time.avg:.3f}")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"max mem: {torch.cuda.max_memory_allocated() / 2 ** 20:.0f}MB")
        line = self.delimiter.join(parts)
        print(line, file=stream, flush=True)
        if logger is not None:
            logger.info(line)


class BestMetricHolder:
    """The best value of a metric (larger is better) and its epoch, for the regular
    model and, with EMA, for the EMA model and for both together (as the original).

    `update(value, epoch, is_ema)` returns True when the value is a new best of
    the combined record ("all"), which is when the original writes a best
    checkpoint; unlike the original, the first result counts as a best even
    when it is 0 (so a best checkpoint always exists). `state_dict()` /
    `load_state_dict()` carry it across resumes.
    """

    def __init__(self, init_res: float = 0.0, use_ema: bool = False):
        self.use_ema = use_ema
        self.init_res = init_res
        self.records: Dict[str, Dict[str, float]] = {
            name: {"best_res": init_res, "best_ep": -1}
            for name in (("all", "regular", "ema") if use_ema else ("all",))
        }

    def _improve(self, name: str, value: float, epoch: int) -> bool:
        rec = self.records[name]
        if value > rec["best_res"] or rec["best_ep"] < 0:  # the first result is the best so far
            rec["best_res"], rec["best_ep"] = value, epoch
            return True
        return False

    def update(self, value: float, epoch: int, is_ema: bool = False) -> bool:
        if self.use_ema:
            self._improve("ema" if is_ema else "regular", value, epoch)
        return self._improve("all", value, epoch)

    def summary(self) -> Dict[str, float]:
        if not self.use_ema:
            return dict(self.records["all"])
        return {f"{name}_{k}": v for name, rec in self.records.items() for k, v in rec.items()}

    def state_dict(self) -> Dict:
        return {"use_ema": self.use_ema, "records": {k: dict(v) for k, v in self.records.items()}}

    def load_state_dict(self, state: Dict) -> None:
        for name, rec in (state or {}).get("records", {}).items():
            if name in self.records:
                self.records[name] = {"best_res": float(rec["best_res"]), "best_ep": int(rec["best_ep"])}

    def __repr__(self) -> str:
        return f"BestMetricHolder({self.summary()})"
