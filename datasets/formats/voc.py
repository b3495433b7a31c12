"""Pascal VOC datasets: one XML file per image.

    VOC            Annotations/*.xml, JPEGImages/, ImageSets/Main/{train,val,test}.txt (trainval.txt
                   as train when there is no train.txt; no lists: every image is train);
                   a VOCdevkit/ holding one VOC*/ folder is entered
    Roboflow       {train,valid,test}/ each with the images and their .xml side by side
    LabelImg       one folder of images and .xml files (train)

Boxes are <bndbox> xmin ymin xmax ymax as written, in pixels (x = xmin, width = xmax - xmin; no
1-based shift); <difficult>1</difficult> objects become crowd regions, which training leaves out
and COCO evaluation ignores, as VOC's own evaluation does. Category ids are 0..K-1 in the order
of classes.txt at the root when there is one, else of the object names of all splits, sorted. XML is read with defusedxml (no entity expansion).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import DatasetError
from .common import (DatasetSource, FormatNotes, LoadedSplit, canonical_split, category_list, class_order,
                     image_sizes, is_image_file, relpath)


@dataclass
class VocObject:
    name: str
    box: Tuple[float, float, float, float]  # xmin, ymin, xmax, ymax
    difficult: bool
    index: int  # 1-based position among the file's objects


@dataclass
class VocFile:
    xml: str                              # path of the .xml
    filename: str                         # <filename>
    size: Optional[Tuple[int, int]]       # <size> width, height (None when absent or 0)
    objects: List[VocObject]


def _text(node, tag: str) -> Optional[str]:
    child = node.find(tag)
    return child.text.strip() if child is not None and child.text is not None else None


def read_voc_xml(path: str) -> VocFile:
    """One VOC .xml; DatasetError naming the file (and line for broken XML) otherwise."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, parse

    try:
        root = parse(path).getroot()
    except ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        reason = str(exc).rsplit(": line", 1)[0]
        raise DatasetError(f"{path}, line {line}, column {col}: not well-formed XML ({reason}); re-export it.") from None
    except DefusedXmlException as exc:
        raise DatasetError(f"{path}: refused ({type(exc).__name__}: entities or DTDs are not read).") from None
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    if root.tag != "annotation":
        raise DatasetError(f"{path}: the root element is <{root.tag}>, not <annotation>; is it a VOC file?")
    size = None
    size_node = root.find("size")
    if size_node is not None:
        w, h = _number(_text(size_node, "width"), path, "<size><width>"), _number(_text(size_node, "height"), path,
                                                                                  "<size><height>")
        if w and h and w > 0 and h > 0:
            size = (int(round(w)), int(round(h)))
    objects = []
    for index, obj in enumerate(root.findall("object"), start=1):
        name = _text(obj, "name")
        if not name:
            raise DatasetError(f"{path}: object {index} has no <name>; every object needs its class name.")
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{path}: object {index} ({name}) has no <bndbox>; a detection object needs one.")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            value = _number(_text(bnd, tag), path, f"object {index} ({name}) <{tag}>")
            if value is None:
                raise DatasetError(f"{path}: object {index} ({name}) has no <{tag}> in its <bndbox>.")
            coords.append(value)
        difficult = _text(obj, "difficult") in ("1", "true", "True")
        objects.append(VocObject(name, (coords[0], coords[1], coords[2], coords[3]), difficult, index))
    filename = _text(root, "filename") or ""
    return VocFile(path, filename, size, objects)


def _number(text: Optional[str], path: str, what: str) -> Optional[float]:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{path}: {what} is {text!r}, not a number.") from None


