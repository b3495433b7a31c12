"""Sliced inference for large images: overlapping tiles plus the whole image, merged.

A detector sees an image resized to its input size (about 800 pixels on the shorter
side for DINO), so objects a few pixels wide in a 4000x3000 photo shrink below what it
can find. Here supervision's `InferenceSlicer` cuts the image into overlapping tiles
(`size` W x H, `overlap` a fraction of each side) and hands them to the detector in
batches; the detections of every tile, moved back into the image's pixels, and those of
the whole image (for objects larger than a tile) are merged per class:

* "nmm" (default, box merging, as SAHI does): boxes that overlap by at least
  `merge_threshold` of the smaller box's area become one box around them, so the pieces
  of an object cut by tile borders join into one box;
* "nms": non-maximum suppression with the same overlap measure (keeps the best box).

    sliced = SlicedDetector(detector, size=(640, 640), overlap=0.2)
    result = sliced(image, threshold=0.3)     # util.detections.Detections in the image's pixels

The detector is passed in (the Detector, or anything called like it), so this module
needs nothing above util/.
"""
from __future__ import annotations

import inspect
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from util.detections import Detections

MERGES = ("nmm", "nms")


def parse_slice(text: str) -> Tuple[int, int]:
    """'640x480' -> (640, 480); '640' -> (640, 640). ValueError (one line) otherwise."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"slice size {text!r}: give WIDTHxHEIGHT in pixels, each at least 16 (e.g. 640x640)")
    return size  # type: ignore[return-value]


class SlicedDetector:
    """A detector run on overlapping tiles plus the whole image, its boxes merged.

    detector: called as detector(images, threshold=, topk=, nms=[, batch_size=]) -> Detections
    (list in, list out), with `category_names`; size: (W, H) of a tile; overlap: the fraction
    of a tile shared with its neighbour, in [0, 1); merge: "nmm" or "nms"; merge_threshold:
    overlap (intersection over the smaller box) at which two boxes are the same object;
    batch_size: tiles per forward pass; whole_image: also detect on the whole image.
    """

    def __init__(self, detector: Any, size: Union[Tuple[int, int], str] = (640, 640), overlap: float = 0.2,
                 merge: str = "nmm", merge_threshold: float = 0.5, batch_size: int = 4, whole_image: bool = True):
        self.detector = detector
        self.size = parse_slice(size) if isinstance(size, str) else (int(size[0]), int(size[1]))
        if not 0.0 <= float(overlap) < 1.0:
            raise ValueError(f"overlap {overlap}: the fraction of a tile shared with its neighbour lies in [0, 1) "
                             f"(e.g. 0.2)")
        if merge not in MERGES:
            raise ValueError(f"merge {merge!r}: choose 'nmm' (box merging) or 'nms' (non-maximum suppression)")
        if not 0.0 < float(merge_threshold) <= 1.0:
            raise ValueError(f"merge threshold {merge_threshold}: an overlap fraction lies in (0, 1] (e.g. 0.5)")
        self.overlap, self.merge, self.merge_threshold = float(overlap), merge, float(merge_threshold)
        self.batch_size, self.whole_image = max(1, int(batch_size)), whole_image
        self._batched = "batch_size" in inspect.signature(detector.__call__).parameters

    @property
    def category_names(self):
        return self.detector.category_names

    def __call__(self, images, threshold: float = 0.3, topk: Optional[int] = None, nms: Optional[float] = None,
                 batch_size: Optional[int] = None) -> Union[Detections, List[Detections]]:
        """Detections of one image (or a list), in its pixels, sorted by score; `nms` is the
        detector's own per-class NMS inside each tile, `topk` applies after merging."""
        single = not isinstance(images, (list, tuple))
        results = [self._one(_as_pil(im), threshold, topk, nms) for im in ([images] if single else images)]
        return results[0] if single else results

    def _detect(self, pictures: Sequence[Image.Image], threshold: float, nms: Optional[float]) -> List[Detections]:
        if self._batched:
            return list(self.detector(list(pictures), threshold=threshold, topk=None, nms=nms,
                                      batch_size=self.batch_size))
        return [self.detector(p, threshold=threshold, topk=None, nms=nms) for p in pictures]

    def tile_detections(self, picture: Image.Image, threshold: float = 0.3, nms: Optional[float] = None):
        """The detections of every tile in the image's pixels, not merged (supervision.Detections)."""
        import supervision as sv

        def on_tiles(tiles: List[np.ndarray]):
            found = self._detect([Image.fromarray(t) for t in tiles], threshold, nms)
            return [d.to_supervision() for d in found]

        w, h = self.size
        slicer = sv.InferenceSlicer(callback=on_tiles, slice_wh=(w, h), batch_size=self.batch_size,
                                    overlap_wh=(int(round(w * self.overlap)), int(round(h * self.overlap))),
                                    overlap_filter=sv.OverlapFilter.NONE, thread_workers=1)
        return slicer(np.asarray(picture))

    def _one(self, picture: Image.Image, threshold: float, topk: Optional[int], nms: Optional[float]) -> Detections:
        import supervision as sv

        w, h = picture.size
        parts = []
        if w > self.size[0] or h > self.size[1]:  # smaller images are one tile: the whole image
            parts.append(self.tile_detections(picture, threshold, nms))
        if self.whole_image or not parts:
            parts.append(self._detect([picture], threshold, nms)[0].to_supervision())
        merged = sv.Detections.merge(parts)
        if len(merged):
            merge = merged.with_nmm if self.merge == "nmm" else merged.with_nms
            merged = merge(threshold=self.merge_threshold, overlap_metric=sv.OverlapMetric.IOS)
        result = Detections.from_supervision(merged, (h, w), self.category_names)
        if topk is not None and len(result) > topk:
            keep = slice(0, int(topk))
            result = Detections(result.boxes[keep], result.scores[keep], result.labels[keep],
                                result.names[keep], result.image_size)
        return result


def _as_pil(image: Any) -> Image.Image:
    """An RGB PIL image from a PIL image, an HxWx3 uint8 array or a path."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"sliced detection takes uint8 pixel arrays (got {image.dtype}); pass a PIL image")
        return Image.fromarray(image).convert("RGB")
    with Image.open(image) as im:
        return im.convert("RGB")
