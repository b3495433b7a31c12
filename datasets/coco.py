"""COCO-format detection dataset.

`build(image_set, args)` reads a split of the run's dataset (--data in any format of
datasets/formats, converted to a COCO dict in memory; --coco_path: the COCO 2017
layout, `<coco_path>/annotations/instances_<set>2017.json` and `<coco_path>/<set>2017/`),
checks it (see datasets/validation.py) and returns a `CocoDetection` whose items are

    image:  FloatTensor [3, H, W], ImageNet-normalized
    target: {'boxes':     FloatTensor [N, 4], (cx, cy, w, h) relative to (W, H),
             'labels':    int64 [N], category ids as in the json, or with
                          contiguous ids (detrex's models) their index 0..K-1
                          in the sorted category ids of the json,
             'image_id':  int64 [1],
             'area':      float [N],
             'iscrowd':   int64 [N] (all 0),
             'orig_size': int64 [2], (h, w) of the image as loaded,
             'size':      int64 [2], (h, w) after the transforms}

As in the original DINO code, crowd annotations (iscrowd=1) are left out of
the targets (COCO evaluation still sees them in the ground-truth json), boxes
are clipped to the image and those left without area are dropped. Images
without annotations stay in the dataset with empty targets.

Contiguous ids (config key `contiguous_category_ids`, detrex's models, which
predict 0..K-1): the K category ids of the json's 'categories', sorted, are
mapped to 0..K-1 in the targets; `category_ids_of(dataset)` gives the sorted
ids, with which the post-processor maps predictions back to the dataset's own
ids for evaluation and results files.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from typing import Any, Dict, List, Optional

import torch
import torch.utils.data
from pycocotools.coco import COCO

from .image_io import EXIF_POLICIES, load_image
from .transforms import make_coco_transforms
from .validation import (
    AnnotationReport,
    DatasetError,
    check_annotations,
    check_image_files,
    check_images_folder,
    check_label_space,
    read_annotation_file,
)

__all__ = ["CocoDetection", "build", "category_ids_of", "coco_from_dict", "unwrap_dataset",
           "make_coco_transforms"]

logger = logging.getLogger(__name__)

# Load-time warnings about json/file size mismatches per dataset (per worker).
MAX_SIZE_WARNINGS = 5


def coco_from_dict(data: Dict[str, Any]) -> COCO:
    """A pycocotools COCO over an already loaded dict (no second json read, no prints)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def unwrap_dataset(dataset):
    """The CocoDetection inside (possibly nested) torch Subsets."""
    inner = dataset
    while isinstance(inner, torch.utils.data.Subset):
        inner = inner.dataset
    if not isinstance(inner, CocoDetection):
        raise TypeError(f"expected a CocoDetection (or a Subset of one), got {type(inner).__name__}")
    return inner


