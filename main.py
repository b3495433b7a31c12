"""Train and evaluate DINO: `python main.py -c CONFIG --data DIR [--options k=v ...]`.

--data reads a dataset as exported (COCO json, YOLO, Pascal VOC, LabelMe; datasets/formats);
--coco_path the COCO 2017 layout, as the original. The run, top to bottom (`_main`): settings
(util/args.py: the command line, the config file and --options; the data found and read,
class counts 'auto' set from it: datasets/run_data.py), the output folder and log, the model
(models/registry.py), optimizer and data (datasets/loaders.py), the weights
(--resume, automatic resumption from output_dir/checkpoint.pth,
--pretrain_model_path, or the backbone's ImageNet weights), then --test,
--eval, or training: util/trainer.py's Trainer with the hooks of
util/hooks.py, one engine.train_epoch per epoch.

Training writes to --output_dir: config_cfg.py, config_args_raw.json,
config_args_all.json, info.txt (the log), log.txt (one JSON line per epoch),
checkpoint.pth (every epoch), checkpoint{epoch:04}.pth (at lr_drop and every
save_checkpoint_interval epochs), checkpoint_best_regular.pth (and
checkpoint_best_ema.pth with use_ema), TensorBoard events (with tensorboard
installed). Rerunning the same command continues from output_dir/checkpoint.pth;
an explicit --resume FILE always wins.

Exit status: 0 done, 2 a problem with the config, the data, a checkpoint or an
output (one line on stderr says what), 3 a non-finite loss stopped training,
1 an unexpected error (one line; the traceback in info.txt, or with --debug).
See docs/TRAINING.md.
"""
import argparse
import datetime
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from util.args import apply_config, get_args_parser, load_config, resolve_output_dir  # noqa: F401 (public names)


def build_model_main(args):
    """(model, criterion, postprocessors) for `args.modelname` (the original's name for this)."""
    from models import build_model
    return build_model(args)


def main(args):
    """Train, evaluate (--eval) or export detections (--test); see the module doc."""
    from util.distributed import cleanup_distributed, init_distributed_mode

    init_distributed_mode(args)
    try:
        return _main(args)
    finally:
        import logging

        from util.logger import remove_handlers
        remove_handlers(logging.getLogger("dino"), logging.getLogger("datasets"))
        cleanup_distributed()


def _main(args):
    from util import misc as utils
    from util.seeding import seed_everything

    cfg, ignored_options, raw_args, data = settle_settings(args)
    logger = setup_run_output(args, cfg, ignored_options, raw_args)
    device = run_device(args)
    if device.type == "cpu":
        from models.dino.fused_linear import training_path
        from util.cpu_memory import describe
        logger.info("CPU memory: %s", describe())
        if not (args.eval or args.test):
            logger.info("float32 training's linear layers: %s", training_path()[1])
    seed_everything(args.seed + utils.get_rank())
    run = build_run(args, device, logger, data)
    checkpoint, resume_path = load_run_weights(args, run, logger)
    if not run.training:  # inference only from here: folded batch norm, channels_last
        from models.dino.inference_prep import prepare_for_inference
        done = prepare_for_inference(run.model_without_ddp, device, args.amp)
        if done:
            logger.info("inference model: %s", ", ".join(done))
    if args.test:
        return test_only(args, run, logger)
    if args.eval:
        return evaluate_only(args, run, logger, checkpoint, resume_path)
    return train(args, run, logger, checkpoint, resume_path)


# --------------------------------------------------------------------------- #
# settings and output
# --------------------------------------------------------------------------- #
def settle_settings(args):
    """The config merged onto args, the data found and read (num_classes / dn_labelbook_size set
    where 'auto'), the flags checked; returns (cfg, the legacy --options that were ignored, args as
    given on the command line, the run's data: datasets/run_data.RunData)."""
    from datasets.run_data import prepare_run_data

    args.output_dir = resolve_output_dir(args.output_dir)
    raw_args = dict(vars(args))
    cfg, ignored_options = load_config(args)
    apply_config(cfg, args)
    check_run_flags(args)
    if args.output_dir and not os.path.isdir(args.output_dir):  # outputs before inputs (setup_run_output
        from util.atomic import prepare_output_dir            # checks an existing folder, its leftovers logged)
        prepare_output_dir(args.output_dir)
    data = prepare_run_data(args, training=not (args.eval or args.test))
    for key in ("num_classes", "dn_labelbook_size"):  # config_cfg.py states the numbers the run uses
        cfg[key] = getattr(args, key)
    return cfg, ignored_options, raw_args, data


