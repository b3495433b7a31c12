"""Tracking a whole sequence (a video file, or an ordered folder of frames) with its outputs:
per-frame detections with track ids, an annotated video (ids, class names and scores drawn)
and a MOTChallenge text file, all written atomically (util/atomic.py). The detector and the
tracker are passed in (any callable image -> Detections with `category_names`; a tracker
from util/tracking.make_tracker), so this module needs nothing above util/.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from util.tracking import mot_rows, track_step


class _TrackingStep:
    """Detect, track, draw and write the MOT rows of one frame."""

    def __init__(self, detector, tracker, mot_file, draw: bool, threshold: float, topk: Optional[int],
                 nms: Optional[float]):
        self.detector, self.tracker, self.mot_file, self.draw = detector, tracker, mot_file, draw
        self.filters = {"threshold": threshold, "topk": topk, "nms": nms}
        self.ids: set = set()

    def __call__(self, image: Image.Image, index: int, time: float) -> Tuple[Dict[str, Any], Optional[Image.Image]]:
        from util.visualizer import draw_detections

        found = self.detector(image, **self.filters)
        tracked = track_step(self.tracker, found, np.asarray(image), time)
        self.ids.update(int(t) for t in tracked.track_ids if t >= 0)
        rows = mot_rows(index + 1, tracked)  # MOTChallenge counts frames from 1
        if rows:
            self.mot_file.write("\n".join(rows) + "\n")
        picture = None
        if self.draw:
            picture = draw_detections(image, tracked.boxes, tracked.labels, tracked.scores,
                                      self.detector.category_names, track_ids=tracked.track_ids)
        return {"frame": index, "time": time, **tracked.to_dict()}, picture


@contextlib.contextmanager
def _mot_output(path: str):
    from util.atomic import atomic_output

    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f


def track_video(detector, new_tracker: Callable[[float], Any], path: str, out_video: Optional[str], out_mot: str,
                threshold: float = 0.3, topk: Optional[int] = None, nms: Optional[float] = None,
                progress: bool = True) -> Dict[str, Any]:
    """Track the objects of video `path` frame by frame (streamed; corrupt frames reported in
    "skipped" and left out) with the tracker `new_tracker(fps)` makes for it. Returns
    util.video_io.process_video's summary (one record per frame, with track_ids) plus "tracks":
    how many track ids were given."""
    from util.video_io import VideoReader, process_video

    with VideoReader(path) as probe:
        tracker = new_tracker(probe.fps)
    with _mot_output(out_mot) as mot:
        step = _TrackingStep(detector, tracker, mot, bool(out_video), threshold, topk, nms)
        summary = process_video(path, out_video, lambda f: step(Image.fromarray(f.image), f.index, f.time),
                                progress)
    return {**summary, "tracks": len(step.ids)}


def natural_key(name: str) -> List[Any]:
    """Sort key that puts frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def ordered_frames(files: Sequence[str]) -> List[str]:
    """Frame files in playing order (by name, numbers compared as numbers)."""
    return sorted(files, key=lambda p: natural_key(os.path.basename(p)))


def track_frame_files(detector, tracker, files: Sequence[str], read_image: Callable[[str], Image.Image],
                      out_video: Optional[str], out_mot: str, fps: float = 30.0, threshold: float = 0.3,
                      topk: Optional[int] = None, nms: Optional[float] = None,
                      progress: bool = True) -> Dict[str, Any]:
    """Track the objects of an ordered list of frame images (frame i at time i / fps). A frame
    that cannot be read, or whose size differs from the first frame's, is reported in "skipped"
    and left out. ValueError when no frame can be read (never an OSError, which util.atomic would
    take for a failed write of the outputs)."""
    from tqdm import tqdm

    from util.atomic import atomic_output
    from util.video_io import video_writer

    records, skipped, size = [], [], None
    with contextlib.ExitStack() as stack:
        mot = stack.enter_context(_mot_output(out_mot))
        step = _TrackingStep(detector, tracker, mot, bool(out_video), threshold, topk, nms)
        writer = None
        for index, path in enumerate(tqdm(files, desc="frames", unit="frame", disable=not progress, leave=False)):
            try:
                image = read_image(path)
            except (OSError, ValueError) as exc:
                skipped.append([index, f"{os.path.basename(path)}: {str(exc).splitlines()[0] if str(exc) else exc}"])
                continue
            if size is None:
                size = image.size
                if out_video:
                    writer = video_writer(stack.enter_context(atomic_output(out_video)), fps, size)
                    stack.callback(writer.close)  # closed before the rename
            if image.size != size:
                skipped.append([index, f"{os.path.basename(path)} is {image.size[0]}x{image.size[1]}, not the "
                                       f"{size[0]}x{size[1]} of the sequence's first frame"])
                continue
            record, picture = step(image, index, round(index / fps, 4))
            records.append({"file": os.path.abspath(path), **record})
            if writer is not None:
                writer.append_data(np.asarray(picture))
        if not records:
            raise ValueError(f"no frame of the {len(files)} could be read" + (f" ({skipped[0][1]})" if skipped else ""))
    return {"frames": records, "size": list(size), "fps": fps, "skipped": skipped, "tracks": len(step.ids),
            "damaged": f"{len(skipped)} frame(s) skipped (frame {skipped[0][0]}: {skipped[0][1]})" if skipped else None}
