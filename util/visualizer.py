"""Drawing detections and ground-truth boxes on images with PIL.

Every class gets a fixed colour (keyed by its name, so the same class looks the
same in every picture, tool and run), and each box is labelled with its class
name and, for detections, the score. Pictures keep the image's resolution; line
width and font grow with it, and labels are placed where they hide no other label.

    from util.visualizer import draw_detections
    img = draw_detections(Image.open(path), boxes_xyxy, labels, scores, {1: "circle"})
    img.save("out.png")
"""
from __future__ import annotations

import colorsys
import zlib
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from PIL import Image, ImageDraw, ImageFont

__all__ = ["color_for_label", "label_text", "draw_detections", "draw_ground_truth", "get_font", "drawing_sizes",
           "place_label"]

Color = Tuple[int, int, int]

# Distinct, saturated colours for the first labels; later ones come from the golden-ratio hue walk.
_PALETTE: Tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (170, 110, 40), (128, 0, 0), (255, 225, 25), (0, 0, 128), (128, 128, 0),
)


def color_for_label(label: int, name: Optional[str] = None) -> Color:
    """A fixed RGB colour for a class: keyed by its name when known, so a class looks
    the same in every picture, tool and dataset (predictions, ground truth, another
    checkpoint's ids); by its id otherwise."""
    if name:
        index = zlib.crc32(name.strip().lower().encode("utf-8"))
        if index % 4 != 0:  # three names in four take a palette colour, the rest a hue of their own
            return _PALETTE[index % len(_PALETTE)]
        return _hue_color(index / 2 ** 32)
    label = int(label)
    if 0 <= label < len(_PALETTE):
        return _PALETTE[label]
    return _hue_color((label * 0.618033988749895) % 1.0)


