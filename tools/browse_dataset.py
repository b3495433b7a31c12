#!/usr/bin/env python
"""Draw the ground-truth boxes and class names of a COCO-format dataset, one PNG per image,
to catch annotation mistakes before a long run.

Examples::

    python tools/browse_dataset.py --coco_path data/synthetic --split train --out browse/train
    python tools/browse_dataset.py --data data/synthetic_yolo --split val --out browse/yolo_val
    python tools/browse_dataset.py --coco_path data/synthetic --split train --out browse/aug \\
        --augment -c config/DINO/DINO_demo.py --max_images 20 --seed 1

With --augment the images and boxes are shown after the training augmentation of
the config (-c, --options), i.e. what the model is trained on. Crowd regions are
not drawn (training ignores them). The picture of images/sub/a.jpg is
OUT/sub/a.jpg.png, so a.jpg and a.png of one folder get two pictures. Pictures
are written atomically; --out may not be the images folder or inside it, and
existing pictures are replaced only with --overwrite.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_CONFIG = "config/DINO/DINO_4scale.py"


class BrowseError(RuntimeError):
    """A problem with the arguments or the output folder; the message says what to do."""


def get_parser() -> argparse.ArgumentParser:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--coco_path", help="COCO-format root (train2017/, val2017/, annotations/)")
    where.add_argument("--data", help="a dataset as exported (COCO json, YOLO, Pascal VOC, LabelMe), as main.py --data")
    p.add_argument("--split", default="train", choices=("train", "val"), help="which split to draw")
    p.add_argument("--out", required=True, help="folder for the pictures (created if needed)")
    p.add_argument("--augment", action="store_true", help="draw after the training augmentation of the config")
    p.add_argument("--config_file", "-c", default=DEFAULT_CONFIG, help="config whose augmentation --augment uses")
    p.add_argument("--options", nargs="+", action=DictAction, metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--max_images", type=int, default=0, help="draw only the first N images (0: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the augmentation")
    p.add_argument("--overwrite", action="store_true", help="replace pictures that exist in --out")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def dataset_args(opts) -> argparse.Namespace:
    """What the dataset code reads: the config's augmentation settings and --coco_path."""
    from util.args import load_config

    ns = argparse.Namespace(config_file=opts.config_file, options=opts.options, coco_path=opts.coco_path,
                            data=opts.data, dataset_file="coco", fix_size=False)
    cfg, _ = load_config(ns)
    for key, value in cfg.to_dict().items():
        setattr(ns, key, value)
    ns.num_classes = None  # browsing draws any category id; the model's label space is not checked
    return ns


def output_path(out: str, file_name: str) -> str:
    """OUT/<file_name>.png: unique per input file (a.jpg and a.png differ), subfolders kept."""
    rel = os.path.normpath(file_name).lstrip(os.sep)
    if rel.startswith(".."):
        rel = os.path.basename(rel)
    return os.path.join(out, rel + ".png")


def check_out(out: str, img_folder: str) -> None:
    out_real, img_real = os.path.realpath(out), os.path.realpath(img_folder)
    if out_real == img_real or out_real.startswith(img_real + os.sep):
        raise BrowseError(f"--out {out} is the images folder {img_folder} or inside it; choose a folder outside "
                          f"the dataset's images so that nothing is written among them.")
    from util.atomic import prepare_output_dir
    prepare_output_dir(out, flag="--out")  # a folder this run can write in; a killed run's temporary files go


def _denormalize(img, target) -> Tuple["object", List[List[float]]]:
    """A transformed sample (normalized tensor, cxcywh boxes in [0, 1]) back to a PIL image and
    xyxy pixel boxes."""
    import torch
    from PIL import Image

    from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    arr = ((img * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    h, w = arr.shape[:2]
    boxes = target["boxes"].reshape(-1, 4)
    cx, cy, bw, bh = boxes.unbind(-1)
    xyxy = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
    return Image.fromarray(arr), xyxy.tolist()


def draw_sample(dataset, index: int, names: Dict[int, str], augment: bool):
    """The picture of one sample, drawn by util.visualizer."""
    from util.visualizer import draw_detections

    if augment:
        img, target = dataset[index]
        image, boxes = _denormalize(img, target)
    else:
        image_id = dataset.ids[index]
        image = dataset.load_image(image_id)
        target = dataset.prepare_target(image_id, image.width, image.height)
        boxes = target["boxes"].tolist()
    return draw_detections(image, boxes, target["labels"].tolist(), None, names)


def save_png_atomic(image, path: str) -> None:
    from util.atomic import atomic_output
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG")


def browse(opts) -> List[str]:
    """Write the pictures; returns their paths."""
    import random

    import numpy as np
    import torch
    from tqdm import tqdm

    from datasets import build_dataset
    from datasets.transforms import make_coco_transforms

    args = dataset_args(opts)
    dataset = build_dataset(opts.split, args)
    check_out(opts.out, dataset.img_folder)
    dataset._transforms = make_coco_transforms("train", args) if opts.augment else None
    names = {int(c["id"]): str(c["name"]) for c in dataset.coco.cats.values()}
    count = len(dataset) if opts.max_images <= 0 else min(opts.max_images, len(dataset))
    targets = [output_path(opts.out, dataset.coco.imgs[dataset.ids[i]]["file_name"]) for i in range(count)]
    if len(set(targets)) != len(targets):  # the same file listed twice in the json
        targets = [f"{t[:-4]}.id{dataset.ids[i]}.png" for i, t in enumerate(targets)]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not opts.overwrite:
        raise BrowseError(f"--out {opts.out} already holds {len(existing)} of the pictures (e.g. {existing[0]}); "
                          f"pass --overwrite or choose another folder.")
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)
    for index in tqdm(range(count), desc=f"drawing {opts.split}", disable=not sys.stderr.isatty()):
        save_png_atomic(draw_sample(dataset, index, names, opts.augment), targets[index])
    return targets


def run(argv: Optional[Sequence[str]] = None) -> int:
    opts = get_parser().parse_args(argv)
    from datasets.validation import DatasetError, user_message
    from util.atomic import OutputError
    from util.slconfig import ConfigError

    try:
        written = browse(opts)
    except (BrowseError, ConfigError, OSError, OutputError) as exc:
        if opts.debug:
            raise
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
              file=sys.stderr)
        return 2
    except DatasetError as exc:
        if opts.debug:
            raise
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the dataset, the traceback with --debug
        if opts.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, opts.coco_path or opts.data), file=sys.stderr)
        return 1
    print(f"wrote {len(written)} pictures to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
