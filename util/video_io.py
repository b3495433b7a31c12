"""Videos in, annotated videos out, through imageio's ffmpeg plugin (imageio-ffmpeg
ships its own ffmpeg binary, so nothing else needs installing).

The annotated video is written to a temporary file beside the output and moved
into place when complete (util/atomic.py), so an interrupted run leaves no
half-written video.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image


def _reader(path: str):
    try:
        import imageio.v2 as imageio
    except ImportError as exc:  # pragma: no cover - requirements.txt installs it
        raise OSError(f"reading videos needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg): "
                      f"{exc}") from None
    try:
        return imageio.get_reader(path, format="FFMPEG")
    except Exception as exc:  # noqa: BLE001 - ffmpeg's many ways of refusing a file
        raise OSError(f"cannot read video {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None


def _writer(tmp: str, fps: float, size: tuple):
    """H.264 at exactly the input's size: 4:2:0 chroma (what every player plays) for even sizes,
    4:4:4 for odd ones, whose 4:2:0 encoding would need a padded frame."""
    import imageio.v2 as imageio

    odd = size[0] % 2 or size[1] % 2
    return imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1,
                              pixelformat="yuv444p" if odd else "yuv420p", ffmpeg_log_level="error")


def announced_frames(meta: Dict[str, Any]) -> Optional[int]:
    """How many frames the file's header announces (duration x frame rate), when it says."""
    duration, fps = meta.get("duration"), meta.get("fps")
    if not duration or not fps or not np.isfinite(float(duration)) or not np.isfinite(float(fps)):
        return None
    return int(round(float(duration) * float(fps)))


def damage_note(read: int, announced: Optional[int], error: Optional[str]) -> Optional[str]:
    """Why a video looks damaged (decoding stopped, or fewer frames than announced), or None."""
    if error:
        return f"decoding stopped at frame {read} ({error})"
    if announced is not None and read < announced - max(2, announced // 50):
        return f"it ends at frame {read} of the {announced} its header announces (truncated?)"
    return None


def annotate_video(detector, path: str, out_path: Optional[str], threshold: float = 0.3,
                   topk: Optional[int] = None, nms: Optional[float] = None,
                   progress: bool = True) -> Dict[str, Any]:
    """Run `detector` on every frame of `path`; write the annotated video to `out_path`
    (same frame rate and size, H.264) when given. Returns {"frames": one detections dict per
    frame, "size": [w, h], "damaged": why the input looks damaged or None}; a damaged video is
    processed up to where it breaks."""
    from tqdm import tqdm

    from util.atomic import atomic_output
    from util.visualizer import draw_detections

    reader = _reader(path)
    meta = reader.get_meta_data()
    fps = float(meta.get("fps") or 25.0)
    size = tuple(int(v) for v in meta.get("size") or (0, 0))
    announced = announced_frames(meta)
    frames: List[Dict[str, Any]] = []
    error = None
    with contextlib.ExitStack() as stack:
        stack.callback(reader.close)
        writer = None
        if out_path:
            tmp = stack.enter_context(atomic_output(out_path))  # renamed onto out_path once complete
            writer = _writer(tmp, fps, size)
            stack.callback(writer.close)  # runs first on exit: the file is complete before the rename
        bar = tqdm(total=announced, desc=os.path.basename(path), unit="frame", disable=not progress, leave=False)
        stack.callback(bar.close)
        iterator = iter(reader)
        while True:
            try:
                array = next(iterator)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - ffmpeg's ways of failing on a damaged stream
                error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                break
            image = Image.fromarray(np.asarray(array)[:, :, :3])
            result = detector(image, threshold=threshold, topk=topk, nms=nms)
            frames.append({"frame": len(frames), "time": round(len(frames) / fps, 3), **result.to_dict()})
            if writer is not None:
                writer.append_data(np.asarray(draw_detections(image, result.boxes, result.labels, result.scores,
                                                              detector.category_names)))
            bar.update(1)
    if not frames:
        raise OSError(f"cannot read video {path}: no frame could be decoded" + (f" ({error})" if error else ""))
    return {"frames": frames, "size": list(size), "damaged": damage_note(len(frames), announced, error)}
