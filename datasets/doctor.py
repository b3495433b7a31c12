"""The dataset doctor: what is wrong with a dataset's labels, before a long run finds out.

`scan_split(loaded)` is one pass over a split's COCO dict (no image files): per class the
images and boxes, and every kind of problem of `KINDS` once with its count and a few examples,
classified exactly as the loader (datasets/coco.py) treats the boxes. `check_image_files` adds
what needs the files (missing, unreadable, a size other than the labels say; header reads, or
full decodes). `examine(path, ...)` does both for every split of a dataset and returns a
`DoctorReport`: whether training would refuse the data, the settings to use, and what to fix.
tools/check_dataset.py prints it and writes report.json and a picture grid (datasets/doctor_grid.py).
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .errors import DatasetError
from .formats import LoadedSplit
from .image_io import exif_orientation
from .validation import CLIP_TOLERANCE_PX, check_annotations

# kind -> (what happens, what it is, what the loader does or what to do)
KINDS: Dict[str, Tuple[str, str, str]] = {
    "format_error": ("refused", "a label file that cannot be read", "training stops: fix the file named"),
    "duplicate_image_id": ("refused", "image ids used twice", "training stops: give every image its own id"),
    "missing_image": ("refused", "images missing on disk", "training stops: restore them or remove their labels"),
    "unreadable_image": ("refused", "images that cannot be read",
                         "training stops when it reaches one: replace or remove them"),
    "label_space": ("refused", "category ids the settings cannot hold", "training stops: use the settings below"),
    "box_partly_outside": ("repaired", "boxes reaching outside their image", "clipped to the image border"),
    "box_outside": ("repaired", "boxes lying entirely outside their image", "dropped"),
    "box_zero_size": ("repaired", "boxes of zero or negative width or height", "dropped"),
    "box_not_finite": ("repaired", "boxes with non-finite coordinates", "dropped"),
    "annotation_ids": ("repaired", "annotation ids missing, repeated or not positive",
                       "renumbered 1..N in memory (COCO evaluation needs unique ids)"),
    "size_mismatch": ("warning", "images whose size is not what the labels say",
                      "boxes used as they are, probably misplaced: correct width/height"),
    "duplicate_file_name": ("warning", "images listed more than once (or sharing one label file)",
                            "each entry is trained on: remove the duplicates"),
    "unknown_category": ("warning", "boxes whose category is not in the category list",
                         "trained on, but COCO evaluation ignores them: add the category"),
    "tiny_box": ("warning", "boxes under 2 px on their shorter side", "kept; probably label noise"),
    "extreme_aspect": ("warning", "boxes longer than 20 times their width (or the reverse)", "kept; check them"),
    "unknown_image": ("ignored", "boxes of images that are not listed", "ignored"),
    "orphan_label": ("ignored", "label files without an image", "ignored"),
    "skipped_shape": ("ignored", "shapes that are not boxes (points, lines)", "ignored"),
    "crowd_box": ("note", "crowd regions (iscrowd=1, VOC 'difficult')",
                  "left out of training; COCO evaluation ignores detections on them"),
    "no_boxes": ("note", "images without boxes", "kept: they show the model what background is"),
}
SEVERITY_ORDER = ("refused", "repaired", "warning", "ignored", "note")
TINY_BOX_PX = 2.0
EXTREME_ASPECT = 20.0
MAX_EXAMPLES = 5
# how much a problem counts when ranking the images for the picture grid
WEIGHT = {"refused": 8, "repaired": 4, "warning": 2, "ignored": 0, "note": 0}


@dataclass
class Finding:
    count: int = 0
    examples: List[str] = field(default_factory=list)

    def add(self, example: str, n: int = 1) -> None:
        self.count += n
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


@dataclass
class SplitScan:
    """What one split holds and what is wrong with it."""

    name: str
    where: str
    image_root: str
    num_images: int = 0
    num_boxes: int = 0                                      # boxes training uses
    per_class: Dict[int, List[int]] = field(default_factory=dict)   # category id -> [images, boxes]
    class_names: Dict[int, str] = field(default_factory=dict)
    max_category_id: Optional[int] = None
    max_category_ann: str = ""                               # where the largest id is used
    findings: Dict[str, Finding] = field(default_factory=dict)
    offenders: Dict[Any, List[Tuple[str, Optional[List[float]]]]] = field(default_factory=dict)  # image id -> problems
    images: Dict[Any, Dict[str, Any]] = field(default_factory=dict)  # image id -> image entry (for the grid)

    def add(self, kind: str, example: str, image_id: Any = None, box: Optional[List[float]] = None) -> None:
        self.findings.setdefault(kind, Finding()).add(example)
        if image_id is not None and WEIGHT[KINDS[kind][0]]:
            self.offenders.setdefault(image_id, []).append((kind, box))


def _ann_name(ann: Dict[str, Any], source: Optional[str]) -> str:
    if source is not None and "line" in ann:
        return f"{source}:{ann['line']}"
    return f"annotation {ann.get('id', '?')}"


def _scan_images(scan: SplitScan, images: List[Any]) -> Dict[Any, Optional[Tuple[float, float]]]:
    """Image ids and file names: duplicates counted; returns image id -> (width, height) or None."""
    sizes: Dict[Any, Optional[Tuple[float, float]]] = {}
    names = Counter()
    labels = Counter()
    for img in images:
        if not isinstance(img, dict) or "id" not in img:
            continue
        if img["id"] in sizes:
            scan.add("duplicate_image_id", f"id {img['id']} ({img.get('file_name')})")
            continue
        w, h = img.get("width"), img.get("height")
        ok = isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0
        sizes[img["id"]] = (float(w), float(h)) if ok else None
        scan.images[img["id"]] = img
        names[img.get("file_name")] += 1
        if img.get("source"):
            labels[img["source"]] += 1
    for name, n in list(names.items()) + [(s, n) for s, n in labels.items()]:
        if n > 1:
            scan.findings.setdefault("duplicate_file_name", Finding()).add(f"{name} ({n} times)", n - 1)
    scan.num_images = len(sizes)
    return sizes


def _box_kind(x, y, w, h, size: Optional[Tuple[float, float]]) -> Tuple[Optional[str], List[float]]:
    """(problem or None, the box as the loader keeps it, xyxy) - the loader's rule (datasets/coco.py)."""
    total = x + y + w + h
    if total - total != 0:
        return "box_not_finite", [0.0, 0.0, 0.0, 0.0]
    if w <= 0 or h <= 0:
        return "box_zero_size", [x, y, x + w, y + h]
    box = [x, y, x + w, y + h]
    if size is None:
        return None, box
    iw, ih = size
    if box[2] <= 0 or box[3] <= 0 or x >= iw or y >= ih:
        return "box_outside", box
    clipped = [max(0.0, x), max(0.0, y), min(iw, box[2]), min(ih, box[3])]
    tol = CLIP_TOLERANCE_PX
    if x < -tol or y < -tol or box[2] > iw + tol or box[3] > ih + tol:
        return "box_partly_outside", clipped
    return None, clipped


