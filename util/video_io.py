"""Videos in (PyAV, frame by frame) and annotated videos out (imageio's ffmpeg plugin).

Reading streams one decoded frame at a time, so memory stays flat however long the
video is. PyAV hands over the stream packet by packet, so a frame whose data is
corrupt is reported and skipped while the frames after it are still read (ffmpeg's
command line, which imageio pipes from, hides such frames behind concealed
pictures); a stream that breaks off is read up to the break and named as damaged.
PyAV comes with supervision (a requirement of `trackers`); imageio-ffmpeg ships
the ffmpeg binary that encodes the output.

The annotated video is written to a temporary file beside the output and moved
into place when complete (util/atomic.py), so an interrupted run leaves no
half-written video.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

MAX_BAD_PACKETS_IN_A_ROW = 250  # past this many undecodable packets in a row the stream is given up


class UnreadableVideo(ValueError):
    """A video file no frame can be read from (one line naming it). Not an OSError, so that
    util.atomic never takes it for a failed write of an output being written meanwhile."""


@dataclass
class VideoFrame:
    """One decoded frame: its position in the video (0-based, from its timestamp, so the
    positions of skipped frames stay free), its time in seconds and its RGB pixels."""
    index: int
    time: float
    image: np.ndarray  # HxWx3 uint8, RGB


@dataclass
class VideoReader:
    """The frames of a video file, decoded one at a time: `for frame in reader: ...`.

    After iterating, `skipped` lists (frame index, reason) for each frame that could not be
    decoded and `error` says why decoding stopped early (None when the file was read to its end).
    Raises UnreadableVideo (one line naming the file) when it cannot be opened as a video."""
    path: str
    fps: float = 25.0
    size: Tuple[int, int] = (0, 0)            # (width, height)
    announced: Optional[int] = None           # frames the header announces, when it says
    skipped: List[Tuple[int, str]] = field(default_factory=list)
    error: Optional[str] = None
    _container: Any = None
    _stream: Any = None

    def __post_init__(self) -> None:
        import av

        try:
            self._container = av.open(self.path)
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
            if self._container is not None:
                self._container.close()
            reason = "it holds no video stream" if isinstance(exc, IndexError) else _first_line(exc)
            raise UnreadableVideo(f"cannot read video {self.path}: {reason}") from None
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 25.0
        self.size = (int(stream.codec_context.width), int(stream.codec_context.height))
        self.announced = _announced_frames(stream, self._container, self.fps)

    def __iter__(self) -> Iterator[VideoFrame]:
        import av

        stream, last, bad_in_a_row = self._stream, -1, 0
        start = stream.start_time or 0
        try:
            for packet in self._container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    bad_in_a_row += 1
                    self.skipped.append((self._position(packet.pts, start, last + 1), _first_line(exc)))
                    if bad_in_a_row > MAX_BAD_PACKETS_IN_A_ROW:
                        self.error = f"{bad_in_a_row} frames in a row could not be decoded"
                        return
                    continue
                bad_in_a_row = 0
                for frame in decoded:
                    last = max(last + 1, self._position(frame.pts, start, last + 1))
                    yield VideoFrame(last, round(last / self.fps, 4), frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:  # the container itself breaks off
            self.error = _first_line(exc)

    def _position(self, pts: Optional[int], start: int, fallback: int) -> int:
        if pts is None or self._stream.time_base is None:
            return fallback
        return int(round(float((pts - start) * self._stream.time_base) * self.fps))

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "strerror", None) or str(exc)).strip()  # FFmpeg's reason without "[Errno N]"
    return text.splitlines()[0] if text else type(exc).__name__


def _announced_frames(stream, container, fps: float) -> Optional[int]:
    """How many frames the header announces (its frame count, else duration x frame rate)."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base) * fps))
    if container.duration:
        return int(round(container.duration / 1_000_000 * fps))
    return None


