"""A validation split made from the training images (--val_split FRACTION), when a dataset has none.

The images are shuffled by the run's seed (Python's random.Random, stable across versions) and
the first round(FRACTION x N) (at least 1) become the validation set; their boxes go with them.
The run writes the split to OUTPUT_DIR/val_split.json; a run continuing in that folder reads it
back, so the split never changes under a run (a different --seed included).
"""
from __future__ import annotations

import json
import os
import random
from typing import Any, Dict, List, Optional, Tuple

from .errors import DatasetError
from .formats import LoadedSplit

RECORD_NAME = "val_split.json"


def choose_val_images(file_names: List[str], fraction: float, seed: int) -> List[str]:
    """The file names of the validation images (sorted), deterministic in (names, fraction, seed)."""
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"--val_split {fraction}: give a fraction between 0 and 1, e.g. 0.1.")
    names = sorted(file_names)
    if len(names) < 2:
        raise DatasetError(f"--val_split: the training split has {len(names)} image(s); at least 2 are needed to "
                           f"hold some out.")
    n_val = min(len(names) - 1, max(1, int(round(fraction * len(names)))))
    order = list(names)
    random.Random(seed).shuffle(order)
    return sorted(order[:n_val])


def split_off(train: LoadedSplit, val_names: List[str]) -> Tuple[LoadedSplit, LoadedSplit]:
    """(train without the named images, the named images as 'val'); ids, boxes and categories kept."""
    data = train.data
    wanted = set(val_names)
    val_ids = {img["id"] for img in data["images"] if img.get("file_name") in wanted}
    found = {img["file_name"] for img in data["images"] if img["id"] in val_ids}
    missing = sorted(wanted - found)
    if missing:
        raise DatasetError(f"the validation split names {len(missing)} image(s) the training split does not have "
                           f"(e.g. {missing[0]}); the data changed since {RECORD_NAME} was written: remove that "
                           f"file or use a new --output_dir.")

    def part(keep_val: bool) -> Dict[str, Any]:
        return {**{k: v for k, v in data.items() if k not in ("images", "annotations")},
                "images": [img for img in data["images"] if (img["id"] in val_ids) == keep_val],
                "annotations": [a for a in data["annotations"] if (a.get("image_id") in val_ids) == keep_val]}

    where = f"{train.where} (--val_split)"
    return (LoadedSplit("train", part(False), train.image_root, where, train.labelled, train.notes),
            LoadedSplit("val", part(True), train.image_root, where, train.labelled, train.notes))


def read_record(output_dir: str) -> Optional[List[str]]:
    """The validation file names of an earlier run in `output_dir`, or None."""
    path = os.path.join(output_dir, RECORD_NAME) if output_dir else ""
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            names = json.load(f)["val_images"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("val_images is not a list of file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}); remove it to make the split again.") from None
    return names


def record(source_root: str, fraction: float, seed: int, val_names: List[str], num_train: int) -> Dict[str, Any]:
    return {"dataset": source_root, "val_split": fraction, "seed": seed, "train_images": num_train,
            "val_images": val_names}
