#!/usr/bin/env python
"""Write a small synthetic COCO-format detection dataset (nothing to download).

Example (the CPU demo)::

    python tools/make_synthetic_coco.py --out data/synthetic --num-train 600 --num-val 100 \
        --min-size 128 --max-size 192 --classes 5 --seed 0

then train with ``--coco_path data/synthetic`` and the printed ``num_classes`` /
``dn_labelbook_size``. The generator lives in ``datasets/synthetic.py``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasets.synthetic import SHAPE_NAMES, SyntheticDataError, generate_synthetic_coco  # noqa: E402


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
    p.add_argument("--overwrite", action="store_true",
                   help="replace a synthetic dataset this tool wrote to --out before (a folder holding anything "
                        "else is never written to)")
    return p


def _generate(args) -> dict:
    return generate_synthetic_coco(
        args.out, args.num_train, args.num_val,
        num_classes=args.classes, image_size=args.image_size, min_size=args.min_size, max_size=args.max_size,
        min_objects=args.min_objects, max_objects=args.max_objects, min_scale=args.min_scale,
        max_scale=args.max_scale, max_overlap=args.max_overlap,
        max_occlusion=args.max_occlusion, empty_prob=args.empty_prob,
        max_distractors=args.distractors, image_format=args.format, seed=args.seed, overwrite=args.overwrite,
    )


def main(argv=None) -> dict:
    args = get_parser().parse_args(argv)
    t0 = time.time()
    try:
        summary = _generate(args)
    except (SyntheticDataError, ValueError, OSError, RuntimeError) as exc:  # RuntimeError: util.atomic.OutputError
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
              file=sys.stderr)
        raise SystemExit(2) from None
    dt = time.time() - t0
    print(f"Synthetic COCO dataset written to {summary['root']} in {dt:.1f}s")
    for name, s in summary["splits"].items():
        print(f"  {name:5s}: {s['images']} images in {s['image_dir']}, {s['annotations']} boxes "
              f"({s['empty_images']} images without objects) -> {s['ann_file']}")
    cats = ", ".join(f"{c['id']}={c['name']}" for c in summary["categories"])
    print(f"  categories: {cats}")
    print(f"Use: --coco_path {args.out} --options num_classes={summary['num_classes']} "
          f"dn_labelbook_size={summary['dn_labelbook_size']}")
    print(f"  (num_classes = max category id + 1 = {summary['num_classes']}; "
          f"dn_labelbook_size must be >= num_classes)")
    return summary


if __name__ == "__main__":
    main()
