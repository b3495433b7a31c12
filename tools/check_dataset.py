#!/usr/bin/env python
"""The dataset doctor: what is wrong with a dataset's labels, before a long run finds out.

Examples::

    python tools/check_dataset.py data/synthetic_shapes
    python tools/check_dataset.py data/synthetic_shapes --out check_shapes --decode --options num_classes=6

PATH is a dataset as --data reads it (COCO json in the COCO 2017, Roboflow or CVAT layout, YOLO,
Pascal VOC or LabelMe). For every split it prints per class the images and boxes, and each kind
of problem once with its count and a few examples: boxes outside the image or of zero size (with
what the loader does: clip or drop), images missing or unreadable (header read; --decode decodes
them fully), images whose size is not what the labels say, images without boxes, duplicate file
names or ids, crowd boxes, tiny boxes and extreme aspect ratios, and category ids against the
settings (-c CONFIG / --options; default 'auto'). Then the settings to train with, and the verdict.

It writes OUT/report.json and OUT/worst_offenders.png (the images with the worst problems, their
boxes coloured: red refused, orange repaired, yellow suspicious); OUT defaults to
./check_<dataset folder name> and may not lie inside the dataset (nothing is written there).
Exit status: 0 training would accept the data, 1 training would refuse it, 2 a usage or output error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CheckError(RuntimeError):
    """A problem with the arguments or the output folder; the message says what to do."""


def get_parser() -> argparse.ArgumentParser:
    from util.slconfig import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="the dataset's folder (or its data.yaml / COCO .json)")
    p.add_argument("--out", default=None, help="folder for report.json and worst_offenders.png "
                                               "(default: ./check_<dataset folder name>)")
    p.add_argument("--config_file", "-c", default=None, help="config whose num_classes / dn_labelbook_size / "
                                                             "contiguous_category_ids to check (default: auto)")
    p.add_argument("--options", nargs="+", action=DictAction, metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--no-images", dest="images", action="store_false", help="do not open the image files")
    p.add_argument("--decode", action="store_true", help="decode every image fully (slower; finds truncated files)")
    p.add_argument("--grid", type=int, default=16, help="how many images the picture shows (0: no picture)")
    p.add_argument("--overwrite", action="store_true", help="replace report.json / worst_offenders.png in --out")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def settings_for(opts):
    from datasets.doctor_report import Settings
    from util.args import args_from_config

    if opts.config_file:
        return Settings.from_args(args_from_config(opts.config_file, opts.options))
    settings = Settings()
    for key, value in (opts.options or {}).items():
        if not hasattr(settings, key):
            raise CheckError(f"--options {key}: without -c only num_classes, dn_labelbook_size, "
                             f"contiguous_category_ids and use_dn are read.")
        setattr(settings, key, value)
    return settings


def output_files(opts):
    """(report.json, worst_offenders.png) paths after checking --out (never inside the dataset)."""
    from util.atomic import check_output_file

    data = os.path.realpath(opts.path if os.path.isdir(opts.path) else os.path.dirname(opts.path) or ".")
    out = opts.out or f"check_{os.path.basename(data.rstrip(os.sep)) or 'dataset'}"
    real = os.path.realpath(out)
    if real == data or real.startswith(data + os.sep):
        raise CheckError(f"--out {out} is inside the dataset {data}; nothing is written there: choose a folder "
                         f"outside it.")
    files = [os.path.join(out, "report.json"), os.path.join(out, "worst_offenders.png")]
    return [check_output_file(f, inputs=[opts.path], overwrite=opts.overwrite, flag="--out") for f in files]


def check(opts) -> int:
    from tqdm import tqdm

    from datasets.doctor_grid import offenders_grid
    from datasets.doctor_report import examine, report_dict, report_text
    from util.atomic import atomic_output, atomic_write_text

    settings = settings_for(opts)
    report_path, grid_path = output_files(opts)
    bar = (lambda it, n: tqdm(it, total=n, desc="images", unit="img")) if sys.stderr.isatty() else None
    report = examine(opts.path, settings, check_images=opts.images, decode=opts.decode, progress=bar)
    print(report_text(report))
    atomic_write_text(report_path, json.dumps(report_dict(report), indent=1))
    grid = offenders_grid(report.splits, opts.grid) if opts.grid > 0 else None
    if grid is not None:
        with atomic_output(grid_path) as tmp:
            grid.save(tmp, format="PNG")
    print(f"\nwrote {report_path}" + (f" and {grid_path}" if grid is not None else ""))
    return 1 if report.refused else 0


def run(argv: Optional[Sequence[str]] = None) -> int:
    opts = get_parser().parse_args(argv)
    from datasets.errors import DatasetError, user_message
    from util.atomic import OutputError
    from util.slconfig import ConfigError

    try:
        return check(opts)
    except (CheckError, ConfigError, OutputError) as exc:
        if opts.debug:
            raise
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except DatasetError as exc:
        if opts.debug:
            raise
        print(f"error: {user_message(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the dataset, the traceback with --debug
        if opts.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, opts.path), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run())
