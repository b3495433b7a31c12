#!/usr/bin/env python
"""Time the COCO box evaluation: pycocotools (datasets/coco_eval.py) vs faster-coco-eval
(datasets/coco_eval_faster.py, `--evaluator faster`) on the same synthetic val set, in one process.

The val set is synthetic ground truth (no images needed): --images images of
640x480 with 1-15 objects of 80 categories, and --dets detections per image
(jittered copies of the objects, wrong classes, false positives) fed in batches
of one image, as evaluate() does. Prints the time of each (update + gather +
accumulate + summarize), the ratio, and checks that the 12 numbers agree.

Example::

    python tools/benchmark_coco_eval.py --images 5000 --dets 100
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_val_set(num_images: int, dets_per_image: int, seed: int = 0):
    """(pycocotools COCO ground truth, {image id: prediction}) of a synthetic val set."""
    from pycocotools.coco import COCO

    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": f"class{i}"} for i in range(1, 81)]
    images, anns, preds = [], [], {}
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id:012d}.jpg"})
        n = int(rng.integers(1, 16))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(8, 240, (n, 2))
        labels = rng.integers(1, 81, n)
        for k in range(n):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(labels[k]),
                         "bbox": [*xy[k].tolist(), *wh[k].tolist()], "area": float(wh[k].prod()), "iscrowd": 0})
        src = rng.integers(0, n, dets_per_image)
        boxes = np.concatenate([xy[src], xy[src] + wh[src]], 1) + rng.normal(0, 12, (dets_per_image, 4))
        det_labels = np.where(rng.random(dets_per_image) < 0.7, labels[src], rng.integers(1, 81, dets_per_image))
        preds[image_id] = {"boxes": boxes, "scores": rng.random(dets_per_image), "labels": det_labels}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": cats}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, preds


def time_evaluator(cls, gt, preds) -> tuple:
    start = time.perf_counter()
    ev = cls(gt, ("bbox",), keep_results=False)
    for image_id, pred in preds.items():
        ev.update({image_id: pred})
    with contextlib.redirect_stdout(io.StringIO()):
        ev.synchronize_between_processes()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - start, np.asarray(ev.coco_eval["bbox"].stats[:12])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--dets", type=int, default=100, help="detections per image (DINO keeps num_select=300)")
    opts = p.parse_args(argv)

    from datasets.coco_eval import CocoEvaluator
    from datasets.coco_eval_faster import FasterCocoEvaluator, faster_coco_eval_available

    if not faster_coco_eval_available():
        print("error: faster-coco-eval is not installed; `pip install faster-coco-eval`.", file=sys.stderr)
        return 2
    gt, preds = make_val_set(opts.images, opts.dets)
    print(f"{opts.images} images, {len(gt.dataset['annotations'])} objects, {opts.images * opts.dets} detections")
    t_ref, ref = time_evaluator(CocoEvaluator, gt, preds)
    print(f"pycocotools      {t_ref:8.1f} s   AP {ref[0]:.4f}", flush=True)
    t_fast, fast = time_evaluator(FasterCocoEvaluator, gt, preds)
    print(f"faster-coco-eval {t_fast:8.1f} s   AP {fast[0]:.4f}")
    same = bool(np.allclose(ref, fast, rtol=0, atol=1e-9))
    print(f"speed-up x{t_ref / t_fast:.1f}; the 12 numbers {'agree' if same else 'DIFFER'} "
          f"(largest difference {np.abs(ref - fast).max():.1e})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
