"""COCO json datasets in the layouts people have them in.

    COCO 2017      annotations/instances_{train,val}2017.json, train2017/, val2017/
                   (test2017/ with annotations/image_info_test-dev2017.json)
    Roboflow       {train,valid,test}/_annotations.coco.json beside the images
    CVAT and       annotations/instances_<subset>.json (CVAT's single subset is 'default'),
    others         images in images/<subset>/, images/, <subset>/ or beside annotations/
    one .json      its images where its info.image_root says (tools/convert_dataset.py), or as above

Category ids and names are the json's own; nothing is renumbered.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from ..errors import DatasetError
from ..validation import check_images_folder, read_annotation_file
from .common import DatasetSource, LoadedSplit, canonical_split

# image_set -> (image folder, annotation file) under a COCO 2017 root.
SPLIT_PATHS: Dict[str, Tuple[str, str]] = {
    "train": ("train2017", "annotations/instances_train2017.json"),
    "val": ("val2017", "annotations/instances_val2017.json"),
    "test": ("test2017", "annotations/image_info_test-dev2017.json"),
}
ROBOFLOW_JSON = "_annotations.coco.json"


class CocoSource(DatasetSource):
    """COCO json splits: split -> (annotation file, image folder or None to find beside it)."""

    format = "coco"

    def __init__(self, root: str, splits: Dict[str, Tuple[str, Optional[str]]], layout: str):
        super().__init__(root, splits)
        self.layout = layout

    def _read(self, split: str) -> LoadedSplit:
        ann_file, folder = self.splits[split]
        labelled = not os.path.basename(ann_file).startswith("image_info")
        if folder is not None:
            check_images_folder(folder)
        data = read_annotation_file(ann_file, required_keys=("images", "annotations", "categories") if labelled
                                    else ("images",))
        labelled = labelled or "annotations" in data
        data.setdefault("annotations", [])
        data.setdefault("categories", [])
        if folder is None:
            folder = find_image_folder(self.root, ann_file, split, data)
        return LoadedSplit(split, data, folder, ann_file, labelled=labelled)


def coco2017_source(root: str, require_all: bool = False) -> Optional[CocoSource]:
    """The COCO 2017 layout under `root`: with `require_all` (--coco_path) every split is listed
    and a missing file is reported when read; otherwise the splits whose json exists (None if
    there is none). 'test' falls back to val when test-dev's json is missing, as the original."""
    splits: Dict[str, Tuple[str, Optional[str]]] = {}
    for split, (folder, ann) in SPLIT_PATHS.items():
        if os.path.isfile(os.path.join(root, ann)) or (require_all and split != "test"):
            splits[split] = (os.path.join(root, ann), os.path.join(root, folder))
    if not splits:
        return None
    return CocoSource(root, splits, "COCO json in the COCO 2017 layout")


def roboflow_source(root: str) -> Optional[CocoSource]:
    """Roboflow's COCO export: <split>/_annotations.coco.json beside the split's images."""
    splits: Dict[str, Tuple[str, Optional[str]]] = {}
    for name in sorted(os.listdir(root)):
        ann = os.path.join(root, name, ROBOFLOW_JSON)
        split = canonical_split(name)
        if split and split not in splits and os.path.isfile(ann):
            splits[split] = (ann, os.path.join(root, name))
    if not splits and os.path.isfile(os.path.join(root, ROBOFLOW_JSON)):  # one split folder given
        splits["train"] = (os.path.join(root, ROBOFLOW_JSON), root)
    return CocoSource(root, splits, "COCO json in Roboflow's layout") if splits else None


def annotations_folder_source(root: str) -> Optional[CocoSource]:
    """annotations/instances_<subset>.json (CVAT's export and similar); subsets named train/val/test
    (any case, 'default' is train), or one json of any name taken as train."""
    folder = os.path.join(root, "annotations")
    if not os.path.isdir(folder):
        return None
    jsons = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    instances = [n for n in jsons if n.startswith("instances_")] or jsons
    splits: Dict[str, Tuple[str, Optional[str]]] = {}
    for name in instances:
        subset = name[len("instances_"):-len(".json")] if name.startswith("instances_") else name[:-5]
        split = canonical_split(subset)
        if split and split not in splits:
            splits[split] = (os.path.join(folder, name), None)
    if not splits and len(instances) == 1:
        splits["train"] = (os.path.join(folder, instances[0]), None)
    if not splits:
        return None
    cvat = any(os.path.basename(a) == "instances_default.json" for a, _ in splits.values())
    return CocoSource(root, splits, "COCO json in CVAT's layout" if cvat else "COCO json in annotations/")


def find_image_folder(root: str, ann_file: str, split: str, data: dict) -> str:
    """The folder the json's file_names are relative to: the first of images/<subset>/, images/,
    <subset>/, <root>/ that holds the first few listed images."""
    subset = os.path.basename(ann_file)[:-5]
    subset = subset[len("instances_"):] if subset.startswith("instances_") else subset
    candidates: List[str] = [os.path.join(root, "images", subset), os.path.join(root, "images"),
                             os.path.join(root, subset), os.path.join(root, split), root]
    recorded = (data.get("info") or {}).get("image_root") if isinstance(data.get("info"), dict) else None
    if isinstance(recorded, str) and os.path.isdir(recorded):  # written by tools/convert_dataset.py
        candidates.insert(0, recorded)
    names = [img.get("file_name") for img in data.get("images", [])[:5] if isinstance(img, dict)]
    names = [n for n in names if isinstance(n, str) and n]
    if not names:
        return next((c for c in candidates if os.path.isdir(c)), root)
    for folder in candidates:
        if all(os.path.exists(os.path.join(folder, n)) for n in names):
            return folder
    shown = ", ".join(os.path.relpath(c, root) + "/" for c in candidates[:-1])
    raise DatasetError(f"{ann_file}: its images (e.g. {names[0]}) are in none of {shown} or {root}; put them "
                       f"in images/{subset}/ beside annotations/.")
