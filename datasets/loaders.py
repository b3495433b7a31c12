"""The data of a run: the training and validation loaders built
(distributed samplers whose order depends on (seed, epoch) only, evaluation one image per
batch), and the dataset's class names kept for the checkpoint."""
from __future__ import annotations

import argparse
from typing import Any, Dict

from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from util import misc as utils
from util.distributed import EvalShardSampler

from . import build_dataset, get_coco_api_from_dataset
from .validation import DatasetError


def build_loaders(args: argparse.Namespace, train: bool, image_set_val: str = "val", data=None) -> Dict[str, Any]:
    """{"train", "sampler_train" (when `train`), "val", "dataset_val"} of the run's data (a
    run_data.RunData; None: read --data / --coco_path); training also records the dataset's class
    names in args.category_names (they travel with the checkpoint)."""
    world, rank = utils.get_world_size(), utils.get_rank()
    pin = str(args.device).startswith("cuda")
    loaders: Dict[str, Any] = {}
    if train:
        dataset_train = build_dataset(image_set="train", args=args, data=data)
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
    dataset_val = build_dataset(image_set=image_set_val, args=args, data=data)
    # batch size 1 as the original: padding a batch to its largest image changes the
    # features of the smaller ones and lowers AP (docs/TRAINING.md)
    loaders["val"] = DataLoader(dataset_val, batch_size=1, sampler=EvalShardSampler(len(dataset_val), world, rank),
                                drop_last=False, collate_fn=utils.collate_fn, num_workers=args.num_workers,
                                pin_memory=pin)
    loaders["dataset_val"] = dataset_val
    return loaders


def dataset_category_names(dataset) -> Dict[int, str]:
    """{category id: name} of a COCO-format dataset ({} when it has no COCO ground truth)."""
    try:
        cats = get_coco_api_from_dataset(dataset).cats
    except TypeError:
        return {}
    return {int(c["id"]): str(c.get("name", c["id"])) for c in cats.values()}
