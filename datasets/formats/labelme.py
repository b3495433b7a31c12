"""LabelMe datasets: one .json per image, beside it or anywhere `imagePath` points.

    <folder>/*.json                 one split (train)
    <folder>/{train,val,test}/*.json   split folders

Each json has `imagePath` (relative to the json), `imageWidth`, `imageHeight` and `shapes`;
a shape of type rectangle gives its box, a polygon or circle the box around it; points and
lines are skipped (counted in the notes). Category ids are 0..K-1 in the order of labels.txt (or
classes.txt) at the root when there is one, else of the labels of all splits, sorted. LabelMe shows images with their EXIF orientation applied, so the loader does too.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DatasetError
from .common import (DatasetSource, FormatNotes, LoadedSplit, canonical_split, category_list, class_order,
                     image_sizes, relpath)

BOX_SHAPES = ("rectangle", "polygon", "circle")


def read_labelme_json(path: str) -> Dict[str, Any]:
    """A LabelMe file as a dict (DatasetError naming the file, and line for broken JSON)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not text (not UTF-8); a LabelMe file is JSON.") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path} has no 'shapes' list; it is not a LabelMe file.")
    return data


def shape_box(shape: Any, path: str, index: int) -> Optional[Tuple[str, List[float]]]:
    """(label, [x, y, w, h]) of a shape that has a box, None for points and lines."""
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str) or not shape["label"]:
        raise DatasetError(f"{path}: shape {index} has no 'label'; every shape needs its class name.")
    kind = shape.get("shape_type") or "polygon"
    if kind not in BOX_SHAPES:
        return None
    points = shape.get("points")
    try:
        pts = [(float(p[0]), float(p[1])) for p in points]
    except (TypeError, ValueError, IndexError):
        raise DatasetError(f"{path}: shape {index} ({shape['label']}) has points {points!r}; they must be "
                           f"[x, y] pairs of numbers.") from None
    if len(pts) < 2:
        raise DatasetError(f"{path}: shape {index} ({shape['label']}, {kind}) has {len(pts)} point(s); a {kind} "
                           f"needs at least 2.")
    if kind == "circle":
        (cx, cy), (px, py) = pts[0], pts[1]
        r = ((px - cx) ** 2 + (py - cy) ** 2) ** 0.5
        return shape["label"], [cx - r, cy - r, 2 * r, 2 * r]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return shape["label"], [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


class LabelmeSource(DatasetSource):
    """split -> list of LabelMe json paths."""

    format = "labelme"
    exif_transpose = "always"

    def __init__(self, root: str, splits: Dict[str, List[str]], layout: str):
        super().__init__(root, splits)
        self.layout = layout
        self._parsed: Optional[Dict[str, List[Dict[str, Any]]]] = None
        self.names: List[str] = []

    def _parse_all(self) -> Dict[str, List[Dict[str, Any]]]:
        if self._parsed is None:
            self._parsed = {s: [read_labelme_json(p) for p in paths] for s, paths in self.splits.items()}
            self.names = class_order(self.root, {sh["label"] for files in self._parsed.values() for d in files
                                                 for sh in d["shapes"] if isinstance(sh, dict)
                                                 and isinstance(sh.get("label"), str) and sh["label"]
                                                 and (sh.get("shape_type") or "polygon") in BOX_SHAPES}, self.root)
        return self._parsed

    def _read(self, split: str) -> LoadedSplit:
        docs = self._parse_all()[split]
        label = {n: i for i, n in enumerate(self.names)}
        notes = FormatNotes()
        paths = [self._image_path(js, d, notes) for js, d in zip(self.splits[split], docs)]
        need = [i for i, d in enumerate(docs) if paths[i] and not _json_size(d)]
        probed = dict(zip(need, image_sizes([paths[i] for i in need])))
        images, annotations = [], []
        for i, (js, d, path) in enumerate(zip(self.splits[split], docs, paths)):
            image_id = i + 1
            entry: Dict[str, Any] = {"id": image_id, "source": relpath(js, self.root),
                                     "file_name": relpath(path, self.root) if path else str(d.get("imagePath"))}
            size = _json_size(d) or probed.get(i)
            if path and size is None:
                notes.unreadable_images.add(relpath(path, self.root))
            if size:
                entry["width"], entry["height"] = size
            for index, shape in enumerate(d["shapes"], start=1):
                found = shape_box(shape, js, index)
                if found is None:
                    notes.skipped_shapes.add(f"{relpath(js, self.root)} shape {index}")
                    continue
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label[found[0]],
                                    "bbox": found[1], "iscrowd": 0, "line": index})
            images.append(entry)
        folder = os.path.dirname(self.splits[split][0]) if self.splits[split] else self.root
        return LoadedSplit(split, {"images": images, "annotations": annotations,
                                   "categories": category_list(self.names)}, self.root, folder, notes=notes)

    def _image_path(self, js: str, doc: Dict[str, Any], notes: FormatNotes) -> Optional[str]:
        rel = doc.get("imagePath")
        folder = os.path.dirname(js)
        if isinstance(rel, str) and rel:
            rel = rel.replace("\\", "/")
            for candidate in (os.path.join(folder, rel), os.path.join(folder, os.path.basename(rel))):
                if os.path.isfile(candidate):
                    return os.path.normpath(candidate)
        notes.missing_images.add(f"{rel or '(no imagePath)'} (for {relpath(js, self.root)})")
        return None


def _json_size(doc: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    w, h = doc.get("imageWidth"), doc.get("imageHeight")
    if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
        return int(round(w)), int(round(h))
    return None


def _labelme_jsons(folder: str) -> List[str]:
    """The .json files of `folder` when the first few are LabelMe files, else []."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith("."))
    if not names:
        return []
    for name in names[:3]:
        try:
            with open(os.path.join(folder, name), "rb") as f:
                head = f.read(1 << 16)
        except OSError:
            return []
        if b'"shapes"' not in head and b'"imagePath"' not in head:
            return []
    return [os.path.join(folder, n) for n in names]


def labelme_source(root: str) -> Optional[LabelmeSource]:
    splits: Dict[str, List[str]] = {}
    for name in sorted(os.listdir(root)):
        folder, split = os.path.join(root, name), canonical_split(name)
        if split and split not in splits and os.path.isdir(folder):
            found = _labelme_jsons(folder)
            if found:
                splits[split] = found
    if splits:
        return LabelmeSource(root, splits, "LabelMe json in split folders")
    found = _labelme_jsons(root)
    return LabelmeSource(root, {"train": found}, "LabelMe json (one folder)") if found else None
