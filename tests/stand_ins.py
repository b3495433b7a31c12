"""Stand-in detectors for the tests of tracking and slicing: a tiny randomly initialised DINO
detects nothing, so these produce meaningful detections with the Detector's call
(`detector(images, threshold=, topk=, nms=[, batch_size=])` -> util.detections.Detections)."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
from PIL import Image
from scipy import ndimage

from util.detections import Detections


class BlobDetector:
    """Finds bright blobs the way a detector with a fixed input size would: the image is first
    shrunk to fit `input_size` (area averaging), and a blob must cover `min_pixels` there, so
    recall falls as objects get small relative to the input. Its score grows with the blob's
    area there (full at 64 pixels: a few pixels are a weak guess), times 0.9 for a whole blob
    and 0.6 for one touching the input's edge (an object cut by a tile border)."""

    category_names = {1: "square"}

    def __init__(self, input_size: int = 400, min_pixels: int = 12, level: int = 128):
        self.input_size, self.min_pixels, self.level = input_size, min_pixels, level
        self.batches: List[int] = []

    def __call__(self, images, threshold: float = 0.3, topk: Optional[int] = None, nms: Optional[float] = None,
                 batch_size: int = 1):
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        self.batches.append(len(items))
        found = [self._one(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)), threshold)
                 for im in items]
        return found[0] if single else found

    def _one(self, picture: Image.Image, threshold: float) -> Detections:
        w, h = picture.size
        f = min(1.0, self.input_size / max(w, h))
        sw, sh = max(1, round(w * f)), max(1, round(h * f))
        small = np.asarray(picture.convert("L").resize((sw, sh), Image.BOX)) >= self.level
        labels, _ = ndimage.label(small)
        boxes, scores = [], []
        for k, where in enumerate(ndimage.find_objects(labels), start=1):
            area = int((labels[where] == k).sum()) if where is not None else 0
            if area < self.min_pixels:
                continue
            y, x = where
            edge = x.start == 0 or y.start == 0 or x.stop == sw or y.stop == sh
            boxes.append([x.start * w / sw, y.start * h / sh, x.stop * w / sw, y.stop * h / sh])
            scores.append((0.6 if edge else 0.9) * min(1.0, area / 64))
        keep = [i for i, s in enumerate(scores) if s >= threshold]
        order = sorted(keep, key=lambda i: -scores[i])
        return Detections(np.asarray([boxes[i] for i in order], np.float32).reshape(-1, 4),
                          np.asarray([scores[i] for i in order], np.float32), np.ones(len(order), np.int64),
                          ["square"] * len(order), (h, w))


class NoisyGroundTruth:
    """Plays a detector on a SyntheticVideo whose frames it is shown in order: the true boxes
    of each frame, jittered (`jitter` pixels, one sigma), some missed (`miss` of them at random,
    and every object less than half visible), some weak (`weak` of them score 0.3..0.55, which
    ByteTrack's second stage must pick up) and a false box in `false_rate` of the frames."""

    def __init__(self, video, seed: int = 0, jitter: float = 1.0, miss: float = 0.05, weak: float = 0.15,
                 false_rate: float = 0.1):
        self.video, self.rng = video, np.random.default_rng(seed)
        self.jitter, self.miss, self.weak, self.false_rate = jitter, miss, weak, false_rate
        self.category_names = video.category_names()
        self.frame, self.missed, self.false = 0, 0, 0
        self.detected: set = set()  # (frame, track id) of every true box handed out

    def gaps(self) -> int:
        """How many times an object's detections stop and resume later (what fragments a track)."""
        count = 0
        for tid in {t for _, t in self.detected}:
            frames = sorted(f for f, t in self.detected if t == tid)
            count += sum(1 for a, b in zip(frames, frames[1:]) if b > a + 1)
        return count

    def __call__(self, image, threshold: float = 0.3, topk: Optional[int] = None, nms: Optional[float] = None):
        rng, boxes, scores, labels = self.rng, [], [], []
        for tid, cat, x0, y0, x1, y1, visible in self.video.boxes(self.frame):
            if visible < 0.5 or rng.random() < self.miss:
                self.missed += 1
                continue
            self.detected.add((self.frame, tid))
            boxes.append(np.array([x0, y0, x1, y1]) + rng.normal(0, self.jitter, 4))
            scores.append(rng.uniform(0.3, 0.55) if rng.random() < self.weak else rng.uniform(0.65, 0.95))
            labels.append(cat)
        if rng.random() < self.false_rate:
            x, y = rng.uniform(0, self.video.width - 24), rng.uniform(0, self.video.height - 24)
            boxes.append(np.array([x, y, x + 24, y + 24]))
            scores.append(rng.uniform(0.3, 0.5))
            labels.append(1)
            self.false += 1
        self.frame += 1
        keep = [i for i, s in enumerate(scores) if s >= threshold]
        return Detections(np.asarray([boxes[i] for i in keep], np.float32).reshape(-1, 4),
                          np.asarray([scores[i] for i in keep], np.float32),
                          np.asarray([labels[i] for i in keep], np.int64),
                          [self.category_names[labels[i]] for i in keep], (self.video.height, self.video.width))