def check_run_flags(args) -> None:
    """Flags that need another flag or an optional package: stop before anything is built."""
    from util.slconfig import ConfigError

    if args.data and args.coco_path:
        raise ConfigError("--data and --coco_path both given; pass one (--data reads COCO 2017 layouts too).")
    if args.finetune_class_map and not args.pretrain_model_path:
        raise ConfigError("--finetune_class_map needs --pretrain_model_path (the checkpoint whose classes it maps).")
    if args.evaluator == "faster":
        from datasets.coco_eval_faster import faster_coco_eval_available
        if not faster_coco_eval_available():
            raise ConfigError("--evaluator faster: the faster-coco-eval package is not installed; "
                              "`pip install faster-coco-eval`, or leave --evaluator out (pycocotools).")
    if args.wandb_project:
        from util.hooks import import_wandb
        import_wandb()  # fails here, with one line, when wandb is missing


def _json_default(obj):
    return str(obj)


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=_json_default)


def setup_run_output(args, cfg, ignored_options, raw_args):
    """The run's logger (stdout + output_dir/info.txt) and, on the main process, the config
    files of output_dir; leftovers of an interrupted save are removed. Returns the logger."""
    from util import misc as utils
    from util.atomic import prepare_output_dir, remove_stale_tmp_files
    from util.logger import route_library_logs, setup_logger

    output_dir = args.output_dir
    rank = utils.get_rank()
    is_main = utils.is_main_process()
    removed = remove_stale_tmp_files(output_dir) if output_dir and is_main else []
    if output_dir:
        prepare_output_dir(output_dir)  # a folder this run can write in (OutputError naming it otherwise)
    logger = setup_logger(output=os.path.join(output_dir, "info.txt") if output_dir else None,
                          distributed_rank=rank, name="dino")
    route_library_logs(logger)
    logger.info("Command: %s", getattr(args, "command_txt", None) or " ".join(sys.argv))
    if ignored_options:
        logger.info("--options %s: accepted for compatibility with the original scripts and ignored "
                    "(no code reads them)", ", ".join(ignored_options))
    if output_dir and is_main:
        cfg.dump(os.path.join(output_dir, "config_cfg.py"))
        _write_json(os.path.join(output_dir, "config_args_raw.json"), raw_args)
        _write_json(os.path.join(output_dir, "config_args_all.json"), vars(args))
        if removed:
            logger.info("removed %d temporary files of an interrupted save: %s", len(removed), ", ".join(removed))
    logger.info("world size %d, rank %d, local rank %s", args.world_size, args.rank, args.local_rank)
    logger.debug("args: %s", json.dumps(vars(args), default=_json_default, sort_keys=True))
    return logger


def run_device(args) -> torch.device:
    from util.slconfig import ConfigError

    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA device is available here; use --device cpu.")
    return torch.device(args.device)


# --------------------------------------------------------------------------- #
# what a run is made of
# --------------------------------------------------------------------------- #
@dataclass
class Run:
    """The parts of a run: the model (and its DDP wrapper), criterion and post-processors,
    optimizer, lr schedule, AMP scaler, EMA, data and COCO ground truth."""
    model: torch.nn.Module
    model_without_ddp: torch.nn.Module
    criterion: torch.nn.Module
    postprocessors: Dict[str, Any]
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    scaler: Any
    loaders: Dict[str, Any]
    base_ds: Any
    ema_m: Any
    best_holder: Any
    device: torch.device
    training: bool
    n_parameters: int


