"""One training epoch, COCO evaluation and detection export (used by main.py).

train_epoch
    one epoch of util/trainer.py's Trainer: seeds of (seed, epoch, rank), then
    train_one_epoch.

train_one_epoch
    forward (with targets, for the denoising queries), weighted loss, backward,
    gradient clipping at `max_norm`, optimizer step; mixed precision when
    `args.amp` (CUDA: float16 autocast + GradScaler; CPU: bfloat16 autocast where
    the CPU has native bfloat16, util/precision.py);
    EMA update from epoch `args.ema_epoch` on (when given `ema_m`; main.py's
    trainer does it in a hook through `on_step`); loss terms averaged over the
    processes for logging; progress display with loss, lr, it/s and ETA.
    A non-finite loss raises `NonFiniteLossError` naming the epoch, the
    iteration and the non-finite terms, before the optimizer step, so nothing
    is written and the last checkpoint stays the last good one.

evaluate
    losses and detections of the val images, COCO box AP over the images of
    every process (each image counted once), the 12 COCO numbers printed and
    returned under 'coco_eval_bbox', per-class AP / AP50 printed as a table and
    returned under 'coco_eval_per_class' (datasets/coco_per_class.py);
    `args.evaluator == 'faster'` evaluates with faster-coco-eval (same
    numbers); with --save_results the detections of all processes go to
    output_dir/results.json (COCO results format).

test
    detections of the val/test images as a COCO results json.

Test hook: DINO_FAULT_NAN_LOSS="EPOCH:ITER" turns the loss of that iteration
into NaN (to test the non-finite handling without a diverging run).
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any, Callable, Dict, Iterable, List, Optional

import torch

import util.misc as utils
from util.metric_logger import MetricLogger, SmoothedValue


_ADVICE = ("Common causes: a learning rate too high (lr / lr_backbone), broken boxes in the annotations, "
           "or float16 overflow with --amp.")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss (or model output); the message says where and which."""

    def __init__(self, epoch: int, iteration: int, loss_value: float = float("nan"),
                 terms: Optional[Dict[str, float]] = None, num_iterations: Optional[int] = None,
                 bad_outputs: Optional[List[str]] = None, phase: str = "training"):
        self.epoch = epoch
        self.iteration = iteration
        self.loss_value = loss_value
        self.terms = dict(terms or {})
        self.bad_outputs = list(bad_outputs or [])
        of = f"/{num_iterations}" if num_iterations else ""
        if phase == "evaluation":
            super().__init__(
                f"the model's outputs are not finite ({', '.join(self.bad_outputs[:8])}) at evaluation batch "
                f"{iteration}{of}: the weights hold NaN or inf values (a checkpoint of a run that diverged?).")
            return
        if self.bad_outputs:
            super().__init__(
                f"the model's outputs are not finite ({', '.join(self.bad_outputs[:8])}) at epoch {epoch}, "
                f"iteration {iteration}{of}; training stopped before the loss and the optimizer step. The last "
                f"checkpoint written is left as it was. " + _ADVICE)
            return
        bad = {k: v for k, v in self.terms.items() if not math.isfinite(v)}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(bad.items())[:20])
        more = f" (+{len(bad) - 20} more)" if len(bad) > 20 else ""
        super().__init__(
            f"loss is {loss_value} at epoch {epoch}, iteration {iteration}{of}; training stopped before the "
            f"optimizer step. Non-finite loss terms: {shown or 'none (the weighted sum overflowed)'}{more}. "
            f"The last checkpoint written is left as it was. " + _ADVICE)


def _tensors(obj, prefix: str = ""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}")


