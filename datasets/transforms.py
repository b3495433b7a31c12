"""Joint image + target transforms for detection, and the COCO training recipes.

A transform is a callable `(image, target) -> (image, target)`. Until
`Normalize`, the image is a PIL image and `target['boxes']` holds absolute
(x0, y0, x1, y1) pixel boxes; `Normalize` turns the image into a normalized
tensor and the boxes into (cx, cy, w, h) relative to the image size. Targets
are never modified in place. Transforms that drop instances keep every
per-instance field ('boxes', 'labels', 'area', 'iscrowd') aligned.

Randomness uses Python's `random` (flip, size choice, crop size) and torch
(crop position) in the same order as the original DINO code, so seeded runs
draw the same augmentations.

Recipes: `make_coco_transforms(image_set, args)` builds the pipeline named
by `args.data_aug_type` (default 'detr', the recipe of DETR / DINO) from
`TRANSFORM_RECIPES`; add a recipe with `@register_transform_recipe('name')`
(a recipe living in another module of this package is listed in
BUILTIN_RECIPE_MODULES so it is imported when first asked for).
"""
from __future__ import annotations

import importlib
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import PIL.Image
import torch
import torchvision.transforms as tv_transforms
import torchvision.transforms.functional as F

from util.box_ops import box_xyxy_to_cxcywh

logger = logging.getLogger(__name__)

Target = Optional[Dict[str, Any]]
INSTANCE_FIELDS = ("boxes", "labels", "area", "iscrowd")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _keep_instances(target: Dict[str, Any], keep: torch.Tensor) -> None:
    for name in INSTANCE_FIELDS:
        if name in target:
            target[name] = target[name][keep]


# --------------------------------------------------------------------------- #
# functional forms
# --------------------------------------------------------------------------- #
def crop(image: PIL.Image.Image, target: Target, region: Tuple[int, int, int, int]):
    """Crop `region` = (top, left, height, width); boxes are clipped to it.

    Boxes left with no area are dropped together with their other fields; the
    'area' of the kept ones becomes the area of the clipped box.
    """
    top, left, height, width = region
    out = F.crop(image, top, left, height, width)
    if target is None:
        return out, None
    target = dict(target)
    target["size"] = torch.tensor([height, width])
    if "boxes" in target:
        corners = target["boxes"].reshape(-1, 2, 2) - torch.tensor([left, top], dtype=torch.float32)
        corners = torch.min(corners, torch.tensor([width, height], dtype=torch.float32)).clamp(min=0)
        target["boxes"] = corners.reshape(-1, 4)
        target["area"] = (corners[:, 1] - corners[:, 0]).prod(dim=1)
        _keep_instances(target, (corners[:, 1] > corners[:, 0]).all(dim=1))
    return out, target


def hflip(image: PIL.Image.Image, target: Target):
    """Mirror left-right: x0' = W - x1, x1' = W - x0."""
    out = F.hflip(image)
    if target is None or "boxes" not in target:
        return out, target
    target = dict(target)
    width = image.width
    x0, y0, x1, y1 = target["boxes"].unbind(-1)
    target["boxes"] = torch.stack([width - x1, y0, width - x0, y1], dim=-1)
    return out, target


def get_size_with_aspect_ratio(image_size: Tuple[int, int], size: int,
                               max_size: Optional[int] = None) -> Tuple[int, int]:
    """(h, w) with the shorter side `size`, shrunk so the longer side stays near `max_size`.

    `image_size` is PIL's (w, h). The arithmetic (rounding the shrunk size,
    truncating the long side) matches DETR / DINO exactly: eval sizes, and so
    eval numbers, depend on it. Like the original, the longer side can end up
    a pixel or two above max_size for very elongated images.
    """
    w, h = image_size
    if max_size is not None:
        short, long = float(min(w, h)), float(max(w, h))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def get_size(image_size: Tuple[int, int], size: Union[int, Sequence[int]],
             max_size: Optional[int] = None) -> Tuple[int, int]:
    """Output (h, w): `size` is a shorter-side length, or an explicit (w, h)."""
    if isinstance(size, (list, tuple)):
        return int(size[1]), int(size[0])
    return get_size_with_aspect_ratio(image_size, size, max_size)


def resize(image: PIL.Image.Image, target: Target, size: Union[int, Sequence[int]],
           max_size: Optional[int] = None):
    """Resize (bilinear) to `get_size(...)`; boxes and areas scale with the image."""
    h, w = get_size(image.size, size, max_size)
    out = F.resize(image, [h, w])
    if target is None:
        return out, None
    sx = out.width / image.width
    sy = out.height / image.height
    target = dict(target)
    if "boxes" in target:
        target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    if "area" in target:
        target["area"] = target["area"] * (sx * sy)
    target["size"] = torch.tensor([h, w])
    return out, target


