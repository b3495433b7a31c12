#!/usr/bin/env python
"""Write a small synthetic detection dataset (nothing to download), in COCO's layout or any other
format --data reads.

Examples (the first is the CPU demo's)::

    python tools/make_synthetic_coco.py --out data/synthetic --num-train 600 --num-val 100 \
        --min-size 128 --max-size 192 --classes 5 --seed 0
    python tools/make_synthetic_coco.py --out data/synthetic_yolo --num-train 40 --num-val 10 --layout yolo

then train with ``--data data/synthetic`` (num_classes and dn_labelbook_size are set from the
data). --layout writes the same images and boxes as COCO 2017 (coco), Roboflow's COCO export
(roboflow), CVAT's COCO export (cvat), YOLO (yolo), Pascal VOC (voc) or LabelMe (labelme). The
generator lives in ``datasets/synthetic.py``, the other layouts in ``datasets/synthetic_layouts.py``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.synthetic import SHAPE_NAMES, SyntheticDataError, generate_synthetic_coco  # noqa: E402
from datasets.synthetic_layouts import LAYOUTS, LayoutError, write_layout  # noqa: E402


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataset root (train2017/, val2017/, annotations/ are created)")
    p.add_argument("--num-train", type=int, default=400, help="number of training images")
    p.add_argument("--num-val", type=int, default=100, help="number of validation images")
    p.add_argument("--image-size", type=int, default=None,
                   help="square images of this size (overrides --min-size/--max-size)")
    p.add_argument("--min-size", type=int, default=128, help="smallest width/height (each drawn independently)")
    p.add_argument("--max-size", type=int, default=200, help="largest width/height")
    p.add_argument("--min-objects", type=int, default=1, help="fewest objects per image")
    p.add_argument("--max-objects", type=int, default=4, help="most objects per image (fewer if they do not fit)")
    p.add_argument("--min-scale", type=float, default=0.15, help="smallest object size / shorter image side")
    p.add_argument("--max-scale", type=float, default=0.5, help="largest object size / shorter image side")
    p.add_argument("--max-overlap", type=float, default=0.15, help="largest IoU between two objects' extents")
    p.add_argument("--max-occlusion", type=float, default=0.25,
                   help="largest fraction of an object that objects drawn over it may hide")
    p.add_argument("--empty-prob", type=float, default=0.0,
                   help="probability that an image has no objects at all (default 0: off)")
    p.add_argument("--distractors", type=int, default=3,
                   help="at most this many unannotated lines/dots/arcs per image (0: none)")
    p.add_argument("--classes", type=int, default=5,
                   help=f"number of shape classes, 1..{len(SHAPE_NAMES)}; in order: {', '.join(SHAPE_NAMES)}")
    p.add_argument("--format", choices=["jpg", "png"], default="jpg", help="image file format")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    p.add_argument("--layout", choices=LAYOUTS, default="coco", help="the format to write (default: coco)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a synthetic dataset this tool wrote to --out before (a folder holding anything "
                        "else is never written to)")
    return p


def _generate(args) -> dict:
    if args.layout == "coco":
        return _generate_coco(args, args.out, args.overwrite)
    import shutil
    import tempfile
    staging = tempfile.mkdtemp(prefix="synthetic_coco_")
    try:  # drawn in COCO's layout first, then written out in the asked one
        summary = _generate_coco(args, staging, False)
        summary.update(write_layout(staging, args.out, args.layout, overwrite=args.overwrite))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _generate_coco(args, out: str, overwrite: bool) -> dict:
    return generate_synthetic_coco(
        out, args.num_train, args.num_val,
        num_classes=args.classes, image_size=args.image_size, min_size=args.min_size, max_size=args.max_size,
        min_objects=args.min_objects, max_objects=args.max_objects, min_scale=args.min_scale,
        max_scale=args.max_scale, max_overlap=args.max_overlap,
        max_occlusion=args.max_occlusion, empty_prob=args.empty_prob,
        max_distractors=args.distractors, image_format=args.format, seed=args.seed, overwrite=overwrite,
    )


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    t0 = time.time()
    try:
        summary = _generate(args)
    except (SyntheticDataError, LayoutError, ValueError, OSError, RuntimeError) as exc:  # RuntimeError: OutputError
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
              file=sys.stderr)
        raise SystemExit(2) from None
    dt = time.time() - t0
    if args.layout == "coco":
        print(f"Synthetic COCO dataset written to {summary['root']} in {dt:.1f}s")
        for name, split in summary["splits"].items():
            print(f"  {name:5s}: {split['images']} images in {split['image_dir']}, {split['annotations']} boxes "
                  f"({split['empty_images']} images without objects) -> {split['ann_file']}")
    else:
        print(f"Synthetic dataset written to {summary['root']} as {args.layout} in {dt:.1f}s: "
              f"{', '.join(summary['entries'])}")
        for name, split in summary["splits"].items():
            print(f"  {name:5s}: {split['images']} images, {split['annotations']} boxes "
                  f"({split['empty_images']} images without objects)")
    first = 0 if args.layout in ("yolo", "voc", "labelme") else 1  # those formats number classes from 0
    cats = ", ".join(f"{i + first}={c['name']}" for i, c in enumerate(summary["categories"]))
    print(f"  categories: {cats}")
    print(f"Train with: python main.py -c config/DINO/DINO_demo.py --data {args.out} --output_dir OUTPUT "
          f"(num_classes / dn_labelbook_size are set from the data)")
    return summary


if __name__ == "__main__":
    main()
