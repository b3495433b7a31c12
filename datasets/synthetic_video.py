"""Synthetic videos of moving shapes with known trajectories, for tracking.

The shapes are those of datasets/synthetic.py (circle, square, triangle, ...: category
ids 1..K), so a model trained on the synthetic COCO data (the CPU demo) detects them.
Each object keeps its shape and colour and moves at a constant velocity, bouncing off
the frame's edges; later objects are drawn over earlier ones, so paths cross and
objects hide each other for a while. The background is fixed, with fresh pixel noise
in every frame.

    video = SyntheticVideo(width=256, height=192, num_frames=90, num_objects=4, seed=0)
    for index in range(video.num_frames):
        pixels = video.frame(index)            # HxWx3 uint8
        boxes = video.boxes(index)             # [(track id, category id, x0, y0, x1, y1, visible fraction)]
    video.mot_ground_truth()                   # MOTChallenge gt.txt lines

Everything is drawn from one random generator seeded by `seed`: the same seed gives the
same video.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from datasets.synthetic import SHAPE_NAMES, _background, _random_color, _shape_alpha

Box = Tuple[int, int, float, float, float, float, float]


@dataclass
class MovingShape:
    """One object: its category, pixels (alpha + colour), where it starts and how it moves."""
    track_id: int
    category_id: int
    alpha: np.ndarray          # [s, s] in [0, 1]
    color: np.ndarray          # RGB, float32
    start: Tuple[float, float]  # top-left of its square, pixels
    velocity: Tuple[float, float]  # pixels per frame
    tight: Tuple[int, int, int, int]  # the shape's box inside its square (x0, y0, x1, y1)


def _bounce(start: float, speed: float, frame: int, room: float) -> float:
    """Position after `frame` frames moving at `speed` inside [0, room], reflected at the ends."""
    if room <= 0:
        return 0.0
    p = (start + speed * frame) % (2 * room)
    return p if p <= room else 2 * room - p


class SyntheticVideo:
    """Frames and ground truth of a video of `num_objects` moving shapes (see the module's docstring)."""

    def __init__(self, width: int = 256, height: int = 192, num_frames: int = 90, num_objects: int = 4,
                 num_classes: int = 5, min_scale: float = 0.18, max_scale: float = 0.3,
                 max_speed: float = 4.0, noise: float = 4.0, seed: int = 0):
        if not 1 <= num_classes <= len(SHAPE_NAMES):
            raise ValueError(f"classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
        self.width, self.height, self.num_frames, self.noise = int(width), int(height), int(num_frames), noise
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.background = _background(rng, self.height, self.width)
        side = min(self.width, self.height)
        self.objects: List[MovingShape] = []
        for track_id in range(1, num_objects + 1):
            label = int(rng.integers(0, num_classes))
            alpha = _shape_alpha(SHAPE_NAMES[label], rng.uniform(min_scale, max_scale) * side, rng)
            ys, xs = np.nonzero(alpha > 0.5)
            s = alpha.shape[0]
            speed = rng.uniform(0.4, 1.0) * max_speed
            angle = rng.uniform(0, 2 * np.pi)
            self.objects.append(MovingShape(
                track_id, label + 1, alpha, _random_color(rng, sat=(0.6, 1.0), val=(0.6, 1.0)),
                (rng.uniform(0, self.width - s), rng.uniform(0, self.height - s)),
                (speed * np.cos(angle), speed * np.sin(angle)),
                (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)))

    def _corner(self, obj: MovingShape, index: int) -> Tuple[int, int]:
        s = obj.alpha.shape[0]
        return (int(round(_bounce(obj.start[0], obj.velocity[0], index, self.width - s))),
                int(round(_bounce(obj.start[1], obj.velocity[1], index, self.height - s))))

    def frame(self, index: int) -> np.ndarray:
        """The pixels of frame `index` (HxWx3 uint8, RGB)."""
        img = self.background.copy()
        for obj in self.objects:  # in order: later objects cover earlier ones
            x, y = self._corner(obj, index)
            s = obj.alpha.shape[0]
            a = obj.alpha[..., None]
            img[y:y + s, x:x + s] = img[y:y + s, x:x + s] * (1 - a) + obj.color * a
        if self.noise:
            img = img + np.random.default_rng((self.seed, index)).normal(0, self.noise, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)

    def boxes(self, index: int) -> List[Box]:
        """(track id, category id, x0, y0, x1, y1, visible fraction) of every object in frame
        `index`; the box is the whole shape, the fraction is how much of its box no later object covers."""
        placed = []
        for obj in self.objects:
            x, y = self._corner(obj, index)
            tx0, ty0, tx1, ty1 = obj.tight
            placed.append((obj, (x + tx0, y + ty0, x + tx1, y + ty1)))
        out = []
        for k, (obj, box) in enumerate(placed):
            free = np.ones((box[3] - box[1], box[2] - box[0]), bool)
            for _, above in placed[k + 1:]:
                x0, y0 = max(above[0], box[0]) - box[0], max(above[1], box[1]) - box[1]
                x1, y1 = min(above[2], box[2]) - box[0], min(above[3], box[3]) - box[1]
                if x1 > x0 and y1 > y0:
                    free[y0:y1, x0:x1] = False
            out.append((obj.track_id, obj.category_id, *map(float, box), float(free.mean())))
        return out

    def mot_ground_truth(self) -> List[str]:
        """MOTChallenge gt.txt lines: `frame,id,left,top,width,height,1,1,visibility` (frames from 1;
        class 1, the class MOTChallenge scores, whatever the shape: the category ids are in boxes())."""
        lines = []
        for index in range(self.num_frames):
            for tid, _cat, x0, y0, x1, y1, vis in self.boxes(index):
                lines.append(f"{index + 1},{tid},{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},1,1,{vis:.3f}")
        return lines

    def category_names(self) -> dict:
        return {i + 1: name for i, name in enumerate(SHAPE_NAMES)}