def build_run(args, device: torch.device, logger, data) -> Run:
    """Model (wrapped in DDP for multi-process training), EMA, optimizer, AMP scaler, loaders of
    `data` (settle_settings), lr schedule and the val set's COCO ground truth."""
    from datasets import get_coco_api_from_dataset
    from datasets.coco import category_ids_of
    from datasets.loaders import build_loaders
    from datasets.run_data import record_run_data
    from engine import make_grad_scaler
    from util.ema import ModelEma
    from util.get_param_dicts import build_optimizer, describe_param_groups
    from util.lr_scheduler import build_lr_scheduler
    from util import misc as utils
    from util.metric_logger import BestMetricHolder

    record_run_data(data, args.output_dir, logger.info, utils.is_main_process())
    model, criterion, postprocessors = build_model_main(args)
    model.to(device)
    if args.compile:  # in place: the state dict and checkpoints are the same as without it
        from models.dino.compiling import compile_model
        compile_model(model, device, args.compile)
    model_without_ddp = model
    training = not (args.eval or args.test)
    ema_m = ModelEma(model_without_ddp, args.ema_decay) if args.use_ema and training else None
    if args.distributed and training:  # evaluation runs on the plain model (no gradient buckets)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[args.gpu] if device.type == "cuda" else None,
            find_unused_parameters=args.find_unused_params)
        model_without_ddp = model.module
    n_parameters = sum(p.numel() for p in model_without_ddp.parameters() if p.requires_grad)
    logger.info("number of trainable parameters: %d", n_parameters)
    optimizer = build_optimizer(args, model_without_ddp)
    logger.info("optimizer param groups:\n%s", describe_param_groups(optimizer))

    loaders = build_loaders(args, train=training, image_set_val="test" if args.test else "val", data=data)
    # contiguous class ids (detrex): labels 0..K-1 stand for these ids (kept in checkpoints), and
    # detections carry the json's ids
    args.label_to_category_id = category_ids_of(loaders["dataset_val"])
    postprocessors["bbox"].set_category_ids(args.label_to_category_id)
    lr_scheduler = build_lr_scheduler(args, optimizer, len(loaders["train"]) if training else 1)
    base_ds = None if args.test else get_coco_api_from_dataset(loaders["dataset_val"])
    return Run(model, model_without_ddp, criterion, postprocessors, optimizer, lr_scheduler,
               make_grad_scaler(device, args.amp), loaders, base_ds, ema_m, BestMetricHolder(use_ema=args.use_ema),
               device, training, n_parameters)


# --------------------------------------------------------------------------- #
# weights
# --------------------------------------------------------------------------- #
def load_run_weights(args, run: Run, logger):
    """The weights the run starts from: --resume, else output_dir/checkpoint.pth (automatic
    resumption), else --pretrain_model_path, else (training) the backbone's ImageNet weights.
    Returns (the checkpoint resumed from or None, its path or "")."""
    from util.ema import ModelEma

    auto_ckpt = os.path.join(args.output_dir, "checkpoint.pth") if args.output_dir else ""
    resume_path, how = args.resume, "--resume"
    if not resume_path and auto_ckpt and os.path.exists(auto_ckpt):
        resume_path, how = auto_ckpt, "auto-resume"
    checkpoint = None
    if resume_path:
        checkpoint, run.ema_m = resume_from(resume_path, how, args, run.model_without_ddp, run.ema_m, run.optimizer,
                                            run.lr_scheduler, run.scaler, run.best_holder, run.training, logger)
    elif args.pretrain_model_path:
        run.ema_m = load_pretrained(args, run.model_without_ddp, run.ema_m, run.training, logger)
    elif not run.training:
        logger.warning("no --resume, no %s and no --pretrain_model_path: evaluating an untrained model",
                       auto_ckpt or "checkpoint")
    elif load_backbone_weights(run.model_without_ddp, args) and run.ema_m is not None:
        run.ema_m = ModelEma(run.model_without_ddp, args.ema_decay)  # the average starts from the backbone
    return checkpoint, resume_path


def shown_path(source: str) -> str:
    """How a run names the checkpoint it read: a file's absolute path; a model name or URL as given."""
    return os.path.abspath(source) if os.path.exists(source) else source


