"""The synthetic dataset (datasets/synthetic.py) written in the other formats --data reads.

`write_layout(coco_root, dst, layout)` takes a dataset in the COCO 2017 layout (train2017/,
val2017/, annotations/instances_*2017.json) and writes the same images and boxes under `dst` as

    roboflow   train/, valid/ with _annotations.coco.json beside the images (Roboflow's COCO export)
    cvat       annotations/instances_Train.json, instances_Validation.json, images/Train/, images/Validation/
    yolo       data.yaml, images/{train,val}/, labels/{train,val}/*.txt (normalised cx cy w h, full precision)
    voc        Annotations/*.xml, JPEGImages/, ImageSets/Main/{train,val}.txt, classes.txt
    labelme    train/, val/ with one LabelMe .json per image, labels.txt

Class order is the json's (category ids sorted); YOLO, VOC and LabelMe number classes from 0, so
their category ids are one less than the synthetic json's 1..K (classes.txt / labels.txt keep the
order for VOC and LabelMe). Boxes are written so that reading them back gives the json's boxes
to ~1e-12 px. `dst` must be new or empty, or a folder this module wrote (then `overwrite`).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Dict, List
from xml.sax.saxutils import escape

LAYOUTS = ("coco", "roboflow", "cvat", "yolo", "voc", "labelme")
MANIFEST = ".synthetic_layout.json"
SPLITS = ("train", "val")


class LayoutError(ValueError):
    """`dst` cannot be written; the message says why."""


def _claim(dst: str, overwrite: bool) -> None:
    manifest = os.path.join(dst, MANIFEST)
    if os.path.isdir(dst) and os.listdir(dst):
        if not os.path.isfile(manifest):
            raise LayoutError(f"{dst} is not empty and was not written by this tool; choose a new or empty folder")
        if not overwrite:
            raise LayoutError(f"{dst} holds a dataset written before; pass --overwrite to replace it")
        with open(manifest, encoding="utf-8") as f:
            for name in json.load(f).get("entries", []):
                path = os.path.join(dst, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
    os.makedirs(dst, exist_ok=True)


def _split_data(coco_root: str, split: str) -> Dict[str, Any]:
    with open(os.path.join(coco_root, "annotations", f"instances_{split}2017.json"), encoding="utf-8") as f:
        return json.load(f)


def _by_image(data: Dict[str, Any]) -> Dict[int, List[Dict[str, Any]]]:
    out: Dict[int, List[Dict[str, Any]]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


def _copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def _write_json(path: str, data: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def _coco_copy(coco_root: str, dst: str, split: str, image_dir: str, ann_path: str) -> None:
    data = _split_data(coco_root, split)
    for img in data["images"]:
        _copy(os.path.join(coco_root, f"{split}2017", img["file_name"]), os.path.join(image_dir, img["file_name"]))
    _write_json(ann_path, data)


def _roboflow(coco_root: str, dst: str, split: str) -> List[str]:
    folder = os.path.join(dst, "valid" if split == "val" else "train")
    _coco_copy(coco_root, dst, split, folder, os.path.join(folder, "_annotations.coco.json"))
    return [os.path.basename(folder)]


def _cvat(coco_root: str, dst: str, split: str) -> List[str]:
    subset = "Validation" if split == "val" else "Train"
    _coco_copy(coco_root, dst, split, os.path.join(dst, "images", subset),
               os.path.join(dst, "annotations", f"instances_{subset}.json"))
    return ["images", "annotations"]


def _class_index(data: Dict[str, Any]) -> Dict[int, int]:
    return {c["id"]: i for i, c in enumerate(sorted(data["categories"], key=lambda c: c["id"]))}


def _yolo(coco_root: str, dst: str, split: str) -> List[str]:
    data = _split_data(coco_root, split)
    index, anns = _class_index(data), _by_image(data)
    for img in data["images"]:
        w, h = img["width"], img["height"]
        _copy(os.path.join(coco_root, f"{split}2017", img["file_name"]),
              os.path.join(dst, "images", split, img["file_name"]))
        lines = []
        for a in anns[img["id"]]:
            x, y, bw, bh = a["bbox"]
            lines.append(f"{index[a['category_id']]} {repr((x + bw / 2) / w)} {repr((y + bh / 2) / h)} "
                         f"{repr(bw / w)} {repr(bh / h)}")
        label = os.path.join(dst, "labels", split, os.path.splitext(img["file_name"])[0] + ".txt")
        os.makedirs(os.path.dirname(label), exist_ok=True)
        with open(label, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    names = [c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    with open(os.path.join(dst, "data.yaml"), "w", encoding="utf-8") as f:
        f.write(f"path: .\ntrain: images/train\nval: images/val\nnc: {len(names)}\nnames: {json.dumps(names)}\n")
    return ["images", "labels", "data.yaml"]


def _voc_xml(file_name: str, width: int, height: int, objects: List[Dict[str, Any]], names: Dict[int, str]) -> str:
    parts = [f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{escape(file_name)}</filename>\n"
             f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"]
    for a in objects:
        x, y, w, h = a["bbox"]
        parts.append(f"  <object>\n    <name>{escape(names[a['category_id']])}</name>\n    <difficult>"
                     f"{int(a.get('iscrowd', 0))}</difficult>\n    <bndbox><xmin>{repr(x)}</xmin><ymin>{repr(y)}</ymin>"
                     f"<xmax>{repr(x + w)}</xmax><ymax>{repr(y + h)}</ymax></bndbox>\n  </object>\n")
    return "".join(parts) + "</annotation>\n"


def _class_file(dst: str, name: str, data: Dict[str, Any]) -> None:
    with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
        f.write("".join(c["name"] + "\n" for c in sorted(data["categories"], key=lambda c: c["id"])))


def _voc(coco_root: str, dst: str, split: str) -> List[str]:
    data = _split_data(coco_root, split)
    names, anns = {c["id"]: c["name"] for c in data["categories"]}, _by_image(data)
    stems = []
    for img in data["images"]:
        file_name = f"{split}_{img['file_name']}"  # one JPEGImages/ for all splits: names made unique
        stem = os.path.splitext(file_name)[0]
        _copy(os.path.join(coco_root, f"{split}2017", img["file_name"]), os.path.join(dst, "JPEGImages", file_name))
        xml = os.path.join(dst, "Annotations", stem + ".xml")
        os.makedirs(os.path.dirname(xml), exist_ok=True)
        with open(xml, "w", encoding="utf-8") as f:
            f.write(_voc_xml(file_name, img["width"], img["height"], anns[img["id"]], names))
        stems.append(stem)
    lists = os.path.join(dst, "ImageSets", "Main")
    os.makedirs(lists, exist_ok=True)
    with open(os.path.join(lists, f"{split}.txt"), "w", encoding="utf-8") as f:
        f.write("".join(s + "\n" for s in stems))
    _class_file(dst, "classes.txt", data)
    return ["JPEGImages", "Annotations", "ImageSets", "classes.txt"]


def _labelme(coco_root: str, dst: str, split: str) -> List[str]:
    data = _split_data(coco_root, split)
    names, anns = {c["id"]: c["name"] for c in data["categories"]}, _by_image(data)
    folder = os.path.join(dst, split)
    for img in data["images"]:
        _copy(os.path.join(coco_root, f"{split}2017", img["file_name"]), os.path.join(folder, img["file_name"]))
        shapes = [{"label": names[a["category_id"]], "shape_type": "rectangle", "group_id": None, "flags": {},
                   "points": [[a["bbox"][0], a["bbox"][1]], [a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]]}
                  for a in anns[img["id"]]]
        doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": img["file_name"], "imageData": None,
               "imageHeight": img["height"], "imageWidth": img["width"]}
        _write_json(os.path.join(folder, os.path.splitext(img["file_name"])[0] + ".json"), doc)
    _class_file(dst, "labels.txt", data)
    return [split, "labels.txt"]


WRITERS: Dict[str, Callable[[str, str, str], List[str]]] = {
    "roboflow": _roboflow, "cvat": _cvat, "yolo": _yolo, "voc": _voc, "labelme": _labelme}
# what each layout puts at the top of its folder (an overwrite removes these)
ENTRIES = {"roboflow": ["train", "valid"], "cvat": ["images", "annotations"],
           "yolo": ["images", "labels", "data.yaml"], "voc": ["JPEGImages", "Annotations", "ImageSets", "classes.txt"],
           "labelme": ["train", "val", "labels.txt"]}


def write_layout(coco_root: str, dst: str, layout: str, overwrite: bool = False) -> Dict[str, Any]:
    """Write the COCO-2017-layout dataset at `coco_root` under `dst` in `layout` (module doc).
    Returns {"root", "layout", "entries"} (the top-level files and folders written)."""
    if layout not in WRITERS:
        raise LayoutError(f"layout {layout!r}: choose one of {', '.join(WRITERS)}")
    _claim(dst, overwrite)
    with open(os.path.join(dst, MANIFEST), "w", encoding="utf-8") as f:  # first: a killed run's folder stays ours
        json.dump({"written_by": "datasets/synthetic_layouts.py", "layout": layout, "entries": ENTRIES[layout]}, f)
    for split in SPLITS:
        WRITERS[layout](coco_root, dst, split)
    return {"root": os.path.abspath(dst), "layout": layout, "entries": ENTRIES[layout]}
