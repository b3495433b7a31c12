"""The hooks of a training run (util/trainer.py calls them): lr schedule, EMA, evaluation,
best-AP record, checkpoints, log.txt, TensorBoard and Weights & Biases.

`default_hooks(trainer, ...)` returns them in the order a run needs:

    LRSchedulerHook   StepLR/MultiStepLR step after each epoch (OneCycleLR steps per iteration
                      inside the training pass)
    EMAHook           EMA update after every optimizer step from epoch `ema_epoch` on
    EvalHook          COCO evaluation of the model ('test_*'), and of the EMA model ('ema_test_*')
    EpochSummaryHook  best-AP record, epoch, n_parameters, times
    CheckpointHook    checkpoint.pth (last), checkpoint{epoch:04}.pth, the best checkpoints
    JSONLogHook       the epoch's log.txt line (after the checkpoint; restores a line lost
                      between the two on a restart)
    TensorBoardHook   events in output_dir (when tensorboard is installed)
    WandbHook         a W&B run (with --wandb_project)
"""
from __future__ import annotations

import datetime
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from util.metric_logger import COCO_STAT_NAMES as STAT_NAMES
from util.trainer import HookBase

_LAYER_TERM = re.compile(r"_(\d+|interm)$")


# --------------------------------------------------------------------------- log.txt
def json_default(obj: Any) -> str:
    return str(obj)


