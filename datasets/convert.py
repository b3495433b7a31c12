"""Any dataset --data reads, as COCO json dicts (what tools/convert_dataset.py writes).

Each split becomes the COCO dict training builds in memory: the dataset's category ids and
names, pixel boxes, 'area' and 'iscrowd' filled, the readers' 'source'/'line' keys removed.
'file_name's stay relative to the split's image folder, which `info.image_root` names.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Optional

from .formats import open_dataset
from .val_split import choose_val_images, split_off
from .validation import check_annotations


def coco_dicts(path: str, val_split: Optional[float] = None, seed: int = 42) -> Dict[str, Dict[str, Any]]:
    """{split: COCO dict} of the dataset at `path`; with `val_split`, a validation split is made
    from train as main.py --val_split makes it (same seed, same images)."""
    source = open_dataset(path, flag="SRC")
    splits = {name: source.load(name) for name in source.splits}
    if val_split:
        from .errors import DatasetError
        if "val" in splits:
            raise DatasetError(f"--val_split: {source.root} has its own validation split; leave --val_split out.")
        train = splits["train"]
        names = choose_val_images([img["file_name"] for img in train.data["images"]], val_split, seed)
        splits["train"], splits["val"] = split_off(train, names)
    out = {}
    for name, loaded in splits.items():
        loaded.notes.raise_if_fatal(loaded.where, len(loaded.data["images"]))
        data = copy.deepcopy(loaded.data)
        check_annotations(data, loaded.where)  # refuses what training refuses; fills area / iscrowd
        for img in data["images"]:
            img.pop("source", None)
        for ann in data["annotations"]:
            ann.pop("line", None)
        data["info"] = {**(data.get("info") or {}), "description": f"converted from {source.describe()}",
                        "image_root": loaded.image_root, "split": name}
        data.setdefault("licenses", [])
        out[name] = data
    return out
