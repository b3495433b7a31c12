"""tools/inference.py's --slice and --track: their arguments, checks, inputs and outputs.

Kept apart from tools/inference.py so that the tool's main file stays a short outline;
the work itself is library code (util/slicing.py, util/tracking.py, util/track_sequence.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

TRACKER_NAMES = ("bytetrack", "sort", "ocsort", "botsort")


class UseError(Exception):
    """A --slice / --track problem the user can fix; printed as one line."""


def add_use_arguments(p: argparse.ArgumentParser) -> None:
    """--slice (large images) and --track (tracking in videos and folders of frames)."""
    from util.slconfig import DictAction

    p.add_argument("--slice", metavar="WxH", help="detect on overlapping WxH tiles plus the whole image (large images)")
    p.add_argument("--overlap", type=float, default=0.2, help="--slice: fraction of a tile its neighbour shares (0.2)")
    p.add_argument("--merge", choices=("nmm", "nms"), default="nmm",
                   help="--slice: merge the boxes of one object by box merging (nmm, default) or keep the best (nms)")
    p.add_argument("--merge_threshold", "--merge-threshold", dest="merge_threshold", type=float, default=0.5,
                   help="--slice: overlap (of the smaller box) at which two boxes are one object (default 0.5)")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=4,
                   help="--slice: tiles per forward pass (default 4)")
    p.add_argument("--track", action="store_true", help="track objects in videos and folders of frames")
    p.add_argument("--tracker", default="bytetrack", choices=TRACKER_NAMES, help="--track: the tracker (default bytetrack)")
    p.add_argument("--tracker_options", "--tracker-options", dest="tracker_options", nargs="+", action=DictAction,
                   default={}, metavar="KEY=VALUE", help="--track: tracker settings, e.g. lost_track_buffer=60")
    p.add_argument("--fps", type=float, default=30.0, help="--track: frame rate of a folder of frames (default 30)")


def check_use_values(opts) -> None:
    """Refuse --slice / --track values that cannot be meant, before the model loads
    (opts.slice becomes (W, H))."""
    from util.slicing import parse_slice

    try:
        opts.slice = parse_slice(opts.slice) if opts.slice else None
    except ValueError as exc:
        raise UseError(f"--slice {opts.slice}: {str(exc).split(': ', 1)[1]}") from None
    if not 0.0 <= opts.overlap < 1.0:
        raise UseError(f"--overlap {opts.overlap}: the fraction of a tile shared with its neighbour lies in [0, 1)")
    if not 0.0 < opts.merge_threshold <= 1.0:
        raise UseError(f"--merge_threshold {opts.merge_threshold}: an overlap fraction lies in (0, 1] (default 0.5)")
    if opts.batch_size < 1 or opts.fps <= 0:
        raise UseError(f"--batch_size {opts.batch_size}, --fps {opts.fps}: both must be positive")
    if opts.track:
        from util.tracking import make_tracker
        try:
            make_tracker(opts.tracker, opts.fps, **opts.tracker_options)
        except ValueError as exc:
            raise UseError(f"--tracker_options: {exc}") from None


def sliced(detector, opts):
    """The detector run on tiles plus the whole image when --slice is given, else `detector`."""
    if not opts.slice:
        return detector
    from util.slicing import SlicedDetector
    return SlicedDetector(detector, opts.slice, opts.overlap, opts.merge, opts.merge_threshold, opts.batch_size)


def collect_sequences(paths: Sequence[str], image_ext: Tuple[str, ...], video_ext: Tuple[str, ...]) -> List[str]:
    """--track: the sequences to track: videos named directly or inside named folders, and every
    named folder that holds images (its images are one sequence of frames, in name order)."""
    found: List[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(os.listdir(path))
            videos = [os.path.join(path, f) for f in names if f.lower().endswith(video_ext)]
            has_frames = any(f.lower().endswith(image_ext) for f in names)
            if not videos and not has_frames:
                raise UseError(f"folder {path} holds no frames ({' '.join(image_ext)}) or videos ({' '.join(video_ext)})")
            found += ([path] if has_frames else []) + videos
        elif os.path.isfile(path) and path.lower().endswith(video_ext):
            found.append(path)
        elif os.path.isfile(path):
            raise UseError(f"--track {path}: one image is not a sequence; give a video or a folder of frames")
        else:
            raise UseError(f"--images {path}: no such file or folder")
    return found


def mot_path_for(output: str) -> str:
    """OUT/NAME.mot.txt beside a sequence's annotated video OUT/NAME.mp4."""
    return os.path.splitext(output)[0] + ".mot.txt"


def check_mot_outputs(outputs: Dict[str, str], opts) -> None:
    """--track: the MOTChallenge files beside the videos are new names, replaced only with --overwrite."""
    mots = [mot_path_for(o) for o in outputs.values()]
    if len(set(mots)) != len(mots) or (set(outputs.values()) | set(outputs)) & set(mots):
        raise UseError(f"--track: two sequences would share the tracks file {mots[0]}; track them in separate runs")
    existing = [m for m in mots if os.path.exists(m)]
    if existing and not opts.overwrite:
        raise UseError(f"--output_dir {opts.output_dir} already holds {os.path.basename(existing[0])}; choose another "
                       f"folder or pass --overwrite to replace it")


def track_sequence(detector, path: str, out_path: Optional[str], planned: str, opts,
                   read_image: Callable[[str], Any], image_ext: Tuple[str, ...]) -> Dict[str, Any]:
    """--track: one video, or one folder of frames, with track ids; its annotated video (when
    `out_path`) and its MOTChallenge text beside `planned`. The entry of detections.json."""
    from util.track_sequence import ordered_frames, track_frame_files, track_video
    from util.tracking import make_tracker

    def new_tracker(fps: float):
        return make_tracker(opts.tracker, fps, **opts.tracker_options)

    mot_path = mot_path_for(planned)
    filters = dict(threshold=opts.threshold, topk=opts.topk, nms=opts.nms or None, progress=not opts.quiet)
    if os.path.isdir(path):
        frames = ordered_frames([os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(image_ext)])
        seq = track_frame_files(detector, new_tracker(opts.fps), frames, read_image, out_path, mot_path,
                                fps=opts.fps, **filters)
    else:
        seq = track_video(detector, new_tracker, path, out_path, mot_path, **filters)
    entry = {"file": os.path.abspath(path), "output": os.path.abspath(out_path) if out_path else None,
             "mot": os.path.abspath(mot_path), "tracks": seq["tracks"], "size": seq["size"], "fps": seq["fps"],
             "skipped_frames": seq["skipped"], "frames": seq["frames"]}
    if seq["damaged"]:
        print(f"warning: {path} is damaged: {seq['damaged']}; its {len(seq['frames'])} readable frames were "
              f"processed", file=sys.stderr)
        entry["damaged"] = seq["damaged"]
    return entry


def use_settings(opts) -> Dict[str, Any]:
    """The --slice / --track settings of this run, for detections.json."""
    out: Dict[str, Any] = {}
    if opts.slice:
        out["slice"] = {"size": list(opts.slice), "overlap": opts.overlap, "merge": opts.merge,
                        "merge_threshold": opts.merge_threshold}
    if opts.track:
        out["tracker"] = {"name": opts.tracker, "options": dict(opts.tracker_options)}
    return out
