"""Datasets read as they are exported: COCO json (COCO 2017, Roboflow and CVAT layouts), YOLO,
Pascal VOC and LabelMe. `open_dataset(path)` recognises the format; each split reads into a COCO
dict in memory (`DatasetSource.load(split)` -> LoadedSplit), so training, COCO evaluation and
the checks are the same for every format. Nothing is ever written into the dataset's folder.
"""
from __future__ import annotations

import os
from typing import Optional

from ..errors import DatasetError
from .coco_layouts import CocoSource, annotations_folder_source, coco2017_source, roboflow_source
from .common import DatasetSource, FormatNotes, LoadedSplit, Tally, canonical_split
from .labelme import labelme_source
from .voc import voc_source
from .yolo import yolo_source

__all__ = ["DatasetSource", "FormatNotes", "LoadedSplit", "Tally", "canonical_split", "open_dataset",
           "FORMATS_HELP"]

FORMATS_HELP = ("COCO json (annotations/instances_*.json, <split>/_annotations.coco.json), YOLO (data.yaml), "
                "Pascal VOC (Annotations/*.xml, or .xml beside the images) or LabelMe (*.json with 'shapes')")
_DETECTORS = (coco2017_source, roboflow_source, annotations_folder_source, yolo_source, voc_source, labelme_source)


def _detect(folder: str) -> Optional[DatasetSource]:
    for detect in _DETECTORS:
        found = detect(folder)
        if found is not None:
            return found
    return None


def open_dataset(path: str, flag: str = "--data") -> DatasetSource:
    """The dataset at `path` (a folder; or a data.yaml / COCO .json file): the first format of
    COCO 2017 layout, Roboflow COCO, annotations/*.json, YOLO, VOC, LabelMe that fits. A folder
    holding nothing but one folder is entered. DatasetError saying what was looked for otherwise."""
    if not path:
        raise DatasetError(f"{flag} is not set; point it at your dataset's folder ({FORMATS_HELP}).")
    full = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.exists(full):
        raise DatasetError(f"{flag} {full} does not exist.")
    if os.path.isfile(full):
        if full.endswith((".yaml", ".yml")):
            return yolo_source(full)
        if full.endswith(".json"):
            return CocoSource(os.path.dirname(full), {"train": (full, None)}, "a COCO json file")
        raise DatasetError(f"{flag} {full} is a file; give the dataset's folder, its data.yaml or its COCO .json.")
    found = _detect(full)
    if found is None:
        inner = [n for n in os.listdir(full) if not n.startswith(".")]
        if len(inner) == 1 and os.path.isdir(os.path.join(full, inner[0])):
            found = _detect(os.path.join(full, inner[0]))
    if found is None:
        raise DatasetError(f"{flag} {full}: no dataset found; looked for {FORMATS_HELP}.")
    return found
