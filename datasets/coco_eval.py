"""COCO box evaluation that works across torch.distributed processes.

Each process calls `update()` with the detections of the images it saw; they
are matched to the ground truth right away, image by image (pycocotools'
per-image evaluation, which does not depend on other images).
`synchronize_between_processes()` gathers the per-image results of all
processes, keeps one per image id (DistributedSampler repeats images to even
out the ranks) in sorted order, so `accumulate()` / `summarize()` give the
same numbers as one process evaluating every image.

Prediction format, per image id: {'scores': [N], 'labels': [N] (category
ids), 'boxes': [N, 4] (x0, y0, x1, y1) in pixels of the original image};
tensors, arrays or lists. An empty dict or N = 0 means no detections.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from util.metric_logger import COCO_STAT_NAMES
from util.misc import all_gather

__all__ = ["CocoEvaluator", "to_coco_results", "save_coco_results"]

SUPPORTED_IOU_TYPES = ("bbox",)
STAT_NAMES = COCO_STAT_NAMES  # names of the 12 numbers of COCOeval.stats, in order


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _detections_array(prediction: Mapping[str, Any] | None) -> np.ndarray:
    """[N, 6] float64 rows (x, y, w, h, score, category_id) of one image's prediction."""
    if not prediction:
        return np.zeros((0, 6))
    boxes = _as_numpy(prediction["boxes"]).reshape(-1, 4)
    scores = _as_numpy(prediction["scores"]).reshape(-1)
    labels = _as_numpy(prediction["labels"]).reshape(-1)
    if not (len(boxes) == len(scores) == len(labels)):
        raise ValueError(f"prediction has {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels; "
                         f"they must have the same length")
    out = np.empty((len(boxes), 6))
    out[:, :2] = boxes[:, :2]
    out[:, 2:4] = boxes[:, 2:] - boxes[:, :2]  # in the boxes' own dtype, as the original
    out[:, 4] = scores
    out[:, 5] = labels
    return out


def _rows_to_results(image_id: int, rows: np.ndarray) -> List[Dict[str, Any]]:
    return [
        {"image_id": image_id, "category_id": int(c), "bbox": [x, y, w, h], "score": s}
        for x, y, w, h, s, c in rows.tolist()
    ]


