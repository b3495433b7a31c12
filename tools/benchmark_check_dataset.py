#!/usr/bin/env python
"""How long reading a dataset and checking it take at scale: N tiny images with a few boxes each,
written as YOLO and as COCO json, then timed: the YOLO reader (label files + image headers), the COCO
json reader, the checks at the start of training (datasets/doctor.scan_split) and the doctor's pass
over the image files. Prints seconds and microseconds per image.

Example::

    python tools/benchmark_check_dataset.py --images 2000 --dir /tmp/bench_check
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(root: str, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    tile = Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    images_dir, labels_dir = os.path.join(root, "images", "train"), os.path.join(root, "labels", "train")
    os.makedirs(images_dir)
    os.makedirs(labels_dir)
    first = os.path.join(images_dir, f"{0:07d}.jpg")
    tile.save(first, quality=80)
    images, anns = [], []
    for i in range(n):
        name = f"{i:07d}.jpg"
        if i:
            shutil.copyfile(first, os.path.join(images_dir, name))
        boxes = rng.uniform(0.1, 0.4, (3, 4))
        with open(os.path.join(labels_dir, f"{i:07d}.txt"), "w") as f:
            f.write("".join(f"{k} {b[0] + 0.3} {b[1] + 0.3} {b[2] / 2} {b[3] / 2}\n" for k, b in enumerate(boxes)))
        images.append({"id": i + 1, "file_name": f"images/train/{name}", "width": 48, "height": 32})
        anns += [{"id": len(anns) + 1, "image_id": i + 1, "category_id": k, "iscrowd": 0,
                  "bbox": [float(b[0] * 48), float(b[1] * 32), float(b[2] * 20), float(b[3] * 14)]}
                 for k, b in enumerate(boxes)]
    with open(os.path.join(root, "data.yaml"), "w") as f:
        f.write("train: images/train\nnames: [a, b, c]\n")
    os.makedirs(os.path.join(root, "coco"))
    with open(os.path.join(root, "coco", "all.json"), "w") as f:
        json.dump({"images": images, "annotations": anns, "info": {"image_root": root},
                   "categories": [{"id": k, "name": "abc"[k]} for k in range(3)]}, f)


def timed(label: str, n: int, fn):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:44s} {dt:8.2f} s  {dt / n * 1e6:8.1f} us/image")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="how many images")
    p.add_argument("--dir", required=True, help="a new folder to write the dataset to (removed afterwards)")
    opts = p.parse_args(argv)
    from datasets.doctor import check_image_files, scan_split
    from datasets.formats import open_dataset
    from datasets.validation import check_annotations

    if os.path.exists(opts.dir):
        print(f"error: {opts.dir} exists; give a new folder", file=sys.stderr)
        return 2
    n = opts.images
    try:
        timed("write the dataset (not the subject)", n, lambda: write(opts.dir, n))
        yolo = timed("YOLO: read labels + image headers", n, lambda: open_dataset(opts.dir).load("train"))
        coco = timed("COCO json: read", n, lambda: open_dataset(os.path.join(opts.dir, "coco", "all.json"))
                     .load("train"))
        timed("loader's checks (check_annotations), YOLO", n, lambda: check_annotations(yolo.data, yolo.where))
        scan = timed("checks at the start of training (scan_split)", n, lambda: scan_split(yolo))
        timed("doctor: open every image (header)", n, lambda: check_image_files(scan))
        assert len(coco.data["images"]) == len(yolo.data["images"]) == n
    finally:
        shutil.rmtree(opts.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