# --------------------------------------------------------------------------- #
# transform classes
# --------------------------------------------------------------------------- #
class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img, target):
        if random.random() < self.p:
            return hflip(img, target)
        return img, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomResize:
    """Resize to a size drawn uniformly from `sizes` (shorter side, or (w, h))."""

    def __init__(self, sizes: Sequence[Union[int, Sequence[int]]], max_size: Optional[int] = None):
        if not isinstance(sizes, (list, tuple)) or len(sizes) == 0:
            raise ValueError(f"RandomResize needs a non-empty list of sizes, got {sizes!r}")
        self.sizes = list(sizes)
        self.max_size = max_size

    def __call__(self, img, target=None):
        return resize(img, target, random.choice(self.sizes), self.max_size)

    def __repr__(self) -> str:
        return f"RandomResize(sizes={self.sizes}, max_size={self.max_size})"


class RandomCrop:
    """Crop a fixed (h, w) region at a random position."""

    def __init__(self, size: Tuple[int, int]):
        self.size = tuple(size)

    def __call__(self, img, target):
        h = min(self.size[0], img.height)
        w = min(self.size[1], img.width)
        return crop(img, target, tv_transforms.RandomCrop.get_params(img, [h, w]))

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size})"


class RandomSizeCrop:
    """Crop a random region, each side drawn in [min_size, min(image side, max_size)]."""

    def __init__(self, min_size: int, max_size: int):
        if min_size > max_size:
            raise ValueError(f"RandomSizeCrop: min_size {min_size} > max_size {max_size}")
        self.min_size = min_size
        self.max_size = max_size

    def __call__(self, img, target):
        # Sides shorter than min_size are kept whole (the original would fail).
        w_hi = min(img.width, self.max_size)
        h_hi = min(img.height, self.max_size)
        w = random.randint(min(self.min_size, w_hi), w_hi)
        h = random.randint(min(self.min_size, h_hi), h_hi)
        return crop(img, target, tv_transforms.RandomCrop.get_params(img, [h, w]))

    def __repr__(self) -> str:
        return f"RandomSizeCrop(min_size={self.min_size}, max_size={self.max_size})"


class RandomSelect:
    """Apply `transforms1` with probability p, else `transforms2`."""

    def __init__(self, transforms1, transforms2, p: float = 0.5):
        self.transforms1 = transforms1
        self.transforms2 = transforms2
        self.p = p

    def __call__(self, img, target):
        if random.random() < self.p:
            return self.transforms1(img, target)
        return self.transforms2(img, target)

    def __repr__(self) -> str:
        return f"RandomSelect(p={self.p},\n  {self.transforms1!r},\n  {self.transforms2!r})"