class VocSource(DatasetSource):
    """split -> list of (xml path, folder its image is in)."""

    format = "voc"

    def __init__(self, root: str, splits: Dict[str, List[Tuple[str, str]]], layout: str):
        super().__init__(root, splits)
        self.layout = layout
        self._parsed: Optional[Dict[str, List[VocFile]]] = None
        self.names: List[str] = []

    def _parse_all(self) -> Dict[str, List[VocFile]]:
        """Every split's files (the class list spans all splits, so all are read together)."""
        if self._parsed is None:
            self._parsed = {split: [read_voc_xml(xml) for xml, _ in items] for split, items in self.splits.items()}
            self.names = class_order(self.root, {o.name for files in self._parsed.values() for f in files
                                                 for o in f.objects}, self.root)
        return self._parsed

    def _read(self, split: str) -> LoadedSplit:
        files = self._parse_all()[split]
        folders = [folder for _, folder in self.splits[split]]
        notes = FormatNotes()
        paths = [self._image_path(f, folder, notes) for f, folder in zip(files, folders)]
        need = [i for i, (f, p) in enumerate(zip(files, paths)) if p and f.size is None]
        probed = dict(zip(need, image_sizes([paths[i] for i in need])))
        label = {n: i for i, n in enumerate(self.names)}
        images, annotations = [], []
        for image_id, (f, path) in enumerate(zip(files, paths), start=1):
            entry: Dict[str, Any] = {"id": image_id, "source": relpath(f.xml, self.root),
                                     "file_name": relpath(path, self.root) if path else f.filename}
            size = f.size or probed.get(image_id - 1)
            if path and size is None:
                notes.unreadable_images.add(relpath(path, self.root))
            if size is not None:
                entry["width"], entry["height"] = size
            for o in f.objects:
                x0, y0, x1, y1 = o.box
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label[o.name],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": int(o.difficult), "line": o.index})
            images.append(entry)
        where = self._where(split)
        return LoadedSplit(split, {"images": images, "annotations": annotations,
                                   "categories": category_list(self.names)}, self.root, where, notes=notes)

    def _image_path(self, f: VocFile, folder: str, notes: FormatNotes) -> Optional[str]:
        """The image of an .xml: <filename> in its folder, else the .xml's name with an image extension."""
        if f.filename and os.path.isfile(os.path.join(folder, f.filename)):
            return os.path.join(folder, f.filename)
        stem = os.path.splitext(os.path.basename(f.xml))[0]
        for name in _listing(folder).get(stem, ()):
            return os.path.join(folder, name)
        notes.missing_images.add(f"{f.filename or stem} (for {relpath(f.xml, self.root)})")
        return None

    def _where(self, split: str) -> str:
        lists = os.path.join(self.root, "ImageSets", "Main")
        if os.path.isdir(lists):
            return os.path.join(lists, f"{split}.txt")
        return os.path.dirname(self.splits[split][0][0]) if self.splits[split] else self.root


_LISTINGS: Dict[str, Dict[str, List[str]]] = {}


def _listing(folder: str) -> Dict[str, List[str]]:
    """{stem: [image file names]} of a folder (one listing per folder)."""
    if folder not in _LISTINGS:
        stems: Dict[str, List[str]] = {}
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            if is_image_file(name):
                stems.setdefault(os.path.splitext(name)[0], []).append(name)
        _LISTINGS.clear()  # keep one folder's listing at a time
        _LISTINGS[folder] = stems
    return _LISTINGS[folder]


def _xmls(folder: str) -> List[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.lower().endswith(".xml")
                  and not n.startswith("."))


def _read_list(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line.split()[0] for line in f.read().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} cannot be read as a list of image names ({exc}).") from None


def _standard(root: str) -> Optional[VocSource]:
    ann = os.path.join(root, "Annotations")
    if not os.path.isdir(ann) or not _xmls(ann):
        return None
    images = os.path.join(root, "JPEGImages")
    lists = os.path.join(root, "ImageSets", "Main")
    named = {s: os.path.join(lists, f"{s}.txt") for s in ("train", "val", "test")}
    if not os.path.isfile(named["train"]) and os.path.isfile(os.path.join(lists, "trainval.txt")):
        named["train"] = os.path.join(lists, "trainval.txt")
    splits: Dict[str, List[Tuple[str, str]]] = {}
    for split, list_file in named.items():
        if os.path.isfile(list_file):
            items = []
            for stem in _read_list(list_file):
                xml = os.path.join(ann, stem + ".xml")
                if not os.path.isfile(xml):
                    raise DatasetError(f"{list_file} names {stem}, but {xml} does not exist; restore it or remove "
                                       f"the line.")
                items.append((xml, images))
            splits[split] = items
    if not splits:
        splits["train"] = [(xml, images) for xml in _xmls(ann)]
    return VocSource(root, splits, "Pascal VOC (Annotations/, JPEGImages/, ImageSets/Main/)")


def voc_source(root: str) -> Optional[VocSource]:
    """The VOC layouts of the module doc under `root`, or None."""
    found = _standard(root)
    if found is None and os.path.isdir(os.path.join(root, "VOCdevkit")):
        inner = [d for d in sorted(os.listdir(os.path.join(root, "VOCdevkit"))) if d.startswith("VOC")]
        if len(inner) == 1:
            found = _standard(os.path.join(root, "VOCdevkit", inner[0]))
    if found is not None:
        return found
    splits: Dict[str, List[Tuple[str, str]]] = {}
    for name in sorted(os.listdir(root)):
        folder, split = os.path.join(root, name), canonical_split(name)
        if split and split not in splits and os.path.isdir(folder) and _xmls(folder):
            splits[split] = [(xml, folder) for xml in _xmls(folder)]
    if splits:
        return VocSource(root, splits, "Pascal VOC XML in split folders (Roboflow's layout)")
    if _xmls(root) and any(is_image_file(n) for n in os.listdir(root)):
        return VocSource(root, {"train": [(xml, root) for xml in _xmls(root)]}, "Pascal VOC XML beside the images")
    return None