def append_log_line(log_path: str, stats: Dict[str, Any]) -> None:
    """Append one JSON line to log.txt and fsync it."""
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(json.dumps(stats, default=json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def logged_epochs(log_path: str) -> Set[int]:
    """The epochs that have a line in log.txt."""
    epochs: Set[int] = set()
    if not os.path.exists(log_path):
        return epochs
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("epoch"), int):
                epochs.add(entry["epoch"])
    return epochs


# --------------------------------------------------------------------------- training
class LRSchedulerHook(HookBase):
    """Step the per-epoch lr schedule after each epoch's training pass."""

    def after_epoch(self) -> None:
        if not getattr(self.trainer.args, "onecyclelr", False):
            self.trainer.lr_scheduler.step()


class EMAHook(HookBase):
    """Move the EMA weights towards the model after every optimizer step (from `ema_epoch` on)."""

    def __init__(self, ema_epoch: int = 0):
        self.ema_epoch = int(ema_epoch or 0)

    def after_step(self) -> None:
        if self.trainer.epoch >= self.ema_epoch:
            self.trainer.ema_m.update(self.trainer.model)


class EvalHook(HookBase):
    """Evaluate after each epoch with `evaluate` (engine.evaluate's signature); adds `{prefix}_*`
    to the log line and updates the best-AP record."""

    def __init__(self, evaluate: Callable[..., Any], prefix: str = "test", use_ema: bool = False):
        self.evaluate = evaluate
        self.prefix = prefix
        self.use_ema = use_ema

    def after_epoch(self) -> None:
        t = self.trainer
        model = t.ema_m.module if self.use_ema else t.model_without_ddp
        extra = {"header": "Test (EMA):", "results_file": "results_ema.json"} if self.use_ema else {}
        stats, _ = self.evaluate(model, t.criterion, t.postprocessors, t.loaders["val"], t.base_ds, t.device,
                            t.output_dir, args=t.args, logger=t.logger if t.args.save_log else None, **extra)
        t.log_stats.update({f"{self.prefix}_{k}": v for k, v in stats.items()})
        t.is_best[self.prefix] = t.best_holder.update(stats["coco_eval_bbox"][0], t.epoch, is_ema=self.use_ema)


class EpochSummaryHook(HookBase):
    """The best-AP record and the epoch's bookkeeping entries of the log line."""

    def after_epoch(self) -> None:
        t = self.trainer
        t.log_stats.update(t.best_holder.summary())
        t.log_stats.update({"epoch": t.epoch, "n_parameters": t.n_parameters,
                            "now_time": str(datetime.datetime.now()),
                            "epoch_time": str(datetime.timedelta(seconds=int(time.time() - t.epoch_start_time)))})


class CheckpointHook(HookBase):
    """Write the epoch's checkpoints atomically (checkpoint.pth last: the file a restart resumes from).

    The RNG states of all processes are gathered on every process (a collective); the
    files are written by the main process.
    """

    def __init__(self, output_dir: str):
        self.out = Path(output_dir)

    def _state(self, rng_states: List[Any]) -> Dict[str, Any]:
        t = self.trainer
        state = {
            "model": t.model_without_ddp.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "lr_scheduler": t.lr_scheduler.state_dict(),
            "epoch": t.epoch,
            "args": t.args,
            "scaler": t.scaler.state_dict(),
            "best_metric": t.best_holder.state_dict(),
            "rng_state": rng_states,
            "world_size": t.args.world_size,
            "log_stats": t.log_stats,
        }
        if t.ema_m is not None:
            state["ema_model"] = t.ema_m.module.state_dict()
        return state

    def after_epoch(self) -> None:
        from util import misc as utils
        from util.checkpoint import get_rng_state, save_checkpoint_files

        t = self.trainer
        rng_states = utils.all_gather(get_rng_state())
        if not t.is_main:
            return
        state = self._state(rng_states)
        epoch, args = t.epoch, t.args
        if t.is_best.get("ema_test"):
            save_checkpoint_files({**state, "model": t.ema_m.module.state_dict()},
                                  [self.out / "checkpoint_best_ema.pth"])
        paths = []
        if (epoch + 1) % max(1, int(args.lr_drop)) == 0 or \
                (epoch + 1) % max(1, int(args.save_checkpoint_interval)) == 0:
            paths.append(self.out / f"checkpoint{epoch:04}.pth")
        if t.is_best.get("test"):
            paths.append(self.out / "checkpoint_best_regular.pth")
        paths.append(self.out / "checkpoint.pth")
        save_checkpoint_files(state, paths)


class JSONLogHook(HookBase):
    """Append each epoch's line to output_dir/log.txt (after its checkpoint is written).

    A run stopped between writing checkpoint.pth and its log line gets the line back from
    the checkpoint ('log_stats') when it is restarted from that file.
    """

    def __init__(self, output_dir: str, resumed_checkpoint: Optional[Dict[str, Any]] = None,
                 resumed_from_output_dir: bool = False):
        self.log_path = os.path.join(output_dir, "log.txt")
        self.resumed = resumed_checkpoint
        self.resumed_from_output_dir = resumed_from_output_dir

    def before_train(self) -> None:
        ckpt = self.resumed
        if (self.trainer.is_main and ckpt is not None and self.resumed_from_output_dir
                and isinstance(ckpt.get("log_stats"), dict)
                and ckpt.get("epoch") not in logged_epochs(self.log_path)):
            append_log_line(self.log_path, ckpt["log_stats"])
        self.resumed = None  # not needed any more; do not keep the weights alive

    def after_epoch(self) -> None:
        if self.trainer.is_main:
            append_log_line(self.log_path, self.trainer.log_stats)


# --------------------------------------------------------------------------- scalar loggers
def step_scalars(metrics: Dict[str, Any]) -> Dict[str, float]:
    """'train/<name>' of one iteration: the total loss, lr, class_error and the final layer's
    loss terms (the per-decoder-layer copies `_0`.. and `_interm` are left to log.txt)."""
    out = {}
    for name, value in metrics.items():
        if _LAYER_TERM.search(name):
            continue
        out[f"train/{name}"] = float(value.item() if hasattr(value, "item") else value)
    return out


def epoch_scalars(log_stats: Dict[str, Any]) -> Dict[str, float]:
    """Scalars of one epoch's log line: the 12 COCO numbers ('test/AP', 'ema_test/AP50', ...),
    per-class AP and AP50 ('test_per_class_AP/<class>'), and the epoch averages of the
    training loss terms ('train_epoch/loss', ...)."""
    out: Dict[str, float] = {}
    for prefix in ("test", "ema_test"):
        numbers = log_stats.get(f"{prefix}_coco_eval_bbox")
        if isinstance(numbers, list):
            out.update({f"{prefix}/{name}": float(v) for name, v in zip(STAT_NAMES, numbers)})
        per_class = log_stats.get(f"{prefix}_coco_eval_per_class")
        if isinstance(per_class, dict):
            for cls, values in per_class.items():
                for metric in ("AP", "AP50"):
                    if values.get(metric) is not None:
                        out[f"{prefix}_per_class_{metric}/{cls}"] = float(values[metric])
        loss = log_stats.get(f"{prefix}_loss")
        if isinstance(loss, (int, float)):
            out[f"{prefix}/loss"] = float(loss)
    for key, value in log_stats.items():
        if key.startswith("train_") and isinstance(value, (int, float)) and not _LAYER_TERM.search(key):
            out[f"train_epoch/{key[len('train_'):]}"] = float(value)
    return out


class ScalarWriterHook(HookBase):
    """Base of the scalar loggers: iteration scalars every `period` steps, epoch scalars after
    each epoch at the epoch's last step (one x-axis: optimizer steps; a run continued at epoch
    E drops what a killed run logged from E's first step on and keeps epoch E-1's AP)."""

    def __init__(self, period: int = 20):
        self.period = max(1, int(period))

    def write(self, scalars: Dict[str, float], step: int) -> None:
        raise NotImplementedError

    def after_step(self) -> None:
        t = self.trainer
        if t.iter % self.period == 0 or t.iter == t.iters_per_epoch - 1:
            self.write(step_scalars(t.step_metrics), t.global_step)

    def after_epoch(self) -> None:
        t = self.trainer
        self.write(epoch_scalars(t.log_stats), (t.epoch + 1) * t.iters_per_epoch - 1)


class TensorBoardHook(ScalarWriterHook):
    """TensorBoard event files in `log_dir` (events of an epoch that a killed run did not finish
    are dropped when the run continues: purge_step)."""

    def __init__(self, log_dir: str, period: int = 20):
        super().__init__(period)
        self.log_dir = log_dir
        self.writer = None

    def before_train(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        t = self.trainer
        purge = t.start_epoch * t.iters_per_epoch if t.start_epoch > 0 else None
        self.writer = SummaryWriter(self.log_dir, purge_step=purge)

    def write(self, scalars: Dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def after_epoch(self) -> None:
        super().after_epoch()
        self.writer.flush()

    def after_train(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandbHook(ScalarWriterHook):
    """A Weights & Biases run (project `--wandb_project`); a restarted run in the same output
    dir continues the same W&B run (its id is kept in output_dir/wandb_run_id.txt)."""

    def __init__(self, wandb_module, project: str, output_dir: str, config: Dict[str, Any], period: int = 20):
        super().__init__(period)
        self.wandb = wandb_module
        self.project = project
        self.output_dir = output_dir
        self.config = config
        self.run = None

    def _run_id(self) -> Optional[str]:
        if not self.output_dir:
            return None
        from util.checkpoint import atomic_write_text

        path = os.path.join(self.output_dir, "wandb_run_id.txt")
        if os.path.exists(path):
            return Path(path).read_text().strip() or None
        run_id = self.wandb.util.generate_id()
        atomic_write_text(path, run_id + "\n")
        return run_id

    def before_train(self) -> None:
        name = os.path.basename(os.path.normpath(self.output_dir)) if self.output_dir else None
        self.run = self.wandb.init(project=self.project, name=name, id=self._run_id(), resume="allow",
                                   dir=self.output_dir or None, config=self.config)

    def write(self, scalars: Dict[str, float], step: int) -> None:
        if scalars:
            self.run.log(scalars, step=step)

    def after_train(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def import_wandb():
    """The wandb module, or a ConfigError saying how to install it."""
    from util.slconfig import ConfigError

    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb_project: the wandb package is not installed; `pip install wandb` (and "
                          "`wandb login`), or leave --wandb_project out.") from None
    return wandb


def _jsonable(args) -> Dict[str, Any]:
    return json.loads(json.dumps(vars(args), default=json_default))


def default_hooks(trainer, evaluate: Callable[..., Any], resumed_checkpoint: Optional[Dict[str, Any]] = None,
                  resumed_from_output_dir: bool = False) -> List[HookBase]:
    """The hooks of a training run, in order (see module doc); `evaluate` is the evaluation
    function (engine.evaluate)."""
    args, out = trainer.args, trainer.output_dir
    period = int(getattr(args, "print_freq", None) or 10)
    hooks: List[HookBase] = [LRSchedulerHook()]
    if trainer.ema_m is not None:
        hooks.append(EMAHook(getattr(args, "ema_epoch", 0)))
    hooks.append(EvalHook(evaluate, "test"))
    if trainer.ema_m is not None:
        hooks.append(EvalHook(evaluate, "ema_test", use_ema=True))
    hooks.append(EpochSummaryHook())
    if out:
        hooks.append(CheckpointHook(out))
        hooks.append(JSONLogHook(out, resumed_checkpoint, resumed_from_output_dir))
    if trainer.is_main and out and tensorboard_available():
        hooks.append(TensorBoardHook(out, period))
    project = getattr(args, "wandb_project", None)
    if project and trainer.is_main:
        hooks.append(WandbHook(import_wandb(), project, out, _jsonable(args), period))
    return hooks