def non_finite_outputs(outputs) -> List[str]:
    """Names of the floating-point model outputs holding NaN or inf, agreed on by every process
    (so that all of them stop together instead of some waiting in a collective)."""
    named = [(n, t) for n, t in _tensors(outputs) if t.is_floating_point() and t.numel()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    any_bad = (~finite).any().float().reshape(1)
    if utils.is_dist_avail_and_initialized():
        torch.distributed.all_reduce(any_bad, op=torch.distributed.ReduceOp.MAX)
    if any_bad.item() == 0:
        return []
    local = [n for (n, _), ok in zip(named, finite.tolist()) if not ok]
    return local or ["on another process"]


def _nan_fault(epoch: int, iteration: int) -> bool:
    spec = os.environ.get("DINO_FAULT_NAN_LOSS", "")
    if not spec:
        return False
    try:
        e, i = (int(x) for x in spec.split(":"))
    except ValueError:
        return False
    return e == epoch and i == iteration


def autocast_context(device: torch.device, enabled: bool):
    """Mixed precision where the device supports it: float16 on CUDA, bfloat16 on a CPU with
    native bfloat16 (AMX / AVX512-BF16), float32 elsewhere; the choice is logged once
    (util/precision.py)."""
    from util.precision import autocast_context as precision_autocast
    return precision_autocast(device, enabled)


def make_grad_scaler(device: torch.device, enabled: bool):
    """GradScaler for float16 on CUDA; disabled (a no-op) elsewhere."""
    use = bool(enabled) and device.type == "cuda"
    try:
        return torch.amp.GradScaler("cuda", enabled=use)
    except (AttributeError, TypeError):  # older torch
        return torch.cuda.amp.GradScaler(enabled=use)


def _to_device(targets, device) -> List[Dict]:
    return [{k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
            for t in targets]


def _print_freq(args, default: int = 10) -> int:
    return int(getattr(args, "print_freq", None) or default)


def train_one_epoch(model: torch.nn.Module, criterion: torch.nn.Module, data_loader: Iterable,
                    optimizer: torch.optim.Optimizer, device: torch.device, epoch: int, max_norm: float = 0,
                    wo_class_error: bool = False, lr_scheduler=None, args=None, logger=None, ema_m=None,
                    scaler=None, on_step: Optional[Callable[[int, Dict[str, Any]], None]] = None
                    ) -> Dict[str, float]:
    """Train for one pass over `data_loader`; returns the averaged meters (see module doc).

    on_step(iteration, metrics) is called after every optimizer step (and the EMA update)
    with the iteration's 'loss' (float), 'lr' and loss terms (weighted, averaged over the
    processes; tensors, so nothing waits for the device unless a caller reads them): the
    trainer's hooks (util/trainer.py) log them and update the EMA there.
    """
    amp = bool(getattr(args, "amp", False))
    if scaler is None:
        scaler = make_grad_scaler(device, amp)
    need_targets = bool(getattr(args, "use_dn", False))
    onecycle = bool(getattr(args, "onecyclelr", False))
    use_ema = bool(getattr(args, "use_ema", False)) and ema_m is not None
    ema_epoch = int(getattr(args, "ema_epoch", 0) or 0)

    model.train()
    criterion.train()
    metric_logger = MetricLogger(delimiter="  ")
    metric_logger.add_meter("lr", SmoothedValue(window_size=1, fmt="{value:.2e}"))
    if not wo_class_error:
        metric_logger.add_meter("class_error", SmoothedValue(window_size=1, fmt="{value:.2f}"))
    try:
        num_iterations = len(data_loader)  # type: ignore[arg-type]
    except TypeError:
        num_iterations = None

    for it, (samples, targets) in enumerate(metric_logger.log_every(data_loader, _print_freq(args),
                                                                      f"Epoch: [{epoch}]", logger=logger)):
        samples = samples.to(device, non_blocking=True)
        targets = _to_device(targets, device)
        with autocast_context(device, amp):
            outputs = model(samples, targets) if need_targets else model(samples)
            bad_outputs = non_finite_outputs(outputs)
            if bad_outputs:  # the matcher cannot even run on these
                raise NonFiniteLossError(epoch, it, num_iterations=num_iterations, bad_outputs=bad_outputs)
            loss_dict = criterion(outputs, targets)
        losses, reduced, reduced_scaled = _weighted_losses(loss_dict, criterion.weight_dict, epoch, it)
        loss_value = float(sum(reduced_scaled.values()).item())
        if not math.isfinite(loss_value):
            terms = {k: float(v.item()) for k, v in reduced.items()}
            raise NonFiniteLossError(epoch, it, loss_value, terms, num_iterations)

        _backward_and_step(losses, model, optimizer, scaler, max_norm)
        if onecycle and lr_scheduler is not None:
            lr_scheduler.step()
        if use_ema and epoch >= ema_epoch:
            ema_m.update(model)
        _record_step(metric_logger, on_step, it, loss_value, reduced, reduced_scaled, optimizer)

        if getattr(args, "debug", False) and (it + 1) % 15 == 0:
            print("debug: stopping the epoch after 15 iterations")
            break

    metric_logger.synchronize_between_processes()
    print(f"Averaged stats (epoch {epoch}): {metric_logger.summary(metric_logger.progress_keys)}")
    return metric_logger.global_averages()


def _weighted_losses(loss_dict: Dict[str, torch.Tensor], weight_dict: Dict[str, float], epoch: int, it: int):
    """(the weighted loss to backpropagate, the terms averaged over the processes, the same weighted);
    the averages serve logging and the finite check, so every rank decides alike."""
    if _nan_fault(epoch, it):
        loss_dict = dict(loss_dict)
        loss_dict["loss_bbox"] = loss_dict["loss_bbox"] * float("nan")
    losses = sum(loss_dict[k].float() * weight_dict[k] for k in loss_dict if k in weight_dict)
    reduced = utils.reduce_dict({k: v.detach().float() for k, v in loss_dict.items()})
    reduced_scaled = {k: v * weight_dict[k] for k, v in reduced.items() if k in weight_dict}
    return losses, reduced, reduced_scaled


def _backward_and_step(losses: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler,
                       max_norm: float) -> None:
    """Backward, gradient clipping at `max_norm` (> 0), optimizer step; through the AMP scaler when on."""
    optimizer.zero_grad(set_to_none=True)
    if scaler.is_enabled():
        scaler.scale(losses).backward()
        if max_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        scaler.step(optimizer)
        scaler.update()
        return
    losses.backward()
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()


def _record_step(metric_logger: MetricLogger, on_step, it: int, loss_value: float, reduced: Dict[str, Any],
                 reduced_scaled: Dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """The step's numbers to the progress display and to `on_step` (the trainer's hooks)."""
    reduced_unscaled = {f"{k}_unscaled": v for k, v in reduced.items()}
    lr = optimizer.param_groups[0]["lr"]
    metric_logger.update(loss=loss_value, **reduced_scaled, **reduced_unscaled)
    if "class_error" in reduced:
        metric_logger.update(class_error=reduced["class_error"])
    metric_logger.update(lr=lr)
    if on_step is not None:
        metrics: Dict[str, Any] = {"loss": loss_value, "lr": lr, **reduced_scaled}
        if "class_error" in reduced:
            metrics["class_error"] = reduced["class_error"]
        on_step(it, metrics)


def train_epoch(trainer) -> Dict[str, float]:
    """One epoch of a Trainer (its `train_epoch`): the epoch's randomness drawn from (seed, epoch,
    rank) only, then train_one_epoch, whose steps go to the trainer's after_step hooks (EMA,
    TensorBoard, ...)."""
    from util.seeding import epoch_seed, seed_everything

    args, epoch = trainer.args, trainer.epoch
    seed_everything(epoch_seed(args.seed, epoch, utils.get_rank()))
    trainer.loaders["sampler_train"].set_epoch(epoch)
    return train_one_epoch(trainer.model, trainer.criterion, trainer.loaders["train"], trainer.optimizer,
                           trainer.device, epoch, args.clip_max_norm, lr_scheduler=trainer.lr_scheduler, args=args,
                           logger=trainer.logger if args.save_log else None, scaler=trainer.scaler,
                           on_step=trainer.run_after_step)


def _real_flags(data_loader, batch_index: int, batch_len: int) -> List[bool]:
    """Which samples of a batch are real (not padding added to even out the processes)."""
    sampler = getattr(data_loader, "sampler", None)
    num_real = getattr(sampler, "num_real", None)
    batch_size = getattr(data_loader, "batch_size", None) or batch_len
    if num_real is None:
        return [True] * batch_len
    start = batch_index * batch_size
    return [start + j < num_real for j in range(batch_len)]


def _per_class_table(coco_evaluator, header: str, logger=None) -> Dict[str, Dict[str, Optional[float]]]:
    """Per-class AP and AP50 of the bbox evaluation, printed as a table by the main process."""
    from datasets.coco_per_class import format_per_class_table, per_class_ap

    names = {int(cid): str(c.get("name", cid)) for cid, c in coco_evaluator.coco_gt.cats.items()}
    per_class = per_class_ap(coco_evaluator.coco_eval["bbox"], names)
    if per_class and utils.is_main_process():
        text = f"{header} per-class AP / AP50 (%):\n" + format_per_class_table(per_class)
        print(text)
        if logger is not None:
            logger.info(text)
    return per_class


@torch.no_grad()
def evaluate(model, criterion, postprocessors, data_loader, base_ds, device, output_dir,
             wo_class_error: bool = False, args=None, logger=None, header: str = "Test:",
             results_file: str = "results.json"):
    """Losses and COCO box AP on `data_loader` (see module doc). Returns (stats, coco_evaluator)."""
    from datasets.coco_eval import CocoEvaluator

    amp = bool(getattr(args, "amp", False))
    need_targets = bool(getattr(args, "use_dn", False))
    save_results = bool(getattr(args, "save_results", False))
    model.eval()
    criterion.eval()

    metric_logger = MetricLogger(delimiter="  ")
    if not wo_class_error:
        metric_logger.add_meter("class_error", SmoothedValue(window_size=1, fmt="{value:.2f}"))
    iou_types = tuple(k for k in ("bbox",) if k in postprocessors)
    evaluator_class = CocoEvaluator
    if getattr(args, "evaluator", None) == "faster":  # faster-coco-eval: the same numbers, in C++
        from datasets.coco_eval_faster import FasterCocoEvaluator as evaluator_class
    coco_evaluator = evaluator_class(base_ds, iou_types, useCats=bool(getattr(args, "useCats", True)),
                                     keep_results=save_results)
    weight_dict = criterion.weight_dict

    for bi, (samples, targets) in enumerate(metric_logger.log_every(data_loader, _print_freq(args), header,
                                                                      logger=logger)):
        samples = samples.to(device, non_blocking=True)
        targets = _to_device(targets, device)
        real = _real_flags(data_loader, bi, len(targets))
        with autocast_context(device, amp):
            outputs = model(samples, targets) if need_targets else model(samples)
            bad_outputs = non_finite_outputs(outputs)
            if bad_outputs:
                raise NonFiniteLossError(-1, bi, num_iterations=len(data_loader), bad_outputs=bad_outputs,
                                         phase="evaluation")
            loss_dict = criterion(outputs, targets)
        if all(real):
            scaled = {k: v.float() * weight_dict[k] for k, v in loss_dict.items() if k in weight_dict}
            unscaled = {f"{k}_unscaled": v.float() for k, v in loss_dict.items()}
            metric_logger.update(loss=sum(scaled.values()), **scaled, **unscaled)
            if "class_error" in loss_dict:
                metric_logger.update(class_error=loss_dict["class_error"])

        orig_sizes = torch.stack([t["orig_size"] for t in targets], dim=0)
        outputs = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}
        results = postprocessors["bbox"](outputs, orig_sizes)
        res = {int(t["image_id"].item()): {k: v.cpu() for k, v in r.items()}
               for t, r, keep in zip(targets, results, real) if keep}
        coco_evaluator.update(res)

        if getattr(args, "debug", False) and (bi + 1) % 15 == 0:
            print("debug: stopping the evaluation after 15 iterations")
            break

    metric_logger.synchronize_between_processes()
    coco_evaluator.synchronize_between_processes()
    coco_evaluator.accumulate()
    if utils.is_main_process():
        coco_evaluator.summarize()
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_evaluator.summarize()

    stats = metric_logger.global_averages()
    if "bbox" in iou_types:
        stats["coco_eval_bbox"] = [float(v) for v in coco_evaluator.coco_eval["bbox"].stats.tolist()[:12]]
        stats["coco_eval_per_class"] = _per_class_table(coco_evaluator, header, logger)
    if save_results and output_dir and utils.is_main_process():
        path = os.path.join(output_dir, results_file)
        coco_evaluator.save_results(path)
        print(f"Saved {len(coco_evaluator.coco_results())} detections to {path}")
    return stats, coco_evaluator


@torch.no_grad()
def test(model, criterion, postprocessors, data_loader, base_ds, device, output_dir,
         wo_class_error: bool = False, args=None, logger=None) -> List[Dict]:
    """Detections of every image of `data_loader` as a COCO results list; written to
    `output_dir/results.json` by the main process (boxes [x, y, w, h] in pixels)."""
    from datasets.coco_eval import save_coco_results, to_coco_results

    amp = bool(getattr(args, "amp", False))
    model.eval()
    metric_logger = MetricLogger(delimiter="  ")
    predictions: Dict[int, Dict[str, torch.Tensor]] = {}
    for bi, (samples, targets) in enumerate(metric_logger.log_every(data_loader, _print_freq(args), "Test:",
                                                                      logger=logger)):
        samples = samples.to(device, non_blocking=True)
        real = _real_flags(data_loader, bi, len(targets))
        with autocast_context(device, amp):
            outputs = model(samples)
        outputs = {k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in outputs.items()}
        orig_sizes = torch.stack([t["orig_size"] for t in targets], dim=0).to(device)
        results = postprocessors["bbox"](outputs, orig_sizes)
        for t, r, keep in zip(targets, results, real):
            if keep:
                predictions[int(t["image_id"].item())] = {k: v.cpu() for k, v in r.items()}

    merged: Dict[int, Dict[str, torch.Tensor]] = {}
    for part in utils.all_gather(predictions):
        for image_id, pred in part.items():
            merged.setdefault(image_id, pred)
    final = to_coco_results({i: merged[i] for i in sorted(merged)})
    if output_dir and utils.is_main_process():
        path = os.path.join(output_dir, "results.json")
        save_coco_results(final, path)
        print(f"Saved {len(final)} detections of {len(merged)} images to {path}")
    return final
