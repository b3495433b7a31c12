"""Synthetic COCO-format detection data: coloured shapes on busy backgrounds.

`generate_synthetic_coco(root, ...)` writes a dataset laid out exactly like
COCO 2017::

    root/train2017/000000000001.jpg ...
    root/val2017/000000000001.jpg ...
    root/annotations/instances_train2017.json
    root/annotations/instances_val2017.json

so it can be trained on with the regular COCO dataset code
(``--coco_path root``) and nothing has to be downloaded.

Each object is one of a few shape classes (circle, square, triangle, cross,
star, ring). Colours, fill styles, sizes, rotations and mild aspect changes are
random and independent of the class, so the class can only be told from the
shape. Backgrounds are random gradients, smooth noise, stripes or flat colours
with pixel noise, and optional thin "distractor" strokes and dots that are not
annotated. Objects lie fully inside the image and overlap only mildly.

Category ids start at 1 (as in COCO), so a model needs
``num_classes = max_id + 1`` and ``dn_labelbook_size >= num_classes``; both are
written to the JSON files under ``info`` and returned in the summary.

Everything is drawn with numpy + PIL from a per-image random generator seeded
by ``(seed, split, index)``: the same seed gives byte-identical files, and an
image does not depend on how many other images are generated.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "SHAPE_NAMES",
    "SPLITS",
    "make_categories",
    "render_image",
    "generate_split",
    "generate_synthetic_coco",
    "SyntheticDataError",
]

# Order matters: `num_classes=K` uses the first K, most distinct first.
SHAPE_NAMES: Tuple[str, ...] = ("circle", "square", "triangle", "cross", "star", "ring")
SPLITS: Tuple[str, ...] = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}
_SUPERSAMPLE = 2  # shapes are drawn at 2x and box-filtered down: smooth edges
_FILE_RE = re.compile(r"^\d{12}\.(jpg|png)$")


# --------------------------------------------------------------------------- #
# categories
# --------------------------------------------------------------------------- #
def make_categories(num_classes: int) -> List[Dict]:
    """COCO `categories` for the first `num_classes` shapes, ids 1..num_classes."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"classes must be in [1, {len(SHAPE_NAMES)}], got {num_classes}")
    return [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_NAMES[:num_classes])]


