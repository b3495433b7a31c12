"""The data of a run, settled before anything is built.

`prepare_run_data(args)` finds the dataset (--data: any format of datasets/formats; --coco_path:
the COCO 2017 layout, as the original), reads the splits the run needs once, makes a validation
split when asked (--val_split) and sets num_classes / dn_labelbook_size where they are 'auto'.
`record_run_data(data, output_dir, log)` logs what was found and chosen and writes the
validation split to the output folder. Nothing is written into the dataset's folder.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .class_counts import settle_class_counts
from .doctor import scan_split, summary_line
from .errors import DatasetError
from .formats import DatasetSource, LoadedSplit, open_dataset
from .formats.coco_layouts import coco2017_source
from .val_split import RECORD_NAME, choose_val_images, read_record, record, split_off
from .validation import check_dataset_root

ALIASES = {"train_reg": "train", "eval_debug": "val"}


@dataclass
class RunData:
    """The dataset found, the splits a run uses ('train', 'val', 'test') and what to log."""

    source: DatasetSource
    splits: Dict[str, LoadedSplit]
    notes: List[str] = field(default_factory=list)
    val_record: Optional[Dict[str, Any]] = None

    def split_for(self, image_set: str) -> LoadedSplit:
        name = ALIASES.get(image_set, image_set)
        if name == "test" and name not in self.splits:
            name = "val"
        if name not in self.splits:
            raise DatasetError(f"{self.source.root}: the run has no {image_set!r} split (it has "
                               f"{', '.join(self.splits)}).")
        return self.splits[name]


def open_run_source(args: argparse.Namespace) -> DatasetSource:
    """--data (any format), else --coco_path (the COCO 2017 layout, every split expected)."""
    if getattr(args, "data", None):
        return open_dataset(args.data)
    root = check_dataset_root(getattr(args, "coco_path", None))
    return coco2017_source(root, require_all=True)


def check_data_path(args: argparse.Namespace) -> None:
    """A one-line DatasetError when neither --data nor --coco_path names an existing folder."""
    path = getattr(args, "coco_path", None)
    if getattr(args, "data", None):
        return
    if not path:
        raise DatasetError("no dataset given: point --data at your dataset's folder (COCO, YOLO, Pascal VOC or "
                           "LabelMe, as exported), or --coco_path at a COCO 2017 layout.")
    if not os.path.isdir(path):
        raise DatasetError(f"--coco_path {os.path.abspath(path)} does not exist or is not a folder (it must hold "
                           f"train2017/, val2017/ and annotations/; --data reads other layouts).")


def split_name(source: DatasetSource, image_set: str) -> str:
    """The split of `source` that `image_set` reads ('test' falls back to 'val', as the original)."""
    name = ALIASES.get(image_set, image_set)
    if name not in ("train", "val", "test"):
        raise DatasetError(f"unknown image_set {image_set!r}; expected one of train, val, test, train_reg, "
                           f"eval_debug.")
    if name == "test" and not source.has("test"):
        return "val"
    return name


def prepare_run_data(args: argparse.Namespace, training: bool) -> RunData:
    """Find and read the run's data; sets args.num_classes / dn_labelbook_size when 'auto' and
    args.data_format (see module doc)."""
    check_data_path(args)
    source = open_run_source(args)
    data = RunData(source, {}, notes=[f"data: {source.describe()}"])
    fraction = getattr(args, "val_split", None)
    wanted = ["train", "val"] if training else ["test" if getattr(args, "test", False) else "val"]
    for name in wanted:
        if name == "val" and not source.has("val"):
            _make_val_split(args, source, data, fraction)
        elif name == "test" and not source.has("test") and not source.has("val"):
            _make_val_split(args, source, data, fraction)
            data.splits["test"] = data.splits["val"]
        elif name not in data.splits:
            data.splits[name] = source.load(split_name(source, name))
    if fraction and data.val_record is None:
        raise DatasetError(f"--val_split {fraction}: {source.root} has its own validation split; leave --val_split "
                           f"out (it only makes one for data that has none).")
    for name in ("train", "val", "test"):
        if name in data.splits and not (name == "test" and data.splits[name] is data.splits.get("val")):
            data.notes.append(summary_line(scan_split(data.splits[name])))
    line = settle_class_counts(args, list(data.splits.values()))
    if line:
        data.notes.append(line)
    args.data_format = source.format
    return data


def _make_val_split(args: argparse.Namespace, source: DatasetSource, data: RunData,
                    fraction: Optional[float]) -> None:
    if not fraction:
        raise DatasetError(f"{source.root} ({source.layout}) has no validation split; pass --val_split 0.1 to hold "
                           f"out 10% of the training images (chosen by --seed, written to the output folder).")
    train = data.splits.get("train") or source.load("train")
    names = [img["file_name"] for img in train.data["images"]]
    recorded = read_record(getattr(args, "output_dir", "") or "")
    val_names = recorded if recorded is not None else choose_val_images(names, float(fraction), int(args.seed))
    train_part, val_part = split_off(train, val_names)
    data.splits["train"], data.splits["val"] = train_part, val_part
    data.val_record = record(source.root, float(fraction), int(args.seed), val_names, len(names) - len(val_names))
    how = f"read from {RECORD_NAME} of the output folder" if recorded is not None else f"--seed {args.seed}"
    data.notes.append(f"val split: {len(val_names)} of {len(names)} training images held out for validation "
                      f"(--val_split {fraction}, {how})")


def record_run_data(data: RunData, output_dir: str, log: Callable[[str], None], is_main: bool = True) -> None:
    """Log the notes; write OUTPUT_DIR/val_split.json for a split made here (main process only)."""
    for line in data.notes:
        log(line)
    if data.val_record is not None and output_dir and is_main:
        from util.atomic import atomic_write_text
        atomic_write_text(os.path.join(output_dir, RECORD_NAME), json.dumps(data.val_record, indent=1))