def to_coco_results(predictions: Mapping[int, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Detections as a COCO results list: [{image_id, category_id, bbox [x, y, w, h], score}, ...]."""
    results: List[Dict[str, Any]] = []
    for image_id, prediction in predictions.items():
        results.extend(_rows_to_results(int(image_id), _detections_array(prediction)))
    return results


def save_coco_results(results: Sequence[Dict[str, Any]], path: str) -> None:
    """Write a COCO results list as json (the format of COCO test-dev submissions)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(list(results), f)


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _object_array(items: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def checked_iou_types(iou_types: Sequence[str]) -> Tuple[str, ...]:
    """`iou_types` as a tuple (a single string allowed); ValueError for one this code does not evaluate."""
    if isinstance(iou_types, str):
        iou_types = (iou_types,)
    unsupported = [t for t in iou_types if t not in SUPPORTED_IOU_TYPES]
    if unsupported:
        raise ValueError(f"iou types {unsupported} are not supported (only {SUPPORTED_IOU_TYPES})")
    return tuple(iou_types)


def gather_detections(local: Dict[int, np.ndarray]) -> Dict[int, np.ndarray]:
    """Every process's {image id: detection rows}, one entry per image (call on all ranks)."""
    merged: Dict[int, np.ndarray] = {}
    for part in all_gather(local):
        for image_id, rows in part.items():
            merged.setdefault(image_id, rows)
    return merged


class DetectionResults:
    """The results-file half shared by the evaluators: `self._detections` holds
    {image id: detection rows} (every process's after synchronize)."""

    _detections: Dict[int, np.ndarray]

    def coco_results(self) -> List[Dict[str, Any]]:
        """All detections seen (by every process after synchronize) as a COCO results list."""
        results: List[Dict[str, Any]] = []
        for image_id in sorted(self._detections):
            results.extend(_rows_to_results(image_id, self._detections[image_id]))
        return results

    def save_results(self, path: str) -> None:
        save_coco_results(self.coco_results(), path)


class CocoEvaluator(DetectionResults):
    """Box AP of detections against a pycocotools COCO ground truth (see module doc).

    After `accumulate()`, `coco_eval['bbox'].stats` holds the 12 COCO numbers
    (names in STAT_NAMES); `summarize()` prints them.
    """

    def __init__(self, coco_gt: COCO, iou_types: Sequence[str] = ("bbox",), useCats: bool = True,
                 keep_results: bool = True):
        self.coco_gt = _prepare_ground_truth(coco_gt)
        self.iou_types = checked_iou_types(iou_types)
        self.use_cats = useCats
        self.keep_results = keep_results
        self.coco_eval: Dict[str, COCOeval] = {}
        for iou_type in self.iou_types:
            ev = COCOeval(self.coco_gt, iouType=iou_type)
            ev.params.useCats = useCats
            self.coco_eval[iou_type] = ev
        self.img_ids: List[int] = []
        self.eval_imgs: Dict[str, List[np.ndarray]] = {t: [] for t in self.iou_types}
        self._detections: Dict[int, np.ndarray] = {}
        self._synchronized = False

    # ---------------------------------------------------------------- update
    def update(self, predictions: Mapping[int, Mapping[str, Any]]) -> None:
        """Evaluate the detections of some images (see module doc for the format)."""
        dets: Dict[int, np.ndarray] = {}
        for image_id, prediction in predictions.items():
            image_id = int(image_id)
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"prediction for image id {image_id}, which is not in the ground truth")
            dets[image_id] = _detections_array(prediction)
        if not dets:
            return
        self._synchronized = False
        img_ids = sorted(dets)
        self.img_ids.extend(img_ids)
        if self.keep_results:
            for image_id in img_ids:
                self._detections.setdefault(image_id, dets[image_id])
        coco_dt = self._results_coco(dets)
        for iou_type in self.iou_types:
            ev = self.coco_eval[iou_type]
            ev.cocoDt = coco_dt
            ev.params.imgIds = img_ids
            ev.params.useCats = self.use_cats
            _quiet(ev.evaluate)
            n_cats = len(ev.params.catIds) if self.use_cats else 1
            per_image = _object_array(ev.evalImgs).reshape(n_cats, len(ev.params.areaRng), len(img_ids))
            self.eval_imgs[iou_type].append(per_image)

    def _results_coco(self, dets: Dict[int, np.ndarray]) -> COCO:
        """A COCO object of detections (what COCO.loadRes builds; also for no detections at all)."""
        anns = []
        for image_id, rows in dets.items():
            for ann in _rows_to_results(image_id, rows):
                ann["id"] = len(anns) + 1
                ann["area"] = ann["bbox"][2] * ann["bbox"][3]
                ann["iscrowd"] = 0
                anns.append(ann)
        res = COCO()
        res.dataset = {
            "images": [self.coco_gt.imgs[i] for i in dets],
            "categories": copy.deepcopy(self.coco_gt.dataset.get("categories", [])),
            "annotations": anns,
        }
        _quiet(res.createIndex)
        return res

    # ------------------------------------------------------------ distributed
    def synchronize_between_processes(self) -> None:
        """Gather every process's per-image results (call on all ranks)."""
        for iou_type in self.iou_types:
            ev = self.coco_eval[iou_type]
            n_cats = len(ev.params.catIds) if self.use_cats else 1
            parts = self.eval_imgs[iou_type]
            local = (np.concatenate(parts, axis=2) if parts
                     else np.empty((n_cats, len(ev.params.areaRng), 0), dtype=object))
            gathered_ids = all_gather(list(self.img_ids))
            gathered_evals = all_gather(local)
            ids = np.array([i for part in gathered_ids for i in part], dtype=np.int64)
            evals = np.concatenate(gathered_evals, axis=2)
            ids, first = np.unique(ids, return_index=True)
            evals = evals[..., first]
            ev.evalImgs = list(evals.flatten())
            ev.params.imgIds = [int(i) for i in ids]
            ev._paramsEval = copy.deepcopy(ev.params)
        if self.keep_results:
            self._detections = gather_detections(self._detections)
        self._synchronized = True

    # ---------------------------------------------------------------- results
    def accumulate(self) -> None:
        if not self._synchronized:
            self.synchronize_between_processes()
        for ev in self.coco_eval.values():
            ev.accumulate()

    def summarize(self) -> None:
        """Print the 12 COCO numbers per iou type (accumulating first if needed)."""
        for iou_type, ev in self.coco_eval.items():
            if not ev.eval:
                self.accumulate()
            print(f"IoU metric: {iou_type}")
            ev.summarize()

    def stats_dict(self, iou_type: str = "bbox") -> Dict[str, float]:
        """The 12 numbers of `summarize()` by name (after summarize)."""
        return dict(zip(STAT_NAMES, (float(v) for v in self.coco_eval[iou_type].stats)))



def _prepare_ground_truth(coco_gt: COCO) -> COCO:
    """A private copy of the ground truth, with annotation ids made unique and positive.

    pycocotools treats a match with annotation id 0 as no match, and repeated
    ids make it look up the wrong annotation.
    """
    gt = copy.deepcopy(coco_gt)
    anns = gt.dataset.get("annotations", [])
    ids = [a.get("id") for a in anns]
    if any(not isinstance(i, int) or i <= 0 for i in ids) or len(set(ids)) != len(ids):
        for new_id, ann in enumerate(anns, start=1):
            ann["id"] = new_id
        _quiet(gt.createIndex)
    return gt
