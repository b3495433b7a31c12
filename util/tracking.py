"""Track ids for detections across the frames of a video, with Roboflow's `trackers` library.

    tracker = make_tracker("bytetrack", fps=25)
    for image, time in frames:
        tracked = track_step(tracker, detect(image), image, time)   # Detections with track_ids

The detector is passed in (any callable image -> util.detections.Detections), so this
module needs nothing above util/. Track ids start at 1 and stay with an object while
the tracker follows it; -1 marks a detection that is not (yet) part of a confirmed track
(e.g. the first frame of a new object, or a weak box the tracker did not match).
`mot_rows` writes the confirmed tracks in the MOTChallenge text format that tracker
benchmarks (TrackEval, `trackers.eval`, motmetrics) score.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from util.detections import Detections

# name -> (class in trackers, whether it uses the frame's pixels: BoT-SORT's camera-motion compensation)
TRACKERS: Dict[str, Tuple[str, bool]] = {
    "bytetrack": ("ByteTrackTracker", False),
    "sort": ("SORTTracker", False),
    "ocsort": ("OCSORTTracker", False),
    "botsort": ("BoTSORTTracker", True),
}


def make_tracker(name: str = "bytetrack", fps: float = 30.0, **params: Any):
    """A new tracker of the `trackers` library by name (see TRACKERS), at the video's frame rate;
    `params` go to its constructor (e.g. track_activation_threshold=0.5, lost_track_buffer=60).
    ValueError (one line) for an unknown name or parameter."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in TRACKERS:
        raise ValueError(f"tracker {name!r} is not known; choose one of {', '.join(TRACKERS)}")
    import trackers

    cls = getattr(trackers, TRACKERS[key][0])
    try:
        tracker = cls(frame_rate=float(fps), **params)
    except TypeError as exc:
        raise ValueError(f"tracker {key}: {exc} (its parameters are those of trackers.{cls.__name__})") from None
    tracker.uses_frame = TRACKERS[key][1]
    return tracker


def track_step(tracker, detections: Detections, image: Optional[np.ndarray] = None,
               time: Optional[float] = None) -> Detections:
    """Feed one frame's detections to `tracker`; the same detections (sorted by score) with
    `track_ids` (1, 2, ... ; -1: no confirmed track). `time` in seconds keeps the motion model
    right across skipped frames; `image` (HxWx3 RGB) is used by trackers that look at pixels."""
    frame = None
    if getattr(tracker, "uses_frame", False) and image is not None:
        frame = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # BGR, as OpenCV-based trackers expect
    out = tracker.update(detections.to_supervision(), frame=frame, timestamp=time)
    tracked = Detections.from_supervision(out, detections.image_size)
    ids = tracked.track_ids if tracked.track_ids is not None else np.full(len(tracked), -1, np.int64)
    tracked.track_ids = np.where(ids >= 0, ids + 1, -1).astype(np.int64)  # ids from 1, as MOTChallenge counts
    return tracked


def track_frames(detect: Callable[[Any], Detections], frames: Iterable[Tuple[Any, Optional[float]]],
                 tracker) -> Iterator[Detections]:
    """Detect and track frame by frame: for each (image, time in seconds or None) of `frames`,
    the image's detections with track ids. A generator: frames are read one at a time."""
    for image, time in frames:
        yield track_step(tracker, detect(image), np.asarray(image), time)


def mot_rows(frame_number: int, detections: Detections) -> List[str]:
    """MOTChallenge text rows for the confirmed tracks of one frame (`frame_number` counts from 1):
    `frame,id,left,top,width,height,score,-1,-1,-1`."""
    if detections.track_ids is None:
        raise ValueError("these detections carry no track ids (run them through a tracker first)")
    rows = []
    for (x0, y0, x1, y1), score, tid in zip(detections.boxes, detections.scores, detections.track_ids):
        if tid >= 0:
            rows.append(f"{int(frame_number)},{int(tid)},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},"
                        f"{float(score):.4f},-1,-1,-1")
    return rows
