"""Checks of a COCO-format dataset, run before training starts.

Every problem that would stop training is raised as a `DatasetError` whose
message is written for people: it names the file, the image or annotation id
and what to do about it. Problems that can be repaired on the fly (boxes with
no area or reaching outside their image, annotations of unknown images) are
repaired where the dataset loads its targets and reported in one warning per
annotation file.

The checks are a single pass over the annotation json plus one directory
listing per image folder, so they stay cheap on full COCO (118k images, 860k
annotations). Image files are only decoded when loaded (a bad one raises
`DatasetError` then) or by `verify_images`, which decodes all of them.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import DatasetError, user_message  # noqa: F401 (the names callers import from here)

logger = logging.getLogger(__name__)

# How a dataset root must look; shown whenever a path under it is missing.
EXPECTED_LAYOUT = (
    "Expected COCO layout under --coco_path:\n"
    "  <coco_path>/train2017/<images>\n"
    "  <coco_path>/val2017/<images>\n"
    "  <coco_path>/annotations/instances_train2017.json\n"
    "  <coco_path>/annotations/instances_val2017.json"
)

REQUIRED_TOP_KEYS = ("images", "annotations", "categories")
REQUIRED_IMAGE_KEYS = ("id", "file_name")
REQUIRED_ANNOTATION_KEYS = ("bbox", "image_id", "category_id")

# Boxes that stick out of their image by less than this many pixels (rounding
# in annotation tools; COCO itself has some) are clipped without being counted.
CLIP_TOLERANCE_PX = 1.0

# How many example ids a message lists.
MAX_EXAMPLES = 5


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class _Tally:
    """A count plus the first few examples of one kind of problem."""

    count: int = 0
    examples: List[Any] = field(default_factory=list)

    def add(self, example: Any) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def example_text(self) -> str:
        more = ", ..." if self.count > len(self.examples) else ""
        return ", ".join(str(e) for e in self.examples) + more


@dataclass
class AnnotationReport:
    """What `check_annotations` found in one annotation file."""

    ann_file: str
    num_images: int = 0
    num_annotations: int = 0
    num_crowd: int = 0
    # Largest category id over all annotations and the annotation carrying it.
    max_category_id: Optional[int] = None
    max_category_ann: Any = None
    category_ids: Tuple[int, ...] = ()
    # Boxes repaired or dropped when targets are built (non-crowd only).
    dropped_invalid: _Tally = field(default_factory=_Tally)   # not finite
    dropped_empty: _Tally = field(default_factory=_Tally)     # width or height <= 0
    dropped_outside: _Tally = field(default_factory=_Tally)   # nothing left after clipping
    clipped: _Tally = field(default_factory=_Tally)           # partly outside, clipped
    unknown_image: _Tally = field(default_factory=_Tally)     # image_id not in 'images'
    unknown_category: _Tally = field(default_factory=_Tally)  # category_id not in 'categories'
    filled_area: int = 0
    renumbered_ids: Optional[str] = None  # why annotation ids were renumbered

    @property
    def num_box_changes(self) -> int:
        return (self.dropped_invalid.count + self.dropped_empty.count
                + self.dropped_outside.count + self.clipped.count)

    def warning_text(self) -> Optional[str]:
        """One message describing every repair made to this file, or None."""
        parts = []
        if self.num_box_changes:
            items = []
            if self.dropped_empty.count:
                items.append(f"{self.dropped_empty.count} dropped for zero or negative width/height "
                             f"(annotation ids {self.dropped_empty.example_text()})")
            if self.dropped_invalid.count:
                items.append(f"{self.dropped_invalid.count} dropped for non-finite coordinates "
                             f"(annotation ids {self.dropped_invalid.example_text()})")
            if self.dropped_outside.count:
                items.append(f"{self.dropped_outside.count} dropped lying outside their image "
                             f"(annotation ids {self.dropped_outside.example_text()})")
            if self.clipped.count:
                items.append(f"{self.clipped.count} clipped to the image border "
                             f"(annotation ids {self.clipped.example_text()})")
            parts.append(f"{self.num_box_changes} of {self.num_annotations} boxes are changed when loading: "
                         + "; ".join(items) + ".")
        if self.unknown_image.count:
            parts.append(f"{_plural(self.unknown_image.count, 'annotation')} refer to image ids that are not in "
                         f"'images' and are ignored (annotation id -> image id: {self.unknown_image.example_text()}).")
        if self.unknown_category.count:
            parts.append(f"{_plural(self.unknown_category.count, 'annotation')} use category ids that are not in "
                         f"'categories'; they are trained on but COCO evaluation ignores them "
                         f"(annotation id -> category id: {self.unknown_category.example_text()}).")
        if self.renumbered_ids:
            parts.append(f"Annotation ids {self.renumbered_ids}; they were renumbered 1..N in memory, as COCO "
                         f"evaluation needs unique positive ids (the file is not changed).")
        if not parts:
            return None
        return f"{self.ann_file}: " + " ".join(parts) + " Fix the annotation file to silence this warning."

    def log_warning(self) -> None:
        text = self.warning_text()
        if text:
            logger.warning(text)


# --------------------------------------------------------------------------- #
# paths and the annotation file
# --------------------------------------------------------------------------- #
def check_dataset_root(coco_path: Optional[str]) -> str:
    """The absolute dataset root; DatasetError if it is unset or not a folder."""
    if not coco_path:
        raise DatasetError(f"--coco_path is not set. Point it at the dataset folder.\n{EXPECTED_LAYOUT}")
    root = os.path.abspath(os.path.expanduser(str(coco_path)))
    if not os.path.isdir(root):
        raise DatasetError(f"--coco_path {root} does not exist or is not a folder.\n{EXPECTED_LAYOUT}")
    return root


def check_images_folder(img_folder: str) -> None:
    """DatasetError naming the expected path and layout if the folder is missing."""
    if not os.path.isdir(img_folder):
        raise DatasetError(
            f"image folder {img_folder} does not exist. Check --coco_path "
            f"(it is {os.path.dirname(img_folder)}).\n{EXPECTED_LAYOUT}")


def read_annotation_file(ann_file: str, required_keys: Sequence[str] = REQUIRED_TOP_KEYS) -> Dict[str, Any]:
    """Read a COCO json, raising DatasetError if it is missing, unreadable or not a COCO dict."""
    if not os.path.exists(ann_file):
        raise DatasetError(
            f"annotation file {ann_file} does not exist. Check --coco_path "
            f"(it is {os.path.dirname(os.path.dirname(ann_file))}).\n{EXPECTED_LAYOUT}")
    if os.path.isdir(ann_file):
        raise DatasetError(f"annotation file {ann_file} is a folder; it must be a COCO-format .json file.")
    try:
        with open(ann_file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DatasetError(f"annotation file {ann_file} cannot be read: {exc.strerror or exc}. "
                           f"Check its permissions.") from None
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise DatasetError(f"annotation file {ann_file} is not text (not UTF-8); "
                           f"it must be a COCO-format .json file.") from None
    except json.JSONDecodeError as exc:
        hint = " The file is empty." if not raw.strip() else ""
        raise DatasetError(f"annotation file {ann_file} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                           f"column {exc.colno}.{hint} Re-download or re-export it.") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {ann_file} holds a JSON {type(data).__name__}, but a COCO file is "
                           f"an object with the keys {', '.join(repr(k) for k in required_keys)}.")
    missing = [k for k in required_keys if k not in data]
    if missing:
        raise DatasetError(f"annotation file {ann_file} has no {' and no '.join(repr(k) for k in missing)} "
                           f"key; a COCO file needs {', '.join(repr(k) for k in required_keys)}.")
    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise DatasetError(f"annotation file {ann_file}: '{key}' must be a list, "
                               f"found {type(data[key]).__name__}.")
    return data


# --------------------------------------------------------------------------- #
# the content of the annotation file
# --------------------------------------------------------------------------- #
def _ann_name(ann: Dict[str, Any], index: int) -> str:
    ann_id = ann.get("id") if isinstance(ann, dict) else None
    return f"annotation {ann_id}" if ann_id is not None else f"annotation #{index} (no id)"


def _check_images(images: List[Any], ann_file: str) -> Dict[Any, Optional[Tuple[float, float]]]:
    """image id -> (width, height) from the json (None if not given)."""
    sizes: Dict[Any, Optional[Tuple[float, float]]] = {}
    names: Dict[Any, str] = {}
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            raise DatasetError(f"{ann_file}: entry #{i} of 'images' is a {type(img).__name__}, not an object.")
        missing = [k for k in REQUIRED_IMAGE_KEYS if k not in img]
        if missing:
            raise DatasetError(f"{ann_file}: image entry #{i} has no {' and no '.join(repr(k) for k in missing)}; "
                               f"every image needs 'id' and 'file_name'.")
        image_id, file_name = img["id"], img["file_name"]
        if not _is_int(image_id):
            raise DatasetError(f"{ann_file}: image {image_id!r} ({file_name}) has a non-integer id; "
                               f"image ids must be integers.")
        if not isinstance(file_name, str) or not file_name:
            raise DatasetError(f"{ann_file}: image {image_id} has file_name {file_name!r}; it must be a "
                               f"non-empty path relative to the image folder.")
        if image_id in sizes:
            raise DatasetError(f"{ann_file}: image id {image_id} is used twice ({names[image_id]} and "
                               f"{file_name}); image ids must be unique.")
        w, h = img.get("width"), img.get("height")
        if w is None and h is None:
            sizes[image_id] = None
        elif _is_number(w) and _is_number(h) and w > 0 and h > 0:
            sizes[image_id] = (float(w), float(h))
        else:
            raise DatasetError(f"{ann_file}: image {image_id} ({file_name}) has width={w!r}, height={h!r}; "
                               f"they must be positive numbers (or both left out).")
        names[image_id] = file_name
    return sizes


def _check_categories(categories: List[Any], ann_file: str) -> Tuple[int, ...]:
    ids = []
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or "id" not in cat:
            raise DatasetError(f"{ann_file}: entry #{i} of 'categories' has no 'id'; every category needs "
                               f"an integer 'id' (and usually a 'name').")
        if not _is_int(cat["id"]) or cat["id"] < 0:
            raise DatasetError(f"{ann_file}: category {cat.get('name', '#' + str(i))!r} has id {cat['id']!r}; "
                               f"category ids must be integers >= 0.")
        ids.append(cat["id"])
    return tuple(ids)


def check_annotations(data: Dict[str, Any], ann_file: str) -> AnnotationReport:
    """Check the content of a COCO dict (as read by `read_annotation_file`).

    Raises DatasetError for what cannot be trained on (missing keys, malformed
    boxes, non-integer or negative ids, duplicate image ids). Counts what the
    dataset repairs when it builds targets. Fills, in memory, what evaluation
    needs and COCO allows to leave out: 'area' (box area), 'iscrowd' (0) and
    unique positive annotation ids.
    """
    images = data.get("images", [])
    anns = data.get("annotations", [])
    report = AnnotationReport(ann_file=ann_file, num_images=len(images), num_annotations=len(anns))
    sizes = _check_images(images, ann_file)
    report.category_ids = _check_categories(data.get("categories", []), ann_file)
    scan = _AnnotationScan(report, sizes, anns, ann_file)
    if images and isinstance(images[0], dict) and "source" in images[0]:  # read from labels (datasets/formats)
        scan.sources = {img["id"]: img.get("source") for img in images}
    for i, ann in enumerate(anns):  # one pass over up to ~1M annotations (~2 s on full COCO)
        scan.visit(i, ann)
    scan.finish()
    return report


_NUMBER_TYPES = (int, float)  # exact types: bool and str are rejected


class _AnnotationScan:
    """The per-annotation part of check_annotations: required fields and their types (errors),
    id uniqueness, category ids, filled 'area' / 'iscrowd', and the boxes the dataset will drop
    or clip (counted in the report). The common path is plain comparisons only."""

    def __init__(self, report: AnnotationReport, sizes: Dict[Any, Optional[Tuple[float, float]]],
                 anns: List[Any], ann_file: str):
        self.report, self.sizes, self.anns, self.ann_file = report, sizes, anns, ann_file
        self.sources: Dict[Any, Any] = {}  # image id -> label file, for formats without annotation ids
        self.known_cats = set(report.category_ids)
        self.max_cat, self.max_cat_ann = -1, None
        self.seen_ids: set = set()
        self.id_problem: Optional[str] = None

    def _fields(self, i: int, ann: Any) -> Tuple[Any, Any, Any]:
        """(bbox, image_id, category_id) of an annotation, or DatasetError naming what is missing."""
        if type(ann) is not dict:
            raise DatasetError(f"{self.ann_file}: entry #{i} of 'annotations' is a {type(ann).__name__}, not an "
                               f"object.")
        try:
            return ann["bbox"], ann["image_id"], ann["category_id"]
        except KeyError:
            missing = [k for k in REQUIRED_ANNOTATION_KEYS if k not in ann]
            n_bad = sum(1 for a in self.anns
                        if isinstance(a, dict) and any(k not in a for k in REQUIRED_ANNOTATION_KEYS))
            raise DatasetError(
                f"{self.ann_file}: {_ann_name(ann, i)} has no {' and no '.join(repr(k) for k in missing)} "
                f"({_plural(n_bad, 'annotation')} in the file lack required keys). Every annotation needs "
                f"'bbox' [x, y, width, height] in pixels, 'image_id' and 'category_id'.") from None

    def _track_id(self, i: int, ann_id: Any) -> None:
        if type(ann_id) is int and ann_id > 0 and ann_id not in self.seen_ids:
            self.seen_ids.add(ann_id)
        elif self.id_problem is None:
            if ann_id is None:
                self.id_problem = f"are missing (e.g. annotation #{i})"
            elif not _is_int(ann_id) or ann_id <= 0:
                self.id_problem = f"are not all positive integers (e.g. id {ann_id!r})"
            else:
                self.id_problem = f"are not unique (e.g. id {ann_id})"

    def visit(self, i: int, ann: Any) -> None:
        bbox, image_id, cat = self._fields(i, ann)
        ann_id = ann.get("id")
        self._track_id(i, ann_id)
        name = ann_id if ann_id is not None else f"#{i}"
        if self.sources:
            name = f"{self.sources.get(image_id)}:{ann.get('line')}"
        report = self.report
        if type(bbox) is not list or len(bbox) != 4:
            raise DatasetError(f"{self.ann_file}: {_ann_name(ann, i)} (image {image_id}) has bbox {bbox!r}; "
                               f"a bbox must be a list of 4 numbers [x, y, width, height] in pixels.")
        x, y, w, h = bbox
        if not (type(x) in _NUMBER_TYPES and type(y) in _NUMBER_TYPES and type(w) in _NUMBER_TYPES
                and type(h) in _NUMBER_TYPES):
            raise DatasetError(f"{self.ann_file}: {_ann_name(ann, i)} (image {image_id}) has bbox {bbox!r}; "
                               f"a bbox must be a list of 4 numbers [x, y, width, height] in pixels.")
        if type(cat) is not int or cat < 0:
            raise DatasetError(f"{self.ann_file}: {_ann_name(ann, i)} (image {image_id}) has category_id "
                               f"{cat!r}; category ids must be integers >= 0.")
        if cat > self.max_cat:
            self.max_cat, self.max_cat_ann = cat, name
        if cat not in self.known_cats:
            report.unknown_category.add(f"{name}->{cat}")

        total = x + y + w + h
        finite = total - total == 0  # False for inf / nan (and absurd overflowing values)
        if "area" not in ann:
            ann["area"] = float(w) * float(h) if finite and w > 0 and h > 0 else 0.0
            report.filled_area += 1
        crowd = ann.get("iscrowd")
        if crowd is None:
            ann["iscrowd"] = crowd = 0
        if image_id not in self.sizes:
            report.unknown_image.add(f"{name}->{image_id!r}")
        elif crowd:
            report.num_crowd += 1  # crowd regions are never training targets
        elif not finite:
            report.dropped_invalid.add(name)
        elif w <= 0 or h <= 0:
            report.dropped_empty.add(name)
        elif self.sizes[image_id] is not None:
            iw, ih = self.sizes[image_id]
            x1, y1, tol = x + w, y + h, CLIP_TOLERANCE_PX
            if x1 <= 0 or y1 <= 0 or x >= iw or y >= ih:
                report.dropped_outside.add(name)
            elif x < -tol or y < -tol or x1 > iw + tol or y1 > ih + tol:
                report.clipped.add(name)

    def finish(self) -> None:
        """The largest category id, and unique annotation ids where the file's were not."""
        if self.max_cat >= 0:
            self.report.max_category_id = self.max_cat
            self.report.max_category_ann = self.max_cat_ann
        if self.id_problem is not None and self.anns:
            self.report.renumbered_ids = self.id_problem
            for new_id, ann in enumerate(self.anns, start=1):
                ann["id"] = new_id