def damage_note(read: int, announced: Optional[int], error: Optional[str],
                skipped: Optional[List[Tuple[int, str]]] = None) -> Optional[str]:
    """Why a video looks damaged (frames skipped, decoding stopped, fewer frames than
    announced), or None. `read` counts the frames decoded and the frames skipped."""
    notes = []
    if skipped:
        skipped = sorted(skipped)
        shown = ", ".join(str(i) for i, _ in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        notes.append(f"{len(skipped)} frame(s) could not be decoded and were skipped (frames {shown}: "
                     f"{skipped[0][1]})")
    if error:
        notes.append(f"decoding stopped at frame {read} ({error})")
    elif announced is not None and read < announced - max(2, announced // 50):
        notes.append(f"it ends at frame {read} of the {announced} its header announces (truncated?)")
    return "; ".join(notes) or None


def video_writer(tmp: str, fps: float, size: tuple):
    """H.264 at exactly the input's size: 4:2:0 chroma (what every player plays) for even sizes,
    4:4:4 for odd ones, whose 4:2:0 encoding would need a padded frame."""
    import imageio.v2 as imageio

    odd = size[0] % 2 or size[1] % 2
    return imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                              pixelformat="yuv444p" if odd else "yuv420p", ffmpeg_log_level="error")


FrameHandler = Callable[[VideoFrame], Tuple[Dict[str, Any], Optional[Image.Image]]]


def process_video(path: str, out_path: Optional[str], handle: FrameHandler,
                  progress: bool = True) -> Dict[str, Any]:
    """Stream every frame of `path` through `handle(frame) -> (record, picture)`; the pictures
    become the video `out_path` (same frame rate and size, H.264) when it is given. Returns
    {"frames": the records, "size": [w, h], "fps", "skipped": [[frame, reason], ...], "damaged":
    why the input looks damaged or None}. Corrupt frames are skipped; a stream that breaks off
    is processed up to the break. UnreadableVideo when no frame at all can be decoded."""
    from tqdm import tqdm

    from util.atomic import atomic_output

    records: List[Dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(VideoReader(path))
        writer = None
        if out_path:
            tmp = stack.enter_context(atomic_output(out_path))  # renamed onto out_path once complete
            writer = video_writer(tmp, reader.fps, reader.size)
            stack.callback(writer.close)  # runs first on exit: the file is complete before the rename
        bar = stack.enter_context(tqdm(total=reader.announced, desc=os.path.basename(path), unit="frame",
                                       disable=not progress, leave=False))
        for frame in reader:
            record, picture = handle(frame)
            records.append(record)
            if writer is not None:
                writer.append_data(np.asarray(picture if picture is not None else frame.image))
            bar.update(1)
    if not records:
        reason = reader.error or (reader.skipped[0][1] if reader.skipped else None)
        raise UnreadableVideo(f"cannot read video {path}: no frame could be decoded"
                              + (f" ({reason})" if reason else ""))
    return {"frames": records, "size": list(reader.size), "fps": reader.fps,
            "skipped": [[i, why] for i, why in sorted(reader.skipped)],
            "damaged": damage_note(len(records) + len(reader.skipped), reader.announced, reader.error,
                                   reader.skipped)}


def annotate_video(detector, path: str, out_path: Optional[str], threshold: float = 0.3,
                   topk: Optional[int] = None, nms: Optional[float] = None,
                   progress: bool = True) -> Dict[str, Any]:
    """Run `detector` on every frame of `path`; write the annotated video to `out_path`
    (same frame rate and size, H.264) when given. Returns process_video's summary, one
    detections dict per frame in "frames"."""
    from util.visualizer import draw_detections

    def handle(frame: VideoFrame):
        image = Image.fromarray(frame.image)
        result = detector(image, threshold=threshold, topk=topk, nms=nms)
        picture = None
        if out_path:
            picture = draw_detections(image, result.boxes, result.labels, result.scores, detector.category_names)
        return {"frame": frame.index, "time": frame.time, **result.to_dict()}, picture

    return process_video(path, out_path, handle, progress)
