"""Decoding every image of a dataset (opt-in, slow): files that cannot be decoded, and files
whose size matches neither the json's width/height nor its transpose (EXIF rotation)."""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .coco import unwrap_dataset
from .errors import DatasetError
from .image_io import probe_image
from .validation import _plural

logger = logging.getLogger(__name__)


@dataclass
class ImageProblem:
    image_id: int
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} (image id {self.image_id}): {self.reason}"


def verify_images(dataset, num_threads: Optional[int] = None, raise_error: bool = True,
                  progress_every: int = 0) -> List[ImageProblem]:
    """Decode every image of a CocoDetection (or a Subset of one) and report problems.

    Finds files that cannot be decoded and files whose size matches neither
    the json's width/height nor, for EXIF-rotated files, its transpose. Raises
    one DatasetError listing them (or returns them with raise_error=False).
    Takes a few minutes on full COCO; meant for a `--check_images` flag.
    """
    base = unwrap_dataset(dataset)
    if dataset is not base:
        image_ids = [base.ids[i] for i in _subset_indices(dataset)]
    else:
        image_ids = list(base.ids)

    def check(image_id):
        info = base.coco.imgs[image_id]
        path = os.path.join(base.img_folder, info["file_name"])
        reason = probe_image(path, _json_size(info), base.exif_transpose)
        return ImageProblem(image_id, path, reason) if reason else None

    problems: List[ImageProblem] = []
    workers = num_threads or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for n, result in enumerate(pool.map(check, image_ids), start=1):
            if result is not None:
                problems.append(result)
            if progress_every and n % progress_every == 0:
                logger.info("verify_images: %d / %d checked, %d problems", n, len(image_ids), len(problems))
    if problems and raise_error:
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(
            f"{_plural(len(problems), 'image')} of {len(image_ids)} in {base.img_folder} cannot be used:\n  "
            f"{shown}{more}\nReplace these files or remove them from {base.ann_file}.")
    return problems


def _subset_indices(dataset) -> List[int]:
    """Indices into the innermost dataset through nested Subsets."""
    import torch.utils.data as tud

    chain = []
    while isinstance(dataset, tud.Subset):
        chain.append(dataset.indices)
        dataset = dataset.dataset
    idx = list(chain[0])
    for inner in chain[1:]:
        idx = [inner[i] for i in idx]
    return idx


def _json_size(info: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    w, h = info.get("width"), info.get("height")
    if w is None or h is None:
        return None
    return int(round(w)), int(round(h))
