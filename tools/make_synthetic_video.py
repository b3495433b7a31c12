#!/usr/bin/env python
"""Write a synthetic video of moving shapes and its ground-truth tracks (nothing to download).

Example (after `bash scripts/demo.sh`, whose model knows these shapes):

    python tools/make_synthetic_video.py --out data/shapes_video.mp4

writes data/shapes_video.mp4 (H.264) and data/shapes_video.gt.txt, the ground truth
in MOTChallenge text (frame,id,left,top,width,height,1,1,visibility), so that
`tools/inference.py --track` can be run on the video and its tracks scored, e.g. with
`trackers eval --gt data/shapes_video.gt.txt --tracker OUT/shapes_video_mp4.mot.txt
--metrics CLEAR Identity`. The shapes are those of tools/make_synthetic_coco.py; each
moves at a constant speed, bounces off the edges, and passes over or under the others.
The generator lives in datasets/synthetic_video.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the video to write (.mp4)")
    p.add_argument("--gt", default=None, help="ground-truth tracks, MOTChallenge text (default: OUT's name + .gt.txt)")
    p.add_argument("--frames", type=int, default=60, help="number of frames (default 60: 2.4 s at 25 fps)")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second (default 25)")
    p.add_argument("--width", type=int, default=256, help="frame width (default 256)")
    p.add_argument("--height", type=int, default=192, help="frame height (default 192)")
    p.add_argument("--objects", type=int, default=4, help="number of moving shapes (default 4)")
    p.add_argument("--classes", type=int, default=5, help="shape classes to draw from (default 5, as the demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same video)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT and GT if they exist")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def write_video(opts) -> str:
    """Check the outputs, then write the video and its ground truth; returns the ground truth's path."""
    import numpy as np
    from tqdm import tqdm

    from datasets.synthetic_video import SyntheticVideo
    from util.atomic import atomic_output, atomic_write_text, check_output_file
    from util.video_io import video_writer

    if not opts.out.lower().endswith(".mp4"):
        raise ValueError(f"--out {opts.out}: give a file name ending in .mp4")
    gt = opts.gt or os.path.splitext(opts.out)[0] + ".gt.txt"
    out = check_output_file(opts.out, overwrite=opts.overwrite, flag="--out")
    gt = check_output_file(gt, overwrite=opts.overwrite, flag="--gt")
    if out == gt:
        raise ValueError(f"--gt {opts.gt} is the video; give the ground truth another name")
    video = SyntheticVideo(opts.width, opts.height, opts.frames, opts.objects, opts.classes, seed=opts.seed)
    with atomic_output(out) as tmp:
        writer = video_writer(tmp, opts.fps, (opts.width, opts.height))
        try:
            for index in tqdm(range(opts.frames), desc="frames", unit="frame", disable=opts.quiet, leave=False):
                writer.append_data(np.asarray(video.frame(index)))
        finally:
            writer.close()
    atomic_write_text(gt, "\n".join(video.mot_ground_truth()) + "\n")
    return gt


def run(argv: Optional[Sequence[str]] = None) -> int:
    opts = get_parser().parse_args(argv)
    from util.atomic import OutputError
    try:
        if min(opts.frames, opts.width, opts.height, opts.objects) < 1 or opts.fps <= 0:
            raise ValueError("--frames, --width, --height, --objects and --fps must be positive")
        gt = write_video(opts)
    except (OutputError, ValueError) as exc:
        if opts.debug:
            raise
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - unforeseen: one line naming the output, the traceback with --debug
        if opts.debug:
            raise
        from util.cli import unexpected_error_line
        print(unexpected_error_line(exc, opts.out), file=sys.stderr)
        return 1
    print(f"wrote {opts.out} ({opts.frames} frames, {opts.objects} shapes) and its ground truth {gt}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
