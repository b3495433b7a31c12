"""Train and evaluate DINO: `python main.py -c CONFIG --coco_path DIR [--options k=v ...]`.

Training writes to --output_dir: config_cfg.py, config_args_raw.json,
config_args_all.json, info.txt (the log), log.txt (one JSON line per epoch),
checkpoint.pth (every epoch), checkpoint{epoch:04}.pth (at lr_drop and every
save_checkpoint_interval epochs), checkpoint_best_regular.pth (and
checkpoint_best_ema.pth with use_ema), TensorBoard events (with tensorboard
installed). Rerunning the same command continues from output_dir/checkpoint.pth;
an explicit --resume FILE always wins. The epoch loop is util/trainer.py's
Trainer with the hooks of util/hooks.py.

Exit status: 0 done, 2 a problem with the config, the data or a checkpoint
(one line on stderr says what), 3 a non-finite loss stopped training.
See docs/TRAINING.md.
"""
import argparse
import datetime
import json
import os
import random
import sys

import numpy as np
import torch

from util.slconfig import DictAction


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def get_args_parser() -> argparse.ArgumentParser:
    """The original DINO command line (model settings live in the config file)."""
    parser = argparse.ArgumentParser("DINO training and evaluation", add_help=False)
    parser.add_argument("--config_file", "-c", type=str, required=True, help="Python config file")
    parser.add_argument("--options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                        help="override config keys, e.g. --options epochs=24 lr_drop=20 data_aug_scales=[512,608]")

    # dataset
    parser.add_argument("--dataset_file", default="coco")
    parser.add_argument("--coco_path", type=str, default=None,
                        help="COCO-format root with train2017/, val2017/ and annotations/")
    parser.add_argument("--fix_size", action="store_true", help="train at a single fixed size")

    # run
    parser.add_argument("--output_dir", default="", help="where checkpoints and logs go (empty: nothing saved)")
    parser.add_argument("--note", default="", help="free text stored with the run")
    parser.add_argument("--device", default=default_device(), help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--seed", default=42, type=int)
    parser.add_argument("--resume", default="", help="checkpoint to resume training from (or to evaluate)")
    parser.add_argument("--pretrain_model_path", help="checkpoint to initialise the model from (fine-tuning)")
    parser.add_argument("--finetune_ignore", type=str, nargs="+",
                        help="with --pretrain_model_path: drop keys containing any of these, "
                             "e.g. label_enc.weight class_embed")
    parser.add_argument("--finetune_class_map", default=None, metavar="auto|FILE.json",
                        help="with --pretrain_model_path: copy the classifier and label-embedding rows of the "
                             "classes this dataset shares with the checkpoint ('auto': matched by name; or a "
                             "json {\"new class\": \"checkpoint class\"}); the others start as new")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="load pickled checkpoints that hold Python objects outside the allow-list; this "
                             "RUNS CODE FROM THE FILE: only for files you trust (docs/CHECKPOINTS.md)")
    parser.add_argument("--start_epoch", default=0, type=int, metavar="N")
    parser.add_argument("--eval", action="store_true", help="evaluate on val2017 and exit")
    parser.add_argument("--num_workers", default=10, type=int)
    parser.add_argument("--test", action="store_true", help="write detections of the val/test images and exit")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    parser.add_argument("--find_unused_params", action="store_true")
    parser.add_argument("--save_results", action="store_true", help="save detections as COCO results json")
    parser.add_argument("--save_log", action="store_true")

    # distributed
    parser.add_argument("--world_size", default=1, type=int, help="number of processes")
    parser.add_argument("--dist_url", default="env://", help="url used to set up distributed training")
    parser.add_argument("--rank", default=0, type=int, help="global rank of this process")
    parser.add_argument("--local_rank", "--local-rank", type=int, help="local rank (set by the launcher)")
    parser.add_argument("--amp", action="store_true", help="mixed precision where the device supports it")

    # additions of this implementation
    parser.add_argument("--print_freq", default=10, type=int,
                        help="iterations between two progress lines (when stdout is not a terminal) and two "
                             "TensorBoard / W&B points")
    parser.add_argument("--evaluator", default="pycocotools", choices=("pycocotools", "faster"),
                        help="COCO evaluation: pycocotools, or faster-coco-eval (same numbers, faster on large "
                             "val sets; `pip install faster-coco-eval`)")
    parser.add_argument("--wandb_project", default=None,
                        help="also log to this Weights & Biases project (needs `pip install wandb`)")
    return parser


def build_model_main(args):
    """(model, criterion, postprocessors) for `args.modelname` (the original's name for this)."""
    from models import build_model
    return build_model(args)


# --------------------------------------------------------------------------- #
# config
# --------------------------------------------------------------------------- #
def load_config(args):
    """The config file merged with the checked --options (ConfigError naming the key otherwise)."""
    from util.slconfig import LEGACY_IGNORED_KEYS, ConfigError, SLConfig, check_options

    cfg = SLConfig.fromfile(args.config_file)
    options = dict(args.options or {})
    flags = set(vars(args))
    for key, value in options.items():
        top = key.split(".")[0]
        if top in flags and top not in cfg:
            raise ConfigError(f"--options {key}={value!r}: '{top}' is a command-line flag, not a config key; "
                              f"pass --{top} instead.")
    checked = check_options(cfg, options)
    ignored = sorted(k for k in options if k.split(".")[0] in LEGACY_IGNORED_KEYS)
    cfg.merge_from_dict(checked)
    return cfg, ignored


def apply_config(cfg, args) -> None:
    """Copy every config key onto args; a key that is also a command-line flag is an error."""
    from util.slconfig import ConfigError

    flags = vars(args)
    for key, value in cfg.to_dict().items():
        if key in flags:
            raise ConfigError(f"config key '{key}' (in {cfg.filename} or --options) is also a command-line "
                              f"flag; remove it from the config and pass --{key} instead.")
        setattr(args, key, value)
    if not getattr(args, "use_ema", None):
        args.use_ema = False
    if not getattr(args, "debug", None):
        args.debug = False


def _json_default(obj):
    return str(obj)


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=_json_default)