def resume_from(resume_path: str, how: str, args, model_without_ddp, ema_m, optimizer, lr_scheduler, scaler,
                best_holder, training: bool, logger):
    """Load a checkpoint to continue from (`how`: '--resume' or 'auto-resume'): the weights, the EMA
    weights and, for training, the optimizer, lr schedule, AMP scaler, best-AP record, random states
    and args.start_epoch. Returns (checkpoint, ema_m)."""
    from util import misc as utils
    from models.dino.checkpoint_layouts import load_checkpoint_for
    from util.checkpoint import load_model_weights, load_optimizer_state, set_rng_state
    from util.ema import ModelEma

    rank = utils.get_rank()
    checkpoint = load_checkpoint_for(args, resume_path, "--resume", trust=args.trust_checkpoint)
    load_model_weights(model_without_ddp, checkpoint["model"], resume_path, "--resume", strict=True, log=logger)
    ckpt_epoch = checkpoint.get("epoch")
    logger.info("Loaded checkpoint %s (%s%s)", shown_path(resume_path), how,
                f", epoch {ckpt_epoch}" if isinstance(ckpt_epoch, int) else "")
    if ema_m is not None:
        if isinstance(checkpoint.get("ema_model"), dict):
            load_model_weights(ema_m.module, checkpoint["ema_model"], resume_path, "--resume (ema_model)",
                               strict=True, log=logger)
        else:
            ema_m = ModelEma(model_without_ddp, args.ema_decay)
    if training and all(k in checkpoint for k in ("optimizer", "lr_scheduler", "epoch")):
        load_optimizer_state(optimizer, checkpoint["optimizer"], resume_path)
        lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        args.start_epoch = int(checkpoint["epoch"]) + 1
        if checkpoint.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(checkpoint["scaler"])
        if checkpoint.get("best_metric"):
            best_holder.load_state_dict(checkpoint["best_metric"])
        rng = checkpoint.get("rng_state")
        if isinstance(rng, list) and len(rng) == args.world_size:
            set_rng_state(rng[rank])
    elif training:
        logger.info("%s has weights only; training starts at epoch %d with a new optimizer",
                    resume_path, args.start_epoch)
    return checkpoint, ema_m


def load_pretrained(args, model_without_ddp, ema_m, training: bool, logger):
    """--pretrain_model_path: the weights that fit (minus --finetune_ignore), the class rows of
    --finetune_class_map; the EMA restarts from them. Returns ema_m."""
    from models.dino.checkpoint_layouts import load_checkpoint_for
    from util.checkpoint import load_model_weights
    from util.ema import ModelEma

    pre = load_checkpoint_for(args, args.pretrain_model_path, "--pretrain_model_path", trust=args.trust_checkpoint)
    set_aside = ()
    if args.finetune_class_map and training:  # the class rows are copied by name below
        from util.class_transfer import CLASS_KEY_WORDS as set_aside
    load_model_weights(model_without_ddp, pre["model"], args.pretrain_model_path, "--pretrain_model_path",
                       strict=False, ignore=list(args.finetune_ignore or ()), log=logger, set_aside=set_aside)
    if args.finetune_class_map and training:
        from util.class_transfer import transfer_classes
        transfer_classes(model_without_ddp, pre, args.pretrain_model_path, args.finetune_class_map,
                         getattr(args, "category_names", None) or {},
                         bool(getattr(args, "contiguous_category_ids", False)), log=logger)
    logger.info("Loaded weights from %s (--pretrain_model_path)", shown_path(args.pretrain_model_path))
    if ema_m is not None:
        ema_m = ModelEma(model_without_ddp, args.ema_decay)
    return ema_m


def load_backbone_weights(model: torch.nn.Module, args) -> int:
    """A run from scratch: the backbone's pretrained weights through torchvision / timm
    (rank 0 downloads first, the others then read the cache). Returns how many were loaded."""
    from models.dino.backbones.pretrained import load_library_weights
    from util import misc as utils
    from util.distributed import barrier
    loaded = 0
    if utils.get_rank() == 0:
        loaded = load_library_weights(model, args)
    barrier()
    if utils.get_rank() != 0:
        loaded = load_library_weights(model, args)
    return loaded



# --------------------------------------------------------------------------- #
# what a run does
# --------------------------------------------------------------------------- #
def test_only(args, run: Run, logger) -> dict:
    """--test: the detections of the val/test images as a COCO results json."""
    from engine import test

    test(run.model_without_ddp, run.criterion, run.postprocessors, run.loaders["val"], run.base_ds, run.device,
         args.output_dir, args=args, logger=logger if args.save_log else None)
    return {}