class CocoDetection(torch.utils.data.Dataset):
    """Images and targets of one COCO-format annotation file (see module doc).

    Loads and checks `ann_file` unless an already checked `coco` is given.
    Attributes: `coco` (pycocotools COCO, the evaluation ground truth),
    `ids` (image ids in index order: sorted, as torchvision's CocoDetection),
    `img_folder`, `ann_file`, `report` (what the checks found),
    `category_ids` (with `contiguous_ids`: the sorted category ids, label i
    being category_ids[i]; else None).
    """

    def __init__(self, img_folder: str, ann_file: str, transforms=None, *, coco: Optional[COCO] = None,
                 report: Optional[AnnotationReport] = None, exif_transpose: str = "auto",
                 check_files: bool = True, contiguous_ids: bool = False):
        if exif_transpose not in EXIF_POLICIES:
            raise DatasetError(f"exif_transpose must be one of {EXIF_POLICIES}, got {exif_transpose!r}")
        self.img_folder = img_folder
        self.ann_file = ann_file
        self._transforms = transforms
        self.exif_transpose = exif_transpose
        if coco is None:
            check_images_folder(img_folder)
            data = read_annotation_file(ann_file, required_keys=("images",))
            data.setdefault("annotations", [])
            data.setdefault("categories", [])
            report = check_annotations(data, ann_file)
            if check_files:
                check_image_files(data["images"], img_folder, ann_file)
            report.log_warning()
            coco = coco_from_dict(data)
        self.coco = coco
        self.report = report
        self.ids: List[int] = sorted(coco.imgs.keys())
        self.category_ids: Optional[List[int]] = sorted(int(c) for c in coco.cats) if contiguous_ids else None
        self._label_of = {c: i for i, c in enumerate(self.category_ids or ())}
        self._size_warnings = 0

    @property
    def transforms(self):
        return self._transforms

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> str:
        return os.path.join(self.img_folder, self.coco.imgs[self.ids[index]]["file_name"])

    def load_image(self, image_id: int):
        info = self.coco.imgs[image_id]
        path = os.path.join(self.img_folder, info["file_name"])
        json_size = None
        if info.get("width") is not None and info.get("height") is not None:
            json_size = (int(round(info["width"])), int(round(info["height"])))
        img = load_image(path, image_id, json_size, self.exif_transpose)
        if json_size is not None and img.size != json_size:
            self._warn_size(path, image_id, img.size, json_size)
        return img

    def _warn_size(self, path, image_id, size, json_size) -> None:
        self._size_warnings += 1
        if self._size_warnings > MAX_SIZE_WARNINGS:
            return
        last = " (further mismatches are not reported)" if self._size_warnings == MAX_SIZE_WARNINGS else ""
        logger.warning("%s (image id %s) is %dx%d but %s says %dx%d; its boxes are used as they are and may be "
                       "misplaced%s", path, image_id, size[0], size[1], self.ann_file, json_size[0],
                       json_size[1], last)

    def prepare_target(self, image_id: int, width: int, height: int) -> Dict[str, torch.Tensor]:
        """Target in absolute (x0, y0, x1, y1) pixels, before any transform."""
        boxes, labels, areas = [], [], []
        isfinite = math.isfinite
        for ann in self.coco.imgToAnns.get(image_id, ()):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            if not (isfinite(x) and isfinite(y) and isfinite(w) and isfinite(h)):
                continue
            if self.category_ids is not None and ann["category_id"] not in self._label_of:
                continue  # not a category of the json (reported by the checks)
            boxes.append((x, y, w, h))
            labels.append(self._label_of[ann["category_id"]] if self.category_ids is not None
                          else ann["category_id"])
            areas.append(ann.get("area", w * h))
        box_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        box_t[:, 2:] += box_t[:, :2]  # to (x0, y0, x1, y1) in float32, as the original
        box_t[:, 0::2].clamp_(min=0, max=width)
        box_t[:, 1::2].clamp_(min=0, max=height)
        keep = (box_t[:, 2] > box_t[:, 0]) & (box_t[:, 3] > box_t[:, 1])
        return {
            "boxes": box_t[keep],
            "labels": torch.tensor(labels, dtype=torch.int64)[keep],
            "image_id": torch.tensor([image_id], dtype=torch.int64),
            "area": torch.tensor(areas, dtype=torch.float32)[keep],
            "iscrowd": torch.zeros(int(keep.sum()), dtype=torch.int64),
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
            "size": torch.tensor([height, width], dtype=torch.int64),
        }

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        img = self.load_image(image_id)
        target = self.prepare_target(image_id, img.width, img.height)
        if self._transforms is not None:
            img, target = self._transforms(img, target)
        return img, target

    def __repr__(self) -> str:
        return f"CocoDetection({len(self)} images, {self.ann_file})"


def build(image_set: str, args: Any, data: Any = None) -> CocoDetection:
    """Check and build `image_set` of the run's data (a run_data.RunData), or of the dataset that
    --data / --coco_path names when `data` is None (see module doc)."""
    if getattr(args, "masks", False):
        raise DatasetError("masks=True (instance segmentation) is not supported; set masks = False.")
    if data is not None:
        source, loaded = data.source, data.split_for(image_set)
    else:
        from .run_data import open_run_source, split_name
        source = open_run_source(args)
        name = split_name(source, image_set)
        if name != image_set and image_set == "test":
            logger.info("%s has no test split: 'test' uses the val images and annotations", source.root)
        loaded = source.load(name)
    coco_data, where = loaded.data, loaded.where
    loaded.notes.raise_if_fatal(where, len(coco_data["images"]))
    for line in loaded.notes.warnings(where):
        logger.warning(line)
    report = check_annotations(coco_data, where)
    check_image_files(coco_data["images"], loaded.image_root, where)
    contiguous = bool(getattr(args, "contiguous_category_ids", False))
    if loaded.labelled:
        check_label_space(report, getattr(args, "num_classes", None),
                          getattr(args, "dn_labelbook_size", None), bool(getattr(args, "use_dn", True)),
                          num_categories=len(coco_data["categories"]) if contiguous else None)
    report.log_warning()

    transforms = make_coco_transforms(image_set, args)
    exif = getattr(args, "exif_transpose", None) or source.exif_transpose
    return CocoDetection(loaded.image_root, where, transforms, coco=coco_from_dict(coco_data), report=report,
                         exif_transpose=exif, contiguous_ids=contiguous)


def category_ids_of(dataset) -> Optional[List[int]]:
    """The sorted category ids that labels 0..K-1 stand for (contiguous ids), else None."""
    try:
        return unwrap_dataset(dataset).category_ids
    except TypeError:
        return None