def scan_split(loaded: LoadedSplit) -> SplitScan:
    """One pass over the split's dict (see module doc); nothing is read from disk."""
    data = loaded.data
    scan = SplitScan(loaded.name, loaded.where, loaded.image_root)
    cats = [c for c in data.get("categories", []) if isinstance(c, dict) and "id" in c]
    scan.class_names = {c["id"]: str(c.get("name", c["id"])) for c in cats}
    sizes = _scan_images(scan, data.get("images", []))
    sources = {i: img.get("source") for i, img in scan.images.items()}
    boxes_of: Dict[Any, int] = defaultdict(int)
    images_of: Dict[int, set] = defaultdict(set)
    seen_ids: set = set()
    for ann in data.get("annotations", []):
        if not isinstance(ann, dict):
            continue
        image_id, cat, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            continue  # malformed: check_annotations names it as a format error
        name = _ann_name(ann, sources.get(image_id))
        ann_id = ann.get("id")
        if type(ann_id) is not int or ann_id <= 0 or ann_id in seen_ids:
            scan.add("annotation_ids", f"{name} (id {ann_id!r})")
        seen_ids.add(ann_id)
        if isinstance(cat, int) and (scan.max_category_id is None or cat > scan.max_category_id):
            scan.max_category_id, scan.max_category_ann = cat, name
        if image_id not in sizes:
            scan.add("unknown_image", f"{name} -> image {image_id}")
            continue
        if cat not in scan.class_names:
            scan.add("unknown_category", f"{name} -> category {cat}", image_id, list(bbox))
        if ann.get("iscrowd"):
            scan.add("crowd_box", name)
            continue
        kind, box = _box_kind(*bbox, sizes[image_id])
        if kind is not None:
            scan.add(kind, name, image_id, box)
            if kind in ("box_not_finite", "box_zero_size", "box_outside"):
                continue
        _shape_checks(scan, name, image_id, box)
        boxes_of[image_id] += 1
        images_of[cat].add(image_id)
        scan.per_class.setdefault(cat, [0, 0])[1] += 1
        scan.num_boxes += 1
    for cat in scan.class_names:
        scan.per_class.setdefault(cat, [0, 0])
    for cat, ids in images_of.items():
        scan.per_class[cat][0] = len(ids)
    for image_id, img in scan.images.items():
        if not boxes_of.get(image_id):
            scan.add("no_boxes", str(img.get("file_name")))
    _format_notes(scan, loaded)
    return scan


