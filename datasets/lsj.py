"""Large scale jitter (LSJ), the augmentation of ViTDet / DINO-EVA, as the transform recipe 'lsj'.

Training (per image, after a random horizontal flip):

1. pick s uniformly in [min_scale, max_scale] (0.1 .. 2.0) and resize the
   image, keeping its aspect ratio, to fit inside (s * size) x (s * size);
2. crop a random size x size window (the whole image if it is smaller);
   boxes are clipped to the crop and those left without area are dropped
   (with their labels / area / iscrowd);
3. pad the crop on the bottom/right to size x size with the ImageNet mean
   colour (zero after normalization), so every training image, and so every
   batch, is size x size. Boxes keep their pixel coordinates; after
   `Normalize` they are relative to the padded size x size image.

Evaluation: resize so the longer side is `size` (detectron2's
ResizeShortestEdge(size, max_size=size)); no padding beyond the batch's.

Padding note: detrex pads in the model (`square_pad`) and masks the padding;
here the padded pixels are image content, as in TF's LSJ and detectron2's
FixedSizeCrop(pad=True). With `lsj_pad = False` the crop is left unpadded and
the batch collate pads it with a mask (batches are then only as large as their
largest crop).

Config keys: data_aug_type='lsj', lsj_size (1024 / 1280 / 1536),
lsj_min_scale (0.1), lsj_max_scale (2.0), lsj_pad (True);
data_aug_scale_overlap, when set, multiplies lsj_size as it does the other sizes.
"""
from __future__ import annotations

import random
from typing import Any, Sequence, Tuple, Union

import PIL.Image
import torch

from .transforms import (EVAL_SETS, IMAGENET_MEAN, TRAIN_SETS, AugParams, Compose, RandomHorizontalFlip, Target,
                         crop, normalize_to_tensor, register_transform_recipe, resize)

__all__ = ["LargeScaleJitter", "ResizeLongestSide", "pad_bottom_right", "lsj_recipe"]

MEAN_RGB = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    if h <= 0 or w <= 0:
        raise ValueError(f"LSJ size must be positive, got {size!r}")
    return h, w


def pad_bottom_right(image: PIL.Image.Image, target: Target, size: Tuple[int, int],
                     fill: Tuple[int, int, int] = MEAN_RGB):
    """Pad a PIL image on the bottom/right to `size` = (h, w); boxes stay, 'size' becomes (h, w)."""
    h, w = size
    if image.height > h or image.width > w:
        raise ValueError(f"cannot pad a {image.height}x{image.width} image to {h}x{w}")
    canvas = PIL.Image.new(image.mode, (w, h), fill if image.mode == "RGB" else 0)
    canvas.paste(image, (0, 0))
    if target is None:
        return canvas, None
    target = dict(target)
    target["size"] = torch.tensor([h, w])
    return canvas, target


class LargeScaleJitter:
    """Random rescale in [min_scale, max_scale] x `size`, random `size` crop, pad to `size` (see module doc)."""

    def __init__(self, size: Union[int, Sequence[int]], min_scale: float = 0.1, max_scale: float = 2.0,
                 pad: bool = True, fill: Tuple[int, int, int] = MEAN_RGB):
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"LSJ scales must satisfy 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.size = _pair(size)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.pad = bool(pad)
        self.fill = tuple(fill)

    def scaled_size(self, image_hw: Tuple[int, int], scale: float) -> Tuple[int, int]:
        """(h, w) of the image resized to fit in scale * size, aspect ratio kept."""
        h, w = image_hw
        factor = min(scale * self.size[0] / h, scale * self.size[1] / w)
        return max(1, int(round(h * factor))), max(1, int(round(w * factor)))

    def __call__(self, image: PIL.Image.Image, target: Target):
        scale = random.uniform(self.min_scale, self.max_scale)
        new_h, new_w = self.scaled_size((image.height, image.width), scale)
        image, target = resize(image, target, (new_w, new_h))
        crop_h, crop_w = min(self.size[0], new_h), min(self.size[1], new_w)
        top = int(torch.randint(0, new_h - crop_h + 1, (1,)).item())
        left = int(torch.randint(0, new_w - crop_w + 1, (1,)).item())
        image, target = crop(image, target, (top, left, crop_h, crop_w))
        if self.pad:
            image, target = pad_bottom_right(image, target, self.size, self.fill)
        return image, target

    def __repr__(self) -> str:
        return (f"LargeScaleJitter(size={self.size}, scale=[{self.min_scale}, {self.max_scale}], "
                f"pad={self.pad})")


class ResizeLongestSide:
    """Resize so the longer side is `size` (aspect ratio kept)."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, image: PIL.Image.Image, target: Target = None):
        h, w = image.height, image.width
        factor = self.size / max(h, w)
        return resize(image, target, (max(1, int(w * factor + 0.5)), max(1, int(h * factor + 0.5))))

    def __repr__(self) -> str:
        return f"ResizeLongestSide({self.size})"


@register_transform_recipe("lsj")
def lsj_recipe(image_set: str, params: AugParams, args: Any = None) -> Compose:
    """'lsj': flip + LargeScaleJitter for training, longest side = lsj_size for evaluation."""
    def get(name, default):
        value = getattr(args, name, None) if args is not None else None
        return default if value is None else value

    size = int(get("lsj_size", 1024))
    overlap = get("data_aug_scale_overlap", None)
    if overlap is not None and float(overlap) > 0:
        size = int(size * float(overlap))
    if image_set in TRAIN_SETS:
        steps = [RandomHorizontalFlip(),
                 LargeScaleJitter(size, float(get("lsj_min_scale", 0.1)), float(get("lsj_max_scale", 2.0)),
                                  pad=bool(get("lsj_pad", True)))]
    elif image_set in EVAL_SETS:
        steps = [ResizeLongestSide(size)]
    else:
        raise ValueError(f"unknown image_set {image_set!r}; expected one of {TRAIN_SETS + EVAL_SETS}")
    return Compose(steps + [normalize_to_tensor()])