# --------------------------------------------------------------------------- #
# image files
# --------------------------------------------------------------------------- #
def check_image_files(images: List[Dict[str, Any]], img_folder: str, ann_file: str) -> None:
    """DatasetError naming the missing files and their image ids, if any.

    Uses one directory listing per folder (cheap on COCO's 118k images); a
    name not found in the listing is double-checked with os.path.exists so
    case-insensitive file systems behave.
    """
    listings: Dict[str, Optional[set]] = {}
    missing = _Tally()
    for img in images:
        rel = img["file_name"]
        sub, base = os.path.split(rel)
        folder = os.path.join(img_folder, sub) if sub else img_folder
        names = listings.get(folder, False)
        if names is False:
            try:
                names = set(os.listdir(folder))
            except OSError:
                names = None
            listings[folder] = names
        if names is not None and base in names:
            continue
        if not os.path.exists(os.path.join(img_folder, rel)):
            missing.add(f"{rel} (image id {img['id']})")
    if missing.count:
        raise DatasetError(
            f"{missing.count} of {len(images)} images listed in {ann_file} are missing from {img_folder}: "
            f"{missing.example_text()}. Check that --coco_path points at the right dataset and that the "
            f"download is complete, or remove those images from the annotation file.")


# --------------------------------------------------------------------------- #
# label space vs. model config
# --------------------------------------------------------------------------- #
def check_label_space(report: AnnotationReport, num_classes: Optional[int],
                      dn_labelbook_size: Optional[int] = None, use_dn: bool = True,
                      num_categories: Optional[int] = None) -> None:
    """DatasetError if the model's label space cannot hold the dataset's category ids.

    The classifier has `num_classes` outputs indexed by category id, so every
    id must be below num_classes. Denoising embeds labels with
    `dn_labelbook_size + 1` rows and draws noise labels below num_classes, so
    dn_labelbook_size must be at least num_classes. With contiguous ids
    (`num_categories` given: labels are 0..K-1 for the K categories of the
    json) K must not exceed num_classes instead.
    """
    if not isinstance(num_classes, int):  # None: not checked ('auto' is settled before the data is built)
        return
    if num_categories is not None:
        if num_categories > num_classes:
            raise DatasetError(
                f"{report.ann_file} has {num_categories} categories, more than num_classes={num_classes} "
                f"(contiguous_category_ids=True maps them to 0..{num_categories - 1}). Set num_classes to at "
                f"least {num_categories}, e.g. --options num_classes={num_categories} "
                f"dn_labelbook_size={max(num_categories, dn_labelbook_size or 0)}.")
    top = report.max_category_id
    if num_categories is None and top is not None and top >= num_classes:
        need = top + 1
        dn_need = max(need, dn_labelbook_size or 0) if use_dn else None
        settings = f"Set num_classes to at least {need}"
        example = f"--options num_classes={need}"
        if use_dn and dn_labelbook_size is not None and dn_labelbook_size < need:
            settings += f" and dn_labelbook_size to at least {need}"
            example += f" dn_labelbook_size={dn_need}"
        raise DatasetError(
            f"category id {top} (annotation {report.max_category_ann} in {report.ann_file}) is not below "
            f"num_classes={num_classes}. {settings}, e.g. {example}.")
    if use_dn and dn_labelbook_size is not None and dn_labelbook_size < num_classes:
        raise DatasetError(
            f"dn_labelbook_size={dn_labelbook_size} is smaller than num_classes={num_classes}: denoising "
            f"queries draw labels below num_classes. Set dn_labelbook_size to at least {num_classes}, "
            f"e.g. --options dn_labelbook_size={num_classes}.")