def _shape_checks(scan: SplitScan, name: str, image_id: Any, box: List[float]) -> None:
    w, h = box[2] - box[0], box[3] - box[1]
    if min(w, h) < TINY_BOX_PX:
        scan.add("tiny_box", f"{name} ({w:.1f}x{h:.1f} px)", image_id, box)
    elif max(w / h, h / w) > EXTREME_ASPECT:
        scan.add("extreme_aspect", f"{name} ({w:.0f}x{h:.0f} px)", image_id, box)


def _format_notes(scan: SplitScan, loaded: LoadedSplit) -> None:
    notes = loaded.notes
    for kind, tally in (("missing_image", notes.missing_images), ("unreadable_image", notes.unreadable_images),
                        ("orphan_label", notes.orphan_labels), ("skipped_shape", notes.skipped_shapes)):
        if tally.count:
            finding = scan.findings.setdefault(kind, Finding())
            finding.count += tally.count
            finding.examples = (finding.examples + tally.examples)[:MAX_EXAMPLES]


def check_structure(scan: SplitScan, loaded: LoadedSplit) -> None:
    """The loader's own checks of the dict: what it refuses besides duplicate image ids (counted
    already) is a format error, named by its message."""
    if "duplicate_image_id" in scan.findings:
        return
    data = loaded.data
    copy = {**data, "annotations": [dict(a) if isinstance(a, dict) else a for a in data.get("annotations", [])]}
    try:
        check_annotations(copy, loaded.where)
    except DatasetError as exc:
        scan.add("format_error", str(exc).splitlines()[0])


# --------------------------------------------------------------------------- #
# the image files
# --------------------------------------------------------------------------- #
def _probe(path: str, json_size: Optional[Tuple[int, int]], decode: bool, exif: str) -> Tuple[str, str]:
    """('', '') when the file is fine, else (kind, reason)."""
    if decode:
        from .image_io import probe_image
        if not os.path.exists(path):
            return "missing_image", "missing"
        reason = probe_image(path, json_size, exif)
        if reason is None:
            return "", ""
        return ("size_mismatch" if reason.startswith("the file is") else "unreadable_image"), reason
    from PIL import Image
    try:
        with Image.open(path) as img:
            size, orientation = tuple(img.size), exif_orientation(img)
    except FileNotFoundError:
        return "missing_image", "missing"
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return "unreadable_image", f"{type(exc).__name__}: {exc}"
    if json_size is not None and size != json_size and not (orientation >= 5 and size[::-1] == json_size):
        return "size_mismatch", f"{size[0]}x{size[1]}, labels say {json_size[0]}x{json_size[1]}"
    return "", ""


def check_image_files(scan: SplitScan, decode: bool = False, exif: str = "auto", threads: int = 8,
                      progress: Optional[Callable[[Iterable, int], Iterable]] = None) -> None:
    """Open every image of the split (header only, or a full decode with `decode`): missing,
    unreadable and size-mismatched files, replacing the reader's own counts of the first two."""
    for kind in ("missing_image", "unreadable_image"):
        scan.findings.pop(kind, None)
    items = list(scan.images.items())

    def one(item):
        image_id, img = item
        w, h = img.get("width"), img.get("height")
        size = (int(round(w)), int(round(h))) if isinstance(w, (int, float)) and isinstance(h, (int, float)) else None
        return image_id, img, _probe(os.path.join(scan.image_root, str(img.get("file_name"))), size, decode, exif)

    chunks = [items[i:i + 256] for i in range(0, len(items), 256)]  # one future per 256 images
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = (r for part in pool.map(lambda chunk: [one(item) for item in chunk], chunks) for r in part)
        for image_id, img, (kind, reason) in (progress(results, len(items)) if progress else results):
            if kind:
                scan.add(kind, f"{img.get('file_name')}: {reason}" if kind != "missing_image"
                         else str(img.get("file_name")), image_id if kind == "size_mismatch" else None)


# kinds the loader reports itself when it builds a split (validation.AnnotationReport's warning)
LOADER_REPORTS = ("box_partly_outside", "box_outside", "box_zero_size", "box_not_finite", "annotation_ids",
                  "unknown_image", "unknown_category", "format_error", "duplicate_image_id", "missing_image",
                  "unreadable_image", "orphan_label", "skipped_shape")


def summary_line(scan: SplitScan) -> str:
    """One log line for the start of training: the split's size, boxes per class, and the doctor's
    findings the loader does not report itself."""
    names = scan.class_names
    classes = ", ".join(f"{names.get(c, c)} {n_box}" for c, (_, n_box) in
                        sorted(scan.per_class.items(), key=lambda kv: str(kv[0]).zfill(12)))
    extra = [f"{f.count} {KINDS[k][1]}" for k, f in sorted(scan.findings.items()) if k not in LOADER_REPORTS]
    more = f"; {'; '.join(extra)} (tools/check_dataset.py shows them)" if extra else ""
    return f"{scan.name}: {scan.num_images} images, {scan.num_boxes} boxes ({classes}){more}"