def evaluate_only(args, run: Run, logger, checkpoint: Optional[dict], resume_path: str) -> dict:
    """--eval: COCO AP of the val set; a line in output_dir/log.txt names the checkpoint evaluated."""
    from engine import evaluate
    from util import misc as utils

    test_stats, _ = evaluate(run.model_without_ddp, run.criterion, run.postprocessors, run.loaders["val"],
                             run.base_ds, run.device, args.output_dir, args=args,
                             logger=logger if args.save_log else None)
    if args.output_dir and utils.is_main_process():
        from util.hooks import append_log_line
        entry = {f"test_{k}": v for k, v in test_stats.items()}
        entry.update({"mode": "eval", "checkpoint": shown_path(resume_path) if resume_path else None,
                      "checkpoint_epoch": checkpoint.get("epoch") if checkpoint else None,
                      "now_time": str(datetime.datetime.now())})
        append_log_line(os.path.join(args.output_dir, "log.txt"), entry)
    return test_stats


def train(args, run: Run, logger, checkpoint: Optional[dict], resume_path: str) -> dict:
    """The epochs: util/trainer.py's Trainer, engine.train_epoch per epoch, util/hooks.py's hooks."""
    from engine import evaluate, train_epoch
    from util import misc as utils
    from util.hooks import default_hooks
    from util.trainer import Trainer

    output_dir = args.output_dir
    trainer = Trainer(args=args, model=run.model, model_without_ddp=run.model_without_ddp, criterion=run.criterion,
                      postprocessors=run.postprocessors, optimizer=run.optimizer, lr_scheduler=run.lr_scheduler,
                      scaler=run.scaler, loaders=run.loaders, base_ds=run.base_ds, device=run.device, logger=logger,
                      output_dir=output_dir, best_holder=run.best_holder, n_parameters=run.n_parameters,
                      start_epoch=args.start_epoch, max_epochs=args.epochs, train_epoch=train_epoch,
                      ema_m=run.ema_m, is_main=utils.is_main_process())
    auto_ckpt = os.path.join(output_dir, "checkpoint.pth") if output_dir else ""
    resumed_here = bool(resume_path) and bool(auto_ckpt) and \
        os.path.abspath(resume_path) == os.path.abspath(auto_ckpt)
    trainer.register_hooks(default_hooks(trainer, evaluate, resumed_checkpoint=checkpoint,
                                         resumed_from_output_dir=resumed_here))
    del checkpoint  # the hooks keep what they need
    return trainer.train()


# --------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------- #
def _error_line(message: str, all_ranks: bool) -> None:
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0)
    if rank != 0 and not all_ranks:
        return
    prefix = "error: " if rank == 0 else f"error (rank {rank}): "
    sys.stderr.write(prefix + message.strip() + "\n")
    sys.stderr.flush()


def run_cli(args) -> int:
    """main(args) with the errors meant for people turned into one message and an exit status."""
    from datasets.validation import DatasetError, user_message
    from engine import NonFiniteLossError
    from models.dino.backbones.pretrained import BackboneWeightsError
    from models.dino.config_checks import UnsupportedConfigError
    from util.atomic import OutputError
    from util.checkpoint import CheckpointError
    from util.slconfig import ConfigError

    try:
        main(args)
    except (ConfigError, UnsupportedConfigError, CheckpointError, BackboneWeightsError, OutputError) as exc:
        _error_line(str(exc), all_ranks=False)
        return 2
    except DatasetError as exc:
        _error_line(user_message(exc), all_ranks=True)
        return 2
    except NonFiniteLossError as exc:
        _error_line(str(exc), all_ranks=False)
        return 3
    except KeyboardInterrupt:
        _error_line("interrupted", all_ranks=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - unexpected: one line here, the traceback in the run's log
        if getattr(args, "debug", False):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = ""
        info = os.path.join(args.output_dir, "info.txt") if args.output_dir else ""
        if info and os.path.isfile(info):  # the run's log gets the traceback
            import traceback
            with open(info, "a", encoding="utf-8") as f:
                f.write(traceback.format_exc())
            where = f" (traceback in {info})"
        _error_line(f"{type(exc).__name__}: {first}{where}; run again with --debug to print the traceback",
                    all_ranks=True)
        return 1
    return 0


if __name__ == "__main__":
    from util.cpu_memory import reuse_freed_memory
    reuse_freed_memory()  # process-wide, so here rather than in main(): see util/cpu_memory.py
    _parser = argparse.ArgumentParser("DINO training and evaluation", parents=[get_args_parser()])
    sys.exit(run_cli(_parser.parse_args()))
