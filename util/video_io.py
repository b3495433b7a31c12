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


def annotate_video(detector, path: str, out_path: Optional[str], threshold: float = 0.3,
                   topk: Optional[int] = None, nms: Optional[float] = None,
                   progress: bool = True) -> List[Dict[str, Any]]:
    """Run `detector` on every frame of `path`; write the annotated video to `out_path`
    (same frame rate and size, H.264) when given. Returns one detections dict per frame."""
    import imageio.v2 as imageio
    from tqdm import tqdm

    from util.atomic import atomic_output
    from util.visualizer import draw_detections

    reader = _reader(path)
    meta = reader.get_meta_data()
    fps = float(meta.get("fps") or 25.0)
    total = reader.count_frames() if hasattr(reader, "count_frames") else None
    frames: List[Dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(reader.close)
        writer = None
        if out_path:
            tmp = stack.enter_context(atomic_output(out_path))  # renamed onto out_path once complete
            writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=2,
                                        ffmpeg_log_level="error")
            stack.callback(writer.close)  # runs first on exit: the file is complete before the rename
        for index, array in enumerate(tqdm(reader, total=total, desc=os.path.basename(path), unit="frame",
                                           disable=not progress, leave=False)):
            image = Image.fromarray(np.asarray(array)[:, :, :3])
            result = detector(image, threshold=threshold, topk=topk, nms=nms)
            frames.append({"frame": index, "time": round(index / fps, 3), **result.to_dict()})
            if writer is not None:
                writer.append_data(np.asarray(draw_detections(image, result.boxes, result.labels, result.scores,
                                                              detector.category_names)))
    return frames