def resolve_output_dir(output_dir: str) -> str:
    """`%j` (the original scripts' Slurm job id placeholder) becomes $SLURM_JOB_ID when set."""
    if output_dir and "%j" in output_dir and os.environ.get("SLURM_JOB_ID"):
        output_dir = output_dir.replace("%j", os.environ["SLURM_JOB_ID"])
    return output_dir


def check_coco_path(args) -> None:
    from datasets.validation import DatasetError

    if (getattr(args, "dataset_file", "coco") or "coco") != "coco":
        return
    path = args.coco_path
    if not path:
        raise DatasetError("--coco_path is not set; point it at the folder holding train2017/, val2017/ and "
                           "annotations/.")
    if not os.path.isdir(path):
        raise DatasetError(f"--coco_path {os.path.abspath(path)} does not exist or is not a folder (it must "
                           f"hold train2017/, val2017/ and annotations/).")


# --------------------------------------------------------------------------- #
# randomness
# --------------------------------------------------------------------------- #
def seed_everything(seed: int) -> None:
    seed = int(seed) % (2 ** 32)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one epoch of one process: a function of (seed, epoch, rank) only, so an
    epoch runs the same whether the run was resumed before it or not."""
    return int(np.random.SeedSequence([int(seed) % (2 ** 32), int(epoch), int(rank)]).generate_state(1)[0])


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def build_loaders(args, train: bool, image_set_val: str = "val"):
    from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

    from datasets import build_dataset
    from datasets.validation import DatasetError
    from util import misc as utils
    from util.distributed import EvalShardSampler

    world, rank = utils.get_world_size(), utils.get_rank()
    pin = str(args.device).startswith("cuda")
    loaders = {}
    if train:
        dataset_train = build_dataset(image_set="train", args=args)
        if len(dataset_train) < args.batch_size * world:
            raise DatasetError(
                f"the training set has {len(dataset_train)} images, fewer than batch_size ({args.batch_size}) x "
                f"processes ({world}); there is nothing to train on. Add images or lower batch_size.")
        # the order depends on (seed, epoch) only (set_epoch), not on how much randomness was used before
        sampler_train = DistributedSampler(dataset_train, num_replicas=world, rank=rank, shuffle=True,
                                           seed=args.seed)
        batch_sampler = BatchSampler(sampler_train, args.batch_size, drop_last=True)
        loaders["train"] = DataLoader(dataset_train, batch_sampler=batch_sampler, collate_fn=utils.collate_fn,
                                      num_workers=args.num_workers, pin_memory=pin)
        loaders["sampler_train"] = sampler_train
        # the class names travel with the checkpoint (its `args`), so inference needs no json
        args.category_names = dataset_category_names(dataset_train)
    dataset_val = build_dataset(image_set=image_set_val, args=args)
    # batch size 1 as the original: padding a batch to its largest image changes the
    # features of the smaller ones and lowers AP (docs/TRAINING.md)
    loaders["val"] = DataLoader(dataset_val, batch_size=1, sampler=EvalShardSampler(len(dataset_val), world, rank),
                                drop_last=False, collate_fn=utils.collate_fn, num_workers=args.num_workers,
                                pin_memory=pin)
    loaders["dataset_val"] = dataset_val
    return loaders


def dataset_category_names(dataset) -> dict:
    """{category id: name} of a COCO-format dataset ({} when it has no COCO ground truth)."""
    from datasets import get_coco_api_from_dataset
    try:
        cats = get_coco_api_from_dataset(dataset).cats
    except TypeError:
        return {}
    return {int(c["id"]): str(c.get("name", c["id"])) for c in cats.values()}


def build_lr_scheduler(args, optimizer, steps_per_epoch: int):
    """The lr schedule: OneCycleLR stepped per iteration, or StepLR / MultiStepLR stepped per epoch."""
    if getattr(args, "onecyclelr", False):
        # each group peaks at its own lr, so lr_backbone and lr_linear_proj_mult hold (the original's
        # max_lr=args.lr raised every group to args.lr)
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, steps_per_epoch=max(1, steps_per_epoch),
                                                   epochs=args.epochs, pct_start=0.2)
    if getattr(args, "multi_step_lr", False):
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(args.lr_drop_list))
    return torch.optim.lr_scheduler.StepLR(optimizer, max(1, int(args.lr_drop)))


# --------------------------------------------------------------------------- #
# main
# --------------------------------------------------------------------------- #
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


def check_run_flags(args) -> None:
    """Flags that need another flag or an optional package: stop before anything is built."""
    from util.slconfig import ConfigError

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


def setup_run_output(args, cfg, ignored_options, raw_args):
    """The run's logger (stdout + output_dir/info.txt) and, on the main process, the config
    files of output_dir; leftovers of an interrupted save are removed. Returns the logger."""
    from util import misc as utils
    from util.checkpoint import remove_stale_tmp_files
    from util.logger import route_library_logs, setup_logger

    output_dir = args.output_dir
    rank = utils.get_rank()
    is_main = utils.is_main_process()
    if output_dir:
        from util.atomic import prepare_output_dir
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
        removed = remove_stale_tmp_files(output_dir)
        if removed:
            logger.info("removed %d temporary files of an interrupted save: %s", len(removed), ", ".join(removed))
    logger.info("world size %d, rank %d, local rank %s", args.world_size, args.rank, args.local_rank)
    logger.debug("args: %s", json.dumps(vars(args), default=_json_default, sort_keys=True))
    return logger


def _main(args):
    from engine import evaluate, make_grad_scaler, test
    from util import misc as utils
    from util.ema import ModelEma
    from util.get_param_dicts import build_optimizer, describe_param_groups
    from util.metric_logger import BestMetricHolder
    from util.slconfig import ConfigError

    rank = utils.get_rank()
    is_main = utils.is_main_process()
    args.output_dir = resolve_output_dir(args.output_dir)
    output_dir = args.output_dir
    raw_args = dict(vars(args))

    cfg, ignored_options = load_config(args)
    apply_config(cfg, args)
    check_coco_path(args)
    check_run_flags(args)

    logger = setup_run_output(args, cfg, ignored_options, raw_args)

    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA device is available here; use --device cpu.")
    device = torch.device(args.device)

    seed_everything(args.seed + rank)

    model, criterion, postprocessors = build_model_main(args)
    model.to(device)
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
    scaler = make_grad_scaler(device, args.amp)

    loaders = build_loaders(args, train=training, image_set_val="test" if args.test else "val")
    from datasets.coco import category_ids_of  # contiguous class ids (detrex): labels 0..K-1 stand for
    args.label_to_category_id = category_ids_of(loaders["dataset_val"])  # these ids (kept in checkpoints)
    postprocessors["bbox"].set_category_ids(args.label_to_category_id)  # detections carry the json's ids
    lr_scheduler = build_lr_scheduler(args, optimizer, len(loaders["train"]) if training else 1)
    base_ds = None
    if not args.test:
        from datasets import get_coco_api_from_dataset
        base_ds = get_coco_api_from_dataset(loaders["dataset_val"])

    # ------------------------------------------------------------- weights
    best_holder = BestMetricHolder(use_ema=args.use_ema)
    auto_ckpt = os.path.join(output_dir, "checkpoint.pth") if output_dir else ""
    resume_path, how = args.resume, "--resume"
    if not resume_path and auto_ckpt and os.path.exists(auto_ckpt):
        resume_path, how = auto_ckpt, "auto-resume"
    checkpoint = None
    if resume_path:
        checkpoint, ema_m = resume_from(resume_path, how, args, model_without_ddp, ema_m, optimizer, lr_scheduler,
                                        scaler, best_holder, training, logger)
    elif args.pretrain_model_path:
        ema_m = load_pretrained(args, model_without_ddp, ema_m, training, logger)
    elif not training:
        logger.warning("no --resume, no %s and no --pretrain_model_path: evaluating an untrained model",
                       auto_ckpt or "checkpoint")
    elif load_backbone_weights(model_without_ddp, args) and ema_m is not None:
        ema_m = ModelEma(model_without_ddp, args.ema_decay)  # the average starts from the pretrained backbone

    # ------------------------------------------------------------- eval / test only
    if not training:  # inference only from here: folded batch norm, channels_last (util/precision.py)
        from util.precision import prepare_for_inference
        done = prepare_for_inference(model_without_ddp, device, args.amp)
        if done:
            logger.info("inference model: %s", ", ".join(done))
    if args.test:
        test(model_without_ddp, criterion, postprocessors, loaders["val"], base_ds, device, output_dir,
             args=args, logger=logger if args.save_log else None)
        return {}
    if args.eval:
        test_stats, _ = evaluate(model_without_ddp, criterion, postprocessors, loaders["val"], base_ds, device,
                                 output_dir, args=args, logger=logger if args.save_log else None)
        if output_dir and is_main:
            entry = {f"test_{k}": v for k, v in test_stats.items()}
            entry.update({"mode": "eval", "checkpoint": os.path.abspath(resume_path) if resume_path else None,
                          "checkpoint_epoch": checkpoint.get("epoch") if checkpoint else None,
                          "now_time": str(datetime.datetime.now())})
            from util.hooks import append_log_line
            append_log_line(os.path.join(output_dir, "log.txt"), entry)
        return test_stats

    # ------------------------------------------------------------- training
    from util.hooks import default_hooks
    from util.trainer import Trainer

    trainer = Trainer(args=args, model=model, model_without_ddp=model_without_ddp, criterion=criterion,
                      postprocessors=postprocessors, optimizer=optimizer, lr_scheduler=lr_scheduler, scaler=scaler,
                      loaders=loaders, base_ds=base_ds, device=device, logger=logger, output_dir=output_dir,
                      best_holder=best_holder, n_parameters=n_parameters, start_epoch=args.start_epoch,
                      max_epochs=args.epochs, train_epoch=train_pass, ema_m=ema_m, is_main=is_main)
    resumed_here = bool(resume_path) and bool(auto_ckpt) and \
        os.path.abspath(resume_path) == os.path.abspath(auto_ckpt)
    trainer.register_hooks(default_hooks(trainer, resumed_checkpoint=checkpoint,
                                         resumed_from_output_dir=resumed_here))
    del checkpoint  # the hooks keep what they need
    return trainer.train()


def resume_from(resume_path: str, how: str, args, model_without_ddp, ema_m, optimizer, lr_scheduler, scaler,
                best_holder, training: bool, logger):
    """Load a checkpoint to continue from (`how`: '--resume' or 'auto-resume'): the weights, the EMA
    weights and, for training, the optimizer, lr schedule, AMP scaler, best-AP record, random states
    and args.start_epoch. Returns (checkpoint, ema_m)."""
    from util import misc as utils
    from util.checkpoint import load_checkpoint, load_model_weights, load_optimizer_state, set_rng_state
    from util.ema import ModelEma

    rank = utils.get_rank()
    checkpoint = load_checkpoint(resume_path, "--resume", args, trust=args.trust_checkpoint)
    load_model_weights(model_without_ddp, checkpoint["model"], resume_path, "--resume", strict=True, log=logger)
    ckpt_epoch = checkpoint.get("epoch")
    logger.info("Loaded checkpoint %s (%s%s)", os.path.abspath(resume_path), how,
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
    from util.checkpoint import load_checkpoint, load_model_weights
    from util.ema import ModelEma

    pre = load_checkpoint(args.pretrain_model_path, "--pretrain_model_path", args, trust=args.trust_checkpoint)
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
    logger.info("Loaded weights from %s (--pretrain_model_path)", os.path.abspath(args.pretrain_model_path))
    if ema_m is not None:
        ema_m = ModelEma(model_without_ddp, args.ema_decay)
    return ema_m


def train_pass(trainer) -> dict:
    """The training pass of one epoch (Trainer's `train_epoch`): the epoch's randomness is
    drawn from (seed, epoch, rank) only, then one pass of engine.train_one_epoch whose steps
    go to the trainer's after_step hooks (EMA, TensorBoard, ...)."""
    from engine import train_one_epoch
    from util import misc as utils

    args, epoch = trainer.args, trainer.epoch
    seed_everything(epoch_seed(args.seed, epoch, utils.get_rank()))
    trainer.loaders["sampler_train"].set_epoch(epoch)
    return train_one_epoch(trainer.model, trainer.criterion, trainer.loaders["train"], trainer.optimizer,
                           trainer.device, epoch, args.clip_max_norm, lr_scheduler=trainer.lr_scheduler, args=args,
                           logger=trainer.logger if args.save_log else None, scaler=trainer.scaler,
                           on_step=trainer.run_after_step)


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
    _parser = argparse.ArgumentParser("DINO training and evaluation", parents=[get_args_parser()])
    sys.exit(run_cli(_parser.parse_args()))