def _hue_color(hue: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def label_text(label: int, score: Optional[float] = None,
               category_names: Optional[Mapping[int, str]] = None) -> str:
    """'name 0.87' (or the number when the class has no name)."""
    name = category_names.get(int(label), str(int(label))) if category_names else str(int(label))
    return name if score is None else f"{name} {float(score):.2f}"


_FONT_CACHE: Dict[int, ImageFont.ImageFont] = {}


def get_font(size: int = 12):
    """PIL's built-in font (scalable when Pillow has FreeType); nothing is read from disk."""
    if size not in _FONT_CACHE:
        try:
            _FONT_CACHE[size] = ImageFont.load_default(size=size)
        except TypeError:  # old Pillow: fixed-size bitmap font
            _FONT_CACHE[size] = ImageFont.load_default()
    return _FONT_CACHE[size]


def drawing_sizes(width: int, height: int) -> Tuple[int, int]:
    """(line width, font size) in pixels for a picture of this size: both grow with the
    image, so labels stay readable on a 4000x3000 photo and boxes stay thin on a thumbnail."""
    scale = (width * height) ** 0.5
    return max(1, round(scale / 450)), max(10, round(scale / 45))


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> Tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def _as_list(x) -> list:
    if x is None:
        return []
    if hasattr(x, "tolist"):  # torch tensors and numpy arrays
        return x.tolist()
    return list(x)


def _contrast_text_color(color: Color) -> Color:
    lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if lum > 150 else (255, 255, 255)


Rect = Tuple[float, float, float, float]


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(box: Rect, size: Tuple[float, float], image_size: Tuple[int, int],
                taken: Sequence[Rect]) -> Rect:
    """Where a label of `size` goes for `box`: above its top-left corner, else inside it,
    else below it, else the first free slot further down; never over a label in `taken`."""
    (x0, y0, x1, y1), (tw, th), (w, h) = box, size, image_size
    left = min(max(0.0, x0), max(0.0, w - tw))
    right = min(max(0.0, x1 - tw), max(0.0, w - tw))
    candidates = [(left, y0 - th), (left, y0), (left, y1), (left, y1 - th), (right, y0 - th), (right, y0)]
    for cx, cy in candidates:
        rect = (cx, cy, cx + tw, cy + th)
        if cy >= 0 and cy + th <= h and not any(_overlaps(rect, t) for t in taken):
            return rect
    cy = min(max(0.0, y0), max(0.0, h - th))
    rect = (left, cy, left + tw, cy + th)
    for _ in range(len(taken) + 1):  # slide down past the labels in the way, then wrap to the top
        hits = [t for t in taken if _overlaps(rect, t)]
        if not hits:
            break
        cy = max(t[3] for t in hits)
        if cy + th > h:
            cy = 0.0
        rect = (left, cy, left + tw, cy + th)
    return rect


def draw_detections(
    image: Union[Image.Image, str],
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    scores: Optional[Sequence[float]] = None,
    category_names: Optional[Mapping[int, str]] = None,
    line_width: Optional[int] = None,
    font_size: Optional[int] = None,
    dashed: bool = False,
    track_ids: Optional[Sequence[int]] = None,
) -> Image.Image:
    """Return a copy of `image` (RGB, same size) with boxes and 'name score' labels drawn
    ('#id name score' for boxes with a track id >= 0 in `track_ids`).

    boxes: xyxy in pixels of `image`; labels: class ids; scores: optional, one per box.
    Lists, numpy arrays and tensors are accepted. All boxes are drawn first, then
    the labels, most confident first, each where it covers no other label. With
    `dashed=True` boxes are drawn dashed (ground truth, so both can share a picture).
    """
    if isinstance(image, str):
        image = Image.open(image)
    img = image.convert("RGB").copy()
    boxes, labels, scores, ids = _as_list(boxes), _as_list(labels), _as_list(scores), _as_list(track_ids)
    if len(boxes) != len(labels) or (scores and len(scores) != len(boxes)) or (ids and len(ids) != len(boxes)):
        raise ValueError(f"got {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores, {len(ids)} track ids")
    w, h = img.size
    auto_lw, auto_font = drawing_sizes(w, h)
    lw = line_width or auto_lw
    font = get_font(font_size or auto_font)
    names = category_names or {}
    draw = ImageDraw.Draw(img)
    order = sorted(range(len(boxes)), key=lambda k: -scores[k]) if scores else list(range(len(boxes)))
    rects = []
    for i in reversed(order):  # lowest score first: the most confident box ends up on top
        x0, y0, x1, y1 = [float(v) for v in boxes[i]]
        rect = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        rects.append((i, rect))
        color = color_for_label(labels[i], names.get(int(labels[i])))
        if dashed:
            _dashed_rect(draw, rect, color, lw)
        else:
            draw.rectangle(list(rect), outline=color, width=lw)
    pad = max(1, lw // 2 + 1)
    taken: list = []
    for i, rect in reversed(rects):  # most confident label placed first
        color = color_for_label(labels[i], names.get(int(labels[i])))
        text = label_text(labels[i], scores[i] if scores else None, category_names)
        if ids and int(ids[i]) >= 0:
            text = f"#{int(ids[i])} {text}"
        tw, th = _text_size(draw, text, font)
        spot = place_label(rect, (tw + 2 * pad, th + 2 * pad), (w, h), taken)
        taken.append(spot)
        draw.rectangle(list(spot), fill=color)
        bx0 = draw.textbbox((0, 0), text, font=font)
        draw.text((spot[0] + pad - bx0[0], spot[1] + pad - bx0[1]), text, fill=_contrast_text_color(color),
                  font=font)
    return img


def _dashed_rect(draw: ImageDraw.ImageDraw, box, color: Color, width: int, dash: int = 5) -> None:
    x0, y0, x1, y1 = box
    for (ax, ay, bx, by) in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
        length = max(abs(bx - ax), abs(by - ay))
        n = max(1, int(length // (2 * dash)))
        for k in range(n + 1):
            t0 = min(1.0, (2 * k * dash) / max(length, 1e-6))
            t1 = min(1.0, ((2 * k + 1) * dash) / max(length, 1e-6))
            if t0 >= 1.0:
                break
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=color, width=width)


def draw_ground_truth(
    image: Union[Image.Image, str],
    boxes_xywh: Sequence[Sequence[float]],
    labels: Sequence[int],
    category_names: Optional[Mapping[int, str]] = None,
    **kwargs,
) -> Image.Image:
    """Draw COCO-style ``[x, y, w, h]`` ground-truth boxes (dashed, no scores)."""
    boxes = [[x, y, x + bw, y + bh] for x, y, bw, bh in _as_list(boxes_xywh)]
    kwargs.setdefault("dashed", True)
    return draw_detections(image, boxes, labels, None, category_names, **kwargs)
