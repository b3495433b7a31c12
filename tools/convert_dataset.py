#!/usr/bin/env python
"""Write any dataset --data reads (COCO in the COCO 2017 / Roboflow / CVAT layouts, YOLO, Pascal VOC,
LabelMe) as COCO json files: DST/instances_<split>.json, one per split.

Examples::

    python tools/convert_dataset.py data/synthetic_shapes coco_json
    python tools/convert_dataset.py data/synthetic_yolo coco_json_yolo

Training needs no conversion (main.py --data reads the dataset as it is, converting in memory);
this is for other tools that want the file. Category ids and names are the dataset's own (YOLO,
VOC and LabelMe number classes from 0), boxes are pixels [x, y, width, height], and each json's
file_names are relative to the folder its info.image_root names (printed). The images are not
copied, and nothing is written into SRC; files in DST are replaced only with --overwrite.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="the dataset's folder (or its data.yaml / COCO .json)")
    p.add_argument("dst", help="folder for instances_<split>.json")
    p.add_argument("--val_split", type=float, default=None, metavar="FRACTION",
                   help="for data without a validation split: hold out this fraction of train (as main.py does)")
    p.add_argument("--seed", type=int, default=42, help="the seed of --val_split (main.py's --seed)")
    p.add_argument("--overwrite", action="store_true", help="replace json files that exist in DST")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def convert(opts) -> None:
    from datasets.convert import coco_dicts
    from util.atomic import atomic_write_text, check_output_file

    src = os.path.realpath(opts.src if os.path.isdir(opts.src) else os.path.dirname(opts.src) or ".")
    dst = os.path.realpath(opts.dst)
    if dst == src or dst.startswith(src + os.sep):
        raise ValueError(f"DST {opts.dst} is inside SRC {src}; nothing is written into the dataset: choose a folder "
                         f"outside it.")
    dicts = coco_dicts(opts.src, opts.val_split, opts.seed)
    paths = {name: check_output_file(os.path.join(opts.dst, f"instances_{name}.json"), inputs=[opts.src],
                                     overwrite=opts.overwrite, flag="DST") for name in dicts}
    for name, data in dicts.items():
        atomic_write_text(paths[name], json.dumps(data))
        print(f"{name}: {len(data['images'])} images, {len(data['annotations'])} boxes, "
              f"{len(data['categories'])} categories -> {paths[name]} (images relative to {data['info']['image_root']})")


def run(argv: Optional[Sequence[str]] = None) -> int:
    opts = get_parser().parse_args(argv)
    from datasets.errors import DatasetError, user_message
    from util.atomic import OutputError

    try:
        convert(opts)
    except DatasetError as exc:
        if opts.debug:
            raise
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 2
    except (ValueError, OutputError) as exc:
        if opts.debug:
            raise
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the dataset, the traceback with --debug
        if opts.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, opts.src), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
