"""YOLO detection datasets (Ultralytics, Roboflow and CVAT's YOLO exports).

    data.yaml           names (a list, or {index: name}), train / val / test: a folder of images,
                        a .txt listing images, or a list of those; optional `path` (the base)
    images/<split>/...  the images
    labels/<split>/...  one .txt per image (the image's path with the last images/ replaced by
                        labels/): `class x_center y_center width height` per line, normalised by
                        the image's width and height; a polygon line (class x1 y1 x2 y2 ...) gives
                        its bounding box. An image without a .txt has no objects.

Category ids are the class indices 0..K-1 with data.yaml's names. Boxes become pixels with the
image's size as shown (EXIF orientation applied, as Ultralytics does), in float64.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DatasetError
from .common import (DatasetSource, FormatNotes, LoadedSplit, category_list, list_images, relpath, threaded_map,
                     try_image_size)

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def find_yaml(root: str) -> Optional[str]:
    """data.yaml (or the only *.yaml with `names`) at the top of `root`, or `root` itself if it is one."""
    if os.path.isfile(root) and root.endswith((".yaml", ".yml")):
        return root
    if not os.path.isdir(root):
        return None
    for name in YAML_NAMES:
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    found = [n for n in sorted(os.listdir(root)) if n.endswith((".yaml", ".yml"))]
    for name in found:
        try:
            with open(os.path.join(root, name), encoding="utf-8") as f:
                if any(line.startswith("names") for line in f):
                    return os.path.join(root, name)
        except (OSError, UnicodeDecodeError):
            continue
    return None


def read_yaml(path: str) -> Dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not text (not UTF-8); it must be YOLO's data.yaml.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise DatasetError(f"{path} is not valid YAML: {problem}{where}.") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a YAML {type(data).__name__}; YOLO's data.yaml is a mapping with "
                           f"'names' and 'train' / 'val'.")
    return data


def class_names(data: Dict[str, Any], path: str) -> List[str]:
    names = data.get("names")
    if names is None and isinstance(data.get("nc"), int) and data["nc"] > 0:
        return [str(i) for i in range(data["nc"])]
    if isinstance(names, dict):
        keys = sorted(names)
        if not all(isinstance(k, int) for k in keys) or keys != list(range(len(keys))):
            raise DatasetError(f"{path}: 'names' has keys {keys[:6]}; they must be the class indices 0..K-1.")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path} has no 'names' list; add the class names in class-index order, e.g. "
                           f"names: [cat, dog].")
    if isinstance(data.get("nc"), int) and data["nc"] != len(names):
        raise DatasetError(f"{path}: nc is {data['nc']} but 'names' lists {len(names)} classes; make them agree.")
    return [str(n) for n in names]


def label_path(image_path: str) -> str:
    """Ultralytics' rule: the last /images/ of the path becomes /labels/, the extension .txt (no
    images/ in the path: the .txt beside the image)."""
    head, sep, tail = image_path.rpartition(os.sep + "images" + os.sep)
    base = head + os.sep + "labels" + os.sep + tail if sep else image_path
    return os.path.splitext(base)[0] + ".txt"


class YoloSource(DatasetSource):
    format = "yolo"
    layout = "YOLO (data.yaml)"
    exif_transpose = "always"  # YOLO tools normalise by the EXIF-rotated image

    def __init__(self, yaml_path: str):
        self.yaml_path = os.path.abspath(yaml_path)
        data = read_yaml(self.yaml_path)
        self.names = class_names(data, self.yaml_path)
        yaml_dir = os.path.dirname(self.yaml_path)
        base = data.get("path")
        base = os.path.normpath(os.path.join(yaml_dir, str(base))) if base else yaml_dir
        if not os.path.isdir(base):
            base = yaml_dir  # 'path' written on another machine (common in exports): the yaml's folder
        splits: Dict[str, List[str]] = {}
        for key in ("train", "val", "test"):
            entries = data.get(key)
            if entries in (None, ""):
                continue
            entries = entries if isinstance(entries, list) else [entries]
            splits[key] = [self._resolve(str(e), base, yaml_dir, key) for e in entries]
        if "train" not in splits and "val" not in splits:
            raise DatasetError(f"{self.yaml_path} names no 'train' or 'val' images; add e.g. train: images/train "
                               f"and val: images/val.")
        super().__init__(base, splits)

    def _resolve(self, entry: str, base: str, yaml_dir: str, key: str) -> str:
        """An images folder or list file of data.yaml, found relative to `path`, to the yaml's folder,
        or (Roboflow writes ../train/images) to the yaml's folder without leading ../"""
        stripped = entry
        while stripped.startswith("../"):
            stripped = stripped[3:]
        for candidate in (os.path.join(base, entry), os.path.join(yaml_dir, entry), os.path.join(yaml_dir, stripped)):
            if os.path.exists(candidate):
                return os.path.normpath(candidate)
        raise DatasetError(f"{self.yaml_path}: {key}: {entry} is not found (looked in {base}); correct the path.")

    def _image_paths(self, split: str) -> List[str]:
        paths: List[str] = []
        for entry in self.splits[split]:
            if os.path.isdir(entry):
                paths += [os.path.join(entry, p) for p in list_images(entry)]
            else:
                paths += self._listed(entry)
        return sorted(set(os.path.normpath(p) for p in paths))

    def _listed(self, list_file: str) -> List[str]:
        folder = os.path.dirname(list_file)
        out = []
        try:
            with open(list_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{list_file} cannot be read as a list of images ({exc}).") from None
        for line in (raw.strip() for raw in lines):
            if not line:
                continue
            if os.path.isabs(line):
                out.append(line)
            elif line.startswith("./") or not os.path.exists(os.path.join(self.root, line)):
                out.append(os.path.join(folder, line))  # './x' is relative to the list file (Ultralytics)
            else:
                out.append(os.path.join(self.root, line))
        return out

    def _read(self, split: str) -> LoadedSplit:
        paths = self._image_paths(split)
        notes = FormatNotes()
        # the disk reads (image headers, label files) in threads; the parsing here
        files = threaded_map(lambda p: (try_image_size(p), read_text(label_path(p))), paths)
        images, annotations = [], []
        categories = category_list(self.names)
        for image_id, (path, (size, text)) in enumerate(zip(paths, files), start=1):
            label = label_path(path)
            entry: Dict[str, Any] = {"id": image_id, "file_name": relpath(path, self.root),
                                     "source": relpath(label, self.root)}
            if size is None and not os.path.exists(path):
                notes.missing_images.add(relpath(path, self.root))
            elif size is None:
                notes.unreadable_images.add(relpath(path, self.root))
            else:
                entry["width"], entry["height"] = size
                for line_no, cls, box in parse_label_text(text, label, len(self.names)):
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls,
                                        "bbox": to_pixels(box, size), "iscrowd": 0, "line": line_no})
            images.append(entry)
        self._orphans(split, paths, notes)
        where = f"{self.yaml_path} ({split}: " + ", ".join(relpath(e, self.root) for e in self.splits[split]) + ")"
        return LoadedSplit(split, {"images": images, "annotations": annotations, "categories": categories},
                           self.root, where, notes=notes)

    def _orphans(self, split: str, paths: List[str], notes: FormatNotes) -> None:
        """Label files in the split's label folders that no image uses."""
        used = {label_path(p) for p in paths}
        for entry in self.splits[split]:
            if not os.path.isdir(entry):
                continue
            labels = label_path(os.path.join(entry, "x.jpg"))
            folder = os.path.dirname(labels)
            if folder == entry or not os.path.isdir(folder):
                continue
            for base, _dirs, files in os.walk(folder):
                for name in sorted(files):
                    full = os.path.join(base, name)
                    if name.endswith(".txt") and full not in used and name != "classes.txt":
                        notes.orphan_labels.add(relpath(full, self.root))


