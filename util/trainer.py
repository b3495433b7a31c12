"""The epoch loop of a training run, with hooks (in the spirit of detectron2's TrainerBase).

`Trainer.train()` runs epochs `start_epoch .. max_epochs - 1`; everything
around the plain "train one epoch" (lr schedule, EMA, evaluation, best-AP
record, checkpoints, log.txt, TensorBoard, W&B) is a hook (util/hooks.py), so
a new logger or a new periodic task is one more hook, not another branch here.

Hooks are called in the order they were registered:

    before_train()                  once, before the first epoch
    before_epoch()                  each epoch, after the epoch's seeds are set
    after_step()                    after every optimizer step (trainer.iter,
                                    trainer.step_metrics)
    after_epoch()                   after the epoch's training pass; hooks add
                                    to trainer.log_stats (the log.txt line)
    after_train()                   once, also when training stops on an error

Every process runs every hook; hooks that write files do so on the main
process only (collectives, such as gathering the RNG states, run on all).
"""
from __future__ import annotations

import datetime
import logging
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from util.distributed import barrier


class HookBase:
    """A periodic task of a training run; override the stages it needs (see module doc)."""

    trainer: "Trainer"

    def before_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def after_train(self) -> None:
        pass


class Trainer:
    """Runs the epochs of a training run and calls its hooks (see module doc).

    `train_epoch(trainer) -> stats` does one pass over the training data and
    calls `trainer.run_after_step(iteration, metrics)` after each optimizer step.
    The set-up (model, optimizer, loaders, resume) is done by the caller and
    handed over as attributes; hooks read them from `self.trainer`.
    """

    def __init__(self, *, args, model: torch.nn.Module, model_without_ddp: torch.nn.Module, criterion,
                 postprocessors, optimizer: torch.optim.Optimizer, lr_scheduler, scaler, loaders: Dict[str, Any],
                 base_ds, device: torch.device, logger: logging.Logger, output_dir: str, best_holder,
                 n_parameters: int, start_epoch: int, max_epochs: int,
                 train_epoch: Callable[["Trainer"], Dict[str, float]], ema_m=None, is_main: bool = True):
        self.args = args
        self.model = model
        self.model_without_ddp = model_without_ddp
        self.criterion = criterion
        self.postprocessors = postprocessors
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.scaler = scaler
        self.loaders = loaders
        self.base_ds = base_ds
        self.device = device
        self.logger = logger
        self.output_dir = output_dir
        self.best_holder = best_holder
        self.n_parameters = n_parameters
        self.start_epoch = int(start_epoch)
        self.max_epochs = int(max_epochs)
        self.ema_m = ema_m
        self.is_main = is_main
        self._train_epoch = train_epoch
        self._hooks: List[HookBase] = []
        # state of the current epoch, read and written by the hooks
        self.epoch = self.start_epoch
        self.iter = 0
        self.iters_per_epoch = len(loaders["train"]) if "train" in loaders else 0
        self.step_metrics: Dict[str, Any] = {}
        self.train_stats: Dict[str, float] = {}
        self.log_stats: Dict[str, Any] = {}
        self.is_best: Dict[str, bool] = {}
        self.epoch_start_time = 0.0

    # ------------------------------------------------------------------ hooks
    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Add hooks (None entries are skipped); each gets a weak reference back to the trainer."""
        for hook in hooks:
            if hook is None:
                continue
            hook.trainer = weakref.proxy(self)
            self._hooks.append(hook)

    @property
    def hooks(self) -> List[HookBase]:
        return list(self._hooks)

    def _call(self, stage: str) -> None:
        for hook in self._hooks:
            getattr(hook, stage)()

    @property
    def global_step(self) -> int:
        """Optimizer steps since the start of training (epoch * iterations per epoch + iteration)."""
        return self.epoch * self.iters_per_epoch + self.iter

    def run_after_step(self, iteration: int, metrics: Dict[str, Any]) -> None:
        """Called by the training pass after each optimizer step."""
        self.iter = iteration
        self.step_metrics = metrics
        self._call("after_step")

    # ------------------------------------------------------------------ loop
    def train(self) -> Dict[str, Any]:
        """Train the remaining epochs; returns the last epoch's log.txt line ({} when nothing to do)."""
        self._call("before_train")
        try:
            if self.start_epoch >= self.max_epochs:
                self.logger.info("Nothing to train: the checkpoint is at epoch %d and epochs=%d",
                                 self.start_epoch - 1, self.max_epochs)
                return {}
            self.logger.info("Start training at epoch %d of %d", self.start_epoch, self.max_epochs)
            start_time = time.time()
            last_stats: Dict[str, Any] = {}
            for epoch in range(self.start_epoch, self.max_epochs):
                last_stats = self.run_epoch(epoch)
            total = time.time() - start_time
            self.logger.info("Training time %s", str(datetime.timedelta(seconds=int(total))))
            return last_stats
        finally:
            self._call("after_train")

    def run_epoch(self, epoch: int) -> Dict[str, Any]:
        """One epoch: before_epoch, the training pass, after_epoch; returns the epoch's log line."""
        self.epoch = epoch
        self.iter = 0
        self.epoch_start_time = time.time()
        self.log_stats = {}
        self.is_best = {}
        self._call("before_epoch")
        self.train_stats = self._train_epoch(self)
        self.log_stats.update({f"train_{k}": v for k, v in self.train_stats.items()})
        self._call("after_epoch")
        barrier()
        return self.log_stats
