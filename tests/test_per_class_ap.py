"""Per-class AP / AP50 (datasets/coco_per_class.py) against pycocotools evaluating one category at a time."""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets.coco_per_class import format_per_class_table, per_class_ap

NAMES = {1: "circle", 2: "square", 3: "triangle", 5: "ring"}  # id 5: no ground truth


def _ground_truth_and_detections(seed: int = 0):
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for image_id in range(1, 9):
        images.append({"id": image_id, "width": 200, "height": 160, "file_name": f"{image_id}.png"})
        for _ in range(rng.integers(1, 5)):
            cat = int(rng.choice([1, 2, 3]))
            x, y = rng.uniform(0, 120, 2)
            w, h = rng.uniform(10, 70, 2)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            # a jittered detection of it, sometimes with the wrong class, and a false positive
            jitter = rng.normal(0, 6, 4)
            wrong = rng.random() < 0.2
            dets.append({"image_id": image_id, "category_id": int(rng.choice([1, 2, 3, 5])) if wrong else cat,
                         "bbox": [x + jitter[0], y + jitter[1], max(2, w + jitter[2]), max(2, h + jitter[3])],
                         "score": float(rng.uniform(0.3, 1.0))})
            dets.append({"image_id": image_id, "category_id": int(rng.choice([1, 2, 3, 5])),
                         "bbox": list(rng.uniform(0, 120, 2)) + list(rng.uniform(10, 50, 2)),
                         "score": float(rng.uniform(0.0, 0.5))})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": i, "name": n} for i, n in NAMES.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dets))
    return gt, dt


def _evaluate(gt, dt, cat_ids=None) -> COCOeval:
    ev = COCOeval(gt, dt, iouType="bbox")
    if cat_ids is not None:
        ev.params.catIds = cat_ids
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def test_per_class_ap_equals_pycocotools_on_each_category_alone():
    gt, dt = _ground_truth_and_detections()
    per_class = per_class_ap(_evaluate(gt, dt), NAMES)
    assert list(per_class) == ["circle", "square", "triangle", "ring"]
    for cat_id, name in NAMES.items():
        alone = _evaluate(gt, dt, [cat_id]).stats  # summarize() over this one category
        if cat_id == 5:
            assert alone[0] == -1 and per_class[name] == {"AP": None, "AP50": None}
            continue
        assert per_class[name]["AP"] == pytest.approx(alone[0], abs=1e-12)
        assert per_class[name]["AP50"] == pytest.approx(alone[1], abs=1e-12)
        assert 0 < per_class[name]["AP"] < per_class[name]["AP50"] <= 1
    # the overall AP is the mean over the categories that have ground truth
    overall = _evaluate(gt, dt).stats[0]
    assert overall == pytest.approx(np.mean([v["AP"] for v in per_class.values() if v["AP"] is not None]))


def test_without_categories_or_accumulation_there_is_no_table():
    gt, dt = _ground_truth_and_detections()
    ev = COCOeval(gt, dt, iouType="bbox")
    assert per_class_ap(ev, NAMES) == {}  # not accumulated
    ev.params.useCats = 0
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    assert per_class_ap(ev, NAMES) == {}


def test_duplicate_names_are_kept_apart_and_table_lists_every_class():
    gt, dt = _ground_truth_and_detections()
    names = {1: "shape", 2: "shape", 3: "triangle", 5: "ring"}
    per_class = per_class_ap(_evaluate(gt, dt), names)
    assert list(per_class) == ["shape (id 1)", "shape (id 2)", "triangle", "ring"]
    table = format_per_class_table(per_class)
    lines = table.splitlines()
    assert lines[0].count("category") == 3 and len(lines) == 2 + 2  # header, rule, two rows of <= 3
    assert f"{100 * per_class['triangle']['AP']:.1f}" in table and "ring" in table and " - " in table + " "
