"""Reading image files as 8-bit RGB in the orientation their annotations use.

Pixel formats
    Every PIL mode ends up as 8-bit RGB. 16-bit grey ('I;16*') is scaled by
    255/65535, not clipped. 32-bit integer ('I') is taken as 8-bit if its
    values fit in 0..255, as 16-bit if they fit in 0..65535, and min-max
    scaled otherwise; float ('F') as 0..1 or 0..255 if it fits, min-max scaled
    otherwise. Images with transparency (RGBA, LA, palette with a transparent
    colour) are composited over the ImageNet mean colour, so transparent
    pixels normalize to ~0, the same value as batch padding.

EXIF orientation
    COCO annotations refer to the pixels as stored in the file, and the
    original DINO code never applies the EXIF orientation tag. Many annotation
    tools today show (and annotate) the image rotated by its tag instead. The
    json's width/height tell the two apart when the tag swaps the axes
    (orientations 5-8): the transpose is applied when the rotated size matches
    the json and the stored size does not. In every other case (orientations
    2-4, square images, no size in the json) the stored pixels are used, as in
    the original. `exif_transpose='always'` / `'never'` override the rule.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageOps

from .errors import DatasetError

IMAGENET_MEAN_RGB = (124, 116, 104)  # round(255 * (0.485, 0.456, 0.406))
EXIF_ORIENTATION_TAG = 0x0112
EXIF_POLICIES = ("auto", "always", "never")

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _scale_to_uint8(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly onto 0..255 (rounded)."""
    arr = arr.astype(np.float64)
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    out = (arr - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """An 'I;16*', 'I' or 'F' image as an 8-bit 'L' image (see module doc)."""
    arr = np.asarray(img)
    if img.mode in _SIXTEEN_BIT_MODES:
        out = _scale_to_uint8(arr, 0, 65535)
    elif arr.size == 0:
        out = arr.astype(np.uint8)
    else:
        lo, hi = float(arr.min()), float(arr.max())
        if img.mode == "F":
            if not (np.isfinite(lo) and np.isfinite(hi)):
                arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
                lo, hi = float(arr.min()), float(arr.max())
            if lo >= 0 and hi <= 1:
                out = _scale_to_uint8(arr, 0, 1)
            elif lo >= 0 and hi <= 255:
                out = _scale_to_uint8(arr, 0, 255)
            else:
                out = _scale_to_uint8(arr, lo, hi)
        elif lo >= 0 and hi <= 255:
            out = arr.astype(np.uint8)
        elif lo >= 0 and hi <= 65535:
            out = _scale_to_uint8(arr, 0, 65535)
        else:
            out = _scale_to_uint8(arr, lo, hi)
    return Image.fromarray(np.ascontiguousarray(out), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB (see module doc for the rules)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _high_depth_to_l(img).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, IMAGENET_MEAN_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def exif_orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF blocks are common; treat as untagged
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def should_transpose(orientation: int, stored_size: Tuple[int, int],
                     json_size: Optional[Tuple[int, int]], policy: str = "auto") -> bool:
    """Whether to apply the EXIF orientation (the rule in the module doc)."""
    if policy not in EXIF_POLICIES:
        raise ValueError(f"exif_transpose must be one of {EXIF_POLICIES}, got {policy!r}")
    if orientation == 1 or policy == "never":
        return False
    if policy == "always":
        return True
    if orientation < 5 or json_size is None:
        return False
    rotated = (stored_size[1], stored_size[0])
    return tuple(json_size) == rotated and tuple(json_size) != tuple(stored_size)


def _decode(path: str, json_size: Optional[Tuple[int, int]], exif_transpose: str) -> Image.Image:
    """Decode to RGB; raises _Unreadable(reason, hint) on any failure."""
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        empty = False  # missing: Image.open says so below
    if empty:
        raise _Unreadable("the file is empty (0 bytes)", "Restore it (an interrupted copy?) or remove the image "
                          "from the annotation file.")
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise _Unreadable("the file does not exist",
                          "Restore it or remove the image from the annotation file.") from None
    except Image.DecompressionBombError as exc:
        raise _Unreadable(f"it is too large for PIL's safety limit ({exc})",
                          "Downscale it (and its annotations) or raise PIL.Image.MAX_IMAGE_PIXELS.") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for broken files
        raise _Unreadable(f"it cannot be decoded ({type(exc).__name__}: {exc})",
                          "Replace the file or remove the image from the annotation file; "
                          "datasets.verify_images finds all such files.") from None
    try:
        if should_transpose(exif_orientation(img), img.size, json_size, exif_transpose):
            img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except Exception as exc:
        raise _Unreadable(f"PIL mode {img.mode!r} cannot be converted to RGB ({exc})",
                          "Convert it to an RGB JPEG or PNG.") from None


class _Unreadable(Exception):
    def __init__(self, reason: str, hint: str):
        super().__init__(reason)
        self.reason, self.hint = reason, hint


def load_image(path: str, image_id=None, json_size: Optional[Tuple[int, int]] = None,
               exif_transpose: str = "auto") -> Image.Image:
    """Open `path` as 8-bit RGB, EXIF-rotated when the rule says so; DatasetError if unusable."""
    try:
        return _decode(path, json_size, exif_transpose)
    except _Unreadable as exc:
        where = f" (image id {image_id})" if image_id is not None else ""
        raise DatasetError(f"image file {path}{where} cannot be used: {exc.reason}. {exc.hint}") from None


def probe_image(path: str, json_size: Optional[Tuple[int, int]], exif_transpose: str = "auto") -> Optional[str]:
    """Why the image at `path` cannot be used, or None if it is fine (decodes it fully)."""
    try:
        img = _decode(path, json_size, exif_transpose)
    except _Unreadable as exc:
        return exc.reason
    if json_size is not None and tuple(img.size) != tuple(json_size):
        return (f"the file is {img.size[0]}x{img.size[1]} but the annotation file says "
                f"{json_size[0]}x{json_size[1]}, so its boxes would be misplaced")
    return None