class ToTensor:
    """PIL image -> float tensor [3, H, W] in [0, 1]."""

    def __call__(self, img, target):
        return F.to_tensor(img), target

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """Normalize the image tensor; boxes become (cx, cy, w, h) / (W, H, W, H)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = list(mean)
        self.std = list(std)

    def __call__(self, image: torch.Tensor, target: Target = None):
        image = F.normalize(image, mean=self.mean, std=self.std)
        if target is None or "boxes" not in target:
            return image, target
        target = dict(target)
        h, w = image.shape[-2:]
        boxes = box_xyxy_to_cxcywh(target["boxes"])
        target["boxes"] = boxes / torch.tensor([w, h, w, h], dtype=torch.float32)
        return image, target

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        inner = "".join("\n    " + repr(t).replace("\n", "\n    ") for t in self.transforms)
        return f"Compose({inner}\n)"


def normalize_to_tensor() -> Compose:
    """ToTensor + ImageNet Normalize, the last step of every recipe."""
    return Compose([ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# --------------------------------------------------------------------------- #
# recipes
# --------------------------------------------------------------------------- #
TRAIN_SETS = ("train",)
EVAL_SETS = ("val", "test", "eval_debug", "train_reg")


@dataclass(frozen=True)
class AugParams:
    """Sizes of the resize / crop augmentation, after data_aug_scale_overlap."""

    scales: Tuple[int, ...] = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
    max_size: int = 1333
    scales2_resize: Tuple[int, ...] = (400, 500, 600)
    scales2_crop: Tuple[int, int] = (384, 600)
    fix_size: bool = False

    @classmethod
    def from_args(cls, args: Any = None) -> "AugParams":
        """Read data_aug_* keys (missing or None -> the COCO defaults) and apply data_aug_scale_overlap."""
        d = cls()

        def get(name, default):
            value = getattr(args, name, None) if args is not None else None
            return default if value is None else value

        scales = [int(s) for s in get("data_aug_scales", d.scales)]
        max_size = int(get("data_aug_max_size", d.max_size))
        scales2_resize = [int(s) for s in get("data_aug_scales2_resize", d.scales2_resize)]
        scales2_crop = [int(s) for s in get("data_aug_scales2_crop", d.scales2_crop)]
        if not scales or not scales2_resize:
            raise ValueError("data_aug_scales and data_aug_scales2_resize must not be empty")
        if len(scales2_crop) != 2 or scales2_crop[0] > scales2_crop[1]:
            raise ValueError(f"data_aug_scales2_crop must be [min, max] with min <= max, got {scales2_crop}")
        factor = get("data_aug_scale_overlap", None)
        if factor is not None and float(factor) > 0:
            factor = float(factor)
            scales = [int(s * factor) for s in scales]
            max_size = int(max_size * factor)
            scales2_resize = [int(s * factor) for s in scales2_resize]
            scales2_crop = [int(s * factor) for s in scales2_crop]
        return cls(tuple(scales), max_size, tuple(scales2_resize), tuple(scales2_crop),
                   bool(get("fix_size", False)))


TransformRecipe = Callable[[str, AugParams, Any], Callable]
TRANSFORM_RECIPES: Dict[str, TransformRecipe] = {}


def register_transform_recipe(name: str):
    """Decorator registering `fn(image_set, params: AugParams, args) -> transform` as `name`."""
    def wrap(fn: TransformRecipe) -> TransformRecipe:
        if name in TRANSFORM_RECIPES:
            raise ValueError(f"transform recipe {name!r} is already registered")
        TRANSFORM_RECIPES[name] = fn
        return fn
    return wrap


@register_transform_recipe("detr")
def detr_recipe(image_set: str, p: AugParams, args: Any = None) -> Compose:
    """The DETR / DINO COCO recipe.

    train: flip, then either a multi-scale resize or resize + random crop +
    multi-scale resize (probability 1/2 each). fix_size: flip + resize to
    exactly max(scales) x max_size (h x w). eval: resize the shorter side to
    max(scales), the longer side capped at max_size.
    """
    if image_set in TRAIN_SETS:
        if p.fix_size:
            steps: List[Callable] = [RandomHorizontalFlip(), RandomResize([(p.max_size, max(p.scales))])]
        else:
            steps = [
                RandomHorizontalFlip(),
                RandomSelect(
                    RandomResize(list(p.scales), max_size=p.max_size),
                    Compose([
                        RandomResize(list(p.scales2_resize)),
                        RandomSizeCrop(*p.scales2_crop),
                        RandomResize(list(p.scales), max_size=p.max_size),
                    ]),
                ),
            ]
    elif image_set in EVAL_SETS:
        steps = [RandomResize([max(p.scales)], max_size=p.max_size)]
    else:
        raise ValueError(f"unknown image_set {image_set!r}; expected one of {TRAIN_SETS + EVAL_SETS}")
    return Compose(steps + [normalize_to_tensor()])


# Recipes defined in other modules of this package, imported on first use
# (they import this module, so it cannot import them at the top).
BUILTIN_RECIPE_MODULES = {"lsj": "lsj"}


def _import_recipe_module(name: str) -> None:
    module = BUILTIN_RECIPE_MODULES.get(name)
    if module is None or name in TRANSFORM_RECIPES:
        return
    try:
        importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.{module}":
            raise


def make_coco_transforms(image_set: str, args: Any = None) -> Callable:
    """The transform pipeline for `image_set`, from the recipe `args.data_aug_type` ('detr' by default)."""
    name = getattr(args, "data_aug_type", None) or "detr"
    _import_recipe_module(name)
    if name not in TRANSFORM_RECIPES:
        raise ValueError(f"unknown data_aug_type {name!r}; known recipes: {', '.join(sorted(TRANSFORM_RECIPES))}")
    params = AugParams.from_args(args)
    logger.info("data augmentation %r for %s: scales=%s max_size=%d scales2_resize=%s scales2_crop=%s%s",
                name, image_set, list(params.scales), params.max_size, list(params.scales2_resize),
                list(params.scales2_crop), " fix_size" if params.fix_size else "")
    return TRANSFORM_RECIPES[name](image_set, params, args)
