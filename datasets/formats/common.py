"""What every format reader shares: the loaded split, its notes, split names, image files.

A reader turns one split of a dataset into a COCO dict held in memory (never a
file): 'images' with ids 1..N (in sorted file order for formats that have no
ids), 'annotations' with pixel [x, y, width, height] boxes, and 'categories'
with the dataset's own ids and names. `LoadedSplit.image_root` is the folder
the images' 'file_name's are relative to. Readers of formats without ids add
two keys COCO tools ignore, so messages can name a label file and line
instead of an annotation id: 'source' on an image (its label file, relative
to the dataset root) and 'line' on an annotation (its line, or its object or
shape number, 1-based).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from PIL import Image

from ..errors import DatasetError
from ..image_io import exif_orientation

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_ALIASES: Dict[str, Tuple[str, ...]] = {
    "train": ("train", "training", "train2017", "default"),
    "val": ("val", "valid", "validation", "val2017"),
    "test": ("test", "testing", "test2017", "test-dev"),
}
MAX_EXAMPLES = 5


def canonical_split(name: str) -> Optional[str]:
    """'train', 'val' or 'test' for a split folder or subset name (any case), else None."""
    low = name.lower()
    for split, aliases in SPLIT_ALIASES.items():
        if low in aliases:
            return split
    return None


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class Tally:
    """How often one kind of problem occurred, and the first few places."""

    count: int = 0
    examples: List[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def text(self) -> str:
        more = ", ..." if self.count > len(self.examples) else ""
        return ", ".join(self.examples) + more


@dataclass
class FormatNotes:
    """What a reader met besides boxes: problems that stop training (`missing_images`,
    `unreadable_images`) and things it skipped (label files without an image, shapes that are
    not boxes)."""

    missing_images: Tally = field(default_factory=Tally)
    unreadable_images: Tally = field(default_factory=Tally)
    orphan_labels: Tally = field(default_factory=Tally)
    skipped_shapes: Tally = field(default_factory=Tally)

    def raise_if_fatal(self, where: str, total: int) -> None:
        """DatasetError naming the images training cannot use (missing or unreadable), if any."""
        if self.missing_images.count:
            raise DatasetError(f"{self.missing_images.count} of {total} images named in {where} are missing: "
                               f"{self.missing_images.text()}. Restore them or remove their labels.")
        if self.unreadable_images.count:
            raise DatasetError(f"{self.unreadable_images.count} of {total} images of {where} cannot be read: "
                               f"{self.unreadable_images.text()}. Replace or remove them "
                               f"(tools/check_dataset.py lists them all).")

    def warnings(self, where: str) -> List[str]:
        out = []
        if self.orphan_labels.count:
            out.append(f"{where}: {self.orphan_labels.count} label files have no image and are ignored "
                       f"({self.orphan_labels.text()}).")
        if self.skipped_shapes.count:
            out.append(f"{where}: {self.skipped_shapes.count} shapes are not boxes (points, lines) and are "
                       f"ignored ({self.skipped_shapes.text()}).")
        return out


@dataclass
class LoadedSplit:
    """One split of a dataset as a COCO dict in memory (see module doc)."""

    name: str                 # 'train', 'val' or 'test'
    data: Dict[str, Any]      # COCO dict: images, annotations, categories
    image_root: str           # folder the images' file_name are relative to
    where: str                # what messages name: the json, or the label folder / list of the split
    labelled: bool = True     # False for COCO test-dev (image info only)
    notes: FormatNotes = field(default_factory=FormatNotes)


def image_size(path: str) -> Tuple[int, int]:
    """(width, height) of the image as annotation tools show it: EXIF orientations 5-8 swap the
    sides. Reads the header only. Raises OSError/ValueError for a file PIL cannot open."""
    with Image.open(path) as img:
        w, h = img.size
        if exif_orientation(img) >= 5:
            w, h = h, w
    return int(w), int(h)


def threaded_map(fn: Callable[[Any], Any], items: List[Any], threads: int = 8) -> List[Any]:
    """[fn(item) for item in items], a few big chunks at a time in threads (for file reads, which
    wait on the disk with the GIL released)."""
    if len(items) < 64:
        return [fn(item) for item in items]
    step = (len(items) + threads - 1) // threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = pool.map(lambda chunk: [fn(item) for item in chunk], [items[i:i + step] for i in
                                                                       range(0, len(items), step)])
        return [out for part in parts for out in part]


def try_image_size(path: str) -> Optional[Tuple[int, int]]:
    """image_size, or None where the file cannot be read."""
    try:
        return image_size(path)
    except Exception:  # noqa: BLE001 - any broken file: reported by the caller as unreadable
        return None


def image_sizes(paths: List[str]) -> List[Optional[Tuple[int, int]]]:
    """try_image_size of each path (header reads, in threads)."""
    return threaded_map(try_image_size, paths)


def list_images(folder: str, recursive: bool = True) -> List[str]:
    """Image files under `folder` (relative paths, '/'-separated, sorted)."""
    found = []
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(base, folder)
        for name in files:
            if is_image_file(name) and not name.startswith("."):
                found.append(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/"))
        if not recursive:
            break
    return sorted(found)


def category_list(names: Iterable[str], first_id: int = 0) -> List[Dict[str, Any]]:
    """COCO categories for `names`, ids first_id, first_id + 1, ... in the given order."""
    return [{"id": first_id + i, "name": str(n), "supercategory": "none"} for i, n in enumerate(names)]


CLASS_FILES = ("classes.txt", "labels.txt")  # LabelImg's and LabelMe's class lists


def class_order(root: str, found: Iterable[str], where: str) -> List[str]:
    """The class names in id order: those of classes.txt / labels.txt at `root` when there is one
    (LabelMe's __ignore__ and _background_ lines skipped), else the names `found`, sorted.
    DatasetError when a name used in the labels is not in the list."""
    found = set(found)
    for name in CLASS_FILES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                listed = [n.strip() for n in f.read().splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path} cannot be read as a list of class names ({exc}).") from None
        listed = [n for n in listed if n and n not in ("__ignore__", "_background_")]
        unknown = sorted(found - set(listed))
        if unknown:
            raise DatasetError(f"{where} uses class {unknown[0]!r}, which {path} does not list; add it there "
                               f"(the list fixes the class ids) or remove the file.")
        return listed
    return sorted(found)


def relpath(path: str, root: str) -> str:
    if path.startswith(root + os.sep):  # the common case, without os.path.relpath's cost
        return path[len(root) + 1:].replace(os.sep, "/")
    return os.path.relpath(path, root).replace(os.sep, "/")


class DatasetSource:
    """A dataset folder in one format: which splits it has, and each split read as a COCO dict
    (once; later calls return the same LoadedSplit). Subclasses set the attributes and `_read`."""

    format: str = ""          # 'coco', 'yolo', 'voc' or 'labelme'
    layout: str = ""          # how it was recognised, in words (e.g. "Roboflow COCO export")
    exif_transpose: str = "auto"  # the EXIF rule its annotation tools follow (datasets/image_io.py)

    def __init__(self, root: str, splits: Dict[str, Any]):
        self.root = os.path.abspath(root)
        self.splits = splits  # split name -> whatever the subclass needs to read it
        self._loaded: Dict[str, LoadedSplit] = {}

    def has(self, split: str) -> bool:
        return split in self.splits

    def load(self, split: str) -> LoadedSplit:
        if split not in self.splits:
            raise DatasetError(f"{self.root} ({self.layout}) has no {split!r} split; it has "
                               f"{', '.join(self.splits) or 'none'}.")
        if split not in self._loaded:
            self._loaded[split] = self._read(split)
        return self._loaded[split]

    def _read(self, split: str) -> LoadedSplit:
        raise NotImplementedError

    def describe(self) -> str:
        """One line: what was found where, and its splits."""
        splits = ", ".join(self.splits) if self.splits else "no splits"
        return f"{self.root}: {self.layout} ({splits})"
