"""Tiny COCO-layout datasets on disk for the data tests."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image

SPLIT_DIRS = {"train": "train2017", "val": "val2017"}


def make_args(coco_path: str, **overrides) -> SimpleNamespace:
    """The args keys the dataset code reads, with small augmentation sizes."""
    args = dict(
        coco_path=coco_path, dataset_file="coco", masks=False, fix_size=False,
        num_classes=5, dn_labelbook_size=5, use_dn=True,
        data_aug_scales=[32, 40], data_aug_max_size=64, data_aug_scales2_resize=[32, 40],
        data_aug_scales2_crop=[16, 32], data_aug_scale_overlap=None,
    )
    args.update(overrides)
    return SimpleNamespace(**args)


def write_image(path: str, width: int, height: int, mode: str = "RGB", seed: int = 0) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert(mode).save(path)


def write_split(root: str, split: str, images: List[Dict[str, Any]], annotations: List[Dict[str, Any]],
                categories: Optional[List[Dict[str, Any]]] = None, write_images: bool = True) -> str:
    """Write `images` (COCO image dicts; files drawn at their width/height) and the json; returns the json path."""
    folder = os.path.join(root, SPLIT_DIRS[split])
    os.makedirs(folder, exist_ok=True)
    if write_images:
        for img in images:
            write_image(os.path.join(folder, img["file_name"]), img["width"], img["height"], seed=img["id"])
    if categories is None:
        categories = [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in range(1, 5)]
    ann_path = os.path.join(root, "annotations", f"instances_{split}2017.json")
    os.makedirs(os.path.dirname(ann_path), exist_ok=True)
    with open(ann_path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return ann_path


def image_entry(image_id: int, width: int = 64, height: int = 48, ext: str = "jpg") -> Dict[str, Any]:
    return {"id": image_id, "file_name": f"{image_id:012d}.{ext}", "width": width, "height": height}


def ann_entry(ann_id: int, image_id: int, bbox, category_id: int = 1, iscrowd: int = 0,
              area: Optional[float] = None) -> Dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox),
            "area": float(bbox[2] * bbox[3]) if area is None else area, "iscrowd": iscrowd}


def tiny_coco(root: str) -> Dict[str, Any]:
    """Train and val splits of four 64x48 PNG images:

    image 1: two boxes (categories 1 and 3) and a crowd region
    image 2: one box
    image 3: only a crowd region
    image 4: no annotations
    """
    images = [image_entry(i, ext="png") for i in range(1, 5)]
    anns = [
        ann_entry(11, 1, [4, 6, 20, 10], 1),
        ann_entry(12, 1, [30, 20, 24, 20], 3),
        ann_entry(13, 1, [0, 0, 10, 10], 2, iscrowd=1),
        ann_entry(21, 2, [10, 10, 40, 30], 4),
        ann_entry(31, 3, [5, 5, 30, 30], 2, iscrowd=1),
    ]
    for split in ("train", "val"):
        write_split(root, split, images, anns)
    return {"images": images, "annotations": anns}
