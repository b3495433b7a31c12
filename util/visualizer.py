"""Drawing detections and ground-truth boxes on images with PIL.

Every class gets a fixed colour (the same in every image and every run), and
each box is labelled with its class name and, for detections, the score.

    from util.visualizer import draw_detections
    img = draw_detections(Image.open(path), boxes_xyxy, labels, scores, {1: "circle"})
    img.save("out.png")
"""
from __future__ import annotations

import colorsys
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from PIL import Image, ImageDraw, ImageFont

__all__ = ["color_for_label", "label_text", "draw_detections", "draw_ground_truth", "get_font"]

Color = Tuple[int, int, int]

# Distinct, saturated colours for the first labels; later ones come from the golden-ratio hue walk.
_PALETTE: Tuple[Color, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (170, 110, 40), (128, 0, 0), (255, 225, 25), (0, 0, 128), (128, 128, 0),
)


def color_for_label(label: int) -> Color:
    """A fixed RGB colour for a class id (deterministic, no global state)."""
    label = int(label)
    if 0 <= label < len(_PALETTE):
        return _PALETTE[label]
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
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


def draw_detections(
    image: Union[Image.Image, str],
    boxes: Sequence[Sequence[float]],
    labels: Sequence[int],
    scores: Optional[Sequence[float]] = None,
    category_names: Optional[Mapping[int, str]] = None,
    line_width: Optional[int] = None,
    font_size: Optional[int] = None,
    dashed: bool = False,
) -> Image.Image:
    """Return a copy of `image` (RGB) with boxes and 'name score' labels drawn.

    boxes: xyxy in pixels of `image`; labels: class ids; scores: optional, one per box.
    Lists, numpy arrays and tensors are accepted. With `dashed=True` boxes are
    drawn dashed (used for ground truth, so both can share one picture).
    """
    if isinstance(image, str):
        image = Image.open(image)
    img = image.convert("RGB").copy()
    boxes, labels, scores = _as_list(boxes), _as_list(labels), _as_list(scores)
    if len(boxes) != len(labels) or (scores and len(scores) != len(boxes)):
        raise ValueError(f"got {len(boxes)} boxes, {len(labels)} labels, {len(scores)} scores")
    w, h = img.size
    side = min(w, h)
    lw = line_width or max(1, round(side / 160))
    font = get_font(font_size or max(9, min(20, round(side / 26))))
    draw = ImageDraw.Draw(img)
    # lowest score first, so the most confident boxes and labels end up on top
    order = sorted(range(len(boxes)), key=lambda k: scores[k]) if scores else range(len(boxes))
    for i in order:
        box, label = boxes[i], labels[i]
        x0, y0, x1, y1 = [float(v) for v in box]
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        color = color_for_label(label)
        if dashed:
            _dashed_rect(draw, (x0, y0, x1, y1), color, lw)
        else:
            draw.rectangle([x0, y0, x1, y1], outline=color, width=lw)
        text = label_text(label, scores[i] if scores else None, category_names)
        tw, th = _text_size(draw, text, font)
        # label above the box when there is room, else inside its top-left corner
        ty = y0 - th - 3 if y0 - th - 3 >= 0 else y0 + lw
        tx = min(max(0.0, x0), max(0.0, w - tw - 4))
        draw.rectangle([tx, ty, tx + tw + 3, ty + th + 3], fill=color)
        bx0 = draw.textbbox((0, 0), text, font=font)
        draw.text((tx + 2 - bx0[0], ty + 1 - bx0[1]), text, fill=_contrast_text_color(color), font=font)
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