# --------------------------------------------------------------------------- #
# backgrounds
# --------------------------------------------------------------------------- #
def _random_color(rng: np.random.Generator, sat=(0.0, 1.0), val=(0.0, 1.0)) -> np.ndarray:
    """RGB in [0, 255] from a random HSV colour."""
    h = rng.random()
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """Low-frequency noise in [0, 1], shape [h, w, channels]: a small random grid upsampled."""
    gh, gw = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    out = np.empty((h, w, channels), dtype=np.float32)
    for c in range(channels):
        grid = (rng.random((gh, gw)) * 255).astype(np.uint8)
        out[..., c] = np.asarray(Image.fromarray(grid, "L").resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
    return out


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random background, float32 [h, w, 3] in [0, 255]."""
    kind = rng.choice(["gradient", "noise", "stripes", "solid"], p=[0.35, 0.3, 0.2, 0.15])
    c1 = _random_color(rng)
    c2 = _random_color(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "noise":
        t = _smooth_noise(rng, h, w, 1)
        img = c1 * (1 - t) + c2 * t
        img = img + (_smooth_noise(rng, h, w, 3) - 0.5) * 60.0
    elif kind == "stripes":
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(6, 30)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period)
        amp = rng.uniform(0.2, 0.6)  # stripes stay low-contrast-ish
        c2 = c1 + (c2 - c1) * amp
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    else:
        img = np.broadcast_to(c1, (h, w, 3)).copy()
    sigma = rng.uniform(0, 14)
    if sigma > 0:
        img = img + rng.normal(0, sigma, size=(h, w, 3)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, count: int) -> None:
    """Thin lines, small dots and arcs (not annotated), drawn in place onto `img`."""
    if count <= 0:
        return
    h, w = img.shape[:2]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(pil)
    side = min(h, w)
    for _ in range(count):
        color = tuple(int(c) for c in _random_color(rng, val=(0.2, 1.0)))
        kind = rng.integers(0, 3)
        if kind == 0:  # thin line
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            length = rng.uniform(0.15, 0.6) * side
            ang = rng.uniform(0, 2 * math.pi)
            draw.line([(x0, y0), (x0 + length * math.cos(ang), y0 + length * math.sin(ang))],
                      fill=color, width=int(rng.integers(1, 3)))
        elif kind == 1:  # small dot, far smaller than any object
            r = rng.uniform(0.01, 0.03) * side
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        else:  # open arc
            r = rng.uniform(0.08, 0.25) * side
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            start = rng.uniform(0, 360)
            draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(40, 160),
                     fill=color, width=int(rng.integers(1, 3)))
    img[...] = np.asarray(pil, dtype=np.float32)


# --------------------------------------------------------------------------- #
# shapes
# --------------------------------------------------------------------------- #
def _star_points(n: int, inner: float) -> List[Tuple[float, float]]:
    pts = []
    for k in range(2 * n):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / n
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _shape_polygons(name: str, rng: np.random.Generator):
    """Unit-radius outline(s) of a shape, centred at 0.

    Returns (polygons, hole_polygons) with each polygon a list of (x, y) points;
    circles and rings are approximated by fine polygons so that rotation and
    anisotropic scaling treat all shapes the same way.
    """
    circle = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 64, endpoint=False)]
    if name == "circle":
        return [circle], []
    if name == "square":
        return [[(-0.72, -0.72), (0.72, -0.72), (0.72, 0.72), (-0.72, 0.72)]], []
    if name == "triangle":
        jit = rng.uniform(-0.12, 0.12, size=3)
        angles = [-math.pi / 2 + k * 2 * math.pi / 3 + jit[k] for k in range(3)]
        return [[(math.cos(a), math.sin(a)) for a in angles]], []
    if name == "cross":
        t = rng.uniform(0.26, 0.38)  # half arm thickness
        return [[(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1),
                 (-t, t), (-1, t), (-1, -t), (-t, -t)]], []
    if name == "star":
        return [_star_points(5, rng.uniform(0.38, 0.5))], []
    if name == "ring":
        inner = rng.uniform(0.5, 0.65)
        return [circle], [[(inner * x, inner * y) for x, y in circle]]
    raise ValueError(f"unknown shape {name!r}")


def _shape_alpha(name: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """Soft alpha mask (float32 in [0, 1]) of a randomly rotated/stretched shape.

    The mask is square with side ceil(size); the shape fits inside it.
    """
    polys, holes = _shape_polygons(name, rng)
    # mild anisotropy (keeps each class recognisable), random rotation
    stretch = rng.uniform(0.85, 1.0)
    sx, sy = (stretch, 1.0) if rng.random() < 0.5 else (1.0, stretch)
    ang = rng.uniform(0, 2 * math.pi)
    ca, sa = math.cos(ang), math.sin(ang)

    side = int(math.ceil(size))
    big = side * _SUPERSAMPLE
    r = (big - 2) / 2.0  # 1 px margin in the supersampled canvas
    c = big / 2.0

    def tf(poly):
        out = []
        for x, y in poly:
            x, y = x * sx, y * sy
            out.append((c + r * (x * ca - y * sa), c + r * (x * sa + y * ca)))
        return out

    mask = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(mask)
    for p in polys:
        d.polygon(tf(p), fill=255)
    for p in holes:
        d.polygon(tf(p), fill=0)
    mask = mask.resize((side, side), Image.BOX)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _fill(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Object texture [h, w, 3]: solid, two-tone gradient or noisy, around colour `base`."""
    kind = rng.choice(["solid", "gradient", "noisy"], p=[0.5, 0.3, 0.2])
    if kind == "solid":
        return np.broadcast_to(base, (h, w, 3)).astype(np.float32)
    if kind == "gradient":
        other = np.clip(base * rng.uniform(0.55, 0.85) + rng.uniform(-30, 30, 3), 0, 255)
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return base * (1 - t[..., None]) + other * t[..., None]
    return base + rng.normal(0, 18, size=(h, w, 3)).astype(np.float32)


def _contrasting_color(rng: np.random.Generator, region: np.ndarray, min_dist: float = 90.0) -> np.ndarray:
    """A random saturated-ish colour that differs clearly from the region's mean colour."""
    mean = region.reshape(-1, 3).mean(axis=0)
    best, best_d = None, -1.0
    for _ in range(12):
        col = _random_color(rng, sat=(0.3, 1.0), val=(0.25, 1.0))
        dist = float(np.linalg.norm(col - mean))
        if dist >= min_dist:
            return col
        if dist > best_d:
            best, best_d = col, dist
    # fall back to pushing the best candidate away from the background
    lum = float(mean.mean())
    return np.clip(best + (np.float32(-110.0) if lum > 127 else np.float32(110.0)), 0, 255)


def _box_overlap(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float]:
    """(IoU, intersection / smaller area) of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    aa = (a[2] - a[0]) * (a[3] - a[1])
    ab = (b[2] - b[0]) * (b[3] - b[1])
    union = aa + ab - inter
    return (inter / union if union > 0 else 0.0), (inter / max(min(aa, ab), 1e-6))


# --------------------------------------------------------------------------- #
# one image
# --------------------------------------------------------------------------- #
def render_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    num_objects: int,
    num_classes: int,
    min_scale: float = 0.15,
    max_scale: float = 0.5,
    max_overlap: float = 0.15,
    max_distractors: int = 3,
    max_occlusion: float = 0.25,
) -> Tuple[Image.Image, List[Dict]]:
    """Draw one image.

    Returns the RGB PIL image and a list of objects, each
    ``{"category_id", "bbox": [x, y, w, h], "area"}``; the box is the tight box
    of the drawn shape in pixels (``area`` counts its pixels). Fewer objects
    than asked for are drawn when they do not fit the overlap limits.
    ``min_scale``/``max_scale``: object size as a fraction of the shorter image side;
    ``max_overlap``: largest IoU of two objects' boxes; ``max_occlusion``: largest
    fraction of an object's pixels that later objects may cover. The box is the
    whole (amodal) shape, which stays at least ``1 - max_occlusion`` visible.
    """
    img = _background(rng, height, width)
    if max_distractors > 0:
        _draw_distractors(rng, img, int(rng.integers(0, max_distractors + 1)))

    side = min(width, height)
    owner = np.zeros((height, width), dtype=np.int32)  # which object (1-based) is on top at each pixel
    areas: List[int] = []
    boxes: List[Tuple[int, int, int, int]] = []  # tight xyxy boxes
    objects: List[Dict] = []
    for _ in range(num_objects):
        cls = int(rng.integers(0, num_classes))
        spot = None
        for _try in range(25):
            size = rng.uniform(min_scale, max_scale) * side
            size = max(8.0, min(size, side - 2.0))
            alpha = _shape_alpha(SHAPE_NAMES[cls], size, rng)
            inside = alpha > 0.5
            s = alpha.shape[0]
            x0 = int(rng.integers(0, width - s + 1))
            y0 = int(rng.integers(0, height - s + 1))
            ys, xs = np.nonzero(inside)
            if len(xs) == 0:
                continue
            box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
            # mild overlaps only, and nothing nested in another box (e.g. in a ring's hole)
            overlaps = [_box_overlap(box, b) for b in boxes]
            if any(iou > max_overlap or inter_small > 0.4 for iou, inter_small in overlaps):
                continue
            # the new shape goes on top: every earlier object must stay mostly visible
            if boxes:
                covered = np.bincount(owner[y0:y0 + s, x0:x0 + s][inside], minlength=len(boxes) + 1)[1:]
                visible = np.bincount(owner.ravel(), minlength=len(boxes) + 1)[1:] - covered
                if np.any(visible < (1.0 - max_occlusion) * np.asarray(areas)):
                    continue
            spot = (alpha, inside, x0, y0, box)
            break
        if spot is None:
            continue  # does not fit: draw fewer objects
        alpha, inside, x0, y0, box = spot
        s = alpha.shape[0]
        region = img[y0:y0 + s, x0:x0 + s]
        color = _contrasting_color(rng, region[inside])
        fill = _fill(rng, s, s, color)
        a = alpha[..., None]
        img[y0:y0 + s, x0:x0 + s] = region * (1 - a) + fill * a
        owner[y0:y0 + s, x0:x0 + s][inside] = len(boxes) + 1
        areas.append(int(inside.sum()))
        boxes.append(box)
        objects.append({
            "category_id": cls + 1,
            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            "area": float(areas[-1]),
        })
    out = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")
    return out, objects


# --------------------------------------------------------------------------- #
# one split / the whole dataset
# --------------------------------------------------------------------------- #
def _num_classes_info(categories: List[Dict]) -> Dict:
    max_id = max(c["id"] for c in categories)
    return {"num_classes": max_id + 1, "dn_labelbook_size": max_id + 1}


MANIFEST = ".synthetic_shapes.json"  # marks a folder this module wrote (and may rewrite with overwrite=True)


class SyntheticDataError(ValueError):
    """The dataset cannot be written where asked; the message says why and what to do."""


def _check_split_args(split: str, image_format: str, min_size: int, max_size: int, min_objects: int,
                      max_objects: int, min_scale: float, max_scale: float, empty_prob: float) -> None:
    if split not in _SPLIT_CODE:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if image_format not in ("jpg", "png"):
        raise ValueError("image_format must be 'jpg' or 'png'")
    if not 16 <= min_size <= max_size:
        raise ValueError(f"need 16 <= min_size <= max_size, got {min_size}, {max_size}")
    if not 0 <= min_objects <= max_objects:
        raise ValueError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if not 0 < min_scale <= max_scale < 1:
        raise ValueError(f"need 0 < min_scale <= max_scale < 1, got {min_scale}, {max_scale}")
    if not 0.0 <= empty_prob <= 1.0:
        raise ValueError(f"empty_prob must be in [0, 1], got {empty_prob}")


def claim_folder(root: str, overwrite: bool) -> None:
    """Make `root` this module's to write: an empty or new folder, or one it wrote before (its
    manifest) when `overwrite`. A folder holding anything else is refused even with `overwrite`:
    a real dataset (COCO's files are named like ours) is never touched."""
    manifest = os.path.join(root, MANIFEST)
    ours = os.path.isfile(manifest)
    present = [name for name in ("annotations", "train2017", "val2017")
               if os.path.isdir(os.path.join(root, name)) and os.listdir(os.path.join(root, name))]
    if present and not ours:
        raise SyntheticDataError(f"{root} holds a dataset this tool did not write ({', '.join(present)}/); choose "
                                 f"an empty or new folder")
    if ours and present and not overwrite:
        raise SyntheticDataError(f"{root} holds a synthetic dataset written before; pass --overwrite "
                                 f"(overwrite=True) to replace it, or choose another folder")
    os.makedirs(root, exist_ok=True)
    with open(manifest, "w", encoding="utf-8") as f:  # first: a killed run's folder stays ours
        json.dump({"written_by": "datasets/synthetic.py"}, f)


def _clear_split(root: str, split: str) -> Tuple[str, str]:
    """(image folder, annotation folder) of `split`, created; images of an earlier run removed so
    the folder matches the new json (only in a folder `claim_folder` accepted)."""
    image_dir = os.path.join(root, f"{split}2017")
    ann_dir = os.path.join(root, "annotations")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    for f in os.listdir(image_dir):
        if _FILE_RE.match(f):
            os.remove(os.path.join(image_dir, f))
    return image_dir, ann_dir


def _render_split(image_dir: str, split: str, num_images: int, seed: int, num_classes: int, image_format: str,
                  jpeg_quality: int, draw: Dict) -> Tuple[List[Dict], List[Dict], int]:
    """Draw and save the images of a split; (images, annotations, images without objects)."""
    images, annotations = [], []
    empty = 0
    for idx in range(num_images):
        rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], idx])
        w = int(rng.integers(draw["min_size"], draw["max_size"] + 1))
        h = int(rng.integers(draw["min_size"], draw["max_size"] + 1))
        if draw["empty_prob"] > 0 and rng.random() < draw["empty_prob"]:
            n = 0
        else:
            n = int(rng.integers(draw["min_objects"], draw["max_objects"] + 1))
        img, objs = render_image(rng, w, h, n, num_classes, min_scale=draw["min_scale"],
                                 max_scale=draw["max_scale"], max_overlap=draw["max_overlap"],
                                 max_distractors=draw["max_distractors"], max_occlusion=draw["max_occlusion"])
        image_id = idx + 1
        file_name = f"{image_id:012d}.{image_format}"
        path = os.path.join(image_dir, file_name)
        if image_format == "jpg":
            img.save(path, "JPEG", quality=jpeg_quality)
        else:
            img.save(path, "PNG")
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        empty += not objs
        for o in objs:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, **o})
    return images, annotations, empty