def to_pixels(box: Tuple[float, float, float, float], size: Tuple[int, int]) -> List[float]:
    """Normalised (cx, cy, w, h) to COCO pixels [x, y, w, h], in float64."""
    cx, cy, w, h = box
    width, height = size
    return [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]


def read_text(path: str) -> Any:
    """The text of a label file; None when it does not exist, the exception when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return exc


def parse_label_text(text: Any, path: str, num_classes: int) -> List[Tuple[int, int, Tuple[float, float, float, float]]]:
    """(line number, class, normalised cx cy w h) per object of a YOLO .txt as read_text gave it ([] when
    the file does not exist); DatasetError naming the file and line for anything else."""
    if text is None:
        return []
    if isinstance(text, UnicodeDecodeError):
        raise DatasetError(f"{path} is not text (not UTF-8); a YOLO label file has one "
                           f"'class x_center y_center width height' per line.")
    if isinstance(text, OSError):
        raise DatasetError(f"{path} cannot be read: {text.strerror or text}.")
    out = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if tokens:
            out.append((line_no, *parse_line(tokens, path, line_no, num_classes)))
    return out


def read_label_file(path: str, num_classes: int) -> List[Tuple[int, int, Tuple[float, float, float, float]]]:
    """parse_label_text of the file at `path`."""
    return parse_label_text(read_text(path), path, num_classes)


def parse_line(tokens: List[str], path: str, line_no: int, num_classes: int):
    """(class, (cx, cy, w, h)) of one label line (see module doc)."""
    where = f"{path}, line {line_no}"
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise DatasetError(f"{where}: {bad!r} is not a number; a line is 'class x_center y_center width "
                           f"height'.") from None
    cls = values[0]
    if not math.isfinite(cls) or cls != int(cls):
        raise DatasetError(f"{where}: class {tokens[0]!r} is not a whole number.")
    cls = int(cls)
    if not 0 <= cls < num_classes:
        raise DatasetError(f"{where}: class {cls} is not in data.yaml's names (0..{num_classes - 1}); add its "
                           f"name there or fix the label.")
    n = len(values) - 1
    if n == 4:
        return cls, (values[1], values[2], values[3], values[4])
    if n >= 6 and n % 2 == 0:  # a polygon (segmentation export): its bounding box
        xs, ys = values[1::2], values[2::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return cls, ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
    raise DatasetError(f"{where}: {len(values)} values; a box line has 5 (class x_center y_center width height), "
                       f"a polygon line an odd number of at least 7.")


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def yolo_source(root: str) -> Optional[YoloSource]:
    yaml_path = find_yaml(root)
    return YoloSource(yaml_path) if yaml_path else None

