"""COCO box evaluation with faster-coco-eval (`--evaluator faster`): the same 12 numbers as
pycocotools (datasets/coco_eval.py) on the same detections, computed in C++.

`FasterCocoEvaluator` has CocoEvaluator's interface (update, synchronize_between_processes,
accumulate, summarize, coco_eval['bbox'].stats / .eval['precision'] / .params, coco_results,
save_results) but keeps the detections instead of matching them image by image: the
processes' detections are gathered (one set per image id) and evaluated once, over the
images that received predictions (as CocoEvaluator does).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO

from datasets.coco_eval import (DetectionResults, _detections_array, _prepare_ground_truth, checked_iou_types,
                                gather_detections)

__all__ = ["FasterCocoEvaluator", "faster_coco_eval_available"]


def faster_coco_eval_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


class FasterCocoEvaluator(DetectionResults):
    """Box AP with faster-coco-eval (see module doc)."""

    def __init__(self, coco_gt: COCO, iou_types: Sequence[str] = ("bbox",), useCats: bool = True,
                 keep_results: bool = True):
        from faster_coco_eval import COCO as FasterCOCO

        self.iou_types = checked_iou_types(iou_types)
        self.coco_gt = _prepare_ground_truth(coco_gt)
        with contextlib.redirect_stdout(io.StringIO()):
            self._gt = FasterCOCO(self.coco_gt.dataset)
        self.use_cats = useCats
        self.keep_results = keep_results
        self.coco_eval: Dict[str, Any] = {}
        self._detections: Dict[int, np.ndarray] = {}
        self._synchronized = False

    def update(self, predictions: Mapping[int, Mapping[str, Any]]) -> None:
        """Keep the detections of some images (CocoEvaluator's format)."""
        for image_id, prediction in predictions.items():
            image_id = int(image_id)
            if image_id not in self.coco_gt.imgs:
                raise ValueError(f"prediction for image id {image_id}, which is not in the ground truth")
            self._detections.setdefault(image_id, _detections_array(prediction))
        self._synchronized = False

    def synchronize_between_processes(self) -> None:
        """Gather every process's detections, one set per image id (call on all ranks)."""
        self._detections = gather_detections(self._detections)
        self._synchronized = True

    def accumulate(self) -> None:
        from faster_coco_eval import COCOeval_faster

        if not self._synchronized:
            self.synchronize_between_processes()
        results = self.coco_results()
        img_ids = sorted(self._detections)
        with contextlib.redirect_stdout(io.StringIO()):
            dt = self._gt.loadRes(results) if results else self._empty_results(img_ids)
        for iou_type in self.iou_types:
            ev = COCOeval_faster(self._gt, dt, iouType=iou_type, print_function=print)
            ev.params.useCats = self.use_cats
            ev.params.imgIds = img_ids
            with contextlib.redirect_stdout(io.StringIO()):
                ev.evaluate()
                ev.accumulate()
            self.coco_eval[iou_type] = ev

    def _empty_results(self, img_ids: List[int]):
        from faster_coco_eval import COCO as FasterCOCO

        dt = FasterCOCO()
        dt.dataset = {"images": [self.coco_gt.imgs[i] for i in img_ids],
                      "categories": list(self.coco_gt.dataset.get("categories", [])), "annotations": []}
        dt.createIndex()
        return dt

    def summarize(self) -> None:
        """Print the 12 COCO numbers per iou type (accumulating first if needed)."""
        if not self.coco_eval:
            self.accumulate()
        for iou_type, ev in self.coco_eval.items():
            print(f"IoU metric: {iou_type}")
            ev.summarize()