def generate_split(
    root: str,
    split: str,
    num_images: int,
    *,
    num_classes: int = 5,
    image_size: Optional[int] = None,
    min_size: int = 128,
    max_size: int = 200,
    min_objects: int = 1,
    max_objects: int = 4,
    min_scale: float = 0.15,
    max_scale: float = 0.5,
    max_overlap: float = 0.15,
    max_occlusion: float = 0.25,
    empty_prob: float = 0.0,
    max_distractors: int = 3,
    image_format: str = "jpg",
    jpeg_quality: int = 92,
    seed: int = 0,
) -> Dict:
    """Write ``root/{split}2017/*`` and ``root/annotations/instances_{split}2017.json`` (the json last,
    atomically) into a folder `claim_folder` accepted.

    Returns ``{"split", "image_dir", "ann_file", "images", "annotations", "empty_images"}``.
    """
    if image_size is not None:
        min_size = max_size = int(image_size)
    _check_split_args(split, image_format, min_size, max_size, min_objects, max_objects, min_scale, max_scale,
                      empty_prob)
    categories = make_categories(num_classes)
    image_dir, ann_dir = _clear_split(root, split)
    draw = dict(min_size=min_size, max_size=max_size, min_objects=min_objects, max_objects=max_objects,
                min_scale=min_scale, max_scale=max_scale, max_overlap=max_overlap, max_occlusion=max_occlusion,
                empty_prob=empty_prob, max_distractors=max_distractors)
    images, annotations, empty = _render_split(image_dir, split, num_images, seed, num_classes, image_format,
                                               jpeg_quality, draw)
    info = {
        "description": "synthetic shapes detection dataset (datasets/synthetic.py)",
        "version": "1.0",
        "year": 2017,
        "split": split,
        "seed": int(seed),
        "category_names": [c["name"] for c in categories],
        **_num_classes_info(categories),
    }
    coco = {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    ann_file = os.path.join(ann_dir, f"instances_{split}2017.json")
    from util.atomic import atomic_write_text
    atomic_write_text(ann_file, json.dumps(coco))
    return {"split": split, "image_dir": image_dir, "ann_file": ann_file, "images": len(images),
            "annotations": len(annotations), "empty_images": empty}


def generate_synthetic_coco(
    root: str,
    num_train: int = 400,
    num_val: int = 100,
    *,
    num_classes: int = 5,
    image_size: Optional[int] = None,
    min_size: int = 128,
    max_size: int = 200,
    min_objects: int = 1,
    max_objects: int = 4,
    min_scale: float = 0.15,
    max_scale: float = 0.5,
    max_overlap: float = 0.15,
    max_occlusion: float = 0.25,
    empty_prob: float = 0.0,
    max_distractors: int = 3,
    image_format: str = "jpg",
    seed: int = 0,
    overwrite: bool = False,
) -> Dict:
    """Generate train and val splits under `root` (see module docstring): a new or empty folder, or
    (with `overwrite`) one this function wrote before; anything else raises SyntheticDataError.

    Returns a summary: ``{"root", "splits": {"train": {...}, "val": {...}},
    "categories", "num_classes", "dn_labelbook_size"}``.
    """
    kw = dict(num_classes=num_classes, image_size=image_size, min_size=min_size, max_size=max_size,
              min_objects=min_objects, max_objects=max_objects, min_scale=min_scale, max_scale=max_scale,
              max_overlap=max_overlap, max_occlusion=max_occlusion, empty_prob=empty_prob,
              max_distractors=max_distractors,
              image_format=image_format, seed=seed)
    claim_folder(root, overwrite)
    splits = {
        "train": generate_split(root, "train", num_train, **kw),
        "val": generate_split(root, "val", num_val, **kw),
    }
    categories = make_categories(num_classes)
    return {"root": os.path.abspath(root), "splits": splits, "categories": categories,
            **_num_classes_info(categories)}
